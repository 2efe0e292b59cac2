// SPDX-License-Identifier: Apache-2.0

package dbus

// The frame of every D-Bus message: its fixed header, which says how long
// the message is, and its header fields. busFilter reads them to decide on
// what comes in, replySwapper to decide on what goes out.

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// The D-Bus wire protocol's version, the message type and header field
// codes used here, and its limit on a message's size (godbus's too).
const (
	protocolVersion = 1
	msgMethodReturn = 2

	fieldPath        = 1
	fieldInterface   = 2
	fieldMember      = 3
	fieldErrorName   = 4
	fieldReplySerial = 5
	fieldDestination = 6
	fieldSender      = 7
	fieldSignature   = 8

	maxMessageSize = 1 << 27
)

// replyHeader returns the header of a method-return message whose body,
// bodyLen bytes in little endian, follows it.
func replyHeader(serial, replySerial uint32, flags byte, dest, signature string, bodyLen int) ([]byte, error) {
	var h wireEncoder
	h.b = append(h.b, 'l', msgMethodReturn, flags, protocolVersion)
	h.u32(uint32(bodyLen))
	h.u32(serial)
	lp, st := h.beginArray(8)
	h.align(8)
	h.b = append(h.b, fieldReplySerial)
	h.sig("u")
	h.u32(replySerial)
	h.align(8)
	h.b = append(h.b, fieldDestination)
	h.sig("s")
	if err := h.str(dest); err != nil {
		return nil, err
	}
	h.align(8)
	h.b = append(h.b, fieldSignature)
	h.sig("g")
	h.sig(signature)
	h.endArray(lp, st)
	h.align(8)
	return h.b, nil
}

// messageLength returns the whole length of the message whose first 16
// bytes are fixed.
func messageLength(fixed []byte) (int, error) {
	order, err := byteOrder(fixed[0])
	if err != nil {
		return 0, err
	}
	body := uint64(order.Uint32(fixed[4:]))
	fields := uint64(order.Uint32(fixed[12:]))
	total := 16 + (fields+7)&^7 + body
	if total > maxMessageSize {
		return 0, fmt.Errorf("message of %d bytes: the limit is %d", total, maxMessageSize)
	}
	return int(total), nil
}

func byteOrder(b byte) (binary.ByteOrder, error) {
	switch b {
	case 'l':
		return binary.LittleEndian, nil
	case 'B':
		return binary.BigEndian, nil
	}
	return nil, fmt.Errorf("byte order %q is neither 'l' nor 'B'", b)
}

// header is a message's fixed header and its header fields.
type header struct {
	order  binary.ByteOrder
	typ    byte
	flags  byte
	serial uint32
	fields map[byte]field
}

// field is one header field: a value of a basic type.
type field struct {
	t byte   // its D-Bus type
	s string // s, o, g
	n uint64 // the numeric types
}

func strField(t byte, s string) field { return field{t: t, s: s} }

// str returns the value of a string-like field.
func (h header) str(code byte) string {
	if f, ok := h.fields[code]; ok && (f.t == 's' || f.t == 'o' || f.t == 'g') {
		return f.s
	}
	return ""
}

// parseHeader reads the header of msg, a whole message. A header field of
// a container type is an error: the specification defines none, and a bus
// drops the fields it does not know.
func parseHeader(msg []byte) (header, error) {
	var h header
	if len(msg) < 16 {
		return h, fmt.Errorf("message of %d bytes is shorter than a header", len(msg))
	}
	order, err := byteOrder(msg[0])
	if err != nil {
		return h, err
	}
	h.order, h.typ, h.flags = order, msg[1], msg[2]
	h.serial = order.Uint32(msg[8:])
	n := int(order.Uint32(msg[12:]))
	if n > len(msg)-16 {
		return h, fmt.Errorf("header fields of %d bytes in a message of %d", n, len(msg))
	}
	r := wireReader{b: msg[:16+n], order: order, pos: 16}
	h.fields = make(map[byte]field)
	for r.pos < len(r.b) && r.err == nil {
		r.align(8)
		code := r.byte()
		sig := r.sig()
		if r.err == nil && len(sig) != 1 {
			return h, fmt.Errorf("header field %d has type %q", code, sig)
		}
		if r.err != nil {
			break
		}
		if f := r.basic(sig[0]); r.err == nil {
			h.fields[code] = f
		}
	}
	if r.err != nil {
		return h, fmt.Errorf("header fields: %w", r.err)
	}
	return h, nil
}

// wireReader reads basic values from D-Bus wire format.
type wireReader struct {
	b     []byte
	order binary.ByteOrder
	pos   int
	err   error
}

func (r *wireReader) need(n int) bool {
	if r.err == nil && (n < 0 || r.pos+n > len(r.b)) {
		r.err = fmt.Errorf("%d bytes needed at offset %d of %d", n, r.pos, len(r.b))
	}
	return r.err == nil
}

func (r *wireReader) align(n int) {
	if pad := (n - r.pos%n) % n; r.need(pad) {
		r.pos += pad
	}
}

func (r *wireReader) byte() byte {
	if !r.need(1) {
		return 0
	}
	r.pos++
	return r.b[r.pos-1]
}

func (r *wireReader) fixed(n int) uint64 {
	r.align(n)
	if !r.need(n) {
		return 0
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	switch n {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(r.order.Uint16(p))
	case 4:
		return uint64(r.order.Uint32(p))
	}
	return r.order.Uint64(p)
}

// sig reads a signature: length byte, bytes, NUL.
func (r *wireReader) sig() string {
	n := int(r.byte())
	if !r.need(n + 1) {
		return ""
	}
	s := string(r.b[r.pos : r.pos+n])
	r.pos += n + 1
	return s
}

// str reads a string or an object path: length, bytes, NUL.
func (r *wireReader) str() string {
	n := r.fixed(4)
	if r.err == nil && n >= uint64(len(r.b)) {
		r.err = fmt.Errorf("string of %d bytes at offset %d of %d", n, r.pos, len(r.b))
	}
	if !r.need(int(n) + 1) {
		return ""
	}
	s := string(r.b[r.pos : r.pos+int(n)])
	r.pos += int(n) + 1
	return s
}

// basicSizes are the sizes of the fixed-size basic types.
var basicSizes = map[byte]int{'y': 1, 'n': 2, 'q': 2, 'b': 4, 'i': 4, 'u': 4, 'h': 4, 'x': 8, 't': 8, 'd': 8}

// basic reads a value of a basic type.
func (r *wireReader) basic(t byte) field {
	switch t {
	case 's', 'o':
		return field{t: t, s: r.str()}
	case 'g':
		return field{t: t, s: r.sig()}
	}
	if n, ok := basicSizes[t]; ok {
		return field{t: t, n: r.fixed(n)}
	}
	r.err = fmt.Errorf("type %q is not a basic type", t)
	return field{}
}

// encode appends the message with this header and body to b, in the
// header's byte order (the body must be in it too).
func (h header) encode(b []byte, body []byte) []byte {
	var order interface {
		binary.ByteOrder
		binary.AppendByteOrder
	} = binary.LittleEndian
	endian := byte('l')
	if h.order == binary.BigEndian {
		order, endian = binary.BigEndian, 'B'
	}
	start := len(b)
	pad := func(n int) {
		for (len(b)-start)%n != 0 {
			b = append(b, 0)
		}
	}
	b = append(b, endian, h.typ, h.flags, protocolVersion)
	b = order.AppendUint32(b, uint32(len(body)))
	b = order.AppendUint32(b, h.serial)
	b = order.AppendUint32(b, 0) // the fields' length, set below
	fieldsStart := len(b)
	codes := slices.Sorted(maps.Keys(h.fields))
	for _, c := range codes {
		f := h.fields[c]
		pad(8)
		b = append(b, c, 1, f.t, 0)
		switch f.t {
		case 's', 'o':
			pad(4)
			b = order.AppendUint32(b, uint32(len(f.s)))
			b = append(b, f.s...)
			b = append(b, 0)
		case 'g':
			b = append(b, byte(len(f.s)))
			b = append(b, f.s...)
			b = append(b, 0)
		default:
			n := basicSizes[f.t]
			pad(n)
			switch n {
			case 1:
				b = append(b, byte(f.n))
			case 2:
				b = order.AppendUint16(b, uint16(f.n))
			case 4:
				b = order.AppendUint32(b, uint32(f.n))
			default:
				b = order.AppendUint64(b, f.n)
			}
		}
	}
	order.PutUint32(b[fieldsStart-4:], uint32(len(b)-fieldsStart))
	pad(8)
	return append(b, body...)
}

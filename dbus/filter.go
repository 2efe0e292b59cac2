// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"
)

// busFilter sits below godbus on a bus connection and hands godbus only
// messages its decoder accepts. godbus v5.2.4 takes any error decoding a
// message body for a broken connection and closes it (conn.go, inWorker:
// every ReadMessage error but InvalidMessageError), and its decoder
// refuses valid D-Bus: a non-empty dictionary keyed by booleans or
// signatures (decoder.go, decode, case 'a': isKeyType). The bus delivers
// such a message from any local user, so one message took the daemon off
// the bus. The filter reads each whole message (the fixed header says how
// long it is), decodes it with godbus itself, and if that fails, or if a
// call's arguments are ones godbus would panic on storing (guard.go),
// keeps it from godbus: a call gets an error reply, a reply to one of our
// calls becomes an error reply to it, anything else is dropped. Unknown
// header flags, which the specification says to ignore and godbus
// refuses, are cleared.
type busFilter struct {
	net.Conn

	began atomic.Bool // the client wrote BEGIN: from here on, messages

	// Only the reading goroutine (godbus's inWorker) touches these.
	br  *bufio.Reader
	msg []byte // the message being handed to godbus
	off int    // how much of msg godbus has read
	err error  // the read error that ends the stream

	mu    sync.Mutex // guards conn, log and cause
	conn  *godbus.Conn
	log   *slog.Logger
	cause error // f.err, for other goroutines
}

// D-Bus wire constants the filter needs.
const (
	maxMessageSize = 1 << 27 // the specification's limit, and godbus's
	knownFlags     = byte(godbus.FlagNoReplyExpected | godbus.FlagNoAutoStart | godbus.FlagAllowInteractiveAuthorization)
	// undecodableError is the error name a call or reply that cannot be
	// decoded is answered with.
	undecodableError = "org.freedesktop.DBus.Error.InvalidArgs"
)

// newBusFilter wraps a bus socket. Call setConn once godbus has a Conn on it.
func newBusFilter(c net.Conn) *busFilter {
	return &busFilter{Conn: c, log: slog.New(slog.DiscardHandler)}
}

// setConn gives the filter the godbus connection it answers calls on.
func (f *busFilter) setConn(c *godbus.Conn) {
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
}

// setLogger makes the filter log what it keeps from godbus (at debug
// level: any local user can send such messages, as many as they like).
func (f *busFilter) setLogger(l *slog.Logger) {
	f.mu.Lock()
	f.log = l
	f.mu.Unlock()
}

// readErr is the error that ended the stream of messages, if any.
func (f *busFilter) readErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cause
}

// fail ends the stream with err.
func (f *busFilter) fail(err error) {
	f.err = err
	f.mu.Lock()
	f.cause = err
	f.mu.Unlock()
}

// Write passes everything through and notes the end of the
// authentication exchange, after which the server sends only messages.
func (f *busFilter) Write(p []byte) (int, error) {
	if !f.began.Load() && bytes.HasPrefix(p, []byte("BEGIN\r\n")) {
		f.began.Store(true)
	}
	return f.Conn.Write(p)
}

// Read hands out whole messages that godbus can decode. It never returns
// 0 bytes without an error: godbus reads a message's first byte with a
// single Read and does not look at the count.
func (f *busFilter) Read(p []byte) (int, error) {
	if !f.began.Load() {
		return f.Conn.Read(p) // the authentication exchange, in text
	}
	if f.br == nil {
		f.br = bufio.NewReaderSize(f.Conn, 64<<10)
	}
	for f.off == len(f.msg) {
		if f.err != nil {
			return 0, f.err
		}
		f.next()
	}
	n := copy(p, f.msg[f.off:])
	f.off += n
	return n, nil
}

// next reads the next message and sets f.msg to what godbus gets of it:
// the message, a replacement, or nothing.
func (f *busFilter) next() {
	f.msg, f.off = f.msg[:0], 0
	if cap(f.msg) > 1<<20 {
		f.msg = nil // don't keep a big message's buffer
	}
	var fixed [16]byte
	if _, err := io.ReadFull(f.br, fixed[:]); err != nil {
		f.fail(err)
		return
	}
	total, err := messageLength(fixed[:])
	if err != nil {
		// The stream is not D-Bus: there is no next message to find.
		f.fail(fmt.Errorf("read from bus: %w", err))
		return
	}
	if cap(f.msg) < total {
		f.msg = make([]byte, 0, total)
	}
	f.msg = append(f.msg[:0], fixed[:]...)[:total]
	if _, err := io.ReadFull(f.br, f.msg[16:]); err != nil {
		f.fail(fmt.Errorf("read from bus: %w", noEOF(err)))
		return
	}
	f.msg[2] &= knownFlags
	reason := undecodable(f.msg)
	if reason == "" {
		return
	}
	f.keep(safeText(reason))
}

// safeText makes s fit to send: a string with bytes that are not UTF-8,
// or NUL, in a message makes the bus drop the connection that sent it.
// godbus's errors can quote what they could not decode.
func safeText(s string) string {
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// keep keeps the message in f.msg from godbus: it answers a call that
// wants a reply, turns a reply into an error reply, and drops the rest.
func (f *busFilter) keep(reason string) {
	f.mu.Lock()
	conn, log := f.conn, f.log
	f.mu.Unlock()
	h, err := parseHeader(f.msg)
	if err != nil {
		log.Debug("message dropped", "reason", reason, "header", err)
		f.msg = f.msg[:0]
		return
	}
	sender := h.str(fieldSender)
	log.Debug("message not decoded", "type", h.typ, "sender", sender, "serial", h.serial,
		"interface", h.str(fieldInterface), "member", h.str(fieldMember), "reason", reason)
	switch {
	case h.typ == byte(godbus.TypeMethodCall) && h.flags&byte(godbus.FlagNoReplyExpected) == 0 && conn != nil:
		f.msg = f.msg[:0]
		reply := &godbus.Message{Type: godbus.TypeError, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldReplySerial: godbus.MakeVariant(h.serial),
			godbus.FieldErrorName:   godbus.MakeVariant(undecodableError),
			godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf("")),
		}, Body: []any{reason}}
		if sender != "" {
			reply.Headers[godbus.FieldDestination] = godbus.MakeVariant(sender)
		}
		// Not from the reading goroutine: a write may wait for the bus.
		go conn.Send(reply, nil)
	case h.typ == byte(godbus.TypeMethodReply) || h.typ == byte(godbus.TypeError):
		// A reply to one of our calls: fail the call now rather than at
		// its timeout.
		rs, ok := h.fields[fieldReplySerial]
		if !ok || rs.t != 'u' {
			f.msg = f.msg[:0]
			return
		}
		out := header{order: h.order, typ: byte(godbus.TypeError), flags: h.flags, serial: h.serial, fields: map[byte]field{
			fieldReplySerial: rs,
			fieldErrorName:   strField('s', undecodableError),
			fieldSignature:   strField('g', "s"),
		}}
		for _, k := range []byte{fieldSender, fieldDestination} {
			if v, ok := h.fields[k]; ok && v.t == 's' {
				out.fields[k] = v
			}
		}
		body := wireEncoder{}
		_ = body.str(reason) // ours: valid UTF-8 without NUL
		if h.order == binary.BigEndian {
			binary.BigEndian.PutUint32(body.b, uint32(len(reason)))
		}
		f.msg = out.encode(f.msg[:0], body.b)
		if undecodable(f.msg) != "" {
			f.msg = f.msg[:0] // never hand godbus what it refuses
		}
	default:
		f.msg = f.msg[:0]
	}
}

// undecodable returns why godbus must not see msg, a whole message, or ""
// if it may.
func undecodable(msg []byte) string {
	m, err := godbus.DecodeMessage(bytes.NewReader(msg))
	if err != nil {
		var ime godbus.InvalidMessageError
		if errors.As(err, &ime) {
			return fmt.Sprintf("invalid message: %v", err)
		}
		sig := "?"
		if h, herr := parseHeader(msg); herr == nil {
			sig = h.str(fieldSignature)
		}
		why := err.Error()
		var ite godbus.InvalidTypeError
		if errors.As(err, &ite) && ite.Type != nil && ite.Type.Kind() == reflect.Map {
			why = keysNotSupported(ite.Type.Key())
		}
		return fmt.Sprintf("arguments of type %q cannot be decoded: %s", sig, why)
	}
	if m.Type == godbus.TypeMethodCall {
		if why := unstorable(m.Body); why != "" {
			sig, _ := m.Headers[godbus.FieldSignature].Value().(godbus.Signature)
			return fmt.Sprintf("arguments of type %q cannot be decoded: %s", sig.String(), why)
		}
	}
	return ""
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

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Header field codes, beyond wire.go's.
const (
	fieldPath      = 1
	fieldInterface = 2
	fieldMember    = 3
	fieldErrorName = 4
	fieldSender    = 7
)

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

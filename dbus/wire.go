// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// wireEncoder writes D-Bus wire format (little endian) for the few shapes
// of the big replies (List, GetManagedObjects). godbus's encoder works by
// reflection and copies every nested array once per level, which makes a
// 10,000-entry List take about a second; this one writes each byte once.
// Offsets are relative to the body, which starts 8-aligned in a message.
type wireEncoder struct {
	b []byte
}

var zeros [8]byte

func (e *wireEncoder) align(n int) {
	if pad := (n - len(e.b)%n) % n; pad > 0 {
		e.b = append(e.b, zeros[:pad]...)
	}
}

func (e *wireEncoder) u32(v uint32) {
	e.align(4)
	e.b = binary.LittleEndian.AppendUint32(e.b, v)
}

func (e *wireEncoder) u64(v uint64) {
	e.align(8)
	e.b = binary.LittleEndian.AppendUint64(e.b, v)
}

func (e *wireEncoder) str(s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("string %.32q is not valid UTF-8 without NUL", s)
	}
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
	return nil
}

func (e *wireEncoder) sig(s string) {
	e.b = append(e.b, byte(len(s)))
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
}

// beginArray reserves the length of an array whose elements align to
// elemAlign; endArray fills it in.
func (e *wireEncoder) beginArray(elemAlign int) (lenPos, start int) {
	e.u32(0)
	lenPos = len(e.b) - 4
	e.align(elemAlign)
	return lenPos, len(e.b)
}

func (e *wireEncoder) endArray(lenPos, start int) {
	binary.LittleEndian.PutUint32(e.b[lenPos:], uint32(len(e.b)-start))
}

// dict writes an a{sv} from a map, keys sorted so output is stable.
func (e *wireEncoder) dict(m map[string]any) error {
	vals := make([]kv, 0, len(m))
	for k, v := range m {
		vals = append(vals, kv{k, v})
	}
	slices.SortFunc(vals, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	return e.kvs(vals)
}

// variant writes v as a variant. It knows the types storkeep puts in
// properties and connection info; anything else is an error, and the
// caller falls back to godbus.
func (e *wireEncoder) variant(v any) error {
	switch x := v.(type) {
	case string:
		e.sig("s")
		return e.str(x)
	case bool:
		e.sig("b")
		b := uint32(0)
		if x {
			b = 1
		}
		e.u32(b)
	case uint16:
		e.sig("q")
		e.align(2)
		e.b = binary.LittleEndian.AppendUint16(e.b, x)
	case int32:
		e.sig("i")
		e.u32(uint32(x))
	case uint32:
		e.sig("u")
		e.u32(x)
	case int64:
		e.sig("x")
		e.u64(uint64(x))
	case uint64:
		e.sig("t")
		e.u64(x)
	case []string:
		e.sig("as")
		lp, st := e.beginArray(4)
		for _, s := range x {
			if err := e.str(s); err != nil {
				return err
			}
		}
		e.endArray(lp, st)
	case map[string]any:
		e.sig("a{sv}")
		return e.dict(x)
	case map[string]string:
		e.sig("a{ss}")
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		lp, st := e.beginArray(8)
		for _, k := range keys {
			e.align(8)
			if err := e.str(k); err != nil {
				return err
			}
			if err := e.str(x[k]); err != nil {
				return err
			}
		}
		e.endArray(lp, st)
	case godbus.Variant:
		return e.variant(x.Value())
	default:
		return fmt.Errorf("no wire encoding for %T", v)
	}
	return nil
}

// Message types and header fields of the D-Bus wire protocol.
const (
	msgMethodReturn    = 2
	fieldDestination   = 6
	fieldReplySerial   = 5
	fieldSignature     = 8
	headerFixedLen     = 12
	protocolVersion    = 1
	maxSwappedBodySize = 1 << 27
)

// replyMessage builds a whole method-return message around body.
func replyMessage(serial, replySerial uint32, flags byte, dest, signature string, body []byte) ([]byte, error) {
	var h wireEncoder
	h.b = append(h.b, 'l', msgMethodReturn, flags, protocolVersion)
	h.u32(uint32(len(body)))
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
	return append(h.b, body...), nil
}

// replyHeader is what replySwapper needs from an outgoing message.
type replyHeader struct {
	serial      uint32
	replySerial uint32
	flags       byte
	dest        string
}

// parseReplyHeader reads the header of a method return; ok is false for
// anything else (other messages, the authentication exchange).
func parseReplyHeader(p []byte) (h replyHeader, ok bool) {
	if len(p) < headerFixedLen+4 || p[1] != msgMethodReturn {
		return h, false
	}
	var order binary.ByteOrder
	switch p[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return h, false
	}
	h.flags = p[2]
	h.serial = order.Uint32(p[8:])
	n := int(order.Uint32(p[12:]))
	pos, end := 16, 16+n
	if end > len(p) {
		return h, false
	}
	for pos < end {
		pos = (pos + 7) &^ 7
		if pos+3 > end {
			return h, false
		}
		code := p[pos]
		sl := int(p[pos+1])
		if pos+2+sl+1 > end {
			return h, false
		}
		sig := string(p[pos+2 : pos+2+sl])
		pos += 2 + sl + 1
		switch sig {
		case "u", "i":
			pos = (pos + 3) &^ 3
			if pos+4 > end {
				return h, false
			}
			if code == fieldReplySerial {
				h.replySerial = order.Uint32(p[pos:])
			}
			pos += 4
		case "s", "o":
			pos = (pos + 3) &^ 3
			if pos+4 > end {
				return h, false
			}
			l := int(order.Uint32(p[pos:]))
			if pos+4+l+1 > end {
				return h, false
			}
			if code == fieldDestination {
				h.dest = string(p[pos+4 : pos+4+l])
			}
			pos += 4 + l + 1
		case "g":
			if pos+1 > end {
				return h, false
			}
			pos += 1 + int(p[pos]) + 1
		default:
			return h, false
		}
	}
	return h, h.replySerial != 0
}

// kvs writes an a{sv} from named values in their order.
func (e *wireEncoder) kvs(vals []kv) error {
	lp, st := e.beginArray(8)
	for _, p := range vals {
		e.align(8)
		if err := e.str(p.k); err != nil {
			return err
		}
		if err := e.variant(p.v); err != nil {
			return err
		}
	}
	e.endArray(lp, st)
	return nil
}

// encodeList writes the body of a List reply: a{sa{sv}}.
func encodeList(e *wireEncoder, list []service.Status) error {
	e.b = slices.Grow(e.b, 400*len(list))
	lp, st := e.beginArray(8)
	for _, s := range list {
		e.align(8)
		if err := e.str(s.ID); err != nil {
			return err
		}
		if err := e.kvs(listValues(s)); err != nil {
			return err
		}
	}
	e.endArray(lp, st)
	return nil
}

// encodeManagedObjects writes the body of a GetManagedObjects reply:
// a{oa{sa{sv}}}.
func encodeManagedObjects(e *wireEncoder, list []service.Status) error {
	e.b = slices.Grow(e.b, 700*len(list))
	lp, st := e.beginArray(8)
	for _, s := range list {
		if !s.Managed {
			continue
		}
		e.align(8)
		if err := e.str(string(ConnectionPath(s.ID))); err != nil {
			return err
		}
		ilp, ist := e.beginArray(8)
		for _, iface := range connInterfaces(s) {
			e.align(8)
			if err := e.str(iface.name); err != nil {
				return err
			}
			if err := e.kvs(iface.vals); err != nil {
				return err
			}
		}
		e.endArray(ilp, ist)
	}
	e.endArray(lp, st)
	return nil
}

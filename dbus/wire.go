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
	b       []byte
	scratch []kv // dict's, reused from one map to the next
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
	if !wireString(s) {
		return fmt.Errorf("string %.32q is not valid UTF-8 without NUL", s)
	}
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
	return nil
}

// wireString tells whether s may be a D-Bus string: valid UTF-8 without
// NUL (the bus drops a sender that sends another). Nearly every string
// storkeep sends is ASCII, checked here 8 bytes at a time in one pass
// (UTF-8 and NUL checks in turn were a sixth of a List's CPU).
func wireString(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		const lows, highs = 0x0101010101010101, 0x8080808080808080
		// A byte of 0x80 or more, or a zero byte (x-lows borrows into
		// its high bit where x had none).
		if x&highs != 0 || (x-lows)&^x&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == 0 || c >= utf8.RuneSelf {
			rest := s[i:]
			return utf8.ValidString(rest) && strings.IndexByte(rest, 0) < 0
		}
	}
	return true
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
	// The encoder's scratch while this dict uses it; a dict within
	// (a map value) makes its own.
	vals := e.scratch[:0]
	e.scratch = nil
	for k, v := range m {
		vals = append(vals, kv{k, v})
	}
	slices.SortFunc(vals, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	err := e.kvs(vals)
	clear(vals) // no value kept alive by the scratch
	e.scratch = vals[:0]
	return err
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

// encodeList writes the body of a List reply with every key: a{sa{sv}}.
func encodeList(e *wireEncoder, list []service.Status) error {
	lp, st := e.beginArray(8)
	if err := encodeListEntries(e, list, nil); err != nil {
		return err
	}
	e.endArray(lp, st)
	return nil
}

// encodeManagedObjects writes the body of a GetManagedObjects reply:
// a{oa{sa{sv}}}.
func encodeManagedObjects(e *wireEncoder, list []service.Status) error {
	lp, st := e.beginArray(8)
	var obj wireEncoder
	for i := range list {
		if !list[i].Managed {
			continue
		}
		obj.b = obj.b[:0]
		if err := encodeObject(&obj, &list[i]); err != nil {
			return err
		}
		e.align(8)
		e.b = append(e.b, obj.b...)
	}
	e.endArray(lp, st)
	return nil
}

// encodeObject writes the entry of GetManagedObjects's reply for st (its
// path and interfaces, with their properties) into e from an 8-aligned
// start.
func encodeObject(e *wireEncoder, s *service.Status) error {
	if err := e.str(string(ConnectionPath(s.ID))); err != nil {
		return err
	}
	lp, st := e.beginArray(8)
	for _, iface := range connInterfaces(*s) {
		e.align(8)
		if err := e.str(iface.name); err != nil {
			return err
		}
		if err := e.kvs(iface.vals); err != nil {
			return err
		}
	}
	e.endArray(lp, st)
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"reflect"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// recordConn is the socket below a replySwapper: it keeps what is written.
type recordConn struct {
	net.Conn
	out    bytes.Buffer
	writes int
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writes++
	return c.out.Write(p)
}

// godbusMessage returns msg as godbus writes it.
func godbusMessage(t *testing.T, msg *godbus.Message, serial uint32) []byte {
	t.Helper()
	var b bytes.Buffer
	// The serial is unexported; DecodeMessage of a patched copy sets it.
	if err := msg.EncodeTo(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	binary.LittleEndian.PutUint32(raw[8:], serial)
	return raw
}

func replyTo(dest string, serial uint32, body ...any) *godbus.Message {
	m := &godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(serial),
		godbus.FieldDestination: godbus.MakeVariant(dest),
	}, Body: body}
	if len(body) > 0 {
		m.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	return m
}

// TestReplySwapperCutsTheStreamItself: the registered reply takes the
// placeholder's place, and every other byte passes on unchanged, however
// the writes cut the stream (godbus v5.2.4 writes a message at once, but
// does not promise to).
func TestReplySwapperCutsTheStreamItself(t *testing.T) {
	var e wireEncoder
	if err := encodeList(&e, testStatuses()); err != nil {
		t.Fatal(err)
	}
	signal := godbusMessage(t, &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(godbus.ObjectPath(RootPath)),
		godbus.FieldInterface: godbus.MakeVariant(ManagerInterface),
		godbus.FieldMember:    godbus.MakeVariant("PathChanged"),
		godbus.FieldSignature: godbus.MakeVariant(godbus.SignatureOf("h", true)),
	}, Body: []any{"h", true}}, 10)
	placeholder := godbusMessage(t, replyTo(":1.5", 42, map[string]map[string]godbus.Variant{}), 11)
	sameSerialOtherCaller := godbusMessage(t, replyTo(":1.6", 42, "x"), 12)
	otherReply := godbusMessage(t, replyTo(":1.5", 43, "y"), 13)
	auth := []string{"\x00", "AUTH EXTERNAL 30\r\n", "BEGIN\r\n"}

	var stream []byte
	for _, a := range auth {
		stream = append(stream, a...)
	}
	for _, m := range [][]byte{signal, placeholder, sameSerialOtherCaller, otherReply} {
		stream = append(stream, m...)
	}
	hdr, err := replyHeader(11, 42, 0, ":1.5", "a{sa{sv}}", len(e.b))
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, a := range auth {
		want = append(want, a...)
	}
	want = append(want, signal...)
	want = append(want, hdr...)
	want = append(want, e.b...)
	want = append(want, sameSerialOtherCaller...)
	want = append(want, otherReply...)

	authLen := len(stream) - len(signal) - len(placeholder) - len(sameSerialOtherCaller) - len(otherReply)
	for _, size := range []int{1, 2, 3, 7, 8, 15, 16, 17, 31, 64, 100, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rc := &recordConn{}
			sw := newReplySwapper(rc)
			sw.register(":1.5", 42, "a{sa{sv}}", [][]byte{e.b[:5], e.b[5:]}, len(e.b), nil)
			// The authentication exchange comes one line a Write, as
			// godbus writes it; the messages in pieces of size bytes.
			for _, a := range auth {
				if n, err := sw.Write([]byte(a)); err != nil || n != len(a) {
					t.Fatalf("Write(%q) = %d, %v", a, n, err)
				}
			}
			for rest := stream[authLen:]; len(rest) > 0; {
				k := min(size, len(rest))
				if n, err := sw.Write(rest[:k]); err != nil || n != k {
					t.Fatalf("Write of %d bytes = %d, %v", k, n, err)
				}
				rest = rest[k:]
			}
			if !bytes.Equal(rc.out.Bytes(), want) {
				t.Fatalf("wrote %d bytes, want %d:\n got %q\nwant %q", rc.out.Len(), len(want), rc.out.Bytes(), want)
			}
			if sw.anyPending() {
				t.Error("the registration is still pending after its reply was written")
			}
		})
	}

	// What it wrote is D-Bus that an independent decoder reads as the
	// registered List.
	r := bytes.NewReader(want[authLen+len(signal):])
	m, err := godbus.DecodeMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Body[0].(map[string]map[string]godbus.Variant)
	for _, st := range testStatuses() {
		if !reflect.DeepEqual(fmtVariants(got[st.ID]), fmtVariants(listEntry(st))) {
			t.Errorf("%q: got %v", st.ID, got[st.ID])
		}
	}
}

// TestReplySwapperPassesWholeMessagesOn: a message written at once goes
// to the socket in one write, whether a swap is registered or not.
func TestReplySwapperPassesWholeMessagesOn(t *testing.T) {
	rc := &recordConn{}
	sw := newReplySwapper(rc)
	if _, err := sw.Write([]byte("BEGIN\r\n")); err != nil {
		t.Fatal(err)
	}
	sw.register(":1.9", 1, "s", [][]byte{{0, 0, 0, 0, 0}}, 5, nil)
	for i := range 3 {
		m := godbusMessage(t, replyTo(":1.5", uint32(i+1), "abc"), uint32(i+1))
		before := rc.writes
		if _, err := sw.Write(m); err != nil {
			t.Fatal(err)
		}
		if rc.writes-before != 1 {
			t.Errorf("message %d took %d writes", i, rc.writes-before)
		}
	}
}

// TestReplySwapperRefusesAStreamOutOfStep: bytes that are not a message
// where one must start fail the Write, and every Write after it, rather
// than reach the bus as something else.
func TestReplySwapperRefusesAStreamOutOfStep(t *testing.T) {
	rc := &recordConn{}
	sw := newReplySwapper(rc)
	if _, err := sw.Write([]byte("BEGIN\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Write(bytes.Repeat([]byte{'x'}, 16)); err == nil {
		t.Fatal("16 bytes with byte order 'x' were taken for a message")
	}
	m := godbusMessage(t, replyTo(":1.5", 1, "abc"), 1)
	if _, err := sw.Write(m); err == nil {
		t.Fatal("a Write after the stream went out of step succeeded")
	}
	if rc.out.String() != "BEGIN\r\n" {
		t.Errorf("wrote %q", rc.out.String())
	}
}

// TestListReplyIsSwappedThroughGodbus: a List through godbus's dispatch
// and encoder comes out as storkeep encoded it, and leaves nothing
// registered, also when the caller wants no reply.
func TestListReplyIsSwappedThroughGodbus(t *testing.T) {
	p := startPeerServer(t)
	p.allow.Store(true)
	for i := range 150 {
		sig, body := encodeArgs(fmt.Sprintf("nfs://server%d.example/srv/export/with/a/long/path/%d", i, i),
			fmt.Sprintf("vm%03d-disk", i), map[string]godbus.Variant{})
		if m, _ := p.call(t, 0, string(RootPath), ManagerInterface, "Manage", sig, body); m.Type != godbus.TypeMethodReply {
			t.Fatalf("Manage: %v", m.Body)
		}
	}
	sig, body := encodeArgs(map[string]godbus.Variant{})
	// No reply wanted: nothing may be registered for it.
	p.serial++
	if _, err := p.c.Write(rawCall(p.serial, byte(godbus.FlagNoReplyExpected), string(RootPath), ManagerInterface, "List", sig, body)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		firsts := rawListFirstKeys(t, p, sig, body)
		if len(firsts) != 150 {
			t.Fatalf("List returned %d entries, want 150 (the placeholder is empty)", len(firsts))
		}
		// godbus writes a map's entries in Go's random order; storkeep
		// writes each entry's keys in listValues's order.
		for cid, k := range firsts {
			if k != ListManaged {
				t.Fatalf("%s: first key %q, not %q: godbus encoded the reply", cid, k, ListManaged)
			}
		}
	}
	if p.conn.swap.anyPending() {
		t.Error("a registration outlived its reply")
	}
}

// rawListFirstKeys calls List and returns the first key on the wire of
// each entry of its reply, by CID.
func rawListFirstKeys(t *testing.T, p *rawPeer, sig string, body []byte) map[string]string {
	t.Helper()
	p.serial++
	if _, err := p.c.Write(rawCall(p.serial, 0, string(RootPath), ManagerInterface, "List", sig, body)); err != nil {
		t.Fatal(err)
	}
	for {
		var fixed [16]byte
		if _, err := io.ReadFull(p.r, fixed[:]); err != nil {
			t.Fatal(err)
		}
		total, err := messageLength(fixed[:])
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, total)
		copy(msg, fixed[:])
		if _, err := io.ReadFull(p.r, msg[16:]); err != nil {
			t.Fatal(err)
		}
		h, err := parseHeader(msg)
		if err != nil {
			t.Fatal(err)
		}
		if h.fields[fieldReplySerial].n != uint64(p.serial) {
			continue
		}
		if h.typ != msgMethodReturn || h.str(fieldSignature) != "a{sa{sv}}" {
			t.Fatalf("List: reply of type %d, signature %q", h.typ, h.str(fieldSignature))
		}
		r := wireReader{b: msg[16+(binary.LittleEndian.Uint32(msg[12:])+7)&^7:], order: binary.LittleEndian}
		end := int(r.fixed(4))
		r.align(8)
		end += r.pos
		firsts := make(map[string]string)
		for r.pos < end && r.err == nil {
			r.align(8)
			cid := r.str()
			n := int(r.fixed(4))
			r.align(8)
			next := r.pos + n
			firsts[cid] = r.str()
			r.pos = next
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		return firsts
	}
}

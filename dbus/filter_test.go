// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"
)

// dictBody returns the body of one argument of type a{<key>v} with one
// entry whose value is the string "x": keys 'b' (true), 'g' ("s") or 's'.
func dictBody(e *wireEncoder, key byte) {
	lp, st := e.beginArray(8)
	e.align(8)
	switch key {
	case 'b':
		e.u32(1)
	case 'g':
		e.sig("s")
	default:
		_ = e.str("k")
	}
	_ = e.variant("x")
	e.endArray(lp, st)
}

// hostileBodies are the shapes of issue 12 as (signature, body) of the
// method each is sent to.
func hostileBodies() map[string]struct {
	path, iface, member, sig string
	body                     []byte
} {
	type call = struct {
		path, iface, member, sig string
		body                     []byte
	}
	out := map[string]call{}
	var e wireEncoder
	_ = e.str(nfsTestURI)
	_ = e.str("hostile")
	dictBody(&e, 'b')
	out["Manage options a{bv}"] = call{RootPath, ManagerInterface, "Manage", "ssa{bv}", e.b}

	e = wireEncoder{}
	_ = e.str(nfsTestURI)
	_ = e.str("hostile")
	lp, st := e.beginArray(8)
	e.align(8)
	_ = e.str(OptCHAPUsername)
	e.sig("a{gv}")
	dictBody(&e, 'g')
	e.endArray(lp, st)
	out["Manage option value a{gv}"] = call{RootPath, ManagerInterface, "Manage", "ssa{sv}", e.b}

	for _, k := range []byte{'b', 'g'} {
		e = wireEncoder{}
		dictBody(&e, k)
		out["List options a{"+string(k)+"v}"] = call{RootPath, ManagerInterface, "List", "a{" + string(k) + "v}", e.b}
	}

	e = wireEncoder{}
	lp, st = e.beginArray(8)
	e.align(8)
	_ = e.str(OptPrefix)
	e.sig("a{bv}")
	dictBody(&e, 'b')
	e.endArray(lp, st)
	out["List prefix a variant of a{bv}"] = call{RootPath, ManagerInterface, "List", "a{sv}", e.b}

	e = wireEncoder{}
	_ = e.str(ManagerInterface)
	_ = e.str("Version")
	dictBody(&e, 'g')
	out["Properties.Get a{gv}"] = call{RootPath, PropertiesIface, "Get", "ssa{gv}", e.b}

	e = wireEncoder{}
	lp, st = e.beginArray(1)
	e.sig("a{bv}")
	dictBody(&e, 'b')
	e.endArray(lp, st)
	out["Peer.Ping av"] = call{RootPath, "org.freedesktop.DBus.Peer", "Ping", "av", e.b}

	// Empty: godbus decodes it, then would panic storing it.
	e = wireEncoder{}
	_ = e.str(ConnInterface)
	_ = e.str("State")
	lp, st = e.beginArray(8)
	e.endArray(lp, st)
	out["Properties.Set an empty a{bv}"] = call{RootPath, PropertiesIface, "Set", "ssa{bv}", e.b}
	return out
}

const nfsTestURI = "nfs://127.0.0.1/srv/x"

// send writes raw and returns the first message to the test peer
// (":1.42") whose reply serial is serial, or fails.
func (p *rawPeer) send(tb testing.TB, raw []byte, serial uint32) *godbus.Message {
	tb.Helper()
	if _, err := p.c.Write(raw); err != nil {
		tb.Fatalf("write: %v", err)
	}
	return p.replyTo(tb, serial)
}

func (p *rawPeer) replyTo(tb testing.TB, serial uint32) *godbus.Message {
	tb.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := godbus.DecodeMessage(p.r)
		if err != nil {
			tb.Fatalf("no reply to serial %d: %v", serial, err)
		}
		rs, _ := m.Headers[godbus.FieldReplySerial].Value().(uint32)
		dest, _ := m.Headers[godbus.FieldDestination].Value().(string)
		if rs == serial && (dest == ":1.42" || dest == "") {
			return m
		}
	}
}

// askVersion checks that the server still answers.
func (p *rawPeer) askVersion(tb testing.TB) {
	tb.Helper()
	p.serial++
	sig, body := encodeArgs(ManagerInterface, "Version")
	m := p.send(tb, rawCall(p.serial, 0, RootPath, PropertiesIface, "Get", sig, body), p.serial)
	if m.Type != godbus.TypeMethodReply {
		tb.Fatalf("Get Version: %v", m)
	}
}

// TestFilterAnswersWhatGodbusCannotDecode: each shape of issue 12 gets an
// error reply that says what was wrong, and the server answers the next
// call on the same connection. Without the filter godbus closed the
// connection at the first of them.
func TestFilterAnswersWhatGodbusCannotDecode(t *testing.T) {
	p := startPeerServer(t)
	for name, c := range hostileBodies() {
		p.serial++
		m := p.send(t, rawCall(p.serial, 0, c.path, c.iface, c.member, c.sig, c.body), p.serial)
		errName, _ := m.Headers[godbus.FieldErrorName].Value().(string)
		var text string
		if len(m.Body) > 0 {
			text, _ = m.Body[0].(string)
		}
		if m.Type != godbus.TypeError || errName != undecodableError || !strings.Contains(text, "cannot be decoded") ||
			!strings.Contains(text, c.sig) {
			t.Errorf("%s: reply %s %q %q; want %s saying the arguments of type %q cannot be decoded",
				name, m.Type, errName, text, undecodableError, c.sig)
		}
		if dest, _ := m.Headers[godbus.FieldDestination].Value().(string); dest != ":1.42" {
			t.Errorf("%s: the error reply goes to %q, not the caller", name, dest)
		}
		p.askVersion(t)
	}
}

// TestFilterDropsUndecodableSignals: a signal (here unicast, on a made-up
// interface) or a call that wants no reply is dropped.
func TestFilterDropsUndecodableSignals(t *testing.T) {
	p := startPeerServer(t)
	var e wireEncoder
	dictBody(&e, 'b')
	sigMsg := rawCall(1000, 0, "/made/up", "com.example.MadeUp", "Boo", "a{bv}", e.b)
	sigMsg[1] = byte(godbus.TypeSignal)
	noReply := rawCall(1001, byte(godbus.FlagNoReplyExpected), RootPath, ManagerInterface, "List", "a{bv}", e.b)
	for _, raw := range [][]byte{sigMsg, noReply} {
		if _, err := p.c.Write(raw); err != nil {
			t.Fatal(err)
		}
		p.askVersion(t)
	}
}

// TestFilterClearsUnknownFlags: the specification says to ignore header
// flags one does not know; godbus drops the message (no reply ever).
func TestFilterClearsUnknownFlags(t *testing.T) {
	p := startPeerServer(t)
	p.serial++
	sig, body := encodeArgs(ManagerInterface, "Version")
	m := p.send(t, rawCall(p.serial, 0x80, RootPath, PropertiesIface, "Get", sig, body), p.serial)
	if m.Type != godbus.TypeMethodReply {
		t.Fatalf("Get with flag 0x80: %v", m)
	}
}

// TestFilterBigEndian: a big-endian caller gets its error reply too.
func TestFilterBigEndian(t *testing.T) {
	p := startPeerServer(t)
	// List(a{bv}) {true: <"x">}, big endian, written out by hand.
	body := []byte{0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 1, 1, 's', 0, 0, 0, 0, 0, 1, 'x', 0}
	h := header{order: binary.BigEndian, typ: byte(godbus.TypeMethodCall), serial: 77, fields: map[byte]field{
		fieldPath:        strField('o', RootPath),
		fieldInterface:   strField('s', ManagerInterface),
		fieldMember:      strField('s', "List"),
		fieldDestination: strField('s', BusName),
		fieldSender:      strField('s', ":1.42"),
		fieldSignature:   strField('g', "a{bv}"),
	}}
	raw := h.encode(nil, body)
	if _, err := godbus.DecodeMessage(bytes.NewReader(raw)); err == nil {
		t.Fatal("godbus decodes a{bv} now: is the filter still needed?")
	}
	m := p.send(t, raw, 77)
	if m.Type != godbus.TypeError {
		t.Fatalf("big-endian List(a{bv}): %v", m)
	}
	p.askVersion(t)
}

// TestFilterFailsAReplyItCannotDecode: a reply to one of our calls that
// godbus cannot decode fails that call at once, and the connection stays.
func TestFilterFailsAReplyItCannotDecode(t *testing.T) {
	p, c := startPeer(t)
	done := make(chan *godbus.Call, 1)
	go func() { done <- c.Object("com.example.Peer", "/").Call("com.example.Peer.Get", 0) }()
	_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	call, err := godbus.DecodeMessage(p.r)
	if err != nil {
		t.Fatalf("read the call: %v", err)
	}
	var e wireEncoder
	dictBody(&e, 'b')
	h := header{order: binary.LittleEndian, typ: byte(godbus.TypeMethodReply), serial: 5, fields: map[byte]field{
		fieldReplySerial: {t: 'u', n: uint64(call.Serial())},
		fieldSender:      strField('s', ":1.9"),
		fieldSignature:   strField('g', "a{bv}"),
	}}
	if _, err := p.c.Write(h.encode(nil, e.b)); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.Err == nil || !strings.Contains(res.Err.Error(), "cannot be decoded") {
			t.Fatalf("the call returned %v; want an error saying the reply cannot be decoded", res.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call got no answer")
	}
	if err := c.Context().Err(); err != nil {
		t.Fatalf("the connection closed: %v", err)
	}
}

// TestFilterEndsAStreamThatIsNotDBus: bytes that are not a message leave
// no way to find the next one: the connection ends, saying why.
func TestFilterEndsAStreamThatIsNotDBus(t *testing.T) {
	p, c := startPeer(t)
	if _, err := p.c.Write([]byte("x\x01\x00\x01garbage.garbage.")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection lives on after bytes that are not D-Bus")
	}
	if err := c.filter.readErr(); err == nil || !strings.Contains(err.Error(), "byte order") {
		t.Fatalf("readErr = %v; want it to name the byte order", err)
	}
}

// TestSafeText: what the filter sends back is valid UTF-8 without NUL,
// whatever godbus's error quoted; the bus drops a connection that sends
// anything else.
func TestSafeText(t *testing.T) {
	for _, in := range []string{"ok", "a\x00b", "\xff\xfe", strings.Repeat("é", 400)} {
		out := safeText(in)
		if !utf8.ValidString(out) || strings.Contains(out, "\x00") || len(out) > 520 {
			t.Errorf("safeText(%q) = %q", in, out)
		}
	}
}

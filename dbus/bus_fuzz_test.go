// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// The fuzz target for the connection itself: each input is one whole
// message in wire format, bytes rather than a decoded call, fed to the
// Server's connection (busFilter, godbus, the handlers) on a socket pair.
// The test plays the bus: it sets the sender, as a bus daemon does, so
// that no input speaks for the bus itself, drops the header fields a bus
// drops (unknown codes), and sets the body length to what follows the
// header. Everything else, bodies a bus would refuse included, goes
// through. After each input the server must still answer a call on the
// same connection: no message may close it or wedge it.

// fuzzSender is the sender the fuzzer's messages come from; the check
// after each comes from the ordinary test peer (":1.42").
const fuzzSender = ":1.66"

// asBusDelivers turns raw into the message a bus would deliver for it, or
// reports false if a bus would not deliver it at all.
func asBusDelivers(raw []byte) ([]byte, bool) {
	if len(raw) < 16 {
		return nil, false
	}
	order, err := byteOrder(raw[0])
	if err != nil {
		return nil, false
	}
	fieldsEnd := 16 + int(order.Uint32(raw[12:]))
	bodyStart := (fieldsEnd + 7) &^ 7
	if fieldsEnd < 16 || bodyStart > len(raw) {
		return nil, false
	}
	fixed := slices.Clone(raw[:bodyStart])
	order.PutUint32(fixed[4:], uint32(len(raw)-bodyStart))
	h, err := parseHeader(fixed)
	if err != nil {
		return nil, false
	}
	for code := range maps.Keys(h.fields) {
		if code == 0 || code > 9 {
			delete(h.fields, code)
		}
	}
	h.fields[fieldSender] = strField('s', fuzzSender)
	return h.encode(nil, raw[bodyStart:]), true
}

// FuzzBusMessages feeds raw messages to the Server's connection and
// checks that it keeps answering. `make fuzz` runs it; `go test` runs the
// seeds: the shapes of issue 12 built here, little and big endian, and
// ordinary calls; testdata/fuzz/FuzzBusMessages holds the same shapes as
// the bus delivered them from busctl (captured with dbus-monitor --binary).
func FuzzBusMessages(f *testing.F) {
	serial := uint32(0)
	add := func(raw []byte) {
		f.Add(raw)
		// The same, big endian where the header allows.
		if h, err := parseHeader(raw); err == nil && len(raw) >= 16 {
			bodyStart := (16 + int(binary.LittleEndian.Uint32(raw[12:])) + 7) &^ 7
			h.order = binary.BigEndian
			if bodyStart <= len(raw) {
				f.Add(h.encode(nil, raw[bodyStart:]))
			}
		}
	}
	for _, c := range hostileBodies() {
		serial++
		add(rawCall(serial, 0, c.path, c.iface, c.member, c.sig, c.body))
	}
	var e wireEncoder
	dictBody(&e, 'b')
	signal := rawCall(100, 0, "/made/up", "com.example.MadeUp", "Boo", "a{bv}", e.b)
	signal[1] = byte(godbus.TypeSignal)
	add(signal)
	reply := rawCall(101, 0, RootPath, "", "", "a{bv}", e.b)
	reply[1] = byte(godbus.TypeMethodReply)
	add(reply)
	for _, c := range []struct {
		iface, member string
		args          []any
	}{
		{ManagerInterface, "List", []any{map[string]godbus.Variant{OptPrefix: godbus.MakeVariant("c")}}},
		{ManagerInterface, "Manage", []any{nfsTestURI, "c1", map[string]godbus.Variant{}}},
		{PropertiesIface, "GetAll", []any{ManagerInterface}},
		{"org.freedesktop.DBus.Peer", "Ping", []any{[]godbus.Variant{godbus.MakeVariant(map[uint32]bool{1: true})}}},
		{IntrospectableIface, "Introspect", nil},
	} {
		serial++
		sig, body := encodeArgs(c.args...)
		add(rawCall(serial, byte(godbus.FlagAllowInteractiveAuthorization), RootPath, c.iface, c.member, sig, body))
	}

	p := startPeerServer(f)
	p.allow.Store(true)
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, ok := asBusDelivers(raw)
		if !ok {
			return
		}
		if _, err := p.c.Write(msg); err != nil {
			t.Fatalf("the server's connection is gone: %v", err)
		}
		p.askVersion(t)
	})
}

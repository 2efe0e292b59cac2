// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// The fuzz target for the method handlers. The Server runs on one end of a
// socket pair and the fuzzer speaks raw D-Bus on the other: no bus daemon
// in between, so every message godbus can decode reaches godbus's dispatch
// and the real handlers, including ones a bus daemon would have refused
// (strings that are not UTF-8, say). Each input is one method call: which
// method, a CID for the object path, the argument signature and the body
// bytes, the header flags, and whether the caller is authorized.

// fuzzMethods are the calls the fuzzer aims at; conn: the object is the
// connection object of the input's CID, else the root.
var fuzzMethods = []struct {
	iface, member string
	conn          bool
}{
	{ManagerInterface, "Manage", false},
	{ManagerInterface, "Unmanage", false},
	{ManagerInterface, "UnmanagePrefix", false},
	{ManagerInterface, "List", false},
	{ManagerInterface, "GetConnection", false},
	{ObjectManagerIface, "GetManagedObjects", false},
	{PropertiesIface, "Get", false},
	{PropertiesIface, "GetAll", true},
	{PropertiesIface, "Get", true},
	{PropertiesIface, "Set", true},
	{ConnInterface, "Wait", true},
	{ConnInterface, "Reconnect", true},
	{IntrospectableIface, "Introspect", true},
	{ManagerInterface, "NoSuchMethod", false},
}

// mutating are the members that must never succeed for a denied caller.
var mutating = []string{"Manage", "Unmanage", "UnmanagePrefix", "Reconnect"}

// fuzzAuthorizer allows or denies every call, as the current input says,
// and remembers the last request.
type fuzzAuthorizer struct {
	allow *atomic.Bool
	last  *atomic.Pointer[AuthRequest]
}

func (a fuzzAuthorizer) Authorize(_ context.Context, req AuthRequest) error {
	a.last.Store(&req)
	if a.allow.Load() {
		return nil
	}
	return fmt.Errorf("%w for %s: the fuzzer's caller is denied", ErrNotAuthorized, req.Action)
}

// rawPeer is the fuzzer's end of the socket pair.
type rawPeer struct {
	c        net.Conn
	r        *bufio.Reader
	serial   uint32
	stateDir string
	conn     *Conn // the Server's end, for startPeerServer
	allow    atomic.Bool
	last     atomic.Pointer[AuthRequest] // the last question to the authorizer
}

// socketPair returns two connected unix stream sockets.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socketpair: %v", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatalf("socketpair: %v", err)
		}
		tb.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// startPeerServer runs a Server with a fresh service on a socket pair and
// returns the other end, authenticated as a bus daemon would.
func startPeerServer(tb testing.TB) *rawPeer {
	tb.Helper()
	return startPeerServerWith(tb, Limits{MaxWait: 5 * time.Millisecond})
}

// startPeerServerWith is startPeerServer with the Server's limits.
func startPeerServerWith(tb testing.TB, lim Limits) *rawPeer {
	tb.Helper()
	p, c := startPeer(tb)
	p.conn = c
	store, _, err := service.OpenStore(p.stateDir)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := service.New(service.Options{Store: store, MaxCIDs: 200,
		Reconnect: service.ReconnectPolicy{Initial: time.Hour, Max: time.Hour}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	if _, err := NewServer(c, Options{Service: svc, Authorizer: fuzzAuthorizer{&p.allow, &p.last},
		Limits: lim}); err != nil {
		tb.Fatal(err)
	}
	return p
}

// startPeer makes a connection as Connect does (filter, swapper, godbus)
// on one end of a socket pair and returns it, authenticated, with the
// other end, where the test plays the bus.
func startPeer(tb testing.TB) (*rawPeer, *Conn) {
	tb.Helper()
	srvSide, cliSide := socketPair(tb)
	p := &rawPeer{c: cliSide, r: bufio.NewReader(cliSide), stateDir: filepath.Join(tb.TempDir(), "state")}

	// The bus's side of the SASL exchange: accept EXTERNAL.
	authDone := make(chan error, 1)
	go func() {
		step := func(want, reply string) error {
			line, err := p.r.ReadString('\n')
			if err != nil || !strings.HasPrefix(strings.TrimPrefix(line, "\x00"), want) {
				return fmt.Errorf("auth: got %q (%v), want %q", line, err, want)
			}
			if reply != "" {
				_, err = cliSide.Write([]byte(reply))
			}
			return err
		}
		err := step("AUTH\r\n", "REJECTED EXTERNAL\r\n")
		if err == nil {
			err = step("AUTH EXTERNAL", "OK 0123456789abcdef0123456789abcdef\r\n")
		}
		if err == nil {
			err = step("BEGIN", "")
		}
		authDone <- err
	}()
	gc, sw, filter, err := newBusConn(srvSide)
	if err != nil {
		tb.Fatal(err)
	}
	if err := gc.Auth(nil); err != nil {
		tb.Fatalf("auth: %v", err)
	}
	if err := <-authDone; err != nil {
		tb.Fatal(err)
	}
	return p, &Conn{Conn: gc, swap: sw, filter: filter}
}

// rawCall returns one method call message as bytes, the way a client
// writes it: little endian, the fields a bus daemon adds (sender) included.
func rawCall(serial uint32, flags byte, path, iface, member, sig string, body []byte) []byte {
	field := func(b []byte, code byte, sigc byte, val string) []byte {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		b = append(b, code, 1, sigc, 0)
		if sigc == 'g' {
			b = append(b, byte(len(val)))
			b = append(b, val...)
			return append(b, 0)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(val)))
		b = append(b, val...)
		return append(b, 0)
	}
	h := []byte{'l', byte(godbus.TypeMethodCall), flags, 1}
	h = binary.LittleEndian.AppendUint32(h, uint32(len(body)))
	h = binary.LittleEndian.AppendUint32(h, serial)
	h = binary.LittleEndian.AppendUint32(h, 0) // fields length, set below
	start := len(h)
	h = field(h, byte(godbus.FieldPath), 'o', path)
	h = field(h, byte(godbus.FieldInterface), 's', iface)
	h = field(h, byte(godbus.FieldMember), 's', member)
	h = field(h, byte(godbus.FieldDestination), 's', BusName)
	h = field(h, byte(godbus.FieldSender), 's', ":1.42")
	if sig != "" {
		h = field(h, byte(godbus.FieldSignature), 'g', sig)
	}
	binary.LittleEndian.PutUint32(h[12:], uint32(len(h)-start))
	for len(h)%8 != 0 {
		h = append(h, 0)
	}
	return append(h, body...)
}

// call sends one call and returns the reply to it. ok is false when godbus
// could not decode the message at all (the server would drop the
// connection, as a bus daemon would drop the client): nothing was sent.
func (p *rawPeer) call(tb testing.TB, flags byte, path, iface, member, sig string, body []byte) (reply *godbus.Message, ok bool) {
	tb.Helper()
	p.serial++
	raw := rawCall(p.serial, flags, path, iface, member, sig, body)
	if _, err := godbus.DecodeMessage(bytes.NewReader(raw)); err != nil {
		return nil, false
	}
	if _, err := p.c.Write(raw); err != nil {
		tb.Fatalf("write %s: %v", member, err)
	}
	_ = p.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := godbus.DecodeMessage(p.r)
		if err != nil {
			tb.Fatalf("%s(%q): no reply: %v", member, sig, err)
		}
		if rs, _ := m.Headers[godbus.FieldReplySerial].Value().(uint32); rs == p.serial {
			return m, true
		}
	}
}

// cidFiles lists the state's CID files.
func (p *rawPeer) cidFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(p.stateDir, "cids"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// encodeArgs returns the signature and the body godbus writes for args.
func encodeArgs(args ...any) (string, []byte) {
	sig := godbus.SignatureOf(args...)
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Body: args, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath: godbus.MakeVariant(godbus.ObjectPath("/")), godbus.FieldMember: godbus.MakeVariant("M")}}
	if len(args) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(sig)
	}
	var b bytes.Buffer
	if err := msg.EncodeTo(&b, binary.LittleEndian); err != nil {
		panic(err)
	}
	raw := b.Bytes()
	n := binary.LittleEndian.Uint32(raw[4:8])
	return sig.String(), raw[len(raw)-int(n):]
}

// FuzzMethodHandlers sends fuzzed calls to every method and checks that
// each gets a reply with a known error name or a result, that a denied
// caller never changes anything, and that the server keeps answering.
// `make fuzz` runs it; `go test` runs the seeds.
func FuzzMethodHandlers(f *testing.F) {
	none := map[string]godbus.Variant{}
	chap := map[string]godbus.Variant{OptCHAPUsername: godbus.MakeVariant("u"), OptCHAPPassword: godbus.MakeVariant("p")}
	seeds := []struct {
		method int
		cid    string
		args   []any
	}{
		{0, "", []any{"nfs://127.0.0.1/srv/x", "c1", none}},
		{0, "", []any{"iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t/1", "c2", chap}},
		{0, "", []any{"nfs://127.0.0.1/x?bind", "../c3\n", map[string]godbus.Variant{"k": godbus.MakeVariant(uint32(7))}}},
		{0, "", []any{uint32(1), "c4", none}},
		{0, "", []any{"nfs://127.0.0.1/a%00b", "c5", map[string]godbus.Variant{OptCHAPPassword: godbus.MakeVariant([]string{"x"})}}},
		{1, "", []any{"c1", none}},
		{2, "", []any{"c", none}},
		{3, "", []any{map[string]godbus.Variant{OptPrefix: godbus.MakeVariant("c"), "host": godbus.MakeVariant(false)}}},
		{4, "", []any{"c1"}},
		{5, "", nil},
		{6, "", []any{ManagerInterface, "Version"}},
		{7, "c1", []any{ConnInterface}},
		{8, "c1", []any{ConnInterface, "State"}},
		{9, "c1", []any{ConnInterface, "State", godbus.MakeVariant("x")}},
		{10, "c1", []any{uint64(1000), none}},
		{11, "c1", []any{none}},
		{12, "c1", nil},
		{13, "", []any{"x"}},
	}
	for _, s := range seeds {
		sig, body := encodeArgs(s.args...)
		if len(s.args) == 0 {
			body = nil
		}
		f.Add(uint8(s.method), s.cid, sig, body, uint8(0), true)
		f.Add(uint8(s.method), s.cid, sig, body, uint8(godbus.FlagAllowInteractiveAuthorization), false)
	}

	p := startPeerServer(f)
	f.Fuzz(func(t *testing.T, method uint8, cid, sig string, body []byte, flags uint8, allow bool) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		path := RootPath
		if m.conn {
			path = string(ConnectionPath(cid))
		}
		// A call without a reply would leave nothing to check.
		flags &^= uint8(godbus.FlagNoReplyExpected)
		p.allow.Store(allow)
		before := p.cidFiles()
		reply, ok := p.call(t, flags, path, m.iface, m.member, sig, body)
		if !ok {
			return
		}
		switch reply.Type {
		case godbus.TypeError:
			name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
			if !strings.HasPrefix(name, ErrorPrefix) && !strings.HasPrefix(name, "org.freedesktop.DBus.Error.") {
				t.Errorf("%s.%s(%q): error %q is not one of ours", m.iface, m.member, sig, name)
			}
			if len(reply.Body) == 0 {
				t.Errorf("%s.%s(%q): error %s without a message", m.iface, m.member, sig, name)
			} else if msg, _ := reply.Body[0].(string); msg == "" {
				t.Errorf("%s.%s(%q): error %s with an empty message", m.iface, m.member, sig, name)
			}
		case godbus.TypeMethodReply:
			if !allow && slices.Contains(mutating, m.member) {
				t.Errorf("%s.%s(%q) succeeded for a denied caller", m.iface, m.member, sig)
			}
		default:
			t.Fatalf("%s.%s: reply of type %v", m.iface, m.member, reply.Type)
		}
		if after := p.cidFiles(); !allow && !slices.Equal(before, after) {
			t.Errorf("%s.%s(%q) by a denied caller changed the state: %v -> %v", m.iface, m.member, sig, before, after)
		}
	})
}

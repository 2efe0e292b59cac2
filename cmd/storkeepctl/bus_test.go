// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
)

// fakeDaemon serves the parts of API v1 that storkeepctl uses, with canned
// behaviour, and records what it was asked.
type fakeDaemon struct {
	conn *dbus.Conn

	mu       sync.Mutex // guards all following fields
	objects  map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	manage   map[string]map[string]dbus.Variant // CID -> options of its Manage
	waitUsec uint64                             // timeout of the last Wait
	reconn   []string                           // CIDs asked to reconnect
}

func fdErr(name, msg string) *dbus.Error { return dbus.NewError(name, []any{msg}) }

func connIfaces(cid, uri string) map[string]map[string]dbus.Variant {
	return map[string]map[string]dbus.Variant{
		skdbus.ConnInterface: {
			"CID": dbus.MakeVariant(cid), "URI": dbus.MakeVariant(uri), "Kind": dbus.MakeVariant("nfs"),
			"Target": dbus.MakeVariant(uri), "Managed": dbus.MakeVariant(true), "Connected": dbus.MakeVariant(false),
			"State": dbus.MakeVariant("connecting"), "LastError": dbus.MakeVariant(""),
			"LastErrorTime": dbus.MakeVariant(uint64(0)), "ConnectedSince": dbus.MakeVariant(uint64(0)),
			"ConnectionInfo": dbus.MakeVariant(map[string]dbus.Variant{"port": dbus.MakeVariant(uint16(2049))}),
		},
		skdbus.PropertiesIface: {},
	}
}

func (f *fakeDaemon) Manage(uri, cid string, opts map[string]dbus.Variant) (dbus.ObjectPath, *dbus.Error) {
	switch {
	case cid == "denied":
		return "", fdErr(skdbus.ErrorNotAuthorized, "you may not")
	case cid == "taken":
		return "", fdErr(skdbus.ErrorCIDInUse, `CID "taken" manages something else`)
	case !strings.Contains(uri, "://"):
		return "", fdErr(skdbus.ErrorInvalidURI, "not a URI")
	}
	path := skdbus.ConnectionPath(cid)
	ifaces := connIfaces(cid, uri)
	f.mu.Lock()
	f.manage[cid] = opts
	f.objects[path] = ifaces
	f.mu.Unlock()
	f.conn.Emit(skdbus.RootPath, skdbus.ObjectManagerIface+".InterfacesAdded", path, ifaces)
	return path, nil
}

func (f *fakeDaemon) Unmanage(cid string, _ map[string]dbus.Variant) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := skdbus.ConnectionPath(cid)
	if _, ok := f.objects[path]; !ok {
		return fdErr(skdbus.ErrorUnknownCID, `"`+cid+`" is not managed`)
	}
	delete(f.objects, path)
	return nil
}

func (f *fakeDaemon) UnmanagePrefix(prefix string, _ map[string]dbus.Variant) ([]string, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cids := []string{}
	for path, ifaces := range f.objects {
		cid := ifaces[skdbus.ConnInterface]["CID"].Value().(string)
		if strings.HasPrefix(cid, prefix) {
			cids = append(cids, cid)
			delete(f.objects, path)
		}
	}
	return cids, nil
}

func (f *fakeDaemon) List(opts map[string]dbus.Variant) (map[string]map[string]dbus.Variant, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix, _ := opts[skdbus.OptPrefix].Value().(string)
	out := map[string]map[string]dbus.Variant{}
	add := func(cid string, managed bool, uri string) {
		if strings.HasPrefix(cid, prefix) {
			out[cid] = map[string]dbus.Variant{
				skdbus.ListManaged: dbus.MakeVariant(managed), skdbus.ListConnected: dbus.MakeVariant(!managed),
				skdbus.ListState: dbus.MakeVariant("connecting"), skdbus.ListKind: dbus.MakeVariant("nfs"),
				skdbus.ListURI: dbus.MakeVariant(uri), skdbus.ListTarget: dbus.MakeVariant(uri),
				skdbus.ListLastError: dbus.MakeVariant(""), skdbus.ListLastErrorMessage: dbus.MakeVariant(""),
				skdbus.ListConnectionInfo: dbus.MakeVariant(map[string]dbus.Variant{}),
			}
		}
	}
	for _, ifaces := range f.objects {
		p := ifaces[skdbus.ConnInterface]
		add(p["CID"].Value().(string), true, p["URI"].Value().(string))
	}
	add("host/nfs/srv:/data", false, "nfs://srv/data")
	return out, nil
}

func (f *fakeDaemon) GetConnection(cid string) (dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := skdbus.ConnectionPath(cid)
	if _, ok := f.objects[path]; !ok {
		return "", fdErr(skdbus.ErrorUnknownCID, `"`+cid+`" is not managed`)
	}
	return path, nil
}

func (f *fakeDaemon) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[dbus.ObjectPath]map[string]map[string]dbus.Variant, len(f.objects))
	for k, v := range f.objects {
		out[k] = v
	}
	return out, nil
}

// fakeConnection serves the Connection interface of every object.
type fakeConnection struct{ f *fakeDaemon }

func (c fakeConnection) Wait(msg dbus.Message, usec uint64, _ map[string]dbus.Variant) *dbus.Error {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	cid, _ := skdbus.CIDFromPath(path)
	c.f.mu.Lock()
	c.f.waitUsec = usec
	c.f.mu.Unlock()
	if cid == "up" {
		return nil
	}
	if cid == "slow" {
		// Times out as the daemon does: at the end of the wait.
		time.Sleep(min(time.Duration(usec)*time.Microsecond, 5*time.Second))
	}
	return fdErr(skdbus.ErrorTimeout, "not connected: mount: connection refused")
}

func (c fakeConnection) Reconnect(msg dbus.Message, _ map[string]dbus.Variant) *dbus.Error {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	cid, _ := skdbus.CIDFromPath(path)
	c.f.mu.Lock()
	c.f.reconn = append(c.f.reconn, cid)
	c.f.mu.Unlock()
	return nil
}

// fakeProperties serves Properties: the manager's Version, and every
// property of a connection object.
type fakeProperties struct{ f *fakeDaemon }

func (p fakeProperties) Get(msg dbus.Message, iface, name string) (dbus.Variant, *dbus.Error) {
	props, err := p.GetAll(msg, iface)
	if err != nil {
		return dbus.Variant{}, err
	}
	v, ok := props[name]
	if !ok {
		return dbus.Variant{}, fdErr("org.freedesktop.DBus.Error.UnknownProperty", name)
	}
	return v, nil
}

func (p fakeProperties) GetAll(msg dbus.Message, iface string) (map[string]dbus.Variant, *dbus.Error) {
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	if path == skdbus.RootPath && iface == skdbus.ManagerInterface {
		return map[string]dbus.Variant{"Version": dbus.MakeVariant("1.2.3-fake")}, nil
	}
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	props, ok := p.f.objects[path][iface]
	if !ok {
		return nil, fdErr("org.freedesktop.DBus.Error.UnknownInterface", iface)
	}
	return props, nil
}

// privateBus starts a private dbus-daemon and returns a connection to it
// (closed at the test's end) and its address; no dbus-daemon skips.
func privateBus(t *testing.T) (*dbus.Conn, string) {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed")
	}
	bus := dbustest.Start(t)
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bus.Address
}

// startFake starts a private bus with a fakeDaemon on it and returns the
// bus address.
func startFake(t *testing.T) (*fakeDaemon, string) {
	t.Helper()
	conn, addr := privateBus(t)
	f := &fakeDaemon{conn: conn, objects: map[dbus.ObjectPath]map[string]map[string]dbus.Variant{},
		manage: map[string]map[string]dbus.Variant{}}
	exports := []struct {
		v     any
		iface string
	}{{f, skdbus.ManagerInterface}, {f, skdbus.ObjectManagerIface}}
	for _, e := range exports {
		if err := conn.Export(e.v, skdbus.RootPath, e.iface); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.ExportSubtree(fakeConnection{f}, skdbus.RootPath+"/connection", skdbus.ConnInterface); err != nil {
		t.Fatal(err)
	}
	// godbus looks a path's handlers up at its nearest export only.
	for _, p := range []dbus.ObjectPath{skdbus.RootPath, skdbus.RootPath + "/connection"} {
		if err := conn.ExportSubtree(fakeProperties{f}, p, skdbus.PropertiesIface); err != nil {
			t.Fatal(err)
		}
	}
	if reply, err := conn.RequestName(skdbus.BusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v, %v", reply, err)
	}
	return f, addr
}

// lockedBuffer is a bytes.Buffer that monitor may write while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func runCtl(ctx context.Context, addr, stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errOut lockedBuffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, dial: dialBus}
	code = c.run(ctx, append([]string{"--bus", addr}, args...))
	return code, out.String(), errOut.String()
}

const listPrefixJSON = `{
  "db1": {
    "CID": "db1",
    "Connected": false,
    "ConnectionInfo": {},
    "Kind": "nfs",
    "LastError": "",
    "LastErrorMessage": "",
    "Managed": true,
    "State": "connecting",
    "Target": "nfs://srv/a",
    "URI": "nfs://srv/a"
  },
  "down": {
    "CID": "down",
    "Connected": false,
    "ConnectionInfo": {},
    "Kind": "nfs",
    "LastError": "",
    "LastErrorMessage": "",
    "Managed": true,
    "State": "connecting",
    "Target": "nfs://srv/c",
    "URI": "nfs://srv/c"
  }
}
`

func TestAgainstFakeDaemon(t *testing.T) {
	f, addr := startFake(t)
	ctx := context.Background()

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "manage", args: []string{"manage", "nfs://srv/a", "db1"}, stdout: skdbus.ConnPrefix + "db1\n"},
		{name: "manage hostile CID", args: []string{"manage", "nfs://srv/b", "x\ny"}, stdout: skdbus.ConnPrefix + "x_0ay\n"},
		{name: "manage CHAP from stdin, flags last", stdin: "pw\n",
			args:   []string{"manage", "iscsi://srv/iqn.x", "up", "--chap-user", "bob", "--chap-password-file", "-", "--wait", "2s"},
			stdout: skdbus.ConnPrefix + "up\n", stderr: "up: connected\n"},
		{name: "manage then time out", args: []string{"manage", "nfs://srv/c", "down", "--wait", "1s"}, code: 4,
			stdout: skdbus.ConnPrefix + "down\n",
			stderr: "storkeepctl: manage: not connected: mount: connection refused (Timeout)\n"},
		{name: "manage denied", args: []string{"manage", "nfs://srv/a", "denied"}, code: 5,
			stderr: "storkeepctl: manage: you may not (NotAuthorized)\n"},
		{name: "manage CID in use", args: []string{"manage", "nfs://srv/a", "taken"}, code: 7,
			stderr: "storkeepctl: manage: CID \"taken\" manages something else (CIDInUse)\n"},
		{name: "manage bad URI", args: []string{"manage", "srv/a", "c"}, code: 6,
			stderr: "storkeepctl: manage: not a URI (InvalidURI)\n"},
		{name: "list", args: []string{"list"},
			stdout: "CID                 KIND  STATE       CONNECTED  TARGET             LAST ERROR\n" +
				"db1                 nfs   connecting  no         nfs://srv/a        -\n" +
				"down                nfs   connecting  no         nfs://srv/c        -\n" +
				"up                  nfs   connecting  no         iscsi://srv/iqn.x  -\n" +
				"\"x\\ny\"              nfs   connecting  no         nfs://srv/b        -\n" +
				"host/nfs/srv:/data  nfs   connecting  yes        nfs://srv/data     -\n"},
		{name: "list prefix json", args: []string{"list", "--json", "--prefix", "d"},
			stdout: listPrefixJSON},
		{name: "list -o json", args: []string{"list", "-o", "json", "--prefix", "d"}, stdout: listPrefixJSON},
		{name: "list --output=json", args: []string{"list", "--output=json", "--prefix", "d"}, stdout: listPrefixJSON},
		{name: "list -o wide", args: []string{"list", "-o", "wide", "--prefix", "d"},
			stdout: "CID   MANAGED  KIND  STATE       CONNECTED  TARGET       URI          LAST ERROR  MESSAGE\n" +
				"db1   yes      nfs   connecting  no         nfs://srv/a  nfs://srv/a  -           -\n" +
				"down  yes      nfs   connecting  no         nfs://srv/c  nfs://srv/c  -           -\n"},
		{name: "list -o bad", args: []string{"list", "-o", "yaml"}, code: 2,
			stderr: "storkeepctl: list: invalid value \"yaml\" for flag -o: \"yaml\" is not an output format (table, wide or json)\nTry 'storkeepctl help list'.\n"},
		{name: "show", args: []string{"show", "db1"},
			stdout: "CID: db1\nURI: nfs://srv/a\nKind: nfs\nTarget: nfs://srv/a\nManaged: true\nConnected: false\n" +
				"State: connecting\nLastError: -\nLastErrorTime: never\nConnectedSince: -\nConnectionInfo: {\"port\": 2049}\n"},
		{name: "show unmanaged host connection", args: []string{"show", "host/nfs/srv:/data"},
			stdout: "CID: host/nfs/srv:/data\nURI: nfs://srv/data\nKind: nfs\nTarget: nfs://srv/data\nManaged: false\nConnected: true\n" +
				"State: connecting\nLastError: -\nLastErrorMessage: -\nConnectionInfo: {}\n"},
		{name: "show -o json", args: []string{"show", "db1", "-o", "json"},
			stdout: "{\n  \"CID\": \"db1\",\n  \"Connected\": false,\n  \"ConnectedSince\": 0,\n" +
				"  \"ConnectionInfo\": {\n    \"port\": 2049\n  },\n  \"Kind\": \"nfs\",\n  \"LastError\": \"\",\n  \"LastErrorTime\": 0,\n  \"Managed\": true,\n" +
				"  \"State\": \"connecting\",\n  \"Target\": \"nfs://srv/a\",\n  \"URI\": \"nfs://srv/a\"\n}\n"},
		{name: "show -p", args: []string{"show", "db1", "-p", "State,Connected", "-p", "lasterror"},
			stdout: "State: connecting\nConnected: false\nLastError: -\n"},
		{name: "show -p --value", args: []string{"show", "-p", "State", "--value", "-p", "LastError,LastErrorTime,Connected,URI", "db1"},
			stdout: "connecting\n\n\nfalse\nnfs://srv/a\n"},
		{name: "show -p unknown", args: []string{"show", "db1", "-p", "Nope"}, code: 1,
			stderr: "storkeepctl: show: db1 has no property Nope (it has CID, URI, Kind, Target, Managed, Connected, State, LastError, LastErrorTime, ConnectedSince, ConnectionInfo)\n"},
		{name: "show -p -o json", args: []string{"show", "db1", "-p", "State", "-o", "json"},
			stdout: "{\n  \"State\": \"connecting\"\n}\n"},
		{name: "show a URI", args: []string{"show", "nfs://srv/a"}, code: 2,
			stderr: "storkeepctl: show: nfs://srv/a looks like a target URI; show takes a CID (storkeepctl list shows them)\nTry 'storkeepctl help show'.\n"},
		{name: "manage in the wrong order", args: []string{"manage", "db9", "nfs://srv/a"}, code: 2,
			stderr: "storkeepctl: manage: nfs://srv/a looks like a target URI; manage takes the URI first, then the CID (storkeepctl manage nfs://srv/a db9)\nTry 'storkeepctl help manage'.\n"},
		{name: "status", args: []string{"status"},
			stdout: "Version:          1.2.3-fake\n" +
				"Managed:          4 (0 connected, 4 connecting, 0 retrying)\n" +
				"Paths down:       none\n" +
				"Held:             none\n" +
				"Bad state files:  none\n" +
				"Disconnecting:    0\n" +
				"On the host:      1 not managed by storkeep\n"},
		{name: "show unknown", args: []string{"show", "nope"}, code: 3,
			stderr: "storkeepctl: show: \"nope\" is not managed (UnknownCID)\n"},
		{name: "wait", args: []string{"wait", "up", "--timeout", "1500ms"}, stdout: "up: connected\n"},
		{name: "wait times out", args: []string{"wait", "--timeout", "1", "down"}, code: 4,
			stderr: "storkeepctl: wait: not connected: mount: connection refused (Timeout)\n"},
		{name: "reconnect", args: []string{"reconnect", "db1"}},
		{name: "reconnect unknown", args: []string{"reconnect", "nope"}, code: 3,
			stderr: "storkeepctl: reconnect: \"nope\" is not managed (UnknownCID)\n"},
		{name: "unmanage", args: []string{"unmanage", "db1"}},
		{name: "unmanage again", args: []string{"unmanage", "db1"}, code: 3,
			stderr: "storkeepctl: unmanage: \"db1\" is not managed (UnknownCID)\n"},
		{name: "unmanage prefix", args: []string{"unmanage", "--prefix", "x"}, stdout: "\"x\\ny\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCtl(ctx, addr, tt.stdin, tt.args...)
			if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
				t.Errorf("%q:\n got exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s",
					tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.manage["up"]; len(got) != 2 || got[skdbus.OptCHAPUsername].Value() != "bob" || got[skdbus.OptCHAPPassword].Value() != "pw" {
		t.Errorf("Manage options of the CHAP call = %v", got)
	}
	if f.waitUsec != 1_000_000 {
		t.Errorf("last Wait timeout = %d µs, want 1000000", f.waitUsec)
	}
	if len(f.reconn) != 1 || f.reconn[0] != "db1" {
		t.Errorf("reconnected %q, want [db1]", f.reconn)
	}
}

func TestMonitorAgainstFakeDaemon(t *testing.T) {
	f, addr := startFake(t)
	if _, err := f.Manage("nfs://srv/seeded", "seeded", nil); err != nil {
		t.Fatal(err)
	}
	odd := dbus.ObjectPath(skdbus.ConnPrefix + "odd")
	f.objects[odd] = connIfaces("other-cid", "nfs://srv/odd")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		c := &cli{stdout: &out, stderr: &errOut, dial: dialBus}
		done <- c.run(ctx, []string{"monitor", "--bus", addr})
	}()

	seeded := skdbus.ConnectionPath("seeded")
	// waitFor waits for want in the output, calling emit (if not nil)
	// until then: monitor subscribes at some point after it starts.
	waitFor := func(want string, emit func()) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("monitor output has no %q:\n%s\nstderr:\n%s", want, out.String(), errOut.String())
			}
			if emit != nil {
				emit()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("seeded changed: Connected=true State=connected", func() {
		f.conn.Emit(seeded, skdbus.PropertiesIface+".PropertiesChanged", skdbus.ConnInterface,
			map[string]dbus.Variant{"State": dbus.MakeVariant("connected"), "Connected": dbus.MakeVariant(true)}, []string{})
	})
	// The CID of a path comes from the map seeded by GetManagedObjects,
	// not from unescaping the path.
	f.conn.Emit(odd, skdbus.PropertiesIface+".PropertiesChanged", skdbus.ConnInterface,
		map[string]dbus.Variant{"Attempts": dbus.MakeVariant(uint32(3))}, []string{})
	waitFor("other-cid changed: Attempts=3", nil)
	if _, err := f.Manage("nfs://srv/new", "new\x1b", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(`"new\x1b" added (nfs://srv/new)`, nil)
	f.conn.Emit(skdbus.RootPath, skdbus.ObjectManagerIface+".InterfacesRemoved", skdbus.ConnectionPath("new\x1b"),
		[]string{skdbus.ConnInterface, skdbus.PropertiesIface})
	waitFor(`"new\x1b" removed`, nil)

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("monitor exited %d; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not stop")
	}
}

func TestWaitProgressOnATerminal(t *testing.T) {
	_, addr := startFake(t)
	ctx := context.Background()
	if code, _, stderr := runCtl(ctx, addr, "", "manage", "nfs://srv/s", "slow"); code != 0 {
		t.Fatalf("manage: %d %s", code, stderr)
	}
	var out, errOut lockedBuffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, dial: dialBus,
		terminal: func(w io.Writer) bool { return w == &out }}
	code := c.run(ctx, []string{"--bus", addr, "wait", "slow", "--timeout", "2500ms"})
	if code != exitTimeout {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitTimeout, errOut.String())
	}
	// Drawn once a second (the first after 1 s), in place, then erased.
	want := `^(\rwaiting for slow: connecting \([12] s of 3 s\)\x1b\[K)+\r\x1b\[K$`
	if got := out.String(); !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("stdout %q\nwant %q\nstderr %s", got, want, errOut.String())
	}

	// Not a terminal: nothing but the result.
	code, stdout, _ := runCtl(ctx, addr, "", "wait", "slow", "--timeout", "1100ms")
	if code != exitTimeout || stdout != "" {
		t.Errorf("off a terminal: exit %d, stdout %q; want %d and nothing", code, stdout, exitTimeout)
	}
}

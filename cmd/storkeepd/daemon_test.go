// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

const (
	nfsURI   = "nfs://127.0.0.1/srv/export"
	iscsiURI = "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t1/1"
	secret   = "Pl4nted-S3cret-x9"
)

func chap(user, pw string) map[string]godbus.Variant {
	return map[string]godbus.Variant{
		skdbus.OptCHAPUsername: godbus.MakeVariant(user),
		skdbus.OptCHAPPassword: godbus.MakeVariant(pw),
	}
}

func TestOwnsNameAndIntrospects(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()

	v, err := root(conn).GetProperty(skdbus.ManagerInterface + ".Version")
	if err != nil || v.Value() != testVersion {
		t.Fatalf("Version = %v, %v; want %q", v, err, testVersion)
	}
	if _, err := manage(conn, nfsURI, "intro", nil); err != nil {
		t.Fatal(err)
	}

	out, err := runCmd(t, "busctl", "--address="+d.bus.Address, "introspect", skdbus.BusName, skdbus.RootPath)
	if err != nil {
		t.Fatalf("busctl introspect: %v\n%s", err, out)
	}
	for _, want := range []string{skdbus.ManagerInterface, ".Manage", ".UnmanagePrefix", ".Version",
		skdbus.ObjectManagerIface, ".GetManagedObjects", ".InterfacesAdded"} {
		if !contains(out, want) {
			t.Errorf("busctl introspect of the root lacks %q:\n%s", want, out)
		}
	}
	out, err = runCmd(t, "busctl", "--address="+d.bus.Address, "tree", skdbus.BusName)
	if err != nil || !contains(out, skdbus.ConnPrefix+"intro") {
		t.Errorf("busctl tree = %v\n%s", err, out)
	}
	out, err = runCmd(t, "gdbus", "introspect", "--address", d.bus.Address, "--dest", skdbus.BusName,
		"--object-path", string(skdbus.ConnectionPath("intro")))
	if err != nil {
		t.Fatalf("gdbus introspect: %v\n%s", err, out)
	}
	for _, want := range []string{skdbus.ConnInterface, "Wait(", "Reconnect(", "readonly s State", "readonly t NextAttempt",
		"EmitsChangedSignal(\"const\")"} {
		if !contains(out, want) {
			t.Errorf("gdbus introspect of a connection lacks %q:\n%s", want, out)
		}
	}
}

func TestManageListUnmanage(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()

	path, err := manage(conn, "nfs://127.0.0.1:/srv/export/", "vm1/disk", nil)
	if err == nil {
		t.Fatalf("a CID with '/' was accepted as %s", path)
	}
	if got := errName(err); got != skdbus.ErrorInvalidCID {
		t.Fatalf("Manage with '/' in CID: %s, want %s", got, skdbus.ErrorInvalidCID)
	}
	path, err = manage(conn, "nfs://127.0.0.1:/srv/export/", "vm1 disk", nil)
	if err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if want := skdbus.ConnectionPath("vm1 disk"); path != want {
		t.Fatalf("Manage returned %s, want %s", path, want)
	}
	var got godbus.ObjectPath
	if err := root(conn).Call(skdbus.ManagerInterface+".GetConnection", 0, "vm1 disk").Store(&got); err != nil || got != path {
		t.Fatalf("GetConnection = %s, %v; want %s", got, err, path)
	}

	l := list(t, conn, nil)
	e, ok := l["vm1 disk"]
	if !ok {
		t.Fatalf("List lacks the CID: %v", l)
	}
	for _, k := range []string{"managed", "connected", "state", "kind", "uri", "target", "lastError", "lastErrorMessage", "connectionInfo"} {
		if _, ok := e[k]; !ok {
			t.Errorf("List entry lacks key %q", k)
		}
	}
	if e["managed"].Value() != true || e["kind"].Value() != "nfs" || e["uri"].Value() != nfsURI || e["target"].Value() != nfsURI {
		t.Errorf("List entry = %v", e)
	}
	// The connection tries and fails honestly on a host without systemd.
	eventually(t, "a LastError on a host without NFS support", func() bool {
		v, err := conn.Object(skdbus.BusName, path).GetProperty(skdbus.ConnInterface + ".LastError")
		return err == nil && v.Value() != ""
	})

	if err := unmanage(conn, "vm1 disk"); err != nil {
		t.Fatalf("Unmanage: %v", err)
	}
	if _, ok := list(t, conn, nil)["vm1 disk"]; ok {
		t.Fatal("List still shows the CID after Unmanage")
	}
	err = root(conn).Call(skdbus.ManagerInterface+".GetConnection", 0, "vm1 disk").Store(&got)
	if errName(err) != skdbus.ErrorUnknownCID {
		t.Fatalf("GetConnection after Unmanage: %v, want UnknownCID", err)
	}
	if err := unmanage(conn, "vm1 disk"); errName(err) != skdbus.ErrorUnknownCID {
		t.Fatalf("second Unmanage: %v, want UnknownCID", err)
	}
}

func TestErrorNames(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	if _, err := manage(conn, iscsiURI, "chap", chap("alice", secret)); err != nil {
		t.Fatal(err)
	}
	none := map[string]godbus.Variant{}
	mgr := skdbus.ManagerInterface
	tests := []struct {
		name   string
		method string
		args   []any
		want   string
	}{
		{"bad scheme", mgr + ".Manage", []any{"http://x/y", "a", none}, skdbus.ErrorInvalidURI},
		{"credentials in URI", mgr + ".Manage", []any{"nfs://u:pw@127.0.0.1/x", "a", none}, skdbus.ErrorInvalidURI},
		{"dotdot export", mgr + ".Manage", []any{"nfs://127.0.0.1/a/../b", "a", none}, skdbus.ErrorInvalidURI},
		{"empty CID", mgr + ".Manage", []any{nfsURI, "", none}, skdbus.ErrorInvalidCID},
		{"long CID", mgr + ".Manage", []any{nfsURI, strings.Repeat("x", 256), none}, skdbus.ErrorInvalidCID},
		{"unknown option", mgr + ".Manage", []any{nfsURI, "a", map[string]godbus.Variant{"colour": godbus.MakeVariant("red")}}, skdbus.ErrorInvalidArgument},
		{"option of wrong type", mgr + ".Manage", []any{iscsiURI, "a", map[string]godbus.Variant{skdbus.OptCHAPUsername: godbus.MakeVariant(uint32(1))}}, skdbus.ErrorInvalidArgument},
		{"CHAP on NFS", mgr + ".Manage", []any{nfsURI, "a", chap("u", "p")}, skdbus.ErrorInvalidArgument},
		{"CHAP without password", mgr + ".Manage", []any{iscsiURI, "a", map[string]godbus.Variant{skdbus.OptCHAPUsername: godbus.MakeVariant("u")}}, skdbus.ErrorInvalidArgument},
		{"same CID other spec", mgr + ".Manage", []any{iscsiURI, "chap", chap("alice", "other")}, skdbus.ErrorCIDInUse},
		{"conflicting CHAP", mgr + ".Manage", []any{iscsiURI, "other", chap("bob", "pw")}, skdbus.ErrorConflict},
		{"unmanage unknown", mgr + ".Unmanage", []any{"nope", none}, skdbus.ErrorUnknownCID},
		{"unmanage with option", mgr + ".Unmanage", []any{"chap", map[string]godbus.Variant{"force": godbus.MakeVariant(true)}}, skdbus.ErrorInvalidArgument},
		{"empty prefix", mgr + ".UnmanagePrefix", []any{"", none}, skdbus.ErrorInvalidArgument},
		{"list unknown option", mgr + ".List", []any{map[string]godbus.Variant{"sort": godbus.MakeVariant("x")}}, skdbus.ErrorInvalidArgument},
		{"get unknown", mgr + ".GetConnection", []any{"nope"}, skdbus.ErrorUnknownCID},
		{"wrong argument types", mgr + ".Manage", []any{uint32(1), "a", none}, "org.freedesktop.DBus.Error.InvalidArgs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := root(conn).Call(tt.method, 0, tt.args...).Err
			if got := errName(err); got != tt.want {
				t.Fatalf("%s: error %q (%v), want %s", tt.method, got, err, tt.want)
			}
			if e, ok := err.(godbus.Error); ok && (len(e.Body) == 0 || fmt.Sprint(e.Body[0]) == "") {
				t.Errorf("%s: error without a message", tt.method)
			}
		})
	}
	// The conflict names the CIDs it conflicts with.
	_, err := manage(conn, iscsiURI, "other", chap("bob", "pw"))
	if !contains(err.Error(), `"chap"`) {
		t.Errorf("Conflict message does not name the CID: %v", err)
	}
	// Wait on a connection that cannot come up here: Timeout with the last error.
	eventually(t, "a last error", func() bool { return list(t, conn, nil)["chap"]["lastError"].Value() != "" })
	err = conn.Object(skdbus.BusName, skdbus.ConnectionPath("chap")).Call(skdbus.ConnInterface+".Wait", 0, uint64(100_000), none).Err
	if errName(err) != skdbus.ErrorTimeout || !contains(err.Error(), "last error") {
		t.Errorf("Wait: %v, want Timeout carrying the last error", err)
	}
	err = conn.Object(skdbus.BusName, skdbus.ConnectionPath("nope")).Call(skdbus.ConnInterface+".Wait", 0, uint64(100_000), none).Err
	if errName(err) != skdbus.ErrorUnknownCID {
		t.Errorf("Wait on an unknown CID: %v, want UnknownCID", err)
	}
}

func TestWaitEndsWhenUnmanaged(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	path, err := manage(conn, nfsURI, "w", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- conn.Object(skdbus.BusName, path).Call(skdbus.ConnInterface+".Wait", 0, uint64(20_000_000), map[string]godbus.Variant{}).Err
	}()
	time.Sleep(100 * time.Millisecond) // let the Wait start; correctness does not depend on it
	if err := unmanage(conn, "w"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if errName(err) != skdbus.ErrorUnknownCID {
			t.Fatalf("Wait: %v, want UnknownCID", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not end when its CID was unmanaged")
	}
}

func TestIdempotentRetryAndSharing(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	p1, err := manage(conn, iscsiURI, "a", chap("alice", secret))
	if err != nil {
		t.Fatal(err)
	}
	// A client that timed out retries: same path, nothing changes.
	p2, err := manage(conn, "ISCSI://127.0.0.1:3260/IQN.2026-01.org.storkeep:t1/1?tpgt=1", "a", chap("alice", secret))
	if err != nil || p2 != p1 {
		t.Fatalf("retry = %s, %v; want %s", p2, err, p1)
	}
	// Another CID on another LUN of the same target shares its Target.
	if _, err := manage(conn, "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t1/2", "b", chap("alice", secret)); err != nil {
		t.Fatal(err)
	}
	l := list(t, conn, nil)
	if l["a"]["target"].Value() != l["b"]["target"].Value() {
		t.Errorf("targets differ: %v vs %v", l["a"]["target"], l["b"]["target"])
	}
}

func TestUnmanagePrefix(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	for _, c := range []string{"flow1-a", "flow1-b", "flow10", "flow2-a"} {
		if _, err := manage(conn, nfsURI, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	var removed []string
	if err := root(conn).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, "flow1-", map[string]godbus.Variant{}).Store(&removed); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(removed) != "[flow1-a flow1-b]" {
		t.Fatalf("UnmanagePrefix removed %v", removed)
	}
	l := list(t, conn, map[string]godbus.Variant{"prefix": godbus.MakeVariant("flow")})
	var left []string
	for id := range l {
		left = append(left, id)
	}
	sort.Strings(left)
	if fmt.Sprint(left) != "[flow10 flow2-a]" {
		t.Fatalf("left after prefix cleanup: %v", left)
	}
	// What was removed stays removed across a crash.
	d.kill9()
	d.start()
	l = list(t, conn, nil)
	if _, ok := l["flow1-a"]; ok || len(l) != 2 {
		t.Fatalf("after kill -9: %v", l)
	}
}

func TestSignals(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	if err := conn.AddMatchSignal(godbus.WithMatchPathNamespace(skdbus.RootPath)); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *godbus.Signal, 1000)
	conn.Signal(sigs)

	path, err := manage(conn, nfsURI, "sig", nil)
	if err != nil {
		t.Fatal(err)
	}
	var added, batched bool
	deadline := time.After(20 * time.Second)
	for !(added && batched) {
		select {
		case s := <-sigs:
			switch s.Name {
			case skdbus.ObjectManagerIface + ".InterfacesAdded":
				if s.Path != skdbus.RootPath || s.Body[0].(godbus.ObjectPath) != path {
					t.Fatalf("InterfacesAdded from %s for %v", s.Path, s.Body[0])
				}
				props := s.Body[1].(map[string]map[string]godbus.Variant)[skdbus.ConnInterface]
				if props["CID"].Value() != "sig" || props["URI"].Value() != nfsURI {
					t.Fatalf("InterfacesAdded props: %v", props)
				}
				added = true
			case skdbus.PropertiesIface + ".PropertiesChanged":
				if !added {
					t.Fatal("PropertiesChanged before InterfacesAdded")
				}
				changed := s.Body[1].(map[string]godbus.Variant)
				if len(changed) == 0 {
					t.Fatal("empty PropertiesChanged")
				}
				// A failed attempt changes several properties: one signal.
				if _, ok := changed["LastError"]; ok {
					if _, ok := changed["NextAttempt"]; !ok {
						t.Fatalf("LastError changed without NextAttempt in the same signal: %v", changed)
					}
					batched = true
				}
			}
		case <-deadline:
			t.Fatalf("signals: added=%v batched=%v", added, batched)
		}
	}
	if err := unmanage(conn, "sig"); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case s := <-sigs:
			if s.Name == skdbus.ObjectManagerIface+".InterfacesRemoved" && s.Body[0].(godbus.ObjectPath) == path {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no InterfacesRemoved")
		}
	}
}

func TestKill9AndRestartLoseNothing(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	want := map[string]string{}
	for i := range 50 {
		cid := fmt.Sprintf("cid-%02d", i)
		uri := fmt.Sprintf("nfs://127.0.0.1/srv/e%d", i%7)
		opts := map[string]godbus.Variant(nil)
		if i%2 == 1 {
			uri = fmt.Sprintf("iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t%d/%d", i%5, i%3)
			opts = chap("alice", secret)
		}
		if _, err := manage(conn, uri, cid, opts); err != nil {
			t.Fatalf("Manage %s: %v", cid, err)
		}
		want[cid] = uri
	}
	for i := 0; i < 50; i += 10 {
		cid := fmt.Sprintf("cid-%02d", i)
		if err := unmanage(conn, cid); err != nil {
			t.Fatal(err)
		}
		delete(want, cid)
	}
	// Compare with the canonical URIs the daemon reported before the crash.
	for cid := range want {
		want[cid] = list(t, conn, nil)[cid]["uri"].Value().(string)
	}
	check := func(when string) {
		t.Helper()
		l := list(t, conn, map[string]godbus.Variant{"prefix": godbus.MakeVariant("cid-")})
		if len(l) != len(want) {
			t.Fatalf("%s: %d CIDs, want %d", when, len(l), len(want))
		}
		for cid, uri := range want {
			if got := l[cid]["uri"].Value(); got != uri {
				t.Errorf("%s: %s has URI %v, want %s", when, cid, got, uri)
			}
		}
	}
	d.kill9()
	d.start()
	check("after kill -9")
	// CHAP survived too: the same spec is still an idempotent retry.
	if _, err := manage(conn, "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t1/1", "cid-01", chap("alice", secret)); err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	d.stop()
	d.start()
	check("after SIGTERM and restart")
}

func TestUnprivilegedCallerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	if _, err := manage(conn, nfsURI, "owned-by-root", nil); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		full := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "busctl", "--address=" + d.bus.Address}, args...)
		return runCmd(t, "setpriv", full...)
	}
	out, err := asNobody("call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Manage", "ssa{sv}", nfsURI, "evil", "0")
	if err == nil || !contains(out, "requires root") {
		t.Fatalf("unprivileged Manage: err=%v out=%s", err, out)
	}
	out, err = asNobody("call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Unmanage", "sa{sv}", "owned-by-root", "0")
	if err == nil {
		t.Fatalf("unprivileged Unmanage succeeded: %s", out)
	}
	out, err = asNobody("call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "UnmanagePrefix", "sa{sv}", "o", "0")
	if err == nil {
		t.Fatalf("unprivileged UnmanagePrefix succeeded: %s", out)
	}
	out, err = asNobody("call", skdbus.BusName, string(skdbus.ConnectionPath("owned-by-root")), skdbus.ConnInterface, "Reconnect", "a{sv}", "0")
	if err == nil {
		t.Fatalf("unprivileged Reconnect succeeded: %s", out)
	}
	// Reading stays open.
	out, err = asNobody("call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List", "a{sv}", "0")
	if err != nil || !contains(out, "owned-by-root") {
		t.Fatalf("unprivileged List: %v\n%s", err, out)
	}
	out, err = asNobody("get-property", skdbus.BusName, string(skdbus.ConnectionPath("owned-by-root")), skdbus.ConnInterface, "State")
	if err != nil {
		t.Fatalf("unprivileged get-property: %v\n%s", err, out)
	}
	if _, ok := list(t, conn, nil)["evil"]; ok {
		t.Fatal("the refused Manage was registered")
	}
	if !contains(d.log.String(), "uid=65534") {
		t.Errorf("the denial is not logged with the caller's uid:\n%s", d.log.String())
	}
}

func TestNoSecretAnywhere(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	opts := map[string]godbus.Variant{
		skdbus.OptCHAPUsername:   godbus.MakeVariant("alice"),
		skdbus.OptCHAPPassword:   godbus.MakeVariant(secret),
		skdbus.OptCHAPUsernameIn: godbus.MakeVariant("target"),
		skdbus.OptCHAPPasswordIn: godbus.MakeVariant(secret + "-in"),
	}
	path, err := manage(conn, iscsiURI, "secretive", opts)
	if err != nil {
		t.Fatal(err)
	}
	// Errors that echo a spec must not echo its secret either.
	_, err = manage(conn, iscsiURI, "secretive", chap("alice", "different"))
	_, err2 := manage(conn, iscsiURI, "other", chap("bob", "x"))
	eventually(t, "a connection attempt", func() bool { return list(t, conn, nil)["secretive"]["lastError"].Value() != "" })

	var everything []string
	everything = append(everything, fmt.Sprint(err), fmt.Sprint(err2))
	l := list(t, conn, nil)
	js, _ := json.Marshal(fmt.Sprint(l))
	everything = append(everything, string(js))
	var objs map[godbus.ObjectPath]map[string]map[string]godbus.Variant
	if err := root(conn).Call(skdbus.ObjectManagerIface+".GetManagedObjects", 0).Store(&objs); err != nil {
		t.Fatal(err)
	}
	everything = append(everything, fmt.Sprint(objs))
	var all map[string]godbus.Variant
	if err := conn.Object(skdbus.BusName, path).Call(skdbus.PropertiesIface+".GetAll", 0, skdbus.ConnInterface).Store(&all); err != nil {
		t.Fatal(err)
	}
	everything = append(everything, fmt.Sprint(all))
	out, _ := runCmd(t, "busctl", "--address="+d.bus.Address, "introspect", skdbus.BusName, string(path))
	everything = append(everything, out)
	d.stop() // flush the log
	everything = append(everything, d.log.String())
	for i, s := range everything {
		if contains(s, secret) {
			t.Errorf("item %d shows the CHAP secret:\n%s", i, s)
		}
	}
	// Only the root-only state holds it.
	d.start()
}

func TestHostileInput(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	huge := "nfs://127.0.0.1/" + strings.Repeat("a", 1<<20)
	if _, err := manage(conn, huge, "big", nil); errName(err) != skdbus.ErrorInvalidURI {
		t.Errorf("1 MB URI: %v, want InvalidURI", err)
	}
	many := make(map[string]godbus.Variant, 100000)
	for i := range 100000 {
		many[fmt.Sprintf("k%d", i)] = godbus.MakeVariant("v")
	}
	if _, err := manage(conn, nfsURI, "many", many); errName(err) != skdbus.ErrorInvalidArgument {
		t.Errorf("100,000 options: %v, want InvalidArgument", err)
	}
	for _, cid := range []string{"..", "a\nb", "%00", "\x1b[31mred"} {
		// Control characters and path tricks are legal CIDs: they are
		// escaped in object paths and never reach a file name.
		p, err := manage(conn, nfsURI, cid, nil)
		if err != nil {
			t.Errorf("CID %q: %v", cid, err)
			continue
		}
		var back string
		v, err := conn.Object(skdbus.BusName, p).GetProperty(skdbus.ConnInterface + ".CID")
		if err == nil {
			back, _ = v.Value().(string)
		}
		if back != cid {
			t.Errorf("CID %q came back as %q (%v)", cid, back, err)
		}
	}
	for _, uri := range []string{"nfs://127.0.0.1/a%00b", "nfs://127.0.0.1/x?bind", "nfs://127.0.0.1/x?vers=3,rw", "nfs://127.0.0.1/x\n"} {
		if _, err := manage(conn, uri, "trick", nil); errName(err) != skdbus.ErrorInvalidURI {
			t.Errorf("URI %q: %v, want InvalidURI", uri, err)
		}
	}
	entries, err := os.ReadDir(d.stateDir + "/cids")
	if err != nil || len(entries) != 4 {
		t.Errorf("state holds %d files (%v), want the 4 valid CIDs", len(entries), err)
	}
}

// TestBusctlAndGdbusClients drives the daemon as an admin would.
func TestBusctlAndGdbusClients(t *testing.T) {
	d := newDaemon(t)
	out, err := runCmd(t, "busctl", "--address="+d.bus.Address, "call", skdbus.BusName, skdbus.RootPath,
		skdbus.ManagerInterface, "Manage", "ssa{sv}", nfsURI, "admin", "0")
	if err != nil || !contains(out, string(skdbus.ConnectionPath("admin"))) {
		t.Fatalf("busctl Manage: %v\n%s", err, out)
	}
	out, err = runCmd(t, "gdbus", "call", "--address", d.bus.Address, "--dest", skdbus.BusName,
		"--object-path", skdbus.RootPath, "--method", skdbus.ManagerInterface+".List", "{}")
	if err != nil || !contains(out, "'admin'") || !contains(out, "'managed': <true>") {
		t.Fatalf("gdbus List: %v\n%s", err, out)
	}
	out, err = runCmd(t, "busctl", "--address="+d.bus.Address, "get-property", skdbus.BusName,
		string(skdbus.ConnectionPath("admin")), skdbus.ConnInterface, "Kind")
	if err != nil || strings.TrimSpace(out) != `s "nfs"` {
		t.Fatalf("busctl get-property: %v\n%s", err, out)
	}
	out, err = runCmd(t, "gdbus", "call", "--address", d.bus.Address, "--dest", skdbus.BusName,
		"--object-path", skdbus.RootPath, "--method", skdbus.ManagerInterface+".Unmanage", "admin", "{}")
	if err != nil {
		t.Fatalf("gdbus Unmanage: %v\n%s", err, out)
	}
	out, err = runCmd(t, "gdbus", "call", "--address", d.bus.Address, "--dest", skdbus.BusName,
		"--object-path", skdbus.RootPath, "--method", skdbus.ManagerInterface+".Unmanage", "admin", "{}")
	if err == nil || !contains(out, skdbus.ErrorUnknownCID) {
		t.Fatalf("gdbus second Unmanage: %v\n%s", err, out)
	}
}

var _ = exec.Command

// TestPathChangedSignal runs netmon for real (rtnetlink needs no
// privileges to read): a target on 127.0.0.1 gets its path, through lo,
// announced on the bus with the CIDs that use it.
func TestPathChangedSignal(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "storkeep.toml")
	if err := os.WriteFile(cfg, []byte("[reconnect]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nlink_events = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDaemonArgs(t, "--config", cfg)
	conn := d.client()
	defer conn.Close()
	if err := conn.AddMatchSignal(godbus.WithMatchInterface(skdbus.ManagerInterface), godbus.WithMatchMember("PathChanged")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *godbus.Signal, 100)
	conn.Signal(sigs)
	if _, err := manage(conn, nfsURI, "path", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-sigs:
		var (
			host, link, reason string
			usable             bool
			cids               []string
		)
		if err := godbus.Store(s.Body, &host, &usable, &link, &reason, &cids); err != nil {
			t.Fatalf("PathChanged body %v: %v", s.Body, err)
		}
		if s.Path != skdbus.RootPath || host != "127.0.0.1" || !usable || link != "lo" || reason != "" || len(cids) != 1 || cids[0] != "path" {
			t.Fatalf("PathChanged from %s: %q %v %q %q %v", s.Path, host, usable, link, reason, cids)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no PathChanged within 20 s; daemon log:\n%s", d.log.String())
	}
}

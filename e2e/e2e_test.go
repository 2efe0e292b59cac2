// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

const (
	nfsURI = "nfs://127.0.0.1/srv/e2e"
	secret = "E2e-Planted-S3cret"
)

func sh(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func systemBus(t *testing.T) *godbus.Conn {
	t.Helper()
	conn, err := godbus.ConnectSystemBus()
	if err != nil {
		t.Fatalf("system bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func root(conn *godbus.Conn) godbus.BusObject { return conn.Object(skdbus.BusName, skdbus.RootPath) }

func manage(conn *godbus.Conn, uri, cid string, opts map[string]godbus.Variant) error {
	if opts == nil {
		opts = map[string]godbus.Variant{}
	}
	var p godbus.ObjectPath
	return root(conn).Call(skdbus.ManagerInterface+".Manage", 0, uri, cid, opts).Store(&p)
}

func list(t *testing.T, conn *godbus.Conn) map[string]map[string]godbus.Variant {
	t.Helper()
	var out map[string]map[string]godbus.Variant
	if err := root(conn).Call(skdbus.ManagerInterface+".List", 0, map[string]godbus.Variant{}).Store(&out); err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

// waitForName waits until storkeepd owns its name on the system bus.
func waitForName(t *testing.T, conn *godbus.Conn) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err == nil && has {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s has no owner after 60 s", skdbus.BusName)
}

func mainPID(t *testing.T) string {
	t.Helper()
	out, err := sh(t, "systemctl", "show", "-p", "MainPID", "--value", "storkeepd.service")
	if err != nil {
		t.Fatalf("systemctl show: %v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

func TestPackagedServiceOwnsItsName(t *testing.T) {
	out, err := sh(t, "systemctl", "is-active", "storkeepd.service")
	if err != nil || strings.TrimSpace(out) != "active" {
		t.Fatalf("storkeepd.service is %q (%v)", out, err)
	}
	conn := systemBus(t)
	waitForName(t, conn)
	var pid uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, skdbus.BusName).Store(&pid); err != nil {
		t.Fatalf("GetConnectionUnixProcessID: %v", err)
	}
	if got := mainPID(t); got != fmt.Sprint(pid) {
		t.Fatalf("the name is owned by pid %d, the service's main pid is %s", pid, got)
	}
	out, err = sh(t, "busctl", "--system", "get-property", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Version")
	if err != nil || !strings.HasPrefix(out, "s ") {
		t.Fatalf("busctl Version: %v\n%s", err, out)
	}
	out, err = sh(t, "gdbus", "introspect", "--system", "--dest", skdbus.BusName, "--object-path", skdbus.RootPath)
	if err != nil || !strings.Contains(out, skdbus.ManagerInterface) {
		t.Fatalf("gdbus introspect: %v\n%s", err, out)
	}
}

func TestManageListUnmanageOnTheSystemBus(t *testing.T) {
	conn := systemBus(t)
	if err := manage(conn, nfsURI, "e2e-nfs", nil); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	e, ok := list(t, conn)["e2e-nfs"]
	if !ok || e["managed"].Value() != true || e["uri"].Value() != nfsURI {
		t.Fatalf("List: %v", e)
	}
	out, err := sh(t, "storkeepctl", "list")
	if err != nil || !strings.Contains(out, "e2e-nfs") {
		t.Fatalf("storkeepctl list: %v\n%s", err, out)
	}
	if err := root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, "e2e-nfs", map[string]godbus.Variant{}).Err; err != nil {
		t.Fatalf("Unmanage: %v", err)
	}
	if _, ok := list(t, conn)["e2e-nfs"]; ok {
		t.Fatal("still listed after Unmanage")
	}
}

func TestUnprivilegedUserRefused(t *testing.T) {
	conn := systemBus(t)
	if err := manage(conn, nfsURI, "e2e-root", nil); err != nil {
		t.Fatal(err)
	}
	defer root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, "e2e-root", map[string]godbus.Variant{})
	out, err := sh(t, "runuser", "-u", "tester", "--", "busctl", "--system", "call", skdbus.BusName, skdbus.RootPath,
		skdbus.ManagerInterface, "Manage", "ssa{sv}", nfsURI, "e2e-evil", "0")
	if err == nil || !strings.Contains(out, "requires root") {
		t.Fatalf("tester's Manage: err=%v\n%s", err, out)
	}
	out, err = sh(t, "runuser", "-u", "tester", "--", "busctl", "--system", "call", skdbus.BusName, skdbus.RootPath,
		skdbus.ManagerInterface, "Unmanage", "sa{sv}", "e2e-root", "0")
	if err == nil {
		t.Fatalf("tester's Unmanage succeeded: %s", out)
	}
	out, err = sh(t, "runuser", "-u", "tester", "--", "storkeepctl", "list")
	if err != nil || !strings.Contains(out, "e2e-root") {
		t.Fatalf("tester's list: %v\n%s", err, out)
	}
}

func TestPersistsAcrossRestartAndKill9(t *testing.T) {
	conn := systemBus(t)
	want := map[string]string{}
	for i := range 20 {
		cid := fmt.Sprintf("e2e-persist-%02d", i)
		uri := fmt.Sprintf("nfs://127.0.0.1/srv/p%d", i%4)
		if err := manage(conn, uri, cid, nil); err != nil {
			t.Fatal(err)
		}
		want[cid] = uri
	}
	defer root(conn).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, "e2e-persist-", map[string]godbus.Variant{})
	check := func(when string) {
		t.Helper()
		waitForName(t, conn)
		l := list(t, conn)
		for cid, uri := range want {
			if l[cid]["uri"].Value() != uri {
				t.Errorf("%s: %s is %v, want %s", when, cid, l[cid]["uri"], uri)
			}
		}
	}

	before := mainPID(t)
	if out, err := sh(t, "systemctl", "restart", "storkeepd.service"); err != nil {
		t.Fatalf("systemctl restart: %v\n%s", err, out)
	}
	if mainPID(t) == before {
		t.Fatal("systemctl restart did not restart the daemon")
	}
	check("after systemctl restart")

	before = mainPID(t)
	if out, err := sh(t, "systemctl", "kill", "--signal=KILL", "storkeepd.service"); err != nil {
		t.Fatalf("systemctl kill: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pid := mainPID(t)
		if pid != before && pid != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("systemd did not restart storkeepd after kill -9")
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("after kill -9")
}

func TestJournalHoldsNoSecret(t *testing.T) {
	conn := systemBus(t)
	opts := map[string]godbus.Variant{
		skdbus.OptCHAPUsername: godbus.MakeVariant("alice"),
		skdbus.OptCHAPPassword: godbus.MakeVariant(secret),
	}
	if err := manage(conn, "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:e2e/1", "e2e-chap", opts); err != nil {
		t.Fatal(err)
	}
	_ = manage(conn, "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:e2e/1", "e2e-chap", map[string]godbus.Variant{
		skdbus.OptCHAPUsername: godbus.MakeVariant("alice"), skdbus.OptCHAPPassword: godbus.MakeVariant(secret + "2")})
	if out, err := sh(t, "systemctl", "restart", "storkeepd.service"); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	waitForName(t, conn)
	if err := root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, "e2e-chap", map[string]godbus.Variant{}).Err; err != nil {
		t.Fatal(err)
	}
	out, err := sh(t, "journalctl", "-b", "--no-pager", "-o", "cat")
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	if !strings.Contains(out, "e2e-chap") {
		t.Fatal("the journal does not mention the CID at all: is the daemon's log reaching it?")
	}
	if strings.Contains(out, secret) {
		t.Fatal("the journal holds the CHAP secret")
	}
	out, _ = sh(t, "stat", "-c", "%a", "/var/lib/storkeep")
	if strings.TrimSpace(out) != "700" {
		t.Errorf("/var/lib/storkeep has mode %s, want 700", out)
	}
}

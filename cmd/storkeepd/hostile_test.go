// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// hostileShapes are messages that a local user may send (the bus finds
// nothing wrong with them) which godbus v5.2.4 cannot decode: a non-empty
// dictionary keyed by booleans or signatures anywhere in the body. Each
// once closed the daemon's bus connection (issue 12). args follow busctl.
var hostileShapes = []struct {
	name string
	args []string
	call bool // a method call: the caller gets a reply
}{
	{"Manage options a{bv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Manage",
		"ssa{bv}", nfsURI, "hostile", "1", "true", "s", "x"}, true},
	{"Manage option value a{gv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Manage",
		"ssa{sv}", nfsURI, "hostile", "1", "chap-username", "a{gv}", "1", "s", "s", "x"}, true},
	{"List options a{bv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List",
		"a{bv}", "1", "true", "s", "x"}, true},
	{"List options a{gv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List",
		"a{gv}", "1", "s", "s", "x"}, true},
	{"List prefix a variant of a{bv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List",
		"a{sv}", "1", "prefix", "a{bv}", "1", "false", "s", "x"}, true},
	{"Properties.Get a{gv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.PropertiesIface, "Get",
		"ssa{gv}", skdbus.ManagerInterface, "Version", "1", "s", "s", "x"}, true},
	{"Peer.Ping av", []string{"call", skdbus.BusName, skdbus.RootPath, "org.freedesktop.DBus.Peer", "Ping",
		"av", "1", "a{bv}", "1", "true", "s", "x"}, true},
	// Empty, godbus decodes it and then panicked storing it (guard.go).
	{"Properties.Set an empty a{bv}", []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.PropertiesIface, "Set",
		"ssa{bv}", skdbus.ConnInterface, "State", "0"}, true},
	{"a unicast signal", []string{"emit", "--destination=" + skdbus.BusName, "/made/up", "com.example.MadeUp", "Boo",
		"a{bv}", "1", "true", "s", "x"}, false},
}

// TestHostileMessagesLeaveTheDaemonServing sends each hostile shape as an
// unprivileged user (uid 65534, busctl) and checks that the daemon keeps
// its name and answers the next call, and that a call gets an error reply
// that says what was wrong rather than no reply at all.
func TestHostileMessagesLeaveTheDaemonServing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	for _, tc := range hostileShapes {
		t.Run(tc.name, func(t *testing.T) {
			d := newDaemon(t)
			conn := d.client()
			defer conn.Close()
			args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
				"busctl", "--address=" + d.bus.Address, "--timeout=5"}, tc.args...)
			out, err := runCmd(t, "setpriv", args...)
			t.Logf("busctl %s: %v: %s", tc.args[0], err, strings.TrimSpace(out))
			if tc.call {
				if err == nil || !contains(out, "cannot be decoded") {
					t.Errorf("busctl %s: err=%v; want an error reply saying the arguments cannot be decoded:\n%s",
						tc.args[4], err, out)
				}
			} else if err != nil {
				t.Fatalf("busctl emit: %v\n%s", err, out)
			}
			assertServing(t, d, conn)
		})
	}
}

// assertServing checks, for half a second and then once more with a
// call, that the daemon still owns its name and answers.
func assertServing(t *testing.T, d *daemon, conn *godbus.Conn) {
	t.Helper()
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err != nil || !has {
			t.Fatalf("%s has no owner (%v); daemon log:\n%s", skdbus.BusName, err, d.log.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var v godbus.Variant
	err := root(conn).CallWithContext(ctx, skdbus.PropertiesIface+".Get", 0, skdbus.ManagerInterface, "Version").Store(&v)
	if err != nil || v.Value() != testVersion {
		t.Fatalf("Version after the hostile message: %v, %v", v, err)
	}
	select {
	case <-d.exited:
		t.Fatalf("the daemon exited:\n%s", d.log.String())
	default:
	}
}

// TestLostBusConnectionExitsNonZero: when the bus goes away the daemon
// must not linger without its name; it logs the loss at error level and
// exits non-zero, so that systemd (Restart=on-failure) starts it again.
func TestLostBusConnectionExitsNonZero(t *testing.T) {
	d := newDaemon(t)
	cmd := d.cmd
	d.bus.Kill()
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("storkeepd still runs 10 s after its bus went away:\n%s", d.log.String())
	}
	d.cmd = nil
	if code := cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
		t.Errorf("exit code %d (%s); want non-zero", code, cmd.ProcessState)
	}
	var errLine string
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "bus connection") {
			errLine = l
		}
	}
	if errLine == "" {
		t.Errorf("no error-level log line about the bus connection:\n%s", d.log.String())
	}
	t.Logf("exit code %d; %s", cmd.ProcessState.ExitCode(), errLine)
}

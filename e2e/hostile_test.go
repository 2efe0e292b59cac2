// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func nRestarts(t *testing.T) string {
	t.Helper()
	out, err := sh(t, "systemctl", "show", "-p", "NRestarts", "--value", "storkeepd.service")
	if err != nil {
		t.Fatalf("systemctl show: %v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// TestHostileMessageLeavesTheServiceServing (issue 12): a dictionary keyed
// by booleans, from an unprivileged user, once closed the daemon's bus
// connection, and under the unit systemd then stopped the service for
// losing its name. Now the call gets an error, a signal of that shape is
// dropped, and the same process keeps its name and answers within 5 s.
func TestHostileMessageLeavesTheServiceServing(t *testing.T) {
	conn := systemBus(t)
	waitForName(t, conn)
	pid, restarts := mainPID(t), nRestarts(t)
	since := time.Now()

	out, err := asTester(t, "busctl", "--system", "--timeout=5", "call", skdbus.BusName, skdbus.RootPath,
		skdbus.ManagerInterface, "List", "a{bv}", "1", "true", "s", "x")
	t.Logf("tester's List(a{bv}): %v: %s", err, strings.TrimSpace(out))
	if err == nil || !strings.Contains(out, "cannot be decoded") {
		t.Errorf("tester's List(a{bv}): err=%v; want an error saying the arguments cannot be decoded:\n%s", err, out)
	}
	out, err = asTester(t, "busctl", "--system", "emit", "--destination="+skdbus.BusName, "/made/up",
		"com.example.MadeUp", "Boo", "a{gv}", "1", "s", "s", "x")
	if err != nil {
		t.Errorf("tester's signal: %v\n%s", err, out)
	}

	// Serving within 5 s: the name has an owner that answers.
	serving := func() (bool, string) {
		out, err := sh(t, "busctl", "--system", "--timeout=2", "get-property", skdbus.BusName, skdbus.RootPath,
			skdbus.ManagerInterface, "Version")
		return err == nil && strings.HasPrefix(out, "s "), out
	}
	eventuallyOK(t, "storkeepd to answer after the hostile messages", 5*time.Second, serving)
	// For a second, to see a late loss too.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok, out := serving(); !ok {
			t.Fatalf("storkeepd stopped answering: %s", out)
		}
	}
	if got := mainPID(t); got != pid {
		t.Errorf("storkeepd was restarted (main pid %s, now %s): the message still takes it off the bus", pid, got)
	}
	if got := nRestarts(t); got != restarts {
		t.Errorf("NRestarts went from %s to %s", restarts, got)
	}
	if j := journalSince(t, since); strings.Contains(j, "bus connection lost") {
		t.Errorf("the journal says the bus connection was lost:\n%s", j)
	}
}

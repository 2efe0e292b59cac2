// SPDX-License-Identifier: Apache-2.0

package main

import (
	"maps"
	"os"
	"strings"
	"testing"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
)

// TestDaemonAsksPolkit runs the daemon with --authorization=polkit on a
// private bus with a fake polkit authority and calls it as an unprivileged
// user with busctl, with and without interactive authorization.
func TestDaemonAsksPolkit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	d := newDaemonArgs(t, "--authorization=polkit")
	// Like polkitd with auth_admin_keep for manage and a rule that denies
	// reconnect: a challenge unless the caller allows interaction, then
	// allowed (the password was right).
	fake := dbustest.StartPolkit(t, d.bus, func(q dbustest.PolkitQuestion) dbustest.PolkitAnswer {
		if q.Action != skdbus.ActionManage {
			return dbustest.PolkitAnswer{}
		}
		return dbustest.PolkitAnswer{IsAuthorized: q.Flags == 1, IsChallenge: q.Flags != 1}
	})
	conn := d.client()
	defer conn.Close()

	// Root is allowed without asking.
	if _, err := manage(conn, nfsURI, "by-root", nil); err != nil {
		t.Fatalf("root's Manage: %v", err)
	}
	if n := len(fake.Asked()); n != 0 {
		t.Fatalf("polkit was asked %d times about root", n)
	}

	asNobody := func(interactive string, args ...string) (string, error) {
		full := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "busctl", "--address=" + d.bus.Address,
			"--allow-interactive-authorization=" + interactive}, args...)
		return runCmd(t, "setpriv", full...)
	}
	lastQuestion := func() dbustest.PolkitQuestion {
		t.Helper()
		asked := fake.Asked()
		if len(asked) == 0 {
			t.Fatal("polkit was not asked")
		}
		return asked[len(asked)-1]
	}
	manageArgs := []string{"call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "Manage", "ssa{sv}", nfsURI, "by-nobody", "0"}

	out, err := asNobody("no", manageArgs...)
	if err == nil || !contains(out, "not authorized for "+skdbus.ActionManage) || !contains(out, "interactive") {
		t.Fatalf("non-interactive Manage as uid 65534: err=%v\n%s", err, out)
	}
	q := lastQuestion()
	if q.Flags != 0 || q.Action != skdbus.ActionManage || q.SubjectKind != "system-bus-name" ||
		!strings.HasPrefix(q.SubjectDetails["name"].(string), ":") {
		t.Errorf("polkit was asked %+v", q)
	}
	// What the call acts on, for rules: action.lookup("cid") and so on.
	if want := map[string]string{"cid": "by-nobody", "kind": "nfs", "host": "127.0.0.1"}; !maps.Equal(q.Details, want) {
		t.Errorf("polkit was asked with details %v, want %v", q.Details, want)
	}

	out, err = asNobody("yes", manageArgs...)
	if err != nil || !contains(out, string(skdbus.ConnectionPath("by-nobody"))) {
		t.Fatalf("interactive Manage as uid 65534: err=%v\n%s", err, out)
	}
	if q := lastQuestion(); q.Flags != 1 {
		t.Errorf("the interactive call reached polkit with flags %d, want 1", q.Flags)
	}

	out, err = asNobody("yes", "call", skdbus.BusName, string(skdbus.ConnectionPath("by-root")), skdbus.ConnInterface, "Reconnect", "a{sv}", "0")
	if err == nil || !contains(out, "not authorized for "+skdbus.ActionReconnect) {
		t.Fatalf("Reconnect as uid 65534: err=%v\n%s", err, out)
	}

	// polkitd goes away: root only.
	fake.Close()
	eventually(t, "polkit's name to go", func() bool {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.PolicyKit1").Store(&has)
		return err == nil && !has
	})
	out, err = asNobody("yes", manageArgs...)
	if err == nil || !contains(out, "polkit is not available") || !contains(out, "requires root") {
		t.Fatalf("Manage as uid 65534 without polkit: err=%v\n%s", err, out)
	}
	if _, err := manage(conn, nfsURI, "by-root-2", nil); err != nil {
		t.Fatalf("root's Manage without polkit: %v", err)
	}
	for _, want := range []string{"by=polkit result=challenge", "by=polkit result=authorized", `by="root-only fallback"`, `by="trusted uid"`, "uid=65534"} {
		if !contains(d.log.String(), want) {
			t.Errorf("the daemon's log lacks %q", want)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The polkit tests: the packaged daemon on the guest's system bus, the
// guest's real polkitd, and the user tester (uid 1000), who has no session
// and no authentication agent, so the default policy (auth_admin_keep)
// cannot let tester through.

const (
	polkitURI      = "nfs://127.0.0.1/srv/e2e-polkit"
	polkitRuleFile = "/etc/polkit-1/rules.d/50-storkeep-e2e.rules"
)

// asTester runs a command as tester.
func asTester(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return sh(t, "runuser", append([]string{"-u", "tester", "--"}, args...)...)
}

// gdbusManage calls Manage as tester with gdbus, which prints the D-Bus
// error name and does not allow interactive authorization.
func gdbusManage(t *testing.T, cid string) (string, error) {
	t.Helper()
	return asTester(t, "gdbus", "call", "--system", "--dest", skdbus.BusName, "--object-path", skdbus.RootPath,
		"--method", skdbus.ManagerInterface+".Manage", polkitURI, cid, "{}")
}

// busctlManage calls Manage as tester with busctl, which allows
// interactive authorization by default.
func busctlManage(t *testing.T, cid string) (string, error) {
	t.Helper()
	return asTester(t, "busctl", "--system", "call", skdbus.BusName, skdbus.RootPath,
		skdbus.ManagerInterface, "Manage", "ssa{sv}", polkitURI, cid, "0")
}

func unmanageAll(t *testing.T, conn *godbus.Conn, cids ...string) {
	for _, cid := range cids {
		root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, cid, map[string]godbus.Variant{})
	}
}

// journalSince returns storkeepd's journal from the given time on.
func journalSince(t *testing.T, since time.Time) string {
	t.Helper()
	out, err := sh(t, "journalctl", "--no-pager", "-o", "cat", "-u", "storkeepd.service",
		"--since", since.Format("2006-01-02 15:04:05"))
	if err != nil {
		t.Fatalf("journalctl: %v\n%s", err, out)
	}
	return out
}

// eventuallyOK retries f until it returns true or the timeout passes.
func eventuallyOK(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	if !tryFor(timeout, f) {
		_, last := f()
		t.Fatalf("timed out waiting for %s; last: %s", what, last)
	}
}

func tryFor(timeout time.Duration, f func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := f(); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitForRules waits until polkitd applies a change of its rules, as f
// tells. polkitd notices changes in /etc/polkit-1/rules.d by itself through
// inotify, which the test host's root file system (hostfs) does not
// support: restarting polkit.service loads them.
func waitForRules(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	if out, err := sh(t, "systemctl", "restart", "polkit.service"); err != nil {
		t.Fatalf("restart polkit: %v\n%s", err, out)
	}
	eventuallyOK(t, what, 60*time.Second, f)
}

func TestPolkitActionsInstalled(t *testing.T) {
	for _, id := range []string{skdbus.ActionManage, skdbus.ActionReconnect} {
		out, err := sh(t, "pkaction", "--verbose", "--action-id", id)
		if err != nil || !strings.Contains(out, "implicit active:   auth_admin_keep") || !strings.Contains(out, "implicit any:      no") {
			t.Errorf("pkaction %s: %v\n%s", id, err, out)
		}
	}
}

func TestPolkitRootAllowed(t *testing.T) {
	since := time.Now().Add(-time.Second)
	conn := systemBus(t)
	defer unmanageAll(t, conn, "e2e-pk-root")
	if err := manage(conn, polkitURI, "e2e-pk-root", nil); err != nil {
		t.Fatalf("root's Manage: %v", err)
	}
	if err := conn.Object(skdbus.BusName, skdbus.ConnectionPath("e2e-pk-root")).Call(skdbus.ConnInterface+".Reconnect", 0,
		map[string]godbus.Variant{}).Err; err != nil {
		t.Fatalf("root's Reconnect: %v", err)
	}
	out, err := sh(t, "busctl", "--system", "call", skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface,
		"Unmanage", "sa{sv}", "e2e-pk-root", "0")
	if err != nil {
		t.Fatalf("root's busctl Unmanage: %v\n%s", err, out)
	}
	j := journalSince(t, since)
	if !strings.Contains(j, "action="+skdbus.ActionManage+" uid=0") || !strings.Contains(j, `by="trusted uid"`) {
		t.Errorf("root's calls are not logged as decided for a trusted uid:\n%s", j)
	}
}

func TestPolkitUserDenied(t *testing.T) {
	since := time.Now().Add(-time.Second)
	conn := systemBus(t)
	if err := manage(conn, polkitURI, "e2e-pk-victim", nil); err != nil {
		t.Fatal(err)
	}
	defer unmanageAll(t, conn, "e2e-pk-victim", "e2e-pk-evil")

	out, err := gdbusManage(t, "e2e-pk-evil")
	if err == nil || !strings.Contains(out, skdbus.ErrorNotAuthorized) || !strings.Contains(out, "not authorized for "+skdbus.ActionManage) {
		t.Fatalf("tester's gdbus Manage: err=%v\n%s", err, out)
	}
	t.Logf("gdbus, not interactive: %s", strings.TrimSpace(out))
	out, err = busctlManage(t, "e2e-pk-evil")
	if err == nil || !strings.Contains(out, "not authorized for "+skdbus.ActionManage) {
		t.Fatalf("tester's busctl Manage (interactive): err=%v\n%s", err, out)
	}
	t.Logf("busctl, interactive: %s", strings.TrimSpace(out))
	out, err = asTester(t, "gdbus", "call", "--system", "--dest", skdbus.BusName, "--object-path", string(skdbus.ConnectionPath("e2e-pk-victim")),
		"--method", skdbus.ConnInterface+".Reconnect", "{}")
	if err == nil || !strings.Contains(out, skdbus.ErrorNotAuthorized) || !strings.Contains(out, "not authorized for "+skdbus.ActionReconnect) {
		t.Fatalf("tester's Reconnect: err=%v\n%s", err, out)
	}
	out, err = asTester(t, "gdbus", "call", "--system", "--dest", skdbus.BusName, "--object-path", skdbus.RootPath,
		"--method", skdbus.ManagerInterface+".Unmanage", "e2e-pk-victim", "{}")
	if err == nil || !strings.Contains(out, skdbus.ErrorNotAuthorized) {
		t.Fatalf("tester's Unmanage: err=%v\n%s", err, out)
	}
	// Reading stays open.
	out, err = asTester(t, "storkeepctl", "list")
	if err != nil || !strings.Contains(out, "e2e-pk-victim") {
		t.Fatalf("tester's list: %v\n%s", err, out)
	}
	if _, ok := list(t, conn)["e2e-pk-evil"]; ok {
		t.Fatal("tester's refused Manage was registered")
	}
	j := journalSince(t, since)
	if !strings.Contains(j, "uid=1000") || !strings.Contains(j, "by=polkit") {
		t.Errorf("tester's denials are not logged as polkit's decisions with the uid:\n%s", j)
	}
}

func TestPolkitRuleAllowsUser(t *testing.T) {
	conn := systemBus(t)
	if err := manage(conn, polkitURI, "e2e-pk-rule-victim", nil); err != nil {
		t.Fatal(err)
	}
	defer unmanageAll(t, conn, "e2e-pk-rule-victim", "e2e-pk-by-tester")
	rule := `// Added by storkeep's e2e suite (TestPolkitRuleAllowsUser).
polkit.addRule(function(action, subject) {
    if (action.id == "` + skdbus.ActionManage + `" && subject.user == "tester") {
        return polkit.Result.YES;
    }
});
`
	if err := os.MkdirAll(filepath.Dir(polkitRuleFile), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(polkitRuleFile) })
	if err := os.WriteFile(polkitRuleFile, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	waitForRules(t, "polkitd to let tester manage", func() (bool, string) {
		out, err := gdbusManage(t, "e2e-pk-by-tester")
		return err == nil && strings.Contains(out, string(skdbus.ConnectionPath("e2e-pk-by-tester"))), out
	})
	if _, ok := list(t, conn)["e2e-pk-by-tester"]; !ok {
		t.Fatal("tester's allowed Manage is not listed")
	}
	out, err := asTester(t, "gdbus", "call", "--system", "--dest", skdbus.BusName, "--object-path", skdbus.RootPath,
		"--method", skdbus.ManagerInterface+".Unmanage", "e2e-pk-by-tester", "{}")
	if err != nil {
		t.Fatalf("tester's Unmanage under the rule: %v\n%s", err, out)
	}
	// The rule grants manage, not reconnect.
	out, err = asTester(t, "gdbus", "call", "--system", "--dest", skdbus.BusName, "--object-path", string(skdbus.ConnectionPath("e2e-pk-rule-victim")),
		"--method", skdbus.ConnInterface+".Reconnect", "{}")
	if err == nil || !strings.Contains(out, "not authorized for "+skdbus.ActionReconnect) {
		t.Fatalf("tester's Reconnect under a manage-only rule: err=%v\n%s", err, out)
	}

	if err := os.Remove(polkitRuleFile); err != nil {
		t.Fatal(err)
	}
	waitForRules(t, "polkitd to deny tester again", func() (bool, string) {
		out, err := gdbusManage(t, "e2e-pk-by-tester")
		if err == nil {
			unmanageAll(t, conn, "e2e-pk-by-tester")
		}
		return err != nil && strings.Contains(out, skdbus.ErrorNotAuthorized), out
	})
}

func TestPolkitMaskedRootOnly(t *testing.T) {
	conn := systemBus(t)
	defer unmanageAll(t, conn, "e2e-pk-nopolkit", "e2e-pk-nopolkit-evil")
	if out, err := sh(t, "systemctl", "mask", "--now", "polkit.service"); err != nil {
		t.Fatalf("mask polkit: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := sh(t, "systemctl", "unmask", "polkit.service"); err != nil {
			t.Errorf("unmask polkit: %v\n%s", err, out)
		}
		if out, err := sh(t, "systemctl", "start", "polkit.service"); err != nil {
			t.Errorf("start polkit: %v\n%s", err, out)
		}
	})
	since := time.Now().Add(-time.Second)
	if err := manage(conn, polkitURI, "e2e-pk-nopolkit", nil); err != nil {
		t.Fatalf("root's Manage without polkit: %v", err)
	}
	out, err := gdbusManage(t, "e2e-pk-nopolkit-evil")
	if err == nil || !strings.Contains(out, skdbus.ErrorNotAuthorized) || !strings.Contains(out, "polkit is not available") {
		t.Fatalf("tester's Manage without polkit: err=%v\n%s", err, out)
	}
	out, err = busctlManage(t, "e2e-pk-nopolkit-evil")
	if err == nil || !strings.Contains(out, "requires root") {
		t.Fatalf("tester's busctl Manage without polkit: err=%v\n%s", err, out)
	}
	if _, ok := list(t, conn)["e2e-pk-nopolkit-evil"]; ok {
		t.Fatal("tester's refused Manage was registered")
	}
	if j := journalSince(t, since); !strings.Contains(j, `by="root-only fallback"`) {
		t.Errorf("the fallback is not logged:\n%s", j)
	}
}

// TestPolkitPrefixRule installs the example rule the package ships, as it
// is, and shows with the real polkitd that a member of its group may
// manage the CIDs with its prefix, and only those, while a user outside
// the group may not: storkeepd passes cid (and prefix) as details.
func TestPolkitPrefixRule(t *testing.T) {
	const (
		example  = "/usr/share/doc/storkeep/examples/50-storkeep-prefix.rules"
		ruleFile = "/etc/polkit-1/rules.d/50-storkeep-prefix.rules"
		group    = "tenant1" // what the example says
		user     = "tenant1admin"
	)
	rule, err := os.ReadFile(example)
	if err != nil {
		t.Fatalf("the package does not ship the example rule: %v", err)
	}
	if out, err := sh(t, "groupadd", "-f", group); err != nil {
		t.Fatalf("groupadd: %v\n%s", err, out)
	}
	if out, err := sh(t, "useradd", "-m", "-G", group, user); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		sh(t, "userdel", "-r", user)
		sh(t, "groupdel", group)
	})
	conn := systemBus(t)
	if err := manage(conn, polkitURI, "other-pk-victim", nil); err != nil {
		t.Fatal(err)
	}
	defer unmanageAll(t, conn, "other-pk-victim", "tenant1-e2e", "tenant1-by-tester", "other-by-tenant1")

	call := func(who string, path godbus.ObjectPath, method string, args ...string) (string, error) {
		t.Helper()
		return sh(t, "runuser", append([]string{"-u", who, "--", "gdbus", "call", "--system", "--dest", skdbus.BusName,
			"--object-path", string(path), "--method", method}, args...)...)
	}
	manageAs := func(who, cid string) (string, error) {
		return call(who, skdbus.RootPath, skdbus.ManagerInterface+".Manage", polkitURI, cid, "{}")
	}
	denied := func(what, out string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(out, skdbus.ErrorNotAuthorized) {
			t.Errorf("%s: err=%v, want NotAuthorized\n%s", what, err, out)
		}
	}

	if err := os.WriteFile(ruleFile, rule, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(ruleFile)
		sh(t, "systemctl", "restart", "polkit.service")
	})
	waitForRules(t, "polkitd to let "+user+" manage tenant1-e2e", func() (bool, string) {
		out, err := manageAs(user, "tenant1-e2e")
		return err == nil && strings.Contains(out, string(skdbus.ConnectionPath("tenant1-e2e"))), out
	})
	out, err := call(user, skdbus.ConnectionPath("tenant1-e2e"), skdbus.ConnInterface+".Reconnect", "{}")
	if err != nil {
		t.Errorf("%s's Reconnect of tenant1-e2e: %v\n%s", user, err, out)
	}

	// Outside the prefix: polkit's defaults, which ask for an
	// administrator's password that no one gives here.
	out, err = manageAs(user, "other-by-tenant1")
	denied(user+"'s Manage of other-by-tenant1", out, err)
	out, err = call(user, skdbus.RootPath, skdbus.ManagerInterface+".Unmanage", "other-pk-victim", "{}")
	denied(user+"'s Unmanage of other-pk-victim", out, err)
	out, err = call(user, skdbus.ConnectionPath("other-pk-victim"), skdbus.ConnInterface+".Reconnect", "{}")
	denied(user+"'s Reconnect of other-pk-victim", out, err)
	out, err = call(user, skdbus.RootPath, skdbus.ManagerInterface+".UnmanagePrefix", "", "{}")
	denied(user+"'s UnmanagePrefix of everything", out, err)
	// Outside the group.
	out, err = manageAs("tester", "tenant1-by-tester")
	denied("tester's Manage of tenant1-by-tester", out, err)

	out, err = call(user, skdbus.RootPath, skdbus.ManagerInterface+".UnmanagePrefix", "tenant1-", "{}")
	if err != nil || !strings.Contains(out, "tenant1-e2e") {
		t.Errorf("%s's UnmanagePrefix tenant1-: %v\n%s", user, err, out)
	}
	l := list(t, conn)
	if _, ok := l["other-pk-victim"]; !ok {
		t.Error("other-pk-victim is gone")
	}
	for _, cid := range []string{"tenant1-e2e", "other-by-tenant1", "tenant1-by-tester"} {
		if _, ok := l[cid]; ok {
			t.Errorf("%s is managed", cid)
		}
	}
}

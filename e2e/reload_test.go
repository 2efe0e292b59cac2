// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// journalCursor returns a cursor after the daemon's last journal entry.
func journalCursor(t *testing.T) string {
	t.Helper()
	out, err := sh(t, "journalctl", "-u", "storkeepd.service", "-n", "0", "--show-cursor", "--no-pager")
	if err != nil {
		t.Fatalf("journalctl --show-cursor: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(line, "-- cursor: "); ok {
			return strings.TrimSpace(c)
		}
	}
	t.Fatalf("journalctl printed no cursor:\n%s", out)
	return ""
}

// journalAfter waits until the daemon's journal after cursor holds want.
// debugLine is a line storkeepd logs only at debug level (each failed
// attempt). Under the unit its entries are native, so the level is the
// entry's PRIORITY, not a word in the message.
const debugLine = "attempt failed; next attempt scheduled"

func journalAfter(t *testing.T, cursor, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := sh(t, "journalctl", "-u", "storkeepd.service", "--after-cursor="+cursor, "-o", "cat", "--no-pager")
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the daemon's journal within %v:\n%s", want, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// useConfig writes storkeepd's configuration file, and restores the one
// that was there (and restarts the daemon on it) when the test ends.
func useConfig(t *testing.T, conn *godbus.Conn, content string) {
	t.Helper()
	if _, err := os.Stat(configPath + ".e2e-reload"); err != nil {
		old, readErr := os.ReadFile(configPath)
		t.Cleanup(func() {
			if readErr == nil {
				_ = os.WriteFile(configPath, old, 0o644)
			} else {
				_ = os.Remove(configPath)
			}
			_ = os.Remove(configPath + ".e2e-reload")
			try(t, "systemctl", "restart", "storkeepd.service")
			waitForName(t, conn)
		})
		if err := os.WriteFile(configPath+".e2e-reload", old, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(configPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSystemctlReload: `systemctl reload storkeepd` rereads the
// configuration in the same process: a raised log level shows debug lines
// at once; a broken file is refused with its line and column, in the
// words of `storkeepd --check-config`, and the daemon keeps serving.
func TestSystemctlReload(t *testing.T) {
	conn := systemBus(t)
	waitForName(t, conn)
	if p := unitProps(t, "storkeepd.service", "ExecReload")["ExecReload"]; !strings.Contains(p, "/bin/kill") || !strings.Contains(p, "-HUP") {
		t.Fatalf("ExecReload = %q; want /bin/kill -HUP $MAINPID", p)
	}
	pid := mainPID(t)
	// A target with no route (the guest has no network device): it fails
	// and is retried at the backoff, and each failure is a debug line.
	const base = "[reconnect]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n"
	useConfig(t, conn, "[daemon]\nlog_level = \"info\"\n"+base)
	cursor := journalCursor(t)
	must(t, "systemctl", "reload", "storkeepd.service")
	journalAfter(t, cursor, "configuration reloaded", 20*time.Second)
	if err := manage(conn, "nfs://192.0.2.1/e2e-reload", "e2e-reload", nil); err != nil {
		t.Fatal(err)
	}
	defer root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, "e2e-reload", map[string]godbus.Variant{})
	deadline := time.Now().Add(30 * time.Second)
	for list(t, conn)["e2e-reload"]["lastError"].Value() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no failed attempt within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if out, _ := sh(t, "journalctl", "-u", "storkeepd.service", "--after-cursor="+cursor, "-o", "cat", "--no-pager"); strings.Contains(out, debugLine) {
		t.Fatalf("debug lines at log_level info:\n%s", out)
	}

	// Act: debug.
	useConfig(t, conn, "[daemon]\nlog_level = \"debug\"\n"+base)
	cursor = journalCursor(t)
	must(t, "systemctl", "reload", "storkeepd.service")

	// Assert
	out := journalAfter(t, cursor, "configuration reloaded", 20*time.Second)
	if !strings.Contains(out, "daemon.log_level") {
		t.Errorf("the reload does not say what changed:\n%s", out)
	}
	journalAfter(t, cursor, debugLine, 20*time.Second)
	if got := mainPID(t); got != pid {
		t.Fatalf("the main pid went from %s to %s: reload restarted the daemon", pid, got)
	}

	// Act: a broken file.
	useConfig(t, conn, "[daemon]\nlog_level = \"info\"\n[limits]\nmax_cid_length = 300\n")
	cursor = journalCursor(t)
	must(t, "systemctl", "reload", "storkeepd.service")

	// Assert
	out = journalAfter(t, cursor, "configuration not reloaded", 20*time.Second)
	if !strings.Contains(out, "line 4 column 18") {
		t.Errorf("the refused reload does not say where:\n%s", out)
	}
	check, err := exec.Command("/usr/sbin/storkeepd", "--check-config").CombinedOutput()
	msg := strings.TrimPrefix(strings.TrimSpace(string(check)), "storkeepd: ")
	if err == nil || msg == "" || !strings.Contains(out, msg) {
		t.Errorf("storkeepd --check-config said (%v):\n%s\nthe reload logged:\n%s", err, check, out)
	}
	if st, _ := sh(t, "systemctl", "is-active", "storkeepd.service"); strings.TrimSpace(st) != "active" || mainPID(t) != pid {
		t.Fatalf("after a broken reload the service is %q with pid %s; want active with pid %s", st, mainPID(t), pid)
	}
	waitForName(t, conn)
	_ = list(t, conn)
	journalAfter(t, cursor, debugLine, 20*time.Second) // the level in use is still debug
}

// treeOf records every entry under dir (to depth levels below it) with
// its mode, size, owner, mtime and ctime.
func treeOf(t *testing.T, dir string, depth int) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		out[path] = fmt.Sprintf("mode=%o size=%d uid=%d mtime=%d.%09d ctime=%d.%09d",
			st.Mode, st.Size, st.Uid, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		if e.IsDir() && strings.Count(strings.TrimPrefix(path, dir), "/") >= depth {
			return filepath.SkipDir // never into a mount
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// TestSecondInstanceByHand: `storkeepd` run by hand while the service
// runs exits non-zero with one line naming the lock and the service's
// pid, and changes nothing: not the state, not the mount points, not the
// bus name.
func TestSecondInstanceByHand(t *testing.T) {
	// Arrange
	conn := systemBus(t)
	waitForName(t, conn)
	pid := mainPID(t)
	time.Sleep(time.Second) // a daemon restarted by the test before settles
	if b, err := os.ReadFile("/var/lib/storkeep/lock"); err != nil || strings.TrimSpace(string(b)) != pid {
		t.Errorf("/var/lib/storkeep/lock holds %q (%v); want the main pid %s", b, err, pid)
	}
	before := treeOf(t, "/var/lib/storkeep", 3)
	for k, v := range treeOf(t, "/run/storkeep", 2) {
		before[k] = v
	}

	// Act
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/storkeepd").CombinedOutput()

	// Assert
	t.Logf("storkeepd by hand: %v\n%s", err, out)
	if ctx.Err() != nil {
		t.Fatalf("the second storkeepd was still running after 30 s:\n%s", out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "/var/lib/storkeep/lock") || !strings.Contains(lines[0], "pid "+pid) {
		t.Errorf("the second storkeepd: %v\n%s\nwant a non-zero exit and one line naming /var/lib/storkeep/lock and pid %s", err, out, pid)
	}
	after := treeOf(t, "/var/lib/storkeep", 3)
	for k, v := range treeOf(t, "/run/storkeep", 2) {
		after[k] = v
	}
	var diff []string
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			diff = append(diff, fmt.Sprintf("%s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, "created: "+p)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("the second storkeepd changed things:\n%s", strings.Join(diff, "\n"))
	}
	var owner uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, skdbus.BusName).Store(&owner); err != nil || fmt.Sprint(owner) != pid || mainPID(t) != pid {
		t.Errorf("the name is owned by pid %d (%v), the service's main pid is %s; want both %s", owner, err, mainPID(t), pid)
	}
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// fastRetries is the harness's default configuration: fast retries, no
// link events.
const fastRetries = "[reconnect]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nlink_events = false\n"

func (d *daemon) configPath() string { return filepath.Join(d.bus.Dir, "storkeep.toml") }

func (d *daemon) writeConfig(config string) {
	d.t.Helper()
	if err := os.WriteFile(d.configPath(), []byte(config), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// hup sends SIGHUP and returns how long the log was before it, so that
// waitLog can look only at what came after.
func (d *daemon) hup() int {
	d.t.Helper()
	mark := len(d.log.String())
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		d.t.Fatalf("SIGHUP: %v", err)
	}
	return mark
}

// waitLog waits until the log after mark holds want, and fails at once
// if the daemon exits meanwhile.
func (d *daemon) waitLog(mark int, want string) string {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := d.log.String()[mark:]; strings.Contains(s, want) {
			return s
		}
		select {
		case <-d.exited:
			d.cmd = nil
			d.t.Fatalf("storkeepd exited while the test waited for %q in its log:\n%s", want, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no %q in the log after 20 s:\n%s", want, d.log.String()[mark:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive fails the test unless the daemon still runs, owns its name and
// answers.
func (d *daemon) alive(conn *godbus.Conn) {
	d.t.Helper()
	select {
	case <-d.exited:
		d.cmd = nil
		d.t.Fatalf("storkeepd exited:\n%s", d.log.String())
	default:
	}
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err != nil || !has {
		d.t.Fatalf("%s has no owner (%v)", skdbus.BusName, err)
	}
	_ = list(d.t.(*testing.T), conn, nil)
}

// TestSIGHUPReloadsTheLogLevel: SIGHUP rereads the file; a log level
// raised from info to debug shows debug lines from then on, in the same
// process.
func TestSIGHUPReloadsTheLogLevel(t *testing.T) {
	// Arrange: a connection that fails and retries every 200 ms at most,
	// which the service logs at debug level.
	d := newDaemonConfig(t, "[daemon]\nlog_level = \"info\"\n"+fastRetries)
	conn := d.client()
	defer conn.Close()
	pid := d.cmd.Process.Pid
	if _, err := manage(conn, nfsURI, "hup", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed attempt", func() bool { return list(t, conn, nil)["hup"]["lastError"].Value() != "" })
	time.Sleep(300 * time.Millisecond) // more attempts, none logged at info
	if strings.Contains(d.log.String(), "level=DEBUG") {
		t.Fatalf("debug lines at log_level info:\n%s", d.log.String())
	}

	// Act
	d.writeConfig("[daemon]\nlog_level = \"debug\"\n" + fastRetries)
	mark := d.hup()

	// Assert
	after := d.waitLog(mark, "configuration reloaded")
	if !strings.Contains(after, "daemon.log_level") {
		t.Errorf("the reload does not say what changed:\n%s", after)
	}
	d.waitLog(mark, "level=DEBUG")
	d.alive(conn)
	if d.cmd.Process.Pid != pid {
		t.Fatalf("the daemon was restarted")
	}
}

// TestSIGHUPReloadsLimitsAndBackoff: the request limits and the reconnect
// backoff of the new file apply at once; a backoff cap that was lowered
// brings a far-off attempt forward.
func TestSIGHUPReloadsLimitsAndBackoff(t *testing.T) {
	// Arrange: the first failure puts the next attempt an hour away.
	d := newDaemonConfig(t, "[reconnect]\ninitial_backoff = \"1h\"\nmax_backoff = \"2h\"\nlink_events = false\n")
	conn := d.client()
	defer conn.Close()
	path, err := manage(conn, nfsURI, "nine-byte", nil)
	if err != nil {
		t.Fatal(err)
	}
	obj := conn.Object(skdbus.BusName, path)
	attempts := func() uint32 {
		v, err := obj.GetProperty(skdbus.ConnInterface + ".Attempts")
		if err != nil {
			t.Fatalf("Attempts: %v", err)
		}
		return v.Value().(uint32)
	}
	nextAttempt := func() time.Time {
		v, err := obj.GetProperty(skdbus.ConnInterface + ".NextAttempt")
		if err != nil {
			t.Fatalf("NextAttempt: %v", err)
		}
		return time.UnixMicro(int64(v.Value().(uint64)))
	}
	// Attempts counts an attempt from its start, NextAttempt is set once
	// it has failed: wait for both.
	eventually(t, "a failed attempt", func() bool { return attempts() >= 1 && nextAttempt().After(time.Now()) })
	if next := nextAttempt(); time.Until(next) < 30*time.Minute {
		t.Fatalf("NextAttempt is %v away; want about an hour", time.Until(next))
	}
	first := attempts()

	// Act
	d.writeConfig("[limits]\nmax_cid_length = 8\n" + fastRetries)
	mark := d.hup()

	// Assert
	d.waitLog(mark, "configuration reloaded")
	_, err = manage(conn, nfsURI, "ten-bytes!", nil)
	if errName(err) != skdbus.ErrorInvalidCID || !strings.Contains(err.Error(), "limits.max_cid_length") {
		t.Errorf("Manage of a 10-byte CID after max_cid_length = 8: %v; want InvalidCID naming the limit", err)
	}
	var got godbus.ObjectPath
	if err := root(conn).Call(skdbus.ManagerInterface+".GetConnection", 0, "nine-byte").Store(&got); err != nil || got != path {
		t.Errorf("GetConnection of a CID managed before the limit was lowered: %s, %v; want %s", got, err, path)
	}
	eventually(t, "attempts at the new backoff (200 ms at most)", func() bool { return attempts() >= first+3 })
	d.alive(conn)
}

// TestSIGHUPKeepsTheConfigWhenTheFileIsBroken: a file that does not load
// changes nothing; the daemon says why, with line and column, in the same
// words as --check-config, and keeps serving.
func TestSIGHUPKeepsTheConfigWhenTheFileIsBroken(t *testing.T) {
	tests := []struct {
		name, config, where string
	}{
		{"syntax", "[daemon]\nlog_level = \"debug\"\n[limits\nmax_cid_length = 9\n", "line 3 column"},
		{"value", "[daemon]\nlog_level = \"debug\"\n[limits]\nmax_cid_length = 300\n", "line 4 column 18"},
		{"unknown key", "[daemon]\nlog_level = \"debug\"\nlog_colour = \"red\"\n", "line 3 column 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			d := newDaemonConfig(t, "[limits]\nmax_cid_length = 8\n"+fastRetries)
			conn := d.client()
			defer conn.Close()
			d.writeConfig(tc.config)

			// Act
			mark := d.hup()

			// Assert
			after := d.waitLog(mark, "configuration not reloaded")
			if !strings.Contains(after, tc.where) || !strings.Contains(after, d.configPath()) {
				t.Errorf("the log does not name the file and %q:\n%s", tc.where, after)
			}
			check, err := exec.Command(daemonBin, "--check-config", d.configPath()).CombinedOutput()
			msg := strings.TrimPrefix(strings.TrimSpace(string(check)), "storkeepd: ")
			if err == nil || msg == "" || !strings.Contains(after, strings.ReplaceAll(msg, `"`, `\"`)) {
				t.Errorf("--check-config said (%v):\n%s\nthe reload logged:\n%s", err, check, after)
			}
			d.alive(conn)
			_, err = manage(conn, nfsURI, "nine-byte", nil)
			if errName(err) != skdbus.ErrorInvalidCID {
				t.Errorf("Manage of a 9-byte CID: %v; want InvalidCID: the old max_cid_length = 8 still holds", err)
			}
			time.Sleep(100 * time.Millisecond)
			if strings.Contains(d.log.String(), "level=DEBUG") {
				t.Errorf("the broken file's log level was applied:\n%s", d.log.String())
			}
		})
	}
}

// TestCheckConfig: storkeepd --check-config [FILE] loads the file as the
// daemon would and says nothing (exit 0) or why not (exit 1), like
// sshd -t; it needs no bus and touches no state.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[daemon]\nlog_level = \"debug\"\n[limits]\nmax_cids = 10\n")
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for exit 0 and no output
	}{
		{"good file", []string{"--check-config", good}, ""},
		{"good file by --config", []string{"--config", good, "--check-config"}, ""},
		{"the sample", []string{"--check-config", filepath.Join("..", "..", "packaging", "storkeep.toml")}, ""},
		{"unknown key", []string{"--check-config", write("unknown.toml", "[daemon]\nlog_levl = \"debug\"\n")},
			`line 2 column 1: unknown key "daemon.log_levl"`},
		{"bad log level", []string{"--check-config", write("level.toml", "[daemon]\nlog_level = \"loud\"\n")},
			`line 2 column 13: daemon.log_level "loud": want debug, info, warn or error`},
		{"syntax", []string{"--check-config", write("torn.toml", "[daemon\n")}, "line 1 column"},
		{"missing file", []string{"--check-config", filepath.Join(dir, "absent.toml")}, "no such file"},
		{"two files", []string{"--check-config", good, good}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, daemonBin, tc.args...)
			cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent")
			out, err := cmd.CombinedOutput()
			if tc.wantErr == "" {
				if err != nil || len(out) != 0 {
					t.Errorf("storkeepd %s: %v\n%s\nwant exit 0 and no output", strings.Join(tc.args, " "), err, out)
				}
				return
			}
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if err == nil || len(lines) != 1 || !strings.Contains(string(out), tc.wantErr) {
				t.Errorf("storkeepd %s: %v\n%s\nwant exit 1 and one line saying %q", strings.Join(tc.args, " "), err, out, tc.wantErr)
			}
		})
	}
}

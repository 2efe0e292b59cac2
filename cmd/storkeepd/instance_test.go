// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// treeState is what a walk of some directories saw: one line per entry
// with its mode, size, owner, mtime and ctime (a chmod or chown moves
// ctime even when it changes nothing visible).
func treeState(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				return err
			}
			out[path] = fmt.Sprintf("mode=%o size=%d uid=%d mtime=%d.%09d ctime=%d.%09d",
				st.Mode, st.Size, st.Uid, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	return out
}

// diffTrees lists what differs between two treeStates.
func diffTrees(before, after map[string]string) []string {
	var d []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			d = append(d, "removed: "+p)
		case a != b:
			d = append(d, fmt.Sprintf("changed: %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			d = append(d, "created: "+p)
		}
	}
	sort.Strings(d)
	return d
}

// plantCID writes a CID file the running daemon never saw (it loads the
// state only at start): a second instance that loaded the state would
// try to connect it.
func plantCID(t *testing.T, stateDir, cid, uri string) {
	t.Helper()
	sum := sha256.Sum256([]byte(cid))
	path := filepath.Join(stateDir, "cids", hex.EncodeToString(sum[:16])+".toml")
	content := fmt.Sprintf("version = 1\ncid = %q\nuri = %q\n", cid, uri)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecondInstanceTouchesNothing: storkeepd started on the state
// directory of a running one exits non-zero with one line naming the lock
// file and the holder's pid, before it loads, fixes, connects or asks
// the bus for anything.
func TestSecondInstanceTouchesNothing(t *testing.T) {
	// Arrange: a running daemon, and things a second one would change if
	// it got as far as loading the state: a CID to connect, a leftover
	// temporary file to clean up, a directory to tighten.
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	plantCID(t, d.stateDir, "planted", "nfs://127.0.0.1/srv/planted")
	if err := os.WriteFile(filepath.Join(d.stateDir, ".tmp-leftover"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d.stateDir, "targets"), 0o750); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, d.stateDir, d.runtimeDir)

	// Who connects to the bus while the second instance runs.
	watch := d.client()
	defer watch.Close()
	if err := watch.AddMatchSignal(godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *godbus.Signal, 64)
	watch.Signal(sigs)

	// Act
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, daemonBin, "--bus", d.bus.Address, "--state-dir", d.stateDir,
		"--runtime-dir", d.runtimeDir, "--config", filepath.Join(d.bus.Dir, "storkeep.toml"))
	out, err := second.CombinedOutput()

	// Assert
	t.Logf("second instance: %v\n%s", err, out)
	if ctx.Err() != nil {
		t.Fatalf("the second instance was still running after 30 s:\n%s", out)
	}
	if err == nil {
		t.Errorf("the second instance exited 0; want non-zero")
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	lock := filepath.Join(d.stateDir, "lock")
	pid := fmt.Sprint(d.cmd.Process.Pid)
	if len(lines) != 1 || !strings.Contains(lines[0], lock) || !strings.Contains(lines[0], "pid "+pid) {
		t.Errorf("the second instance printed %d line(s):\n%s\nwant one naming %s and pid %s", len(lines), out, lock, pid)
	}
	after := treeState(t, d.stateDir, d.runtimeDir)
	if diff := diffTrees(before, after); len(diff) > 0 {
		t.Errorf("the second instance changed the state or runtime directory:\n%s", strings.Join(diff, "\n"))
	}
	// Flush: the bus's reply comes after every signal it sent before it.
	var id string
	if err := watch.BusObject().Call("org.freedesktop.DBus.GetId", 0).Store(&id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for done := false; !done; {
		select {
		case s := <-sigs:
			if len(s.Body) == 3 && s.Body[2] != "" && s.Body[2] != watch.Names()[0] {
				t.Errorf("something connected to the bus while the second instance ran: NameOwnerChanged %v", s.Body)
			}
			if len(s.Body) == 3 && s.Body[0] == skdbus.BusName {
				t.Errorf("%s changed hands: %v", skdbus.BusName, s.Body)
			}
		default:
			done = true
		}
	}
	// The first one is unharmed and still serving.
	select {
	case <-d.exited:
		t.Fatalf("the first daemon exited:\n%s", d.log.String())
	default:
	}
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err != nil || !has {
		t.Errorf("%s has no owner after the second instance: %v", skdbus.BusName, err)
	}
	_ = list(t, conn, nil)
}

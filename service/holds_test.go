// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// damage is what happens to a state file while the daemon is stopped.
type damage struct {
	name string
	do   func(t *testing.T, path string)
	// named: the file still names its target (read leniently), so only
	// that target is held.
	named bool
}

var damages = []damage{
	{"unknown key", func(t *testing.T, path string) {
		// What a downgrade after an upgrade that added a key leaves.
		appendFile(t, path, "\nfuture_key = true\n")
	}, true},
	{"torn", func(t *testing.T, path string) {
		if err := os.Truncate(path, 7); err != nil {
			t.Fatal(err)
		}
	}, false},
}

// waitSettled waits until k's pass has looked at the host since the last
// restart and is idle: right after a restart, Run may not have started
// the first pass yet, and an idle target then proves nothing.
func (ts *testService) waitSettled(k TargetKey) {
	ts.t.Helper()
	eventually(ts.t, fmt.Sprintf("%s was looked at", k), func() bool { return ts.be.count(k, opObserve) > 0 })
	ts.waitIdle(k)
}

// connectedThenStopped manages each CID, waits until every one is
// connected and idle, and stops the service: the state a daemon leaves
// behind when it stops.
func (ts *testService) connectedThenStopped(cids map[CID]Spec) {
	ts.t.Helper()
	for c, spec := range cids {
		ts.manage(c, spec)
	}
	for c, spec := range cids {
		ts.waitConnected(c)
		ts.waitIdle(spec.Target)
	}
	ts.stop()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestBadCIDFileHoldsItsConnection is the failure that made storkeep tear
// down what it could not read: each CID's file damaged while the daemon
// is stopped, then a start. Nothing may be disconnected, and List says
// why.
func TestBadCIDFileHoldsItsConnection(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			// Arrange: an NFS export and an iSCSI target, connected by us.
			ts := newTestService(t)
			nfs, iscsi := specFor(t, nfsA), specFor(t, iscsiA)
			ts.connectedThenStopped(map[CID]Spec{"vm1-nfs": nfs, "vm1-lun": iscsi})
			d.do(t, ts.svc.store.cidPath("vm1-nfs"))
			d.do(t, ts.svc.store.cidPath("vm1-lun"))

			// Act
			ts.restart()
			ts.waitSettled(nfs.Target)
			ts.waitSettled(iscsi.Target)

			// Assert: both kept, both listed as held.
			for _, k := range []TargetKey{nfs.Target, iscsi.Target} {
				if n := ts.be.count(k, opDisconnect); n != 0 {
					t.Errorf("%s: Disconnect called %d times; want 0", k, n)
				}
				if present, _ := ts.be.hostHas(k); !present {
					t.Errorf("%s: not on the host any more", k)
				}
			}
			held := 0
			for _, st := range ts.list() {
				if st.LastError != ErrNameBadStateFile {
					t.Errorf("List entry %s: LastError %q; want %s", st.ID, st.LastError, ErrNameBadStateFile)
				}
				if strings.HasPrefix(st.ID, "unmanaged/") {
					held++
				}
				if strings.HasPrefix(st.ID, "statefile/") {
					want := "all"
					if d.named {
						want = "" // a target key, checked below
					}
					if h, _ := st.Info["held"].(string); (want == "all") != (h == "all") || h == "" {
						t.Errorf("%s holds %q; named=%v", st.ID, h, d.named)
					}
				}
			}
			if held != 2 {
				t.Errorf("List shows %d held targets; want 2: %+v", held, ts.list())
			}
		})
	}
}

// TestFixedStateFileLoads: a file fixed while the daemon runs is loaded
// at the next Recheck, its CID managed again, and nothing reconnected.
func TestFixedStateFileLoads(t *testing.T) {
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.connectedThenStopped(map[CID]Spec{"vm1-nfs": spec})
	path := ts.svc.store.cidPath("vm1-nfs")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "future_key = 1\n")
	ts.restart()
	ts.waitSettled(spec.Target)
	if _, ok := ts.svc.Status("vm1-nfs"); ok {
		t.Fatal("a CID whose file did not load is managed")
	}

	// Act: the admin fixes the file.
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	ts.svc.Recheck()

	// Assert
	ts.waitConnected("vm1-nfs")
	ts.waitIdle(spec.Target)
	if n := ts.be.count(spec.Target, opDisconnect) + ts.be.count(spec.Target, opConnect); n != 0 {
		t.Errorf("fixing the file cost %d Connect/Disconnect calls; want 0", n)
	}
	for _, st := range ts.list() {
		if st.ID != "vm1-nfs" {
			t.Errorf("List still shows %s (%s)", st.ID, st.LastErrorMessage)
		}
	}
}

// TestRemovedStateFileIsAnUnmanage: removing the file that held a target
// is the admin's Unmanage: the hold lifts and the target we made is torn
// down. With two unnamed files, the hold lifts only with the last.
func TestRemovedStateFileIsAnUnmanage(t *testing.T) {
	ts := newTestService(t)
	nfs, iscsi := specFor(t, nfsA), specFor(t, iscsiA)
	ts.connectedThenStopped(map[CID]Spec{"a": nfs, "b": iscsi})
	pa, pb := ts.svc.store.cidPath("a"), ts.svc.store.cidPath("b")
	for _, p := range []string{pa, pb} {
		if err := os.Truncate(p, 7); err != nil {
			t.Fatal(err)
		}
	}
	ts.restart()

	// Act 1: one of the two torn files removed; the other still holds all.
	if err := os.Remove(pa); err != nil {
		t.Fatal(err)
	}
	ts.svc.Recheck()
	ts.waitSettled(nfs.Target)
	ts.waitSettled(iscsi.Target)
	if n := ts.be.count(nfs.Target, opDisconnect) + ts.be.count(iscsi.Target, opDisconnect); n != 0 {
		t.Fatalf("%d Disconnect calls while a torn file still holds every teardown; want 0", n)
	}

	// Act 2: the last one removed.
	if err := os.Remove(pb); err != nil {
		t.Fatal(err)
	}
	ts.svc.Recheck()

	// Assert
	ts.waitForgotten()
	for _, k := range []TargetKey{nfs.Target, iscsi.Target} {
		if n := ts.be.count(k, opDisconnect); n != 1 {
			t.Errorf("%s: Disconnect called %d times; want 1", k, n)
		}
	}
}

// TestBadTargetRecordHoldsAndIsKept: a target record that did not load
// holds its target (found by the file's name) when its last CID goes,
// and storkeep does not write over the admin's file.
func TestBadTargetRecordHoldsAndIsKept(t *testing.T) {
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.connectedThenStopped(map[CID]Spec{"a": spec})
	rec := ts.svc.store.targetPath(spec.Target)
	if err := os.Truncate(rec, 7); err != nil {
		t.Fatal(err)
	}
	torn, _ := os.ReadFile(rec)
	ts.restart()
	ts.waitSettled(spec.Target)

	// Act
	if err := ts.svc.Unmanage("a"); err != nil {
		t.Fatal(err)
	}
	ts.waitIdle(spec.Target)

	// Assert
	if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
		t.Errorf("Disconnect called %d times; want 0", n)
	}
	if now, _ := os.ReadFile(rec); string(now) != string(torn) {
		t.Errorf("the bad record was rewritten: %q", now)
	}
	var listed []string
	for _, st := range ts.list() {
		listed = append(listed, st.ID)
	}
	want := []string{"unmanaged/" + string(spec.Target), "statefile/" + filepath.Base(rec)}
	if !sameSet(listed, want) {
		t.Errorf("List = %v; want %v", listed, want)
	}
}

// TestManageReplacesABadFile: managing the CID again writes a good file
// over the bad one, which lifts its hold at once.
func TestManageReplacesABadFile(t *testing.T) {
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.connectedThenStopped(map[CID]Spec{"a": spec})
	appendFile(t, ts.svc.store.cidPath("a"), "x = 1\n")
	ts.restart()
	ts.waitSettled(spec.Target)

	ts.manage("a", spec)
	ts.waitConnected("a")

	if l := ts.list(); len(l) != 1 || l[0].ID != "a" {
		t.Errorf("List = %+v; want only a", l)
	}
	if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
		t.Errorf("Disconnect called %d times; want 0", n)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

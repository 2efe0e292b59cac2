// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// syncGate replaces a Store's directory sync: each sync is counted,
// announces itself on entered and blocks until the test releases it
// (with the error it should return).
type syncGate struct {
	mu      sync.Mutex
	n       int
	entered chan int
	release chan error
}

func gateDirSync(st *Store) *syncGate {
	g := &syncGate{entered: make(chan int, 16), release: make(chan error)}
	real := st.cids.sync
	st.cids.sync = func(dir string) error {
		g.mu.Lock()
		g.n++
		n := g.n
		g.mu.Unlock()
		g.entered <- n
		if err := <-g.release; err != nil {
			return err
		}
		return real(dir)
	}
	return g
}

func (g *syncGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *syncGate) waitEntered(t *testing.T) int {
	t.Helper()
	select {
	case n := <-g.entered:
		return n
	case <-time.After(waitFor):
		t.Fatal("no directory sync began")
		return 0
	}
}

// call is a store method running in its own goroutine.
type call struct {
	done chan struct{}
	err  error
}

func goCall(f func() error) *call {
	c := &call{done: make(chan struct{})}
	go func() { c.err = f(); close(c.done) }()
	return c
}

func putAsync(st *Store, c CID, spec Spec) *call {
	return goCall(func() error { return st.PutCID(c, spec) })
}

// returned reports whether c has returned by now.
func (c *call) returned() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *call) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(waitFor):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// Every change is durable when PutCID returns: the file's data synced
// before its rename, the directory synced after it. A PutCID that returned
// before the directory's sync (or never synced it) fails here.
func TestPutCIDReturnsOnlyOnceDurable(t *testing.T) {
	// Arrange
	st, _, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := specFor(t, nfsA)
	var renamedBeforeSync, fileSyncs int
	st.syncFile = func(f *os.File) error {
		fileSyncs++
		if _, err := os.Stat(st.cidPath("a")); err == nil {
			renamedBeforeSync++
		}
		return f.Sync()
	}
	gate := gateDirSync(st)

	// Act
	done := putAsync(st, "a", spec)
	gate.waitEntered(t)

	// Assert
	if done.returned() {
		t.Fatal("PutCID returned while the directory sync that makes its rename durable was still running")
	}
	if _, err := os.Stat(st.cidPath("a")); err != nil {
		t.Errorf("the file is not in place when the directory is synced: %v", err)
	}
	gate.release <- nil
	if err := done.wait(t, "PutCID"); err != nil {
		t.Fatalf("PutCID = %v", err)
	}
	if fileSyncs != 1 || renamedBeforeSync != 0 {
		t.Errorf("file synced %d times, %d of them after the rename; want once, before it", fileSyncs, renamedBeforeSync)
	}
}

// Changes that arrive while a directory sync runs share the next one, and
// none of them returns on the sync that was running: it began before
// their renames.
func TestConcurrentChangesShareTheNextDirectorySync(t *testing.T) {
	// Arrange
	st, _, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := specFor(t, nfsA)
	if err := st.PutCID("gone", spec); err != nil {
		t.Fatal(err)
	}
	gate := gateDirSync(st)
	first := putAsync(st, "a", spec)
	gate.waitEntered(t)

	// Act: two more changes while the first sync runs.
	later := []*call{putAsync(st, "b", spec), putAsync(st, "c", spec),
		goCall(func() error { return st.DeleteCID("gone") })}
	eventually(t, "b and c renamed into place and gone removed", func() bool {
		_, eb := os.Stat(st.cidPath("b"))
		_, ec := os.Stat(st.cidPath("c"))
		_, eg := os.Stat(st.cidPath("gone"))
		return eb == nil && ec == nil && errors.Is(eg, os.ErrNotExist)
	})
	gate.release <- nil
	if err := first.wait(t, "the first PutCID"); err != nil {
		t.Fatal(err)
	}
	second := gate.waitEntered(t)

	// Assert
	for i, ch := range later {
		if ch.returned() {
			t.Errorf("change %d returned on the sync that began before it", i)
		}
	}
	gate.release <- nil
	for i, ch := range later {
		if err := ch.wait(t, fmt.Sprintf("change %d", i)); err != nil {
			t.Errorf("change %d = %v", i, err)
		}
	}
	if second != 2 || gate.count() != 2 {
		t.Errorf("%d directory syncs for four changes in two groups; want 2", gate.count())
	}
}

// A directory sync that fails fails every change that waited for it; the
// next change gets a sync of its own.
func TestFailedDirectorySyncFailsItsGroup(t *testing.T) {
	// Arrange
	st, _, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := specFor(t, nfsA)
	gate := gateDirSync(st)
	first := putAsync(st, "a", spec)
	gate.waitEntered(t)
	second := putAsync(st, "b", spec)
	eventually(t, "b renamed into place", func() bool {
		_, err := os.Stat(st.cidPath("b"))
		return err == nil
	})
	ioErr := errors.New("input/output error")

	// Act
	gate.release <- nil
	gate.waitEntered(t)
	gate.release <- ioErr

	// Assert
	if err := first.wait(t, "a"); err != nil {
		t.Errorf("PutCID(a) = %v; want nil (its sync succeeded)", err)
	}
	if err := second.wait(t, "b"); !errors.Is(err, ioErr) {
		t.Errorf("PutCID(b) = %v; want the sync's error", err)
	}
	third := putAsync(st, "c", spec)
	gate.waitEntered(t)
	gate.release <- nil
	if err := third.wait(t, "c"); err != nil {
		t.Errorf("PutCID(c) after a failed sync = %v; want nil", err)
	}
}

// Manage and Unmanage of different CIDs do not wait behind each other's
// writes: calls that come while one waits for the disk share its next
// sync. Each CID is seen managed (or gone) only once its change is
// durable.
func TestConcurrentCallsShareDirectorySyncs(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("old", spec)
	gate := gateDirSync(ts.opts.Store)
	first := goCall(func() error { _, err := ts.svc.Manage("a", spec); return err })
	gate.waitEntered(t)

	// Act
	later := []*call{
		goCall(func() error { _, err := ts.svc.Manage("b", spec); return err }),
		goCall(func() error { _, err := ts.svc.Manage("c", specFor(t, iscsiA)); return err }),
		goCall(func() error { return ts.svc.Unmanage("old") }),
	}
	eventually(t, "b and c written and old removed while a waits for the disk", func() bool {
		_, eb := os.Stat(ts.opts.Store.cidPath("b"))
		_, ec := os.Stat(ts.opts.Store.cidPath("c"))
		_, eo := os.Stat(ts.opts.Store.cidPath("old"))
		return eb == nil && ec == nil && errors.Is(eo, os.ErrNotExist)
	})

	// Assert
	for _, c := range []CID{"a", "b", "c"} {
		if _, ok := ts.svc.Status(c); ok {
			t.Errorf("%s is managed before its write is durable", c)
		}
	}
	if _, ok := ts.svc.Status("old"); !ok {
		t.Error("old is gone before its removal is durable")
	}
	gate.release <- nil
	if err := first.wait(t, "Manage(a)"); err != nil {
		t.Fatal(err)
	}
	gate.waitEntered(t)
	gate.release <- nil
	for i, c := range later {
		if err := c.wait(t, fmt.Sprintf("call %d", i)); err != nil {
			t.Errorf("call %d = %v", i, err)
		}
	}
	if n := gate.count(); n != 2 {
		t.Errorf("%d directory syncs for four calls in two groups; want 2", n)
	}
	for _, c := range []CID{"a", "b", "c"} {
		if _, ok := ts.svc.Status(c); !ok {
			t.Errorf("%s is not managed after Manage returned", c)
		}
	}
	if _, ok := ts.svc.Status("old"); ok {
		t.Error("old is still managed after Unmanage returned")
	}
}

// Calls on one CID keep their order: a Manage that comes while the same
// CID's Unmanage waits for the disk waits for it, and then manages anew.
func TestCallsOnOneCIDKeepTheirOrder(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("a", spec)
	gate := gateDirSync(ts.opts.Store)
	unm := goCall(func() error { return ts.svc.Unmanage("a") })
	gate.waitEntered(t)

	// Act
	var created bool
	man := goCall(func() error { var err error; created, err = ts.svc.Manage("a", spec); return err })
	gate.release <- nil
	gate.waitEntered(t)
	gate.release <- nil

	// Assert
	if err := unm.wait(t, "Unmanage"); err != nil {
		t.Fatal(err)
	}
	if err := man.wait(t, "Manage"); err != nil || !created {
		t.Fatalf("Manage after Unmanage = %v, %v; want true, nil", created, err)
	}
	if _, err := os.Stat(ts.opts.Store.cidPath("a")); err != nil {
		t.Errorf("the CID file is gone although the last call managed it: %v", err)
	}
	if _, ok := ts.svc.Status("a"); !ok {
		t.Error("a is not managed although the last call managed it")
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/storkeep/storkeep/logging"
)

// eventLog records the tagged lines the service logs: event and CID.
type eventLog struct {
	mu    sync.Mutex
	lines []string // "event cid"
}

func (l *eventLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *eventLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *eventLog) WithGroup(string) slog.Handler            { return l }
func (l *eventLog) Handle(_ context.Context, r slog.Record) error {
	var ev, cid string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case logging.EventKey:
			ev = a.Value.String()
		case "cid":
			cid = a.Value.String()
		}
		return true
	})
	if ev != "" {
		l.mu.Lock()
		l.lines = append(l.lines, ev+" "+cid)
		l.mu.Unlock()
	}
	return nil
}

func (l *eventLog) has(line string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, line)
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func withLog(h slog.Handler) testConfig {
	return func(ts *testService) { ts.opts.Logger = slog.New(h) }
}

func TestLossAndRestoreAreTaggedPerCID(t *testing.T) {
	// Arrange: two CIDs on one real connection.
	log := &eventLog{}
	ts := newTestService(t, withLog(log))
	spec := specFor(t, iscsiA)
	ts.manage("c1", spec)
	ts.manage("c2", spec)
	ts.waitConnected("c1")

	// Act
	ts.be.lose(spec.Target, nil)
	ts.svc.Poke(spec.Target)

	// Assert: one line per CID, each findable by its CID alone.
	eventually(t, "the loss is logged for both CIDs", func() bool {
		return log.has("connection-lost c1") && log.has("connection-lost c2")
	})
	ts.waitConnected("c1")
	eventually(t, "the return is logged for both CIDs", func() bool {
		return log.has("connection-restored c1") && log.has("connection-restored c2")
	})
}

func TestFirstConnectIsNotARestore(t *testing.T) {
	log := &eventLog{}
	ts := newTestService(t, withLog(log))
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	ts.waitIdle(spec.Target)
	if got := log.snapshot(); len(got) != 0 {
		t.Errorf("tagged lines %q; want none for a first connect", got)
	}
}

func TestPathDownAndUpAreTagged(t *testing.T) {
	log := &eventLog{}
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths), withLog(log))
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	paths.send(t, "files.example", pathUp)
	ts.waitIdle(spec.Target)
	if log.has("path-up ") {
		t.Fatalf("the first report of a usable path is tagged path-up: %q", log.snapshot())
	}

	paths.send(t, "files.example", pathDown)
	eventually(t, "path down and the loss are logged", func() bool {
		return log.has("path-down ") && log.has("connection-lost c1")
	})
	ts.waitIdle(spec.Target)
	paths.send(t, "files.example", pathUp)
	ts.waitConnected("c1")
	eventually(t, "path up and the return are logged", func() bool {
		return log.has("path-up ") && log.has("connection-restored c1")
	})
}

func TestCounts(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths))
	a, b := specFor(t, nfsA), specFor(t, iscsiA)
	ts.manage("c1", a)
	ts.manage("c2", a)
	ts.manage("c3", b)
	ts.waitConnected("c1")
	ts.waitConnected("c3")
	if got, want := ts.svc.Counts(), (Counts{Managed: 3, Connected: 3}); got != want {
		t.Fatalf("Counts = %+v; want %+v", got, want)
	}
	paths.send(t, "files.example", pathUp)
	ts.waitIdle(a.Target)
	paths.send(t, "files.example", pathDown)
	eventually(t, "the path's CIDs count as retrying, its host as a path down", func() bool {
		return ts.svc.Counts() == Counts{Managed: 3, Connected: 1, Retrying: 2, PathsDown: 1}
	})
	ts.svc.Ping()
}

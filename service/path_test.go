// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakePaths is a PathWatcher the test drives: it counts Watch calls per
// host and passes the test's reports to the service.
type fakePaths struct {
	mu      sync.Mutex
	watched map[string]int
	report  func(string, Path)
	ready   chan struct{} // closed once Run has started
}

func newFakePaths() *fakePaths {
	return &fakePaths{watched: map[string]int{}, ready: make(chan struct{})}
}

func (f *fakePaths) Watch(h string) {
	f.mu.Lock()
	f.watched[h]++
	f.mu.Unlock()
}

func (f *fakePaths) Unwatch(h string) {
	f.mu.Lock()
	if f.watched[h]--; f.watched[h] <= 0 {
		delete(f.watched, h)
	}
	f.mu.Unlock()
}

func (f *fakePaths) Run(ctx context.Context, report func(string, Path)) {
	f.mu.Lock()
	f.report = report
	f.mu.Unlock()
	close(f.ready)
	<-ctx.Done()
}

func (f *fakePaths) count(h string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watched[h]
}

// send reports p for host h, as netmon does from its one goroutine.
func (f *fakePaths) send(t *testing.T, h string, p Path) {
	t.Helper()
	select {
	case <-f.ready:
	case <-time.After(waitFor):
		t.Fatal("the service did not run its PathWatcher")
	}
	f.mu.Lock()
	report := f.report
	f.mu.Unlock()
	report(h, p)
}

var (
	pathUp   = Path{Usable: true, Link: "veth0"}
	pathDown = Path{Link: "veth0", Why: ErrNameLinkDown, Detail: "link veth0 is down"}
)

// listeningBackend is the fake backend plus PathListener.
type listeningBackend struct {
	*fakeBackend
	mu     sync.Mutex
	usable []TargetKey
}

func (l *listeningBackend) PathUsable(k TargetKey) {
	l.mu.Lock()
	l.usable = append(l.usable, k)
	l.mu.Unlock()
}

func (l *listeningBackend) told() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.usable)
}

func withPaths(f *fakePaths) testConfig { return func(ts *testService) { ts.opts.Paths = f } }

func TestLinkDownReportsLossAndKeepsTheConnection(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths))
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	if n := paths.count("files.example"); n != 1 {
		t.Fatalf("host watched %d times; want 1", n)
	}
	paths.send(t, "files.example", pathUp)
	ts.waitIdle(spec.Target)

	paths.send(t, "files.example", pathDown)
	eventually(t, "c1 reports LinkDown", func() bool {
		st := ts.status("c1")
		return !st.Connected && st.LastError == ErrNameLinkDown
	})
	ts.waitIdle(spec.Target)
	st := ts.status("c1")
	if st.State != StateRetrying || !st.NextAttempt.IsZero() || st.LastErrorMessage != "link veth0 is down" {
		t.Fatalf("while the link is down: %+v; want retrying, no NextAttempt, the link named", st)
	}
	if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
		t.Fatalf("Disconnect called %d times on link down; want never", n)
	}
	connects := ts.be.count(spec.Target, opConnect)

	// The connection survived the outage (as a mount or session does):
	// the path coming back is enough, with no new Connect.
	paths.send(t, "files.example", pathUp)
	ts.waitConnected("c1")
	if n := ts.be.count(spec.Target, opConnect); n != connects {
		t.Fatalf("Connect called %d more times; want none", n-connects)
	}
}

func TestPathBackAttemptsAtOnceWhateverTheBackoff(t *testing.T) {
	paths := newFakePaths()
	lb := &listeningBackend{fakeBackend: newFakeBackend()}
	ts := newTestService(t, withPaths(paths), withBackoff(time.Hour, time.Hour), notRunning())
	ts.opts.Backends = map[Kind]Backend{KindNFS: lb, KindISCSI: lb}
	ts.be = lb.fakeBackend
	ts.open()
	ts.start()
	spec := specFor(t, nfsA)
	ts.be.fail(spec.Target, opConnect, NewConnError("ServerUnreachable", "no answer"))
	ts.manage("c1", spec)
	paths.send(t, "files.example", pathDown)
	eventually(t, "a failed attempt named after the link", func() bool {
		st := ts.status("c1")
		return st.LastError == ErrNameLinkDown && !st.NextAttempt.IsZero()
	})
	ts.waitIdle(spec.Target)
	if st := ts.status("c1"); time.Until(st.NextAttempt) < 30*time.Minute {
		t.Fatalf("NextAttempt %v; want about an hour away", st.NextAttempt)
	}

	ts.be.fail(spec.Target, opConnect, nil)
	paths.send(t, "files.example", pathUp)
	ts.waitConnected("c1")
	if lb.told() != 1 {
		t.Fatalf("PathUsable called %d times; want 1", lb.told())
	}
}

func TestUsablePathReportsCauseNoAttempts(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths))
	spec := specFor(t, iscsiA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	ts.waitIdle(spec.Target)
	connects := ts.be.count(spec.Target, opConnect)
	since := ts.status("c1").ConnectedSince
	for range 200 {
		paths.send(t, "san.example", pathUp)
	}
	ts.waitIdle(spec.Target)
	st := ts.status("c1")
	if ts.be.count(spec.Target, opConnect) != connects || !st.ConnectedSince.Equal(since) || !st.Connected {
		t.Fatalf("200 reports of an unchanged path changed the connection: %+v", st)
	}
}

func TestPathWatchFollowsTargets(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths))
	a := specFor(t, nfsA)
	b := specFor(t, "nfs://files.example/exports/b")
	ts.manage("a1", a)
	ts.manage("a2", a)
	ts.manage("b1", b)
	if n := paths.count("files.example"); n != 2 {
		t.Fatalf("host watched %d times for two targets; want 2", n)
	}
	sub := ts.svc.Subscribe()
	defer sub.Close()
	paths.send(t, "files.example", pathDown)
	var got *PathEvent
	eventually(t, "a path event", func() bool {
		for _, ev := range sub.Take() {
			if ev.Type == EventPath {
				got = ev.Path
			}
		}
		return got != nil
	})
	if got.Host != "files.example" || got.Path != pathDown || len(got.CIDs) != 3 || got.CIDs[0] != "a1" || got.CIDs[2] != "b1" {
		t.Fatalf("path event = %+v", got)
	}
	for _, c := range []CID{"a1", "a2", "b1"} {
		if err := ts.svc.Unmanage(c); err != nil {
			t.Fatal(err)
		}
	}
	ts.waitForgotten()
	if n := paths.count("files.example"); n != 0 {
		t.Fatalf("host still watched %d times after every target was forgotten", n)
	}
}

func TestNoAttemptsWithoutAPathUntilTheCap(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths), withBackoff(time.Hour, time.Hour))
	a := specFor(t, nfsA)
	ts.manage("a", a)
	ts.waitConnected("a")
	paths.send(t, "files.example", pathDown)
	eventually(t, "a reports the link", func() bool { return ts.status("a").LastError == ErrNameLinkDown })

	// A second export on the same host, managed while the path is down,
	// knows it at once: no attempt is made, none is hung.
	b := specFor(t, "nfs://files.example/exports/b")
	ts.manage("b", b)
	eventually(t, "b waits for the path", func() bool {
		st := ts.status("b")
		return st.LastError == ErrNameLinkDown && !st.NextAttempt.IsZero()
	})
	ts.waitIdle(b.Target)
	if n := ts.be.count(b.Target, opConnect); n != 0 {
		t.Fatalf("Connect called %d times without a path; want 0", n)
	}
	paths.send(t, "files.example", pathUp)
	ts.waitConnected("b")
}

func TestAttemptsAtTheCapEvenWithoutAPath(t *testing.T) {
	paths := newFakePaths()
	ts := newTestService(t, withPaths(paths), withBackoff(time.Millisecond, 8*time.Millisecond))
	a := specFor(t, nfsA)
	ts.be.fail(a.Target, opConnect, NewConnError("ServerUnreachable", "no answer"))
	ts.manage("a", a)
	paths.send(t, "files.example", pathDown)
	// The path may be misjudged (policy routing, say): once the backoff
	// has reached its cap, real attempts go on.
	before := ts.be.count(a.Target, opConnect)
	eventually(t, "real attempts at the cap", func() bool { return ts.be.count(a.Target, opConnect) >= before+3 })
	ts.be.fail(a.Target, opConnect, nil)
	ts.waitConnected("a")
	// The connection outranks the path: it stays reported up.
	ts.svc.Poke(a.Target)
	ts.waitIdle(a.Target)
	if st := ts.status("a"); !st.Connected {
		t.Fatalf("connected despite the path, then reported %+v", st)
	}
}

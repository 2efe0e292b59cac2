// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// probingBackend is the fake backend plus reads through the connection
// (Prober), replacing a broken one (Healer) and server checks (Reacher).
type probingBackend struct {
	*fakeBackend
	pmu     sync.Mutex
	reads   map[TargetKey]*ConnError // the next reads' result (nil: they work)
	nreads  map[TargetKey]int
	heals   map[TargetKey]int
	answers error // what Reach returns
	nreach  int
	// stuckReach, if set, holds Reach until it is closed (a check sent
	// while the server was silent, still waiting), whatever its context.
	stuckReach chan struct{}
	hang       bool          // reads hang until their deadline
	reading    chan struct{} // gets a value when a read starts (if set)
}

func newProbingBackend(fb *fakeBackend) *probingBackend {
	return &probingBackend{fakeBackend: fb, reads: map[TargetKey]*ConnError{},
		nreads: map[TargetKey]int{}, heals: map[TargetKey]int{}}
}

func (b *probingBackend) Probe(ctx context.Context, spec Spec, obs Observation) ProbeResult {
	b.pmu.Lock()
	b.nreads[spec.Target]++
	hang, reading := b.hang, b.reading
	res := ProbeResult{Delay: 1500 * time.Microsecond, Err: b.reads[spec.Target]}
	b.pmu.Unlock()
	if reading != nil {
		reading <- struct{}{}
	}
	if hang {
		<-ctx.Done()
		return ProbeResult{Delay: time.Hour, Err: NewConnError(ErrNameIOTimeout, "no answer")}
	}
	return res
}

func (b *probingBackend) Heal(ctx context.Context, spec Spec, broken *ConnError) (Observation, error) {
	b.pmu.Lock()
	b.heals[spec.Target]++
	delete(b.reads, spec.Target) // a new mount reads fine
	b.pmu.Unlock()
	return b.Connect(ctx, spec)
}

func (b *probingBackend) Server(spec Spec) string { return spec.Host() }

func (b *probingBackend) Reach(ctx context.Context, spec Spec) error {
	b.pmu.Lock()
	b.nreach++
	answers, stuck := b.answers, b.stuckReach
	b.stuckReach = nil // only the next check is held
	b.pmu.Unlock()
	if stuck != nil {
		<-stuck
		return errors.New("no answer")
	}
	return answers
}

func (b *probingBackend) setRead(k TargetKey, err *ConnError) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	b.reads[k] = err
}

func (b *probingBackend) counts(k TargetKey) (reads, heals int) {
	b.pmu.Lock()
	defer b.pmu.Unlock()
	return b.nreads[k], b.heals[k]
}

func withProbing(pb **probingBackend) testConfig {
	return func(ts *testService) {
		*pb = newProbingBackend(ts.be)
		ts.opts.Backends = map[Kind]Backend{KindNFS: *pb, KindISCSI: *pb}
		ts.opts.Health = HealthPolicy{Interval: time.Hour, Timeout: time.Second}
	}
}

// A connection whose first read fails is never reported connected: the
// attempt counts failed, the connection is kept, and it is connected as
// soon as a read works.
func TestConnectedOnlyAfterARead(t *testing.T) {
	var pb *probingBackend
	ts := newTestService(t, withProbing(&pb))
	spec := specFor(t, "nfs://10.0.0.1/unreadable")
	pb.setRead(spec.Target, NewConnError(ErrNameIOError, "read /mnt/x: input/output error"))
	ts.manage("vm1", spec)
	eventually(t, "the failed read is reported", func() bool {
		st := ts.status("vm1")
		return st.LastError == ErrNameIOError && st.Attempts > 0
	})
	if st := ts.status("vm1"); st.Connected || st.LastProbe.IsZero() || st.ReadDelay != 1500*time.Microsecond {
		t.Fatalf("status after a failed read: %+v; want down, with the read's time and delay", st)
	}
	if ts.be.count(spec.Target, opDisconnect) != 0 {
		t.Fatal("an unreadable connection was torn down")
	}
	pb.setRead(spec.Target, nil)
	ts.svc.Poke(spec.Target)
	ts.waitConnected("vm1")
}

// A usable connection whose read finds a stale file handle is replaced
// (Heal) at once, with no client call, and connected again.
func TestStaleConnectionIsReplaced(t *testing.T) {
	var pb *probingBackend
	ts := newTestService(t, withProbing(&pb))
	spec := specFor(t, "nfs://10.0.0.1/stale")
	ts.manage("vm1", spec)
	ts.waitConnected("vm1")
	pb.setRead(spec.Target, NewConnError(ErrNameStale, "open /mnt/x: stale file handle"))
	ts.svc.Poke(spec.Target) // an event: read now
	eventually(t, "the stale mount is replaced and connected", func() bool {
		_, heals := pb.counts(spec.Target)
		return heals == 1 && ts.status("vm1").Connected
	})
	if ts.be.count(spec.Target, opDisconnect) != 0 {
		t.Fatal("a stale connection was disconnected instead of replaced")
	}
}

// Reads come every interval on the service's clock, and an event (a poke)
// reads at once; between them a usable target is not read.
func TestReadsEveryIntervalAndOnEvents(t *testing.T) {
	var pb *probingBackend
	clock := newFakeClock()
	ts := newTestService(t, withProbing(&pb), withClock(clock), func(ts *testService) {
		ts.opts.Health = HealthPolicy{Interval: 10 * time.Second, Timeout: time.Second}
	})
	spec := specFor(t, "nfs://10.0.0.1/periodic")
	ts.manage("vm1", spec)
	ts.waitConnected("vm1")
	ts.waitIdle(spec.Target)
	first, _ := pb.counts(spec.Target)
	clock.advance(time.Second)
	ts.waitIdle(spec.Target)
	if n, _ := pb.counts(spec.Target); n != first {
		t.Fatalf("reads 1 s after connect: %d, want %d (none before the interval)", n, first)
	}
	clock.advance(10 * time.Second)
	eventually(t, "a read at the interval", func() bool { n, _ := pb.counts(spec.Target); return n == first+1 })
	ts.svc.Poke(spec.Target)
	eventually(t, "a read on an event", func() bool { n, _ := pb.counts(spec.Target); return n == first+2 })
}

// downOnServer manages a target whose first attempt fails, with a
// backoff no test outlives, and whose server answers checks with
// answers; it returns once the attempt has failed.
func downOnServer(t *testing.T, answers error) (*testService, *probingBackend, *fakeClock, Spec) {
	t.Helper()
	var pb *probingBackend
	clock := newFakeClock()
	ts := newTestService(t, withProbing(&pb), withClock(clock), withBackoff(1000*time.Hour, 1000*time.Hour))
	spec := specFor(t, "nfs://10.0.0.1/back")
	pb.answers = answers
	ts.be.fail(spec.Target, opConnect, NewConnError("ServerUnreachable", "refused"))
	ts.manage("vm1", spec)
	eventually(t, "the first attempt failed", func() bool { return ts.status("vm1").Attempts == 1 })
	return ts, pb, clock, spec
}

// reconnects waits for vm1 to connect while checks run.
func reconnects(t *testing.T, ts *testService, clock *fakeClock, what string) {
	t.Helper()
	eventually(t, what, func() bool {
		clock.advance(reachEvery)
		return ts.status("vm1").Connected
	})
}

// A target that is down waits for its backoff; when its server, silent
// until now, answers the reachability check, it is tried at once.
func TestServerAnsweringAgainEndsTheBackoff(t *testing.T) {
	ts, pb, clock, spec := downOnServer(t, errors.New("connection refused"))
	clock.advance(reachEvery) // silent: a check that fails
	eventually(t, "the server was asked", func() bool { pb.pmu.Lock(); defer pb.pmu.Unlock(); return pb.nreach >= 1 })
	ts.waitIdle(spec.Target)
	ts.be.fail(spec.Target, opConnect, nil)
	pb.pmu.Lock()
	pb.answers = nil
	pb.pmu.Unlock()
	reconnects(t, ts, clock, "reconnected once the server answers, long before the backoff ends")
}

// A target that went down while its path was down (no check is made
// then) is tried at once when the path is back and its server answers the
// first check, whatever its backoff.
func TestServerAnsweringTheFirstCheckEndsTheBackoff(t *testing.T) {
	ts, _, clock, spec := downOnServer(t, nil)
	ts.waitIdle(spec.Target)
	ts.be.fail(spec.Target, opConnect, nil)
	reconnects(t, ts, clock, "reconnected once the server answers its first check")
}

// A check sent while the server was silent may wait long for its answer:
// it does not hold up the next one, and the server back is connected
// without waiting for it; its late failure changes nothing.
func TestSilentCheckDoesNotHoldUpTheNext(t *testing.T) {
	ts, pb, clock, spec := downOnServer(t, errors.New("connection refused"))
	clock.advance(reachEvery) // silent: a check that fails
	eventually(t, "the server was asked", func() bool { pb.pmu.Lock(); defer pb.pmu.Unlock(); return pb.nreach >= 1 })
	stuck := make(chan struct{})
	pb.pmu.Lock()
	pb.stuckReach = stuck
	asked := pb.nreach
	pb.pmu.Unlock()
	// Wait for the stuck check to start before the server comes back.
	eventually(t, "a check is held", func() bool {
		clock.advance(reachEvery)
		pb.pmu.Lock()
		defer pb.pmu.Unlock()
		return pb.stuckReach == nil && pb.nreach > asked
	})
	ts.waitIdle(spec.Target)
	ts.be.fail(spec.Target, opConnect, nil)
	pb.pmu.Lock()
	pb.answers = nil
	pb.pmu.Unlock()
	reconnects(t, ts, clock, "reconnected while the silent check still waits")
	close(stuck)
	clock.advance(reachEvery)
	ts.waitIdle(spec.Target)
	if st := ts.status("vm1"); !st.Connected {
		t.Fatalf("after the silent check failed late: %+v", st)
	}
}

// A read that hangs (a session in recovery queues its I/O) does not hold
// up what the event that came meanwhile says: the session failed is
// reported at once, not at the read's deadline.
func TestEventInterruptsAHungRead(t *testing.T) {
	var pb *probingBackend
	ts := newTestService(t, withProbing(&pb), func(ts *testService) {
		ts.opts.Health = HealthPolicy{Interval: time.Hour, Timeout: time.Hour}
	})
	spec := specFor(t, "iscsi://10.0.0.1/iqn.2026-01.org.example:hang")
	ts.manage("vm1", spec)
	ts.waitConnected("vm1")
	pb.pmu.Lock()
	pb.hang, pb.reading = true, make(chan struct{}, 1)
	reading := pb.reading
	pb.pmu.Unlock()
	ts.svc.Poke(spec.Target) // an event: a read, which hangs
	<-reading
	ts.be.lose(spec.Target, NewConnError("SessionFailed", "session 3 is FAILED"))
	ts.svc.Poke(spec.Target) // the session's state changed
	eventually(t, "the failed session is reported while the read still hangs", func() bool {
		return ts.status("vm1").LastError == "SessionFailed"
	})
}

// The reads of a hung server's targets hold at most probesPerServer of
// the service's slots: another server's target is still read, and
// connected, while they hang.
func TestHungServerLeavesSlotsForOthers(t *testing.T) {
	var pb *probingBackend
	ts := newTestService(t, withProbing(&pb), func(ts *testService) {
		ts.opts.Health = HealthPolicy{Interval: time.Hour, Timeout: time.Hour, MaxConcurrent: 3}
	})
	pb.pmu.Lock()
	pb.hang = true
	pb.pmu.Unlock()
	for i, export := range []string{"a", "b", "c", "d", "e"} {
		ts.manage(CID("hung-"+export), specFor(t, "nfs://10.0.0.1/"+export))
		_ = i
	}
	eventually(t, "the hung server's reads started", func() bool {
		pb.pmu.Lock()
		defer pb.pmu.Unlock()
		n := 0
		for _, c := range pb.nreads {
			n += c
		}
		return n >= probesPerServer
	})
	pb.pmu.Lock()
	pb.hang = false
	pb.pmu.Unlock()
	ts.manage("other", specFor(t, "nfs://10.0.0.2/x"))
	ts.waitConnected("other")
}

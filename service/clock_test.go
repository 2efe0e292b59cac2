// SPDX-License-Identifier: Apache-2.0

package service

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when the test says so; timers it
// passes fire then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// advance moves the clock by d and fires the timers it passes.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

// settle makes the host report k settling (or not).
func (b *fakeBackend) settle(k TargetKey, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.targetLocked(k).settling = on
}

// TestSettlingIsRiddenOut: a usable target whose looks find the same
// instance settling stays connected for settleGrace, on the service's
// clock, then is lost and reconnected. (Until the redesign, the iSCSI
// backend replayed an old observation for this, on the wall clock.)
func TestSettlingIsRiddenOut(t *testing.T) {
	clock := newFakeClock()
	ts := newTestService(t, withClock(clock))
	spec := specFor(t, iscsiA)
	ts.manage("a", spec)
	ts.waitConnected("a")
	ts.waitIdle(spec.Target)

	ts.be.settle(spec.Target, true)
	ts.svc.Poke(spec.Target)
	ts.waitIdle(spec.Target)
	clock.advance(settleGrace - time.Second)
	ts.waitIdle(spec.Target)
	if st := ts.status("a"); !st.Connected {
		t.Fatalf("settling for less than the grace: %+v; want connected", st)
	}
	if n := ts.be.count(spec.Target, opConnect); n != 1 {
		t.Fatalf("%d Connect calls; want the first only", n)
	}

	clock.advance(time.Second)
	eventually(t, "the connection is lost and tried again", func() bool { return ts.be.count(spec.Target, opConnect) == 2 })
}

// TestBackoffRunsOnTheServiceClock: the next attempt comes when the
// service's clock reaches it, not the wall clock's.
func TestBackoffRunsOnTheServiceClock(t *testing.T) {
	clock := newFakeClock()
	ts := newTestService(t, withClock(clock), withBackoff(time.Hour, time.Hour))
	spec := specFor(t, nfsA)
	ts.be.fail(spec.Target, opConnect, NewConnError("Refused", "no"))
	ts.manage("a", spec)
	eventually(t, "a first attempt", func() bool { return ts.be.count(spec.Target, opConnect) == 1 })
	ts.waitIdle(spec.Target)
	ts.be.fail(spec.Target, opConnect, nil)

	clock.advance(45 * time.Minute) // short of the hour less its jitter (-20 %: 48 min)
	ts.waitIdle(spec.Target)
	if n := ts.be.count(spec.Target, opConnect); n != 1 {
		t.Fatalf("%d attempts before the backoff ran out; want 1", n)
	}
	clock.advance(30 * time.Minute) // past the hour and its jitter (+20 %: 72 min)
	ts.waitConnected("a")
}

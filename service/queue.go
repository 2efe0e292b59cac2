// SPDX-License-Identifier: Apache-2.0

package service

import "time"

// queue is a target's place in the work queue: at most one pass in flight
// per target, pokes that arrive meanwhile coalesced into one more pass,
// and one timer, from the service's clock, for the next time it is due.
// Guarded by Service.mu.
type queue struct {
	dirty   bool // something changed since the pass last looked
	running bool // a pass is in flight
	timer   Timer
}

func (q *queue) stopTimer() {
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
}

// pokeLocked marks t for a re-check and makes sure a pass will do it: a
// runner takes t now if fewer than maxRunners run, else t waits its turn
// in the ready queue.
func (s *Service) pokeLocked(t *target) {
	t.queue.dirty = true
	if t.queue.running || !s.running || s.ctx.Err() != nil {
		return
	}
	t.queue.running = true
	if s.runq.runners < maxRunners {
		s.runq.runners++
		s.wg.Add(1)
		go s.runner(t)
		return
	}
	s.runq.ready = append(s.runq.ready, t)
	s.watchStallLocked()
}

// maxRunners bounds the runners (goroutines making passes): each one
// waiting for the lock holds a stack, and 20,000 targets poked at once
// (at start, or by a path report for their host) held 150 MB and kept
// the bus name from being owned for seconds. stallAfter: when no runner
// has taken a waiting target for that long (their backend calls hang),
// more runners start, so that hung calls never hold the others back for
// long (a variable for tests).
const maxRunners = 64

var stallAfter = 50 * time.Millisecond

// runQueue is the targets waiting for a runner, in order. Guarded by
// Service.mu.
type runQueue struct {
	ready   []*target
	runners int
	taken   uint64 // targets taken from ready, ever
	stall   *time.Timer
}

// runner makes passes over t until nothing is left to do, then takes the
// next target that waits, and exits when none does. Idle targets have
// no goroutine.
func (s *Service) runner(t *target) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if t.queue.dirty && s.ctx.Err() == nil {
			t.queue.dirty = false
			s.mu.Unlock()
			s.pass(t)
			continue
		}
		t.queue.running = false
		if s.ctx.Err() != nil {
			// Shutting down: the waiting targets will have no pass.
			for _, w := range s.runq.ready {
				w.queue.running = false
			}
			s.runq.ready = nil
		}
		if len(s.runq.ready) == 0 {
			s.runq.runners--
			s.mu.Unlock()
			return
		}
		t = s.runq.takeLocked()
		s.mu.Unlock()
	}
}

// stopStall stops watching for a stall, at shutdown (under Service.mu).
func (q *runQueue) stopStall() {
	if q.stall != nil {
		q.stall.Stop()
	}
}

func (q *runQueue) takeLocked() *target {
	t := q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	q.taken++
	return t
}

// watchStallLocked starts up to maxRunners runners more for each
// stallAfter in which no runner took a waiting target, while any waits:
// with every runner held by a hung server, the others still start within
// seconds. It uses the wall clock: it is about goroutines, not about
// when a target is due.
func (s *Service) watchStallLocked() {
	if s.runq.stall != nil {
		return
	}
	taken := s.runq.taken
	var check func()
	check = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.runq.ready) == 0 || s.ctx.Err() != nil {
			s.runq.stall = nil
			return
		}
		stalled := s.runq.taken == taken
		for n := 0; stalled && n < maxRunners && len(s.runq.ready) > 0; n++ {
			s.runq.runners++
			s.wg.Add(1)
			go s.runner(s.runq.takeLocked())
		}
		taken = s.runq.taken
		s.runq.stall = time.AfterFunc(stallAfter, check)
	}
	s.runq.stall = time.AfterFunc(stallAfter, check)
}

// armTimer pokes t at until (zero: never; only events do).
func (s *Service) armTimer(t *target, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armTimerLocked(t, until)
}

func (s *Service) armTimerLocked(t *target, until time.Time) {
	t.queue.stopTimer()
	if until.IsZero() {
		return
	}
	d := max(until.Sub(s.clock.Now()), 0)
	t.queue.timer = s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.targets[t.key] == t {
			s.pokeLocked(t)
		}
	})
}

// changedLocked tells subscribers and waiters that t's status changed.
func (s *Service) changedLocked(t *target) {
	s.wakeLocked(t)
	for c := range t.cids {
		s.publishLocked(Event{Type: EventChanged, CID: c})
	}
}

// wakeLocked wakes the Waits of t's CIDs to look again.
func (s *Service) wakeLocked(t *target) {
	close(t.changed)
	t.changed = make(chan struct{})
}

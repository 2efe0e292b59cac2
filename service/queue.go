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

// pokeLocked marks t for a re-check and makes sure a pass will do it.
func (s *Service) pokeLocked(t *target) {
	t.queue.dirty = true
	if t.queue.running || !s.running || s.ctx.Err() != nil {
		return
	}
	t.queue.running = true
	s.wg.Add(1)
	go s.run(t)
}

// run makes passes over t until nothing is left to do, then exits. Idle
// targets have no goroutine.
func (s *Service) run(t *target) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if !t.queue.dirty || s.ctx.Err() != nil {
			t.queue.running = false
			s.mu.Unlock()
			return
		}
		t.queue.dirty = false
		s.mu.Unlock()
		s.pass(t)
	}
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

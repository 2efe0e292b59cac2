// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"time"
)

// reachEvery is how often the server of a target that is down, with a
// usable path, is asked whether it answers (Reacher); reachTimeout bounds
// one question, and at most reachInFlight of them are in flight per
// server. Questions overlap: one asked while the server was silent waits
// for its deadline (a TCP SYN is sent again only after a second), while
// one asked a quarter of a second later, once the server is back, answers
// at once.
const (
	reachEvery    = 250 * time.Millisecond
	reachTimeout  = time.Second
	reachInFlight = 4
)

// reachState is what the checks of one server found.
type reachState struct {
	asking   int    // checks in flight
	asked    uint64 // checks started
	latest   uint64 // the latest check whose result is recorded
	answered bool   // that check got an answer
}

// reachKey names one server as one backend sees it.
type reachKey struct {
	kind   Kind
	server string
}

// reachLoop asks, every reachEvery, the server of every target that is
// wanted, down, and on a usable (or unknown) path, whether it answers; a
// server that answers (the first check, or after not answering) gets an
// attempt at once for each of its targets that is down, whatever their
// backoff. Storage that comes
// back without any link event (a server restarted, a route fixed upstream)
// is so connected within about a second, not at the end of a backoff.
func (s *Service) reachLoop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	s.reachTimer = s.clock.AfterFunc(reachEvery, func() {
		s.reachRound()
		s.reachLoop()
	})
}

// reachRound starts one check per server that has a target waiting.
func (s *Service) reachRound() {
	type check struct {
		key  reachKey
		r    Reacher
		spec Spec
		seq  uint64
	}
	// The walk over every target takes the read lock only: at 20,000
	// targets it must not hold Manage and the passes up four times a
	// second.
	type waiting struct {
		key  reachKey
		r    Reacher
		spec Spec
	}
	var found []waiting
	seen := make(map[reachKey]bool)
	s.mu.RLock()
	for _, t := range s.targets {
		if t.actual.usable || len(t.cids) == 0 || (t.pathKnown && !t.path.Usable) {
			continue
		}
		r, ok := s.opts.Backends[t.spec.Kind].(Reacher)
		if !ok {
			continue
		}
		k := reachKey{t.spec.Kind, r.Server(t.spec)}
		if !seen[k] {
			seen[k] = true
			found = append(found, waiting{k, r, t.spec})
		}
	}
	s.mu.RUnlock()
	var checks []check
	s.mu.Lock()
	for _, w := range found {
		st := s.reach[w.key]
		if st == nil {
			st = &reachState{}
			s.reach[w.key] = st
		}
		if st.asking < reachInFlight {
			st.asking++
			st.asked++
			checks = append(checks, check{w.key, w.r, w.spec, st.asked})
		}
	}
	for k, st := range s.reach {
		if !seen[k] && st.asking == 0 {
			delete(s.reach, k) // nothing waits on it any more
		}
	}
	s.mu.Unlock()
	for _, c := range checks {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, reachTimeout)
			err := c.r.Reach(ctx, c.spec)
			cancel()
			s.reached(c.key, c.seq, err)
		}()
	}
}

// reached records check seq; a server that answers after silence pokes
// every target on it that is down, for an attempt now. A check that ends
// after a later one is ignored: it says less about now.
func (s *Service) reached(k reachKey, seq uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.reach[k]
	if st == nil {
		return
	}
	st.asking--
	if seq < st.latest {
		return
	}
	st.latest = seq
	// The first answer counts too: a target that went down while its
	// path was down (no check is made then) has its server answering at
	// once when the path is back, and a server prober's earlier silence
	// (which Reach forgets) may be all that keeps it down.
	back := err == nil && !st.answered
	st.answered = err == nil
	if !back || s.ctx.Err() != nil {
		return
	}
	n := 0
	for _, t := range s.targets {
		if t.actual.usable || len(t.cids) == 0 || t.spec.Kind != k.kind {
			continue
		}
		if r, ok := s.opts.Backends[t.spec.Kind].(Reacher); !ok || r.Server(t.spec) != k.server {
			continue
		}
		t.force = true
		s.pokeLocked(t)
		n++
	}
	s.log.Info("server answers again; reconnecting", "server", k.server, "kind", string(k.kind), "targets", n)
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/storkeep/storkeep/logging"
)

// target is one real connection on the host and the CIDs that refer to it.
// All fields are guarded by Service.mu; each group has its writers.
type target struct {
	key       TargetKey
	spec      Spec           // settings to connect with: those of a CID that refers to it
	host      string         // the server or portal, for the path
	described map[string]any // from the backend's Describe, fixed

	// Desired state: written by Manage, Unmanage, UnmanagePrefix and the
	// state loader only.
	cids map[CID]*cidEntry
	// force asks the next pass for an attempt now, whatever the backoff:
	// written by Reconnect and by the path coming back, taken by the pass.
	force bool
	// recheck asks the next pass for a probe now: an event (the backend's
	// watcher, the path) may have changed what a read finds. Written by
	// Poke and pathChanged, taken by the pass.
	recheck bool
	// stopProbe ends the probe in flight (set while one runs): a release
	// need not wait for the read of a hung server, nor an event (a session
	// that failed, a path that went down) for a read that its cause holds
	// up. interrupted says an event did: the pass looks again.
	stopProbe   context.CancelFunc
	interrupted bool

	// Actual state: written by the target's pass only.
	actual actual

	// The network path to the host: written by pathChanged, and by the
	// pass when a connection proves it misjudged.
	path      Path
	pathKnown bool

	queue   queue
	changed chan struct{} // closed and replaced on every change (for Wait)
}

func (s *Service) newTarget(spec Spec) *target {
	t := &target{
		key:     spec.Target,
		spec:    spec,
		cids:    make(map[CID]*cidEntry),
		actual:  newActual(),
		host:    spec.Host(),
		changed: make(chan struct{}),
	}
	if s.opts.Paths != nil && t.host != "" {
		s.opts.Paths.Watch(t.host)
		// Another target on the same host knows the path already.
		if p, ok := s.hostPaths[t.host]; ok {
			t.path, t.pathKnown = p, true
		}
	}
	if d, ok := s.opts.Backends[spec.Kind].(Describer); ok {
		t.described = d.Describe(spec)
	}
	return t
}

// shared returns spec, or the target's own when it is the same: the CIDs
// of one target then share one parsed copy of its settings (with 100,000
// CIDs, five to an export, that was 17 MB). Specs are never changed once
// made, only replaced.
func (t *target) shared(spec Spec) Spec {
	if t.spec.Equal(spec) {
		return t.spec
	}
	return spec
}

// maxSteps bounds one pass. decide reaches a step that ends the pass in
// at most six (observe, record origin, lost, connect, report, wait); more
// means a rule loops, which is logged and ends the pass.
const maxSteps = 12

// pass is one reconcile of t: decide, carry out, and decide again until a
// step ends the pass. It holds no lock while a backend works.
func (s *Service) pass(t *target) {
	s.mu.Lock()
	be := s.opts.Backends[t.spec.Kind]
	force, recheck := t.force, t.recheck
	t.force, t.recheck = false, false
	s.mu.Unlock()
	var (
		look   *seen
		result *tried
		read   *ProbeResult
		// interruptible: an event may still cut a read short in this pass.
		interruptible = true
	)
	for step := 0; step < maxSteps; step++ {
		in := s.inputs(t, be, force, look, result)
		in.recheck, in.probe = recheck, read
		act := decide(in.inputs)
		if s.log.Enabled(s.ctx, slog.LevelDebug) {
			s.log.Debug("step", "target", string(t.key), "why", act.why)
		}
		switch act.kind {
		case doObserve:
			octx, cancel := context.WithTimeout(s.ctx, s.opts.ObserveTimeout)
			obs, err := be.Observe(octx, in.spec())
			cancel()
			if s.log.Enabled(s.ctx, slog.LevelDebug) {
				s.log.Debug("observed", "target", string(t.key), "connected", obs.Connected, "settling", obs.Settling, "obs_err", obs.Err, "err", err)
			}
			look = &seen{obs: obs, err: err}
			s.apply(t, func(a *actual) bool { a.observed(obs, err); return false })
		case doRecordOrigin:
			if err := s.recordOrigin(t, act.record); err != nil {
				s.report(t, failed(in.inputs, NewConnError("StateWrite", "%v", err), "origin record"))
				s.armTimer(t, s.nextAttempt(t))
				return
			}
		case doReport:
			s.report(t, act)
			if result != nil {
				// The attempt's outcome is recorded: what it found is
				// this pass's look from now on.
				if act.report == reportUsable {
					look = &seen{obs: act.obs}
				}
				result = nil
			}
			if act.report == reportFailed {
				force = false
			}
		case doProbe:
			obs := look.obs
			if result != nil {
				obs = result.obs
			}
			res, interrupted := s.probe(t, be.(Prober), in.spec(), obs, interruptible)
			if interrupted {
				// An event came while it read: what it found may be why
				// the read hung. Look again (once per pass).
				interruptible = false
				look, read = nil, nil
				continue
			}
			read = &res
		case doConnect, doHeal:
			s.apply(t, func(a *actual) bool { return a.attemptStarted(act.reset) })
			cctx, cancel := context.WithTimeout(context.WithValue(s.ctx, cidsKey{}, s.cidsOf(t)), s.opts.OpTimeout)
			var (
				obs Observation
				err error
			)
			if act.kind == doHeal {
				s.logPerCID(t, slog.LevelWarn, "connection broken; replacing it", logging.ConnectionLost.Attr(), "err", act.err)
				obs, err = be.(Healer).Heal(cctx, in.spec(), act.err)
			} else {
				obs, err = be.Connect(cctx, in.spec())
			}
			cancel()
			if err == nil && obs.Connected && in.pathKnown && !in.path.Usable {
				s.pathMisjudged(t)
			}
			result, read = &tried{obs: obs, err: err, heal: act.kind == doHeal}, nil
		case doDisconnect:
			if !s.startTeardown(t) {
				continue // managed again: decide again
			}
			dctx, cancel := context.WithTimeout(s.ctx, s.opts.OpTimeout)
			err := be.Disconnect(dctx, in.spec())
			cancel()
			if err != nil {
				s.log.Warn("disconnect failed; will retry", "target", string(t.key), "err", err)
			} else {
				s.log.Info("disconnected", "target", string(t.key))
			}
			result = &tried{disconnect: true, err: err}
		case doWait:
			s.armTimer(t, act.until)
			return
		case doNothing:
			s.armTimer(t, time.Time{})
			return
		case doHold:
			s.armTimer(t, time.Time{})
			return
		case doForget:
			s.forgetTarget(t, act.record)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
	}
	s.log.Error("reconcile did not settle; will look again at the next event", "target", string(t.key), "steps", maxSteps)
}

// inputs copies what decide needs, under the lock.
func (s *Service) inputs(t *target, be Backend, force bool, look *seen, result *tried) passInputs {
	_, canProbe := be.(Prober)
	_, canHeal := be.(Healer)
	s.mu.RLock()
	defer s.mu.RUnlock()
	in := passInputs{inputs: inputs{
		canProbe:  canProbe,
		canHeal:   canHeal,
		health:    s.opts.Health,
		wanted:    len(t.cids) > 0,
		held:      s.heldLocked(t.key),
		recordBad: s.recordBadLocked(t.key),
		force:     force,
		target:    t.key,
		kind:      t.spec.Kind,
		actual:    t.actual,
		path:      t.path,
		pathKnown: t.pathKnown,
		seen:      look,
		tried:     result,
		noBackend: be == nil,
		policy:    s.opts.Reconnect,
		now:       s.clock.Now(),
	}, specNow: t.spec}
	return in
}

// cidsOf returns the CIDs that refer to t, sorted, for the backend.
func (s *Service) cidsOf(t *target) []CID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]CID, 0, len(t.cids))
	for c := range t.cids {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// passInputs adds to decide's inputs what carrying out its step needs.
type passInputs struct {
	inputs
	specNow Spec
}

func (p passInputs) spec() Spec { return p.specNow }

// apply runs one writer of t's actual state, and tells subscribers and
// waiters when it changed what they see.
func (s *Service) apply(t *target, write func(a *actual) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if write(&t.actual) {
		s.changedLocked(t)
	}
}

// report carries out a doReport: one outcome into the actual state.
func (s *Service) report(t *target, act action) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &t.actual
	var changed bool
	switch act.report {
	case reportUsable:
		if a.restoring() {
			s.logPerCIDLocked(t, slog.LevelInfo, "connection restored", logging.ConnectionRestored.Attr())
		}
		changed = a.becameUsable(act.obs, now)
		if len(t.cids) == 0 {
			// Unmanaged while connecting: the release pass follows.
			t.queue.dirty = true
		}
	case reportSettling:
		changed = a.beganSettling(now)
	case reportLost:
		changed = a.lost(act.err, now)
		s.logPerCIDLocked(t, slog.LevelWarn, "connection lost", logging.ConnectionLost.Attr(), "err", act.err)
	case reportFailed:
		changed = a.failed(act.err, len(t.cids) > 0, act.backoff, act.until.Sub(now), now)
		s.log.Debug("attempt failed; next attempt scheduled", "target", string(t.key),
			"backoff", act.backoff, "in", act.until.Sub(now).Round(time.Millisecond), "err", act.err)
	case reportPathDown:
		if a.usable {
			s.logPerCIDLocked(t, slog.LevelWarn, "connection lost: network path down; keeping it for when the path is back",
				logging.ConnectionLost.Attr(), "err", act.err)
		}
		changed = a.pathIsDown(act.err, now)
	case reportBlamePath:
		changed = a.blamePath(act.err, now)
	case reportReschedule:
		changed = a.rescheduled(act.backoff, act.until)
	case reportNoBackend:
		changed = a.noBackend(act.err, now)
	case reportReason:
		changed = a.newReason(act.err, now)
	}
	if changed {
		s.changedLocked(t)
	}
}

// recordOrigin records, durably, whether storkeep found the target already
// there.
func (s *Service) recordOrigin(t *target, preexisting bool) error {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	s.mu.RLock()
	spec := t.spec
	s.mu.RUnlock()
	if err := s.store.PutTarget(spec, preexisting); err != nil {
		return err
	}
	s.apply(t, func(a *actual) bool { return a.originFound(preexisting) })
	if preexisting {
		s.log.Info("adopted a connection that was already there", "target", string(t.key))
	}
	return nil
}

func (s *Service) nextAttempt(t *target) time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return t.actual.next
}

// startTeardown marks t as being torn down, unless a Manage has claimed it
// since decide looked.
func (s *Service) startTeardown(t *target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(t.cids) > 0 || s.heldLocked(t.key) {
		return false
	}
	t.actual.disconnecting()
	s.changedLocked(t)
	return true
}

// forgetTarget drops a released target from memory and, if it has one, its
// record from disk, unless a Manage has claimed it again meanwhile.
func (s *Service) forgetTarget(t *target, hasRecord bool) {
	// A Manage that claims the key again after the target left the map
	// makes a new target, whose origin record waits for this removal.
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.mu.Lock()
	if len(t.cids) > 0 || s.targets[t.key] != t {
		s.mu.Unlock()
		return
	}
	delete(s.targets, t.key)
	t.queue.stopTimer()
	if s.opts.Paths != nil && t.host != "" {
		s.opts.Paths.Unwatch(t.host)
		if !s.hostUsedLocked(t.host) {
			delete(s.hostPaths, t.host)
		}
	}
	if !s.hostUsedLocked(t.host) {
		delete(s.serverSlots, t.host)
	}
	t.actual.gone()
	s.changedLocked(t)
	s.mu.Unlock()
	if f, ok := s.opts.Backends[t.spec.Kind].(Forgetter); ok {
		f.Forget(t.key)
	}
	if hasRecord {
		if err := s.store.DeleteTarget(t.key); err != nil {
			// The record stays; the next start retries the (no-op) release.
			s.log.Error("could not forget target record", "target", string(t.key), "err", err)
		}
	}
}

// logPerCID is logPerCIDLocked for a caller that holds no lock.
func (s *Service) logPerCID(t *target, level slog.Level, msg string, args ...any) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.logPerCIDLocked(t, level, msg, args...)
}

// logPerCIDLocked logs one line per CID of t (one with no CID when none
// refers to it), each with its "cid" and the "target", so that every CID's
// lines can be found by itself (journalctl CID=vm1-disk).
func (s *Service) logPerCIDLocked(t *target, level slog.Level, msg string, args ...any) {
	cids := make([]CID, 0, len(t.cids))
	for c := range t.cids {
		cids = append(cids, c)
	}
	slices.Sort(cids)
	if len(cids) == 0 {
		s.log.Log(context.Background(), level, msg, append([]any{"target", string(t.key)}, args...)...)
		return
	}
	for _, c := range cids {
		s.log.Log(context.Background(), level, msg, append([]any{"cid", string(c), "target", string(t.key)}, args...)...)
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"math/rand/v2"
	"reflect"
	"slices"
	"time"
)

// target is one real connection on the host and the CIDs that refer to it.
// Its actual-state fields are written only by its runner (from backend
// results); its cids only by Manage and Unmanage. All fields are guarded by
// Service.mu.
type target struct {
	key  TargetKey
	spec Spec // settings to connect with: those of a CID that refers to it
	cids map[CID]*cidEntry

	origin origin

	// Actual state.
	state          State
	connected      bool
	lastErr        *ConnError
	lastErrTime    time.Time
	connectedSince time.Time
	attempts       uint32 // since the last success
	nextAttempt    time.Time
	backoff        time.Duration  // the delay used for nextAttempt
	info           map[string]any // from the last observation that connected
	described      map[string]any // from the backend's Describe, fixed

	// The network path to the target's host, from the PathWatcher.
	host      string
	path      Path
	pathKnown bool

	// Runner bookkeeping: at most one runner per target at a time.
	dirty   bool // something changed since the runner last looked
	running bool
	force   bool // an attempt now, whatever the backoff (Reconnect)
	timer   *time.Timer
	changed chan struct{} // closed and replaced on every change (for Wait)
}

func (s *Service) newTarget(spec Spec) *target {
	t := &target{
		key:     spec.Target,
		spec:    spec,
		cids:    make(map[CID]*cidEntry),
		state:   StateConnecting,
		changed: make(chan struct{}),
		host:    spec.Host(),
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

func (t *target) resetBackoff() {
	t.backoff = 0
	t.nextAttempt = time.Time{}
}

func (p ReconnectPolicy) withDefaults() ReconnectPolicy {
	if p.Initial <= 0 {
		p.Initial = time.Second
	}
	if p.Max <= 0 {
		p.Max = 60 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		p.Jitter = 0
	} else if p.Jitter == 0 {
		p.Jitter = 0.2
	}
	return p
}

// next returns the delay after prev (0 for the first failure), doubled up
// to the cap, with jitter so that many targets don't retry in lockstep.
// It never falls below Initial, which a reload may have raised above prev.
func (p ReconnectPolicy) next(prev time.Duration) time.Duration {
	if prev <= 0 {
		return p.Initial
	}
	return max(min(prev*2, p.Max), p.Initial)
}

// SetReconnectPolicy replaces the retry policy, for a configuration
// reload. Each target's next failure uses it. A target already waiting
// longer than the new cap (with jitter) is rescheduled within it at once,
// so that lowering max_backoff does not leave an attempt an hour away.
func (s *Service) SetReconnectPolicy(p ReconnectPolicy) {
	p = p.withDefaults()
	longest := time.Duration(float64(p.Max) * (1 + p.Jitter))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Reconnect = p
	now := s.now()
	for _, t := range s.targets {
		t.backoff = min(t.backoff, p.Max)
		if !t.nextAttempt.IsZero() && t.nextAttempt.Sub(now) > longest {
			t.nextAttempt = now.Add(p.jittered(t.backoff))
			s.armTimerLocked(t)
			s.changedLocked(t)
		}
	}
}

func (p ReconnectPolicy) jittered(d time.Duration) time.Duration {
	if p.Jitter == 0 {
		return d
	}
	f := 1 - p.Jitter + 2*p.Jitter*rand.Float64()
	return time.Duration(float64(d) * f)
}

// pokeLocked marks t for a re-check and makes sure a runner will do it.
// Pokes that arrive while the runner works coalesce into one more pass.
func (s *Service) pokeLocked(t *target) {
	t.dirty = true
	if t.running || !s.running || s.ctx.Err() != nil {
		return
	}
	t.running = true
	s.wg.Add(1)
	go s.run(t)
}

// changedLocked tells subscribers and waiters that t's status changed.
func (s *Service) changedLocked(t *target) {
	close(t.changed)
	t.changed = make(chan struct{})
	for c := range t.cids {
		s.publishLocked(Event{Type: EventChanged, CID: c})
	}
}

// run is a target's runner: it reconciles until nothing is left to do,
// then exits. Idle targets have no goroutine.
func (s *Service) run(t *target) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if !t.dirty || s.ctx.Err() != nil {
			t.running = false
			s.mu.Unlock()
			return
		}
		t.dirty = false
		s.mu.Unlock()
		s.reconcile(t)
	}
}

// snapshot is what one reconcile pass decides on.
type snapshot struct {
	spec   Spec
	wanted bool
	origin origin
	due    bool // the backoff allows an attempt now (or Reconnect asked for one)
	was    bool // connected before this pass
	cids   []CID
	// pathDown: the network path to the target's host is known to be
	// unusable (path says why).
	pathDown bool
	path     Path
	backoff  time.Duration // the delay before this attempt
	// maxBackoff is the policy's cap when the snapshot was taken (a
	// reload may change the policy).
	maxBackoff time.Duration
}

func (s *Service) snapshot(t *target) snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := snapshot{
		spec:   t.spec,
		wanted: len(t.cids) > 0,
		origin: t.origin,
		due:    t.force || !s.now().Before(t.nextAttempt),
		was:    t.connected,
	}
	sn.pathDown = t.pathKnown && !t.path.Usable
	sn.path = t.path
	sn.backoff = t.backoff
	sn.maxBackoff = s.opts.Reconnect.Max
	for c := range t.cids {
		sn.cids = append(sn.cids, c)
	}
	slices.Sort(sn.cids)
	t.force = false
	return sn
}

// reconcile makes one pass: observe the host, then connect, disconnect or
// wait, depending on the desired state.
func (s *Service) reconcile(t *target) {
	sn := s.snapshot(t)
	be := s.opts.Backends[sn.spec.Kind]
	if be == nil {
		s.noBackend(t, sn)
		return
	}

	octx, cancel := context.WithTimeout(s.ctx, s.opts.ObserveTimeout)
	obs, oerr := be.Observe(octx, sn.spec)
	cancel()
	if s.ctx.Err() != nil {
		return
	}

	if !sn.wanted {
		s.release(t, sn, be, obs, oerr)
		return
	}

	if sn.origin == originUnknown && oerr == nil {
		// First look since the target was managed: what is there already
		// is adopted and never torn down by storkeep.
		if !s.decideOrigin(t, sn.spec, obs.Present) {
			return
		}
	}
	if sn.pathDown && (oerr != nil || obs.Present) {
		// Nothing can reach the host: the connection is down whatever it
		// looks like (the kernel may not have noticed yet), but kept. The
		// path coming back wakes the target; no attempt before then.
		s.setPathDown(t, sn.path)
		return
	}
	if oerr == nil && obs.Connected {
		s.setConnected(t, obs)
		return
	}
	if sn.was {
		lost := obs.Err
		if lost == nil {
			lost = NewConnError(ErrNameLost, "%s went away", sn.spec.Target)
			if oerr != nil {
				lost = connErrorOf(oerr)
			}
		}
		s.setDown(t, lost)
	}
	if !sn.due {
		if sn.pathDown {
			s.notePathDown(t, sn.path)
		}
		s.armTimer(t)
		return
	}
	if sn.origin == originUnknown && oerr != nil {
		// The host could not be read: don't claim a connection that may
		// already be there. Retry the observation later.
		s.setFailed(t, connErrorOf(oerr))
		return
	}
	if sn.pathDown && sn.backoff < sn.maxBackoff {
		// With no path, an attempt fails, or hangs until its deadline and
		// holds up the one the path's return triggers. Count it failed
		// without touching the host. Once the backoff reaches its cap the
		// attempt is made anyway, in case the path was misjudged.
		s.setFailed(t, NewConnError(pathError(sn.path).Name,
			"%s: waiting for the path to come back (and trying every %s anyway)", sn.path.Detail, sn.maxBackoff))
		return
	}

	s.setConnecting(t)
	cctx, cancel := context.WithTimeout(context.WithValue(s.ctx, cidsKey{}, sn.cids), s.opts.OpTimeout)
	obs, err := be.Connect(cctx, sn.spec)
	cancel()
	if s.ctx.Err() != nil {
		return
	}
	if err == nil && obs.Connected {
		if sn.pathDown {
			s.pathMisjudged(t)
		}
		s.setConnected(t, obs)
		return
	}
	if err == nil {
		err = obs.Err
		if obs.Err == nil {
			err = NewConnError(ErrNameFailed, "connected, but %s is not usable", sn.spec.Target)
		}
	}
	ce := connErrorOf(err)
	if sn.pathDown {
		// Say what the root cause is; the attempt's own words follow.
		ce = NewConnError(pathError(sn.path).Name, "%s (last attempt: %v)", sn.path.Detail, ce)
	}
	s.setFailed(t, ce)
}

// decideOrigin records, durably, whether storkeep found the target already
// there. It reports false if the record could not be written.
func (s *Service) decideOrigin(t *target, spec Spec, present bool) bool {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	if err := s.store.PutTarget(spec, present); err != nil {
		s.setFailed(t, NewConnError("StateWrite", "%v", err))
		return false
	}
	s.mu.Lock()
	t.origin = originOurs
	if present {
		t.origin = originPreexisting
		s.log.Info("adopted a connection that was already there", "target", string(t.key))
	}
	s.changedLocked(t)
	s.mu.Unlock()
	return true
}

// release handles a target no CID refers to: tear it down if storkeep made
// it, leave it otherwise, and forget it once done.
func (s *Service) release(t *target, sn snapshot, be Backend, obs Observation, oerr error) {
	if sn.origin != originOurs {
		s.forgetTarget(t, sn.origin == originPreexisting)
		return
	}
	if oerr == nil && !obs.Present {
		s.forgetTarget(t, true)
		return
	}
	if !sn.due {
		s.armTimer(t)
		return
	}
	s.mu.Lock()
	if len(t.cids) > 0 {
		// Managed again since the snapshot: the next pass keeps it.
		s.mu.Unlock()
		return
	}
	t.state = StateDisconnecting
	t.connected = false // being torn down: not usable, whatever the outcome
	t.connectedSince = time.Time{}
	s.changedLocked(t)
	s.mu.Unlock()
	dctx, cancel := context.WithTimeout(s.ctx, s.opts.OpTimeout)
	err := be.Disconnect(dctx, sn.spec)
	cancel()
	if s.ctx.Err() != nil {
		return
	}
	if err != nil {
		s.log.Warn("disconnect failed; will retry", "target", string(t.key), "err", err)
		s.setFailed(t, connErrorOf(err))
		return
	}
	s.log.Info("disconnected", "target", string(t.key))
	s.forgetTarget(t, true)
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
	if t.timer != nil {
		t.timer.Stop()
	}
	if s.opts.Paths != nil && t.host != "" {
		s.opts.Paths.Unwatch(t.host)
		if !s.hostUsedLocked(t.host) {
			delete(s.hostPaths, t.host)
		}
	}
	t.connected = false
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

func (s *Service) noBackend(t *target, sn snapshot) {
	if !sn.wanted {
		s.forgetTarget(t, sn.origin != originUnknown)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.lastErr != nil && t.lastErr.Name == ErrNameNoBackend {
		return
	}
	t.state = StateRetrying
	t.lastErr = NewConnError(ErrNameNoBackend, "this daemon has no %s backend", sn.spec.Kind)
	t.lastErrTime = s.now()
	s.changedLocked(t)
}

func (s *Service) setConnecting(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.state = StateConnecting
	t.attempts++
	t.nextAttempt = time.Time{}
	s.changedLocked(t)
}

func (s *Service) setConnected(t *target, obs Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(t.cids) == 0 {
		// Unmanaged while connecting: the release pass follows.
		t.dirty = true
	}
	if t.connected && t.state == StateConnected && infoEqual(t.info, obs.Info) {
		return
	}
	if !t.connected {
		t.connectedSince = s.now()
	}
	t.connected = true
	t.state = StateConnected
	t.attempts = 0
	t.resetBackoff()
	t.lastErr = nil
	t.lastErrTime = time.Time{}
	t.info = obs.Info
	if t.timer != nil {
		t.timer.Stop()
	}
	s.changedLocked(t)
}

// setDown records that a connection that was up is down, without
// scheduling anything.
func (s *Service) setDown(t *target, err *ConnError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.connected = false
	t.connectedSince = time.Time{}
	t.state = StateRetrying
	t.lastErr = err
	t.lastErrTime = s.now()
	s.changedLocked(t)
	s.log.Warn("connection lost", "target", string(t.key), "err", err)
}

// setFailed records a failed attempt and schedules the next one.
func (s *Service) setFailed(t *target, err *ConnError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.connected = false
	t.connectedSince = time.Time{}
	if len(t.cids) > 0 {
		t.state = StateRetrying
	} else {
		t.state = StateDisconnecting
	}
	t.lastErr = err
	t.lastErrTime = s.now()
	t.backoff = s.opts.Reconnect.next(t.backoff)
	t.nextAttempt = s.now().Add(s.opts.Reconnect.jittered(t.backoff))
	s.armTimerLocked(t)
	s.changedLocked(t)
	s.log.Debug("attempt failed; next attempt scheduled", "target", string(t.key),
		"backoff", t.backoff, "in", t.nextAttempt.Sub(s.now()).Round(time.Millisecond), "err", err)
}

func (s *Service) armTimer(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armTimerLocked(t)
}

// armTimerLocked pokes t at its next attempt.
func (s *Service) armTimerLocked(t *target) {
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.nextAttempt.IsZero() {
		return
	}
	d := t.nextAttempt.Sub(s.now())
	if d < 0 {
		d = 0
	}
	t.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.targets[t.key] == t {
			s.pokeLocked(t)
		}
	})
}

// infoEqual reports whether two observations' info maps are the same
// (nil and empty are).
func infoEqual(a, b map[string]any) bool {
	return (len(a) == 0 && len(b) == 0) || reflect.DeepEqual(a, b)
}

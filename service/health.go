// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"hash/fnv"
	"log/slog"
	"time"
)

// HealthPolicy says how connections are proven usable (see Prober).
type HealthPolicy struct {
	// Interval: each usable target is probed this often (default 5 s),
	// spread over the interval by target.
	Interval time.Duration
	// Timeout is one probe's deadline (default 5 s): past it the target
	// is down with ErrNameIOTimeout.
	Timeout time.Duration
	// MaxConcurrent bounds the probes in flight (default 8). A hung
	// target holds at most one slot, until its deadline.
	MaxConcurrent int
}

func (p HealthPolicy) withDefaults() HealthPolicy {
	if p.Interval <= 0 {
		p.Interval = 5 * time.Second
	}
	if p.Timeout <= 0 {
		p.Timeout = 5 * time.Second
	}
	if p.MaxConcurrent <= 0 {
		p.MaxConcurrent = 8
	}
	return p
}

// nextProbe is when a target last probed at `at` is due again: a little
// before the interval ends, by an amount fixed per target, so that targets
// probed together at start drift apart instead of probing in step.
func (p HealthPolicy) nextProbe(key TargetKey, at time.Time) time.Time {
	h := fnv.New32a()
	h.Write([]byte(key))
	early := time.Duration(uint64(p.Interval/10) * uint64(h.Sum32()%1000) / 1000)
	return at.Add(p.Interval - early)
}

// SetHealthPolicy replaces the probe policy, for a configuration reload.
// Targets use it from their next probe on.
func (s *Service) SetHealthPolicy(p HealthPolicy) {
	p = p.withDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.MaxConcurrent != s.opts.Health.MaxConcurrent {
		s.probeSlots = make(chan struct{}, p.MaxConcurrent)
	}
	s.opts.Health = p
	for _, t := range s.targets {
		if t.actual.usable {
			s.pokeLocked(t) // rescheduled on the new interval
		}
	}
}

// probesPerServer bounds the reads in flight to one server (host), so
// that the targets of a hung server, each read waiting for its deadline,
// hold at most this many of the MaxConcurrent slots: the others' reads go
// on. A read's deadline starts once it has its slots.
const probesPerServer = 2

// probe runs one backend probe of t, within a slot of its server and one
// of the service, and the policy's deadline. It records the result's time
// and delay, which clients read (ReadDelay, LastProbe) without a change
// signal per probe. With interruptible, an event about t (Poke, a path
// change) ends the read, or the wait for a slot, at once and probe
// reports interrupted: the result means nothing. A release ends it too.
func (s *Service) probe(t *target, pr Prober, spec Spec, obs Observation, interruptible bool) (_ ProbeResult, interrupted bool) {
	wait, stop := context.WithCancel(s.ctx)
	defer stop()
	s.mu.Lock()
	slots, pol := s.probeSlots, s.opts.Health
	server := s.serverSlotsLocked(t.host)
	t.stopProbe, t.interrupted = stop, false
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		t.stopProbe = nil
		interrupted = interrupted || (interruptible && t.interrupted)
		t.interrupted = false
		s.mu.Unlock()
	}()
	called := time.Now()
	var slotted time.Time
	res := func() ProbeResult {
		// Reads queue for their server's slots: a read of a hung server
		// ends at its deadline, so the queue moves; a busy server's reads
		// are late, never failed for waiting.
		select {
		case server <- struct{}{}:
		case <-wait.Done():
			return ProbeResult{Err: NewConnError(ErrNameIOTimeout, "stopped")}
		}
		defer func() { <-server }()
		select {
		case slots <- struct{}{}:
		case <-wait.Done():
			return ProbeResult{Err: NewConnError(ErrNameIOTimeout, "stopped")}
		}
		defer func() { <-slots }()
		slotted = time.Now()
		ctx, cancel := context.WithTimeout(wait, pol.Timeout)
		defer cancel()
		return pr.Probe(ctx, spec, obs)
	}()
	s.mu.RLock()
	interrupted = interruptible && t.interrupted
	s.mu.RUnlock()
	if s.log.Enabled(s.ctx, slog.LevelDebug) && !slotted.IsZero() {
		// Where a read's time went: waiting for slots, and the backend's
		// call around the read itself (Delay).
		s.log.Debug("read", "target", string(t.key), "slots", slotted.Sub(called), "call", time.Since(slotted),
			"delay", res.Delay, "interrupted", interrupted)
	}
	if interrupted || s.ctx.Err() != nil {
		return res, interrupted
	}
	now := s.clock.Now()
	s.apply(t, func(a *actual) bool { return a.probed(res, now) })
	if res.Err != nil {
		s.log.Debug("probe failed", "target", string(t.key), "err", res.Err, "delay", res.Delay)
	} else {
		s.log.Debug("probe worked", "target", string(t.key), "delay", res.Delay)
	}
	return res, false
}

// serverSlotsLocked returns the slots of host's reads (probesPerServer).
func (s *Service) serverSlotsLocked(host string) chan struct{} {
	c := s.serverSlots[host]
	if c == nil {
		c = make(chan struct{}, probesPerServer)
		s.serverSlots[host] = c
	}
	return c
}

// interruptProbeLocked ends t's read in flight, if any, for an event that
// may explain why it hangs.
func (t *target) interruptProbeLocked() {
	if t.stopProbe != nil {
		t.interrupted = true
		t.stopProbe()
	}
}

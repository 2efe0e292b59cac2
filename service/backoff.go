// SPDX-License-Identifier: Apache-2.0

package service

import (
	"math/rand/v2"
	"time"
)

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

func (p ReconnectPolicy) jittered(d time.Duration) time.Duration {
	if p.Jitter == 0 {
		return d
	}
	f := 1 - p.Jitter + 2*p.Jitter*rand.Float64()
	return time.Duration(float64(d) * f)
}

// SetReconnectPolicy replaces the retry policy, for a configuration
// reload. Each target's next failure uses it. A target waiting longer
// than the new cap (with jitter) is poked, and its pass reschedules it
// within the cap, so that lowering max_backoff does not leave an attempt
// an hour away.
func (s *Service) SetReconnectPolicy(p ReconnectPolicy) {
	p = p.withDefaults()
	longest := time.Duration(float64(p.Max) * (1 + p.Jitter))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Reconnect = p
	now := s.clock.Now()
	for _, t := range s.targets {
		if t.actual.next.Sub(now) > longest {
			s.pokeLocked(t)
		}
	}
}

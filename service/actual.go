// SPDX-License-Identifier: Apache-2.0

package service

import (
	"reflect"
	"time"
)

// presence is what the host was last seen to hold for a target.
type presence int

const (
	// presenceUncertain: not looked at yet, or the last look failed or
	// timed out. Never read as "absent".
	presenceUncertain presence = iota
	presenceAbsent
	presencePresent
)

// origin says whether storkeep may tear a target down.
type origin int

const (
	originUnknown     origin = iota // not yet observed since it was first managed
	originOurs                      // storkeep connects it, and disconnects it when released
	originPreexisting               // it was there before: adopted, never torn down
)

// actual is what storkeep knows of one target on the host. Only the
// target's pass writes it, through the methods below, each carrying out
// one outcome that decide chose; everyone else reads it under Service.mu.
// Each method reports whether anything a client sees changed.
type actual struct {
	presence presence
	usable   bool
	origin   origin
	state    State
	lastErr  *ConnError
	errAt    time.Time
	since    time.Time // usable since
	attempts uint32    // since the last success
	backoff  time.Duration
	next     time.Time      // the next attempt; zero when none is scheduled
	info     map[string]any // from the last observation that was usable
	// pathDown: down because the network path is not usable, with no
	// attempt scheduled; the path's return pokes the target.
	pathDown bool
	// instance is Observation.Instance of the last usable look, and
	// settling when a look of that same instance began to find it
	// settling (see Observation.Settling).
	instance string
	settling time.Time
	// lostOnce: it was usable and went down since it last was, so that
	// its return is logged as "connection restored".
	lostOnce bool
	// The last read through it (Prober): when, and how long it took.
	probedAt  time.Time
	readDelay time.Duration
}

func newActual() actual { return actual{state: StateConnecting} }

// observed records what a look at the host found (err: the look failed).
func (a *actual) observed(obs Observation, err error) {
	switch {
	case err != nil:
		a.presence = presenceUncertain
	case obs.Present:
		a.presence = presencePresent
	default:
		a.presence = presenceAbsent
	}
}

// originFound records whether the target was there before storkeep.
func (a *actual) originFound(preexisting bool) bool {
	a.origin = originOurs
	if preexisting {
		a.origin = originPreexisting
	}
	return true
}

// becameUsable records a look or an attempt that found the target usable.
func (a *actual) becameUsable(obs Observation, now time.Time) bool {
	a.settling = time.Time{}
	a.instance = obs.Instance
	a.lostOnce = false
	if a.usable && a.state == StateConnected && infoEqual(a.info, obs.Info) {
		return false
	}
	if !a.usable {
		a.since = now
	}
	a.usable = true
	a.state = StateConnected
	a.attempts = 0
	a.backoff = 0
	a.next = time.Time{}
	a.lastErr = nil
	a.errAt = time.Time{}
	a.pathDown = false
	a.info = obs.Info
	return true
}

// probed records a read through the target. It changes nothing a client
// is told of by a signal: ReadDelay and LastProbe are read, not followed.
func (a *actual) probed(res ProbeResult, now time.Time) bool {
	a.probedAt, a.readDelay = now, res.Delay
	return false
}

// beganSettling records when a usable target's look first found it
// settling; it stays usable meanwhile.
func (a *actual) beganSettling(now time.Time) bool {
	a.settling = now
	return false
}

// lost records that a usable target is not any more, without scheduling
// anything: the attempt that follows does.
func (a *actual) lost(err *ConnError, now time.Time) bool {
	a.down(err, now)
	a.state = StateRetrying
	return true
}

// attemptStarted records an attempt to connect; reset starts the backoff
// over (an attempt asked for, or the path back).
func (a *actual) attemptStarted(reset bool) bool {
	if reset {
		a.backoff = 0
	}
	a.state = StateConnecting
	a.attempts++
	a.next = time.Time{}
	a.pathDown = false
	return true
}

// failed records a failed attempt (or one counted failed without being
// made) and schedules the next at delay, which the caller drew from the
// policy after backoff.
func (a *actual) failed(err *ConnError, wanted bool, backoff, delay time.Duration, now time.Time) bool {
	a.down(err, now)
	a.state = StateRetrying
	if !wanted {
		a.state = StateDisconnecting
	}
	a.backoff = backoff
	a.next = now.Add(delay)
	return true
}

// pathIsDown records a target whose network path is not usable: down,
// kept, and no attempt until the path comes back.
func (a *actual) pathIsDown(err *ConnError, now time.Time) bool {
	a.down(err, now)
	a.state = StateRetrying
	a.next = time.Time{}
	a.pathDown = true
	return true
}

// blamePath names the path as the reason a target waiting for its next
// attempt is down, keeping the schedule.
func (a *actual) blamePath(err *ConnError, now time.Time) bool {
	a.lastErr, a.errAt = err, now
	return true
}

// newReason records why a target that is down is down now, keeping
// everything else (a read that found Stale where the last said IOTimeout).
func (a *actual) newReason(err *ConnError, now time.Time) bool {
	a.lastErr, a.errAt = err, now
	return true
}

// rescheduled moves the next attempt (a reload lowered the backoff cap).
func (a *actual) rescheduled(backoff time.Duration, next time.Time) bool {
	a.backoff, a.next = backoff, next
	return true
}

// noBackend records that this daemon cannot connect the target's kind.
func (a *actual) noBackend(err *ConnError, now time.Time) bool {
	if a.lastErr != nil && a.lastErr.Name == err.Name && a.state == StateRetrying {
		return false
	}
	a.down(err, now)
	a.state = StateRetrying
	return true
}

// disconnecting records that a teardown is under way.
func (a *actual) disconnecting() bool {
	a.usable = false
	a.since = time.Time{}
	a.state = StateDisconnecting
	return true
}

// gone records that the target left memory (released).
func (a *actual) gone() bool {
	a.usable = false
	return true
}

// restoring reports whether a look that finds the target usable now
// restores a connection that was lost (not a first connect).
func (a *actual) restoring() bool { return !a.usable && a.lostOnce }

func (a *actual) down(err *ConnError, now time.Time) {
	a.lostOnce = a.lostOnce || a.usable
	a.usable = false
	a.since = time.Time{}
	a.settling = time.Time{}
	a.lastErr, a.errAt = err, now
}

// infoEqual reports whether two observations' info maps are the same
// (nil and empty are).
func infoEqual(a, b map[string]any) bool {
	return (len(a) == 0 && len(b) == 0) || reflect.DeepEqual(a, b)
}

// SPDX-License-Identifier: Apache-2.0

package service

import "time"

// settleGrace is how long a usable target stays usable while its looks
// find the same kernel object settling (Observation.Settling): udev
// re-creating an iSCSI LUN's by-path link after a session recovered, say.
const settleGrace = 10 * time.Second

// inputs is everything decide looks at: a copy, taken under Service.mu.
type inputs struct {
	// Desired state.
	wanted bool // CIDs refer to the target
	held   bool // a state file that did not load may refer to it: never torn down
	force  bool // an attempt now, whatever the backoff (Reconnect, path back)
	// recheck: an event may have changed what a read through it finds.
	recheck bool
	// recordBad: the target's own record file did not load; it is left
	// for the admin, not overwritten.
	recordBad bool

	target TargetKey
	kind   Kind

	actual actual

	// The network path to the target's host.
	path      Path
	pathKnown bool

	// This pass so far: nil until it has looked / tried / read.
	seen  *seen
	tried *tried
	probe *ProbeResult

	noBackend bool
	canProbe  bool // the backend is a Prober: usable means a read worked
	canHeal   bool // the backend is a Healer
	policy    ReconnectPolicy
	health    HealthPolicy
	now       time.Time
}

// seen is one look at the host, made in this pass.
type seen struct {
	obs Observation
	err error
}

// tried is the result of one Connect or Disconnect, made in this pass.
type tried struct {
	disconnect bool
	heal       bool // a Heal, not a Connect
	obs        Observation
	err        error
}

type actionKind int

const (
	doNothing      actionKind = iota // nothing until the next poke
	doObserve                        // look at the host
	doProbe                          // read through the connection (Prober)
	doHeal                           // replace a broken connection (Healer)
	doRecordOrigin                   // record durably whether it was there before (preexisting)
	doConnect                        // make the connection (reset: backoff starts over)
	doDisconnect                     // tear it down
	doWait                           // nothing until `until` (or a poke)
	doReport                         // record an outcome in the actual state (report), then decide again
	doHold                           // released but held: kept, untouched, until the hold lifts
	doForget                         // drop the target from memory (and its record when record is set)
)

// report names the outcome a doReport records.
type report int

const (
	reportUsable     report = iota // obs found it usable
	reportSettling                 // usable, its look settling: the grace starts now
	reportLost                     // it was usable and is not (err)
	reportFailed                   // an attempt failed, or counts failed (err): schedule the next
	reportPathDown                 // down for its path (err), nothing scheduled
	reportBlamePath                // waiting for the next attempt; the path is the reason (err)
	reportReschedule               // the next attempt moves to until (backoff)
	reportNoBackend                // no backend for its kind (err)
	reportReason                   // down, for another reason than it said (err); nothing else changes
)

// action is what decide chose; the pass carries it out.
type action struct {
	kind    actionKind
	report  report
	until   time.Time
	err     *ConnError
	obs     Observation
	record  bool // doRecordOrigin: preexisting; doForget: remove the target record
	reset   bool // doConnect: the backoff starts over
	backoff time.Duration
	why     string // for the log and for tests
}

// decide is the whole of storkeep's judgement about one target: given the
// desired state, what is known of the host and the path, and the time, it
// names the one next step. It does no I/O and keeps no state; the pass
// calls it again after every step that taught it something, until the
// step is one that ends the pass.
//
// Its rules, in order, say how doubt is handled: nothing is torn down
// unless the target is unwanted, not held, and storkeep made it; a failed
// look is "uncertain", never "absent".
func decide(in inputs) action {
	a := &in.actual
	if in.noBackend {
		if !in.wanted && !in.held {
			return action{kind: doForget, record: a.origin != originUnknown, why: "released, no backend"}
		}
		if in.wanted && a.lastErr != nil && a.lastErr.Name == ErrNameNoBackend {
			return action{kind: doNothing, why: "no backend, already said"}
		}
		if in.wanted {
			return action{kind: doReport, report: reportNoBackend, why: "no backend",
				err: NewConnError(ErrNameNoBackend, "this daemon has no %s backend", in.kind)}
		}
		return action{kind: doHold, why: "held, no backend"}
	}
	if in.tried != nil && in.tried.disconnect {
		if in.wanted {
			// Managed again while the teardown ran: look again.
			in.tried, in.seen = nil, nil
		} else {
			return decideTornDown(in)
		}
	}
	if in.seen == nil {
		return action{kind: doObserve, why: "every step starts from a look at the host"}
	}
	if !in.wanted {
		return decideRelease(in)
	}
	if in.tried != nil {
		return decideAttempted(in)
	}
	s := in.seen
	if a.origin == originUnknown && s.err == nil && !in.recordBad {
		// First look since the target was managed: what is there already
		// is adopted and never torn down by storkeep.
		return action{kind: doRecordOrigin, record: s.obs.Present, why: "first look"}
	}
	pathDown := in.pathKnown && !in.path.Usable
	if pathDown && (s.err != nil || s.obs.Present) {
		// Nothing can reach the host: the connection is down whatever it
		// looks like (the kernel may not have noticed yet), but kept.
		if a.pathDown && a.lastErr != nil && a.lastErr.Name == pathError(in.path).Name {
			return action{kind: doNothing, why: "path down, already said"}
		}
		return action{kind: doReport, report: reportPathDown, err: pathError(in.path), why: "path down"}
	}
	if s.err == nil && s.obs.Connected {
		if in.canProbe {
			if in.probe == nil && probeDue(in) {
				return action{kind: doProbe, why: "a read proves it usable"}
			}
			if in.probe != nil && in.probe.Err != nil {
				return decideUnreadable(in, in.probe.Err)
			}
		}
		if a.usable && a.state == StateConnected && a.settling.IsZero() && infoEqual(a.info, s.obs.Info) {
			if in.canProbe {
				return action{kind: doWait, until: in.health.nextProbe(in.target, a.probedAt), why: "usable; the next probe"}
			}
			return action{kind: doNothing, why: "usable"}
		}
		return action{kind: doReport, report: reportUsable, obs: s.obs, why: "usable"}
	}
	if a.usable && s.err == nil && s.obs.Settling && s.obs.Instance != "" && s.obs.Instance == a.instance {
		if a.settling.IsZero() {
			return action{kind: doReport, report: reportSettling, why: "settling: grace starts"}
		}
		if end := a.settling.Add(settleGrace); in.now.Before(end) {
			return action{kind: doWait, until: end, why: "settling, within the grace"}
		}
	}
	if a.usable {
		lost := s.obs.Err
		switch {
		case s.err != nil:
			lost = connErrorOf(s.err)
		case lost == nil:
			lost = NewConnError(ErrNameLost, "%s went away", in.target)
		}
		return action{kind: doReport, report: reportLost, err: lost, why: "lost"}
	}
	due := in.force || !in.now.Before(a.next)
	if !due {
		if longest := time.Duration(float64(in.policy.Max) * (1 + in.policy.Jitter)); a.next.Sub(in.now) > longest {
			b := min(a.backoff, in.policy.Max)
			return action{kind: doReport, report: reportReschedule, backoff: b,
				until: in.now.Add(in.policy.jittered(b)), why: "the backoff cap was lowered"}
		}
		if pathDown && (a.lastErr == nil || a.lastErr.Name != pathError(in.path).Name) {
			return action{kind: doReport, report: reportBlamePath, err: blamePath(in.path, a.lastErr), why: "path down while waiting"}
		}
		return action{kind: doWait, until: a.next, why: "backoff"}
	}
	if a.origin == originUnknown && s.err != nil {
		// The host could not be read: don't claim a connection that may
		// already be there. Look again later.
		return failed(in, connErrorOf(s.err), "first look failed")
	}
	if pathDown && a.backoff < in.policy.Max {
		// With no path, an attempt fails, or hangs until its deadline and
		// holds up the one the path's return triggers. Count it failed
		// without touching the host. Once the backoff reaches its cap the
		// attempt is made anyway, in case the path was misjudged.
		return failed(in, NewConnError(pathError(in.path).Name,
			"%s: waiting for the path to come back (and trying every %s anyway)", in.path.Detail, in.policy.Max),
			"path down: attempt counted failed")
	}
	return action{kind: doConnect, reset: in.force, why: "down and due"}
}

// decideAttempted judges the result of a Connect made in this pass.
func decideAttempted(in inputs) action {
	t := in.tried
	if t.err == nil && t.obs.Connected {
		if in.canProbe {
			switch p := in.probe; {
			case p == nil:
				return action{kind: doProbe, why: "connected: a read proves it usable"}
			case p.Err != nil && p.Err.Name == ErrNameStale && in.canHeal && !t.heal:
				return action{kind: doHeal, err: p.Err, why: "connected, but stale: replace it"}
			case p.Err != nil:
				return failedRead(in, p.Err, "connected, but a read failed")
			}
		}
		return action{kind: doReport, report: reportUsable, obs: t.obs, why: "connected"}
	}
	err := t.err
	if err == nil {
		err = t.obs.Err
		if err == nil {
			err = NewConnError(ErrNameFailed, "connected, but %s is not usable", in.target)
		}
	}
	ce := connErrorOf(err)
	if in.pathKnown && !in.path.Usable {
		// Say what the root cause is; the attempt's own words follow.
		ce = NewConnError(pathError(in.path).Name, "%s (last attempt: %v)", in.path.Detail, ce)
	}
	return failed(in, ce, "attempt failed")
}

// probeDue reports whether a connection that looks usable must be read
// through before it is called usable (again): it is not usable yet, an
// event may have changed the answer, the kernel object is a new one, or
// the interval is up.
func probeDue(in inputs) bool {
	a := &in.actual
	return !a.usable || in.recheck || in.seen.obs.Instance != a.instance ||
		a.probedAt.IsZero() || !in.now.Before(in.health.nextProbe(in.target, a.probedAt))
}

// decideUnreadable handles a connection that is there but that a read
// through it failed: down, and tried again (replaced, for a stale one)
// when due; never torn down, since the kernel may still recover it.
func decideUnreadable(in inputs, err *ConnError) action {
	a := &in.actual
	if a.usable {
		return action{kind: doReport, report: reportLost, err: err, why: "a read failed"}
	}
	if a.lastErr == nil || a.lastErr.Name != err.Name {
		// Say what this read found (Stale after an IOTimeout, say)
		// before anything is done about it.
		return action{kind: doReport, report: reportReason, err: err, why: "a read failed otherwise"}
	}
	if !in.force && in.now.Before(a.next) {
		return action{kind: doWait, until: a.next, why: "unreadable; waiting for the next try"}
	}
	if err.Name == ErrNameStale && in.canHeal {
		return action{kind: doHeal, err: err, why: "stale: replace it"}
	}
	return failedRead(in, err, "a read failed")
}

// unreadableRetry is how soon, at most, a connection that is there but
// unreadable is read again (the probe interval may be shorter). The first
// reads after a failure come sooner, from firstReadRetry and doubling with
// each failed try: a read that failed as a link came back (its transport
// was not up yet) is followed by one that works within a fraction of a
// second; a read costs a pipe round trip to a kept helper.
const (
	unreadableRetry = time.Second
	firstReadRetry  = 100 * time.Millisecond
)

// readRetry is how soon a read follows attempts failed tries.
func readRetry(attempts uint32, interval time.Duration) time.Duration {
	d := unreadableRetry
	if attempts < 4 {
		d = min(d, firstReadRetry<<attempts)
	}
	return min(d, interval)
}

// failedRead is failed for a connection that is there but unreadable: the
// next try (a read, after an idempotent connect) comes within readRetry
// whatever the backoff, since nothing is torn down or made anew.
func failedRead(in inputs, err *ConnError, why string) action {
	act := failed(in, err, why)
	if next := in.now.Add(readRetry(in.actual.attempts, in.health.Interval)); act.until.After(next) {
		act.until = next
	}
	return act
}

// decideRelease handles a target no CID refers to.
func decideRelease(in inputs) action {
	a, s := &in.actual, in.seen
	switch {
	case in.held && s.err == nil && s.obs.Connected && !(a.usable && a.state == StateConnected):
		// Kept as it is, and shown as it is.
		return action{kind: doReport, report: reportUsable, obs: s.obs, why: "held, usable"}
	case in.held:
		return action{kind: doHold, why: "a state file that did not load may want it"}
	case a.origin != originOurs:
		// Adopted (or never looked at): storkeep did not make it.
		return action{kind: doForget, record: a.origin == originPreexisting, why: "released; not ours to tear down"}
	case a.presence == presenceAbsent:
		// Only a look that worked says absent; a failed one is uncertain.
		return action{kind: doForget, record: true, why: "released; already gone"}
	case in.force || !in.now.Before(a.next):
		return action{kind: doDisconnect, why: "released; ours"}
	}
	return action{kind: doWait, until: a.next, why: "released; teardown backoff"}
}

// decideTornDown judges the result of a Disconnect made in this pass.
func decideTornDown(in inputs) action {
	if in.tried.err != nil {
		return failed(in, connErrorOf(in.tried.err), "disconnect failed")
	}
	return action{kind: doForget, record: true, why: "disconnected"}
}

func failed(in inputs, err *ConnError, why string) action {
	prev := in.actual.backoff
	if in.force {
		prev = 0
	}
	b := in.policy.next(prev)
	return action{kind: doReport, report: reportFailed, err: err, backoff: b,
		until: in.now.Add(in.policy.jittered(b)), why: why}
}

// blamePath is the error of a target waiting for its next attempt while
// its path is down: the path first, the last attempt's words after.
func blamePath(p Path, last *ConnError) *ConnError {
	words := "none yet"
	if last != nil {
		words = last.Error()
	}
	return NewConnError(pathError(p).Name, "%s (last attempt: %s)", p.Detail, words)
}

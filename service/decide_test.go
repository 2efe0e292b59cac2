// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"testing"
	"time"
)

// TestDecide is the README's state table and the hold rules as rows: what
// storkeep does next, given what it wants, what it knows of the host and
// the path, and the time. No goroutines, no I/O.
func TestDecide(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	policy := ReconnectPolicy{Initial: time.Second, Max: 60 * time.Second, Jitter: 0}
	usable := Observation{Present: true, Connected: true, Instance: "s3", Info: map[string]any{"x": 1}}
	broken := Observation{Present: true, Err: NewConnError("SessionFailed", "recovering")}
	settling := Observation{Present: true, Settling: true, Instance: "s3", Err: NewConnError("NoLUN", "no link yet")}
	absent := Observation{}
	lookFailed := errors.New("iscsiadm: timed out")
	down := Path{Usable: false, Why: ErrNameLinkDown, Detail: "link eth1 is down"}
	up := Path{Usable: true, Link: "eth1"}

	ours := actual{origin: originOurs, state: StateRetrying}
	preexisting := actual{origin: originPreexisting, state: StateConnected, usable: true}
	connected := actual{origin: originOurs, state: StateConnected, usable: true, instance: "s3", info: map[string]any{"x": 1}}
	waiting := actual{origin: originOurs, state: StateRetrying, backoff: 4 * time.Second, next: now.Add(3 * time.Second)}
	atCap := actual{origin: originOurs, state: StateRetrying, backoff: 60 * time.Second, next: now.Add(-time.Millisecond)}
	gone := actual{origin: originOurs, state: StateRetrying, presence: presenceAbsent}
	uncertain := actual{origin: originOurs, state: StateRetrying, presence: presenceUncertain}
	settlingFor := func(d time.Duration) actual {
		a := connected
		a.settling = now.Add(-d)
		return a
	}

	probedAgo := func(d time.Duration) actual {
		a := connected
		a.probedAt = now.Add(-d)
		return a
	}
	downFor := func(name string) actual {
		a := ours
		a.lastErr = NewConnError(name, "x")
		return a
	}
	waitingFor := func(name string) actual {
		a := waiting
		a.lastErr = NewConnError(name, "x")
		return a
	}
	readFailed := func(name string) *ProbeResult {
		return &ProbeResult{Err: NewConnError(name, "read of /mnt/x failed")}
	}

	look := func(o Observation) *seen { return &seen{obs: o} }
	failedLook := &seen{err: lookFailed}

	tests := []struct {
		name   string
		in     inputs
		kind   actionKind
		report report // when kind is doReport
		record bool   // doForget / doRecordOrigin
	}{
		// Every pass starts from a look at the host.
		{name: "first step observes", in: inputs{wanted: true, actual: ours}, kind: doObserve},
		{name: "released: observes before tearing down", in: inputs{actual: connected}, kind: doObserve},

		// First look: origin.
		{name: "first look finds it there: adopted", in: inputs{wanted: true, seen: look(usable)}, kind: doRecordOrigin, record: true},
		{name: "first look finds nothing: ours", in: inputs{wanted: true, seen: look(absent)}, kind: doRecordOrigin, record: false},
		{name: "first look failed: no origin claimed, retried", in: inputs{wanted: true, seen: failedLook, actual: actual{state: StateConnecting}}, kind: doReport, report: reportFailed},
		{name: "own record did not load: origin not written over it", in: inputs{wanted: true, recordBad: true, held: true, seen: look(absent), actual: actual{state: StateConnecting}}, kind: doConnect},

		// Wanted.
		{name: "usable: reported", in: inputs{wanted: true, seen: look(usable), actual: ours}, kind: doReport, report: reportUsable},
		{name: "usable and already said: nothing", in: inputs{wanted: true, seen: look(usable), actual: connected}, kind: doNothing},
		{name: "lost", in: inputs{wanted: true, seen: look(broken), actual: connected}, kind: doReport, report: reportLost},
		{name: "failed look of a usable target: lost, never absent", in: inputs{wanted: true, seen: failedLook, actual: connected}, kind: doReport, report: reportLost},
		{name: "down and due: connect", in: inputs{wanted: true, seen: look(absent), actual: ours}, kind: doConnect},
		{name: "failed look of a down target: attempt (Connect is idempotent)", in: inputs{wanted: true, seen: failedLook, actual: ours}, kind: doConnect},
		{name: "down, backoff pending: wait", in: inputs{wanted: true, seen: look(absent), actual: waiting}, kind: doWait},
		{name: "Reconnect: attempt now whatever the backoff", in: inputs{wanted: true, force: true, seen: look(absent), actual: waiting}, kind: doConnect},
		{name: "backoff beyond a lowered cap: rescheduled", in: inputs{wanted: true, seen: look(absent), actual: actual{origin: originOurs, state: StateRetrying, backoff: time.Hour, next: now.Add(time.Hour)}, policy: policy}, kind: doReport, report: reportReschedule},

		// Settling (the grace that was the iSCSI backend's).
		{name: "settling, same instance: grace starts", in: inputs{wanted: true, seen: look(settling), actual: connected}, kind: doReport, report: reportSettling},
		{name: "settling within the grace: wait", in: inputs{wanted: true, seen: look(settling), actual: settlingFor(time.Second)}, kind: doWait},
		{name: "settling past the grace: lost", in: inputs{wanted: true, seen: look(settling), actual: settlingFor(settleGrace)}, kind: doReport, report: reportLost},
		{name: "settling, another instance: lost", in: inputs{wanted: true, seen: look(Observation{Present: true, Settling: true, Instance: "s4"}), actual: connected}, kind: doReport, report: reportLost},

		// The path.
		{name: "path down, connection there: down, kept", in: inputs{wanted: true, seen: look(usable), actual: connected, pathKnown: true, path: down}, kind: doReport, report: reportPathDown},
		{name: "path down, look failed: down, kept", in: inputs{wanted: true, seen: failedLook, actual: connected, pathKnown: true, path: down}, kind: doReport, report: reportPathDown},
		{name: "path down, already said: nothing", in: inputs{wanted: true, seen: look(usable), pathKnown: true, path: down,
			actual: actual{origin: originOurs, state: StateRetrying, pathDown: true, lastErr: pathError(down)}}, kind: doNothing},
		{name: "path down, nothing there, due: counted failed without an attempt", in: inputs{wanted: true, seen: look(absent), actual: ours, pathKnown: true, path: down}, kind: doReport, report: reportFailed},
		{name: "path down, backoff at the cap: tries anyway", in: inputs{wanted: true, seen: look(absent), actual: atCap, pathKnown: true, path: down}, kind: doConnect},
		{name: "path down while waiting: the path is blamed", in: inputs{wanted: true, seen: look(absent), actual: waiting, pathKnown: true, path: down}, kind: doReport, report: reportBlamePath},
		{name: "path up: connect", in: inputs{wanted: true, seen: look(absent), actual: ours, pathKnown: true, path: up}, kind: doConnect},

		// Attempt results.
		{name: "attempt connected", in: inputs{wanted: true, seen: look(absent), tried: &tried{obs: usable}, actual: ours}, kind: doReport, report: reportUsable},
		{name: "attempt failed", in: inputs{wanted: true, seen: look(absent), tried: &tried{err: lookFailed}, actual: ours}, kind: doReport, report: reportFailed},
		{name: "attempt made it but not usable: failed", in: inputs{wanted: true, seen: look(absent), tried: &tried{obs: broken}, actual: ours}, kind: doReport, report: reportFailed},

		// Released.
		{name: "released, ours, there: disconnect", in: inputs{seen: look(usable), actual: connected}, kind: doDisconnect},
		{name: "released, ours, look failed: disconnect (idempotent)", in: inputs{seen: failedLook, actual: connected}, kind: doDisconnect},
		{name: "released, ours, gone: forget with its record", in: inputs{seen: look(absent), actual: gone}, kind: doForget, record: true},
		{name: "released, ours, look failed after one that found it gone: uncertain, so torn down (idempotent)", in: inputs{seen: failedLook, actual: uncertain}, kind: doDisconnect},
		{name: "released, pre-existing: never torn down", in: inputs{seen: look(usable), actual: preexisting}, kind: doForget, record: true},
		{name: "released, never looked at: never torn down", in: inputs{seen: look(usable), actual: actual{state: StateConnecting}}, kind: doForget, record: false},
		{name: "released, failed teardown backing off: wait", in: inputs{seen: look(usable), actual: waiting}, kind: doWait},
		{name: "released by Unmanage: teardown now, whatever the backoff", in: inputs{force: true, seen: look(usable), actual: waiting}, kind: doDisconnect},
		{name: "disconnected: forget", in: inputs{seen: look(usable), tried: &tried{disconnect: true}, actual: connected}, kind: doForget, record: true},
		{name: "disconnect failed: retried", in: inputs{seen: look(usable), tried: &tried{disconnect: true, err: lookFailed}, actual: connected}, kind: doReport, report: reportFailed},
		{name: "managed again during the teardown: look again", in: inputs{wanted: true, seen: look(usable), tried: &tried{disconnect: true}, actual: connected}, kind: doObserve},

		// Holds: a state file that did not load.
		{name: "held, ours, there: held, not torn down", in: inputs{held: true, seen: look(usable), actual: connected}, kind: doHold},
		{name: "held, first look finds it usable: shown as it is", in: inputs{held: true, seen: look(usable), actual: ours}, kind: doReport, report: reportUsable},
		{name: "held, ours, look failed: held", in: inputs{held: true, seen: failedLook, actual: connected}, kind: doHold},
		{name: "held, forced: held", in: inputs{held: true, force: true, seen: look(usable), actual: connected}, kind: doHold},
		{name: "held and wanted: kept up as usual", in: inputs{held: true, wanted: true, seen: look(broken), actual: connected}, kind: doReport, report: reportLost},
		{name: "held, no backend: held", in: inputs{held: true, noBackend: true, actual: connected}, kind: doHold},

		// No backend for the kind.
		{name: "no backend: said", in: inputs{wanted: true, noBackend: true, actual: ours}, kind: doReport, report: reportNoBackend},
		{name: "no backend, already said: nothing", in: inputs{wanted: true, noBackend: true, actual: actual{state: StateRetrying, lastErr: NewConnError(ErrNameNoBackend, "x")}}, kind: doNothing},
		{name: "no backend, released: forgotten", in: inputs{noBackend: true, actual: ours}, kind: doForget, record: true},

		// Reads through the connection (a Prober backend): usable means a
		// read worked since the last event that could break it.
		{name: "probe: looks usable, never read: read first", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: ours}, kind: doProbe},
		{name: "probe: read worked: usable", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: ours, probe: &ProbeResult{Delay: time.Millisecond}}, kind: doReport, report: reportUsable},
		{name: "probe: usable, read within the interval: wait for the next", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: probedAgo(time.Second)}, kind: doWait},
		{name: "probe: usable, interval up: read", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: probedAgo(time.Minute)}, kind: doProbe},
		{name: "probe: usable, an event: read now", in: inputs{wanted: true, canProbe: true, recheck: true, seen: look(usable), actual: probedAgo(time.Second)}, kind: doProbe},
		{name: "probe: usable, a new kernel object: read now", in: inputs{wanted: true, canProbe: true, seen: look(Observation{Present: true, Connected: true, Instance: "s4", Info: map[string]any{"x": 1}}), actual: probedAgo(time.Second)}, kind: doProbe},
		{name: "probe: usable, read timed out: lost", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: probedAgo(time.Minute), probe: readFailed(ErrNameIOTimeout)}, kind: doReport, report: reportLost},
		{name: "probe: down, read failed, due: failed, kept", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(usable), actual: downFor(ErrNameIOError), probe: readFailed(ErrNameIOError)}, kind: doReport, report: reportFailed},
		{name: "probe: down, stale, due: replaced", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(usable), actual: downFor(ErrNameStale), probe: readFailed(ErrNameStale)}, kind: doHeal},
		{name: "probe: down for a timeout, now stale: said first", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(usable), actual: downFor(ErrNameIOTimeout), probe: readFailed(ErrNameStale)}, kind: doReport, report: reportReason},
		{name: "probe: down, stale, no healer: failed", in: inputs{wanted: true, canProbe: true, seen: look(usable), actual: downFor(ErrNameStale), probe: readFailed(ErrNameStale)}, kind: doReport, report: reportFailed},
		{name: "probe: down, read failed, not due: wait", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(usable), actual: waitingFor(ErrNameStale), probe: readFailed(ErrNameStale)}, kind: doWait},
		{name: "probe: connected by an attempt: read before usable", in: inputs{wanted: true, canProbe: true, seen: look(absent), tried: &tried{obs: usable}, actual: ours}, kind: doProbe},
		{name: "probe: connected, read worked: usable", in: inputs{wanted: true, canProbe: true, seen: look(absent), tried: &tried{obs: usable}, actual: ours, probe: &ProbeResult{}}, kind: doReport, report: reportUsable},
		{name: "probe: connected, read failed: attempt failed", in: inputs{wanted: true, canProbe: true, seen: look(absent), tried: &tried{obs: usable}, actual: ours, probe: readFailed(ErrNameIOTimeout)}, kind: doReport, report: reportFailed},
		{name: "probe: connected, stale: replaced", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(absent), tried: &tried{obs: usable}, actual: ours, probe: readFailed(ErrNameStale)}, kind: doHeal},
		{name: "probe: replaced, still stale: failed, not replaced again", in: inputs{wanted: true, canProbe: true, canHeal: true, seen: look(absent), tried: &tried{obs: usable, heal: true}, actual: ours, probe: readFailed(ErrNameStale)}, kind: doReport, report: reportFailed},
		{name: "probe: released: torn down without a read", in: inputs{canProbe: true, seen: look(usable), actual: connected}, kind: doDisconnect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.now = now
			if in.policy == (ReconnectPolicy{}) {
				in.policy = policy
			}
			in.health = in.health.withDefaults()
			got := decide(in)
			if got.kind != tc.kind || (got.kind == doReport && got.report != tc.report) ||
				((got.kind == doForget || got.kind == doRecordOrigin) && got.record != tc.record) {
				t.Errorf("decide = %+v (%s); want kind %d report %d record %v", got, got.why, tc.kind, tc.report, tc.record)
			}
			if got.kind == doWait && !got.until.After(now) {
				t.Errorf("wait until %v: not after now", got.until)
			}
		})
	}
}

// TestReadRetry: a connection that is there but unreadable is read again
// soon after its first failed read (a link that just came back), then
// less often, never less often than every second, and never less often
// than the probe interval.
func TestReadRetry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	policy := ReconnectPolicy{Initial: time.Second, Max: time.Hour, Jitter: 0}
	for _, c := range []struct {
		attempts uint32
		interval time.Duration
		want     time.Duration
	}{
		{0, 5 * time.Second, 100 * time.Millisecond},
		{1, 5 * time.Second, 200 * time.Millisecond},
		{3, 5 * time.Second, 800 * time.Millisecond},
		{4, 5 * time.Second, time.Second},
		{40, 5 * time.Second, time.Second},
		{40, 300 * time.Millisecond, 300 * time.Millisecond},
	} {
		a := actual{origin: originOurs, state: StateRetrying, attempts: c.attempts, backoff: time.Hour,
			lastErr: NewConnError(ErrNameIOError, "x")}
		in := inputs{wanted: true, canProbe: true, now: now, policy: policy, actual: a,
			seen:  &seen{obs: Observation{Present: true, Connected: true, Instance: "s3"}},
			probe: &ProbeResult{Err: NewConnError(ErrNameIOError, "read /dev/sdb: input/output error")}}
		in.health = HealthPolicy{Interval: c.interval}.withDefaults()
		got := decide(in)
		if got.kind != doReport || got.report != reportFailed || got.until.Sub(now) != c.want {
			t.Errorf("after %d failed tries (interval %s): %+v (%s), want failed, read again in %s",
				c.attempts, c.interval, got, got.why, c.want)
		}
	}
}

// TestDecideSettles runs decide and the actual-state writers together, as
// the pass does, and checks that every situation reaches a step that ends
// the pass within maxSteps: no rule undoes what another just recorded.
func TestDecideSettles(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	policy := ReconnectPolicy{Initial: time.Second, Max: time.Minute}
	looks := []*seen{
		{obs: Observation{Present: true, Connected: true, Instance: "a"}},
		{obs: Observation{Present: true, Settling: true, Instance: "a"}},
		{obs: Observation{Present: true}},
		{obs: Observation{}},
		{err: errors.New("timed out")},
	}
	paths := []struct {
		known bool
		p     Path
	}{{false, Path{}}, {true, Path{Usable: true}}, {true, Path{Why: ErrNameNoRoute, Detail: "no route"}}}
	starts := []actual{
		newActual(),
		{origin: originOurs, state: StateConnected, usable: true, instance: "a"},
		{origin: originPreexisting, state: StateRetrying, backoff: time.Minute, next: now.Add(-time.Second)},
		{origin: originOurs, state: StateRetrying, backoff: time.Second, next: now.Add(time.Second)},
	}
	// nil: the backend is no Prober.
	reads := []*ProbeResult{nil, {}, {Err: NewConnError(ErrNameIOTimeout, "x")}, {Err: NewConnError(ErrNameStale, "x")}}
	for _, wanted := range []bool{true, false} {
		for _, held := range []bool{false, true} {
			for _, l := range looks {
				for _, p := range paths {
					for _, a := range starts {
						for _, read := range reads {
							in := inputs{wanted: wanted, held: held, actual: a, seen: l, path: p.p, pathKnown: p.known, policy: policy, now: now,
								canProbe: read != nil, canHeal: true, health: HealthPolicy{}.withDefaults()}
							in.actual.observed(l.obs, l.err)
							ended := false
							for step := 0; step < maxSteps && !ended; step++ {
								act := decide(in)
								switch act.kind {
								case doReport:
									applyReport(&in.actual, act, now)
									if in.tried != nil {
										in.seen, in.tried = &seen{obs: act.obs}, nil
									}
								case doRecordOrigin:
									in.actual.originFound(act.record)
								case doConnect:
									in.actual.attemptStarted(act.reset)
									in.tried = &tried{err: errors.New("refused")}
								case doObserve:
									in.seen = l
									in.actual.observed(l.obs, l.err)
								case doDisconnect:
									in.tried = &tried{disconnect: true}
								case doProbe:
									in.probe = read
								case doHeal:
									in.actual.attemptStarted(act.reset)
									in.tried, in.probe = &tried{heal: true, obs: Observation{Present: true, Connected: true}}, nil
								default:
									ended = true
								}
							}
							if !ended {
								t.Errorf("wanted=%v held=%v look=%+v path=%+v start=%+v read=%+v: no end in %d steps", wanted, held, l, p, a, read, maxSteps)
							}
						}
					}
				}
			}
		}
	}
}

// applyReport is the part of Service.report that writes the actual state.
func applyReport(a *actual, act action, now time.Time) {
	switch act.report {
	case reportUsable:
		a.becameUsable(act.obs, now)
	case reportSettling:
		a.beganSettling(now)
	case reportLost:
		a.lost(act.err, now)
	case reportFailed:
		a.failed(act.err, true, act.backoff, act.until.Sub(now), now)
	case reportPathDown:
		a.pathIsDown(act.err, now)
	case reportBlamePath:
		a.blamePath(act.err, now)
	case reportReschedule:
		a.rescheduled(act.backoff, act.until)
	case reportNoBackend:
		a.noBackend(act.err, now)
	case reportReason:
		a.newReason(act.err, now)
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestSetReconnectPolicyLoweredCapBringsAttemptsForward(t *testing.T) {
	// Arrange: the next attempt is an hour away.
	ts := newTestService(t, withBackoff(time.Hour, 2*time.Hour))
	spec := failedAnHourAgo(t, ts, "c1")

	// Act
	ts.svc.SetReconnectPolicy(ReconnectPolicy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond})

	// Assert: the attempt comes within the new cap, without a Reconnect.
	ts.waitConnected("c1")
	if n := ts.be.count(spec.Target, opConnect); n != 2 {
		t.Errorf("Connect was called %d times; want 2", n)
	}
}

func TestSetReconnectPolicyRaisedFloorAppliesAtTheNextFailure(t *testing.T) {
	// Arrange: fast retries.
	ts := newTestService(t, withBackoff(2*time.Millisecond, 10*time.Millisecond))
	spec := specFor(t, nfsA)
	ts.be.fail(spec.Target, opConnect, NewConnError("Unreachable", "no route"))
	ts.manage("c1", spec)
	eventually(t, "a few failed attempts", func() bool { return ts.be.count(spec.Target, opConnect) >= 3 })

	// Act
	ts.svc.SetReconnectPolicy(ReconnectPolicy{Initial: time.Hour, Max: 2 * time.Hour})

	// Assert: the next failure waits at least the new initial backoff
	// (less jitter), not double the old 10 ms.
	eventually(t, "an attempt an hour away", func() bool {
		return time.Until(ts.status("c1").NextAttempt) > 45*time.Minute
	})
}

func TestReconnectPolicyNextNeverBelowInitial(t *testing.T) {
	p := ReconnectPolicy{Initial: time.Second, Max: time.Minute}.withDefaults()
	tests := []struct{ prev, want time.Duration }{
		{0, time.Second},
		{10 * time.Millisecond, time.Second}, // from a policy with a smaller Initial
		{time.Second, 2 * time.Second},
		{40 * time.Second, time.Minute},
		{time.Hour, time.Minute}, // from a policy with a larger Max
	}
	for _, tc := range tests {
		if got := p.next(tc.prev); got != tc.want {
			t.Errorf("next(%v) = %v; want %v", tc.prev, got, tc.want)
		}
	}
}

func TestSetMaxCIDs(t *testing.T) {
	// Arrange: two CIDs under a cap of 5.
	ts := newTestService(t, withMaxCIDs(5))
	for i := range 2 {
		ts.manage(CID(fmt.Sprint("c", i)), specFor(t, nfsA))
	}

	// Act: lowered below the number managed.
	ts.svc.SetMaxCIDs(1)

	// Assert: nothing dropped, nothing new.
	if _, err := ts.svc.Manage("c9", specFor(t, nfsA)); !errors.Is(err, ErrLimit) {
		t.Errorf("Manage beyond the lowered cap = %v; want ErrLimit", err)
	}
	if got := len(ts.svc.CIDs()); got != 2 {
		t.Errorf("%d CIDs managed; want the 2 managed before", got)
	}
	ts.svc.SetMaxCIDs(0) // the default, 100000
	if _, err := ts.svc.Manage("c9", specFor(t, nfsA)); err != nil {
		t.Errorf("Manage after the cap went back to its default = %v", err)
	}
}

func TestConfigChanged(t *testing.T) {
	off := false
	a := Config{Daemon: DaemonConfig{LogLevel: "info"}, Limits: LimitsConfig{MaxCIDs: 5}}
	b := Config{Daemon: DaemonConfig{LogLevel: "debug"}, Limits: LimitsConfig{MaxCIDs: 5, MaxOptions: 3},
		Reconnect: ReconnectConfig{MaxBackoff: Duration(time.Second), LinkEvents: &off}}

	got := a.Changed(b)

	want := []string{"daemon.log_level", "limits.max_options", "reconnect.max_backoff", "reconnect.link_events"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Changed = %q; want %q", got, want)
	}
	if got := a.Changed(a); len(got) != 0 {
		t.Errorf("Changed(itself) = %q; want none", got)
	}
}

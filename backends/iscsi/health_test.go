// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

// A FAILED session is recovering (never logged out) until it has been seen
// failed for longer than its recovery_tmo plus a margin; a login in between
// starts the count over.
func TestPastRecovery(t *testing.T) {
	var b Backend
	t0 := time.Unix(1_000_000, 0)
	failed := session{ID: 3, State: stateFailed, RecoveryTmo: 5 * time.Second}
	for _, c := range []struct {
		s    session
		at   time.Duration
		want bool
	}{
		{failed, 0, false},
		{failed, 5 * time.Second, false},
		{failed, 5*time.Second + recoveryMargin, false},
		{failed, 6*time.Second + recoveryMargin, true},
		{session{ID: 3, State: stateLoggedIn, RecoveryTmo: 5 * time.Second}, 7*time.Second + recoveryMargin, false},
		{failed, 8*time.Second + recoveryMargin, false}, // counted anew from the failure after the login
		{session{ID: 3, State: stateFree, RecoveryTmo: 0}, time.Hour, false},
	} {
		if got := b.pastRecovery(c.s, t0.Add(c.at)); got != c.want {
			t.Errorf("pastRecovery(%s at +%s) = %v, want %v", c.s.State, c.at, got, c.want)
		}
	}
}

func TestProbeDevices(t *testing.T) {
	obs := service.Observation{Info: map[string]any{infoDevices: map[string]string{
		"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.x-lun-1":  "/dev/sdc",
		"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.x-lun-0":  "/dev/sdb",
		"/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.x-lun-10": "/dev/sdd",
	}}}
	if got := probeDevices(obs, -1); len(got) != 3 || got[0] != "/dev/sdb" {
		t.Errorf("every LUN: %v", got)
	}
	if got := probeDevices(obs, 1); len(got) != 1 || got[0] != "/dev/sdc" {
		t.Errorf("LUN 1: %v, want only /dev/sdc (not lun-10)", got)
	}
	if got := probeDevices(service.Observation{}, -1); len(got) != 0 {
		t.Errorf("no devices: %v", got)
	}
}

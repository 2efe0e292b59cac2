// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

func TestSmoothLinksRidesOutAMissingLink(t *testing.T) {
	b := &Backend{}
	key := service.TargetKey("iscsi://10.0.0.1/iqn.x;tpgt=1;iface=default")
	s := session{ID: 3, State: stateLoggedIn, LUNs: []lun{{LUN: 1, Type: 0, Block: "sdb"}}}
	good := service.Observation{Present: true, Connected: true, Info: map[string]any{
		infoSessionID: uint32(3), infoDevices: map[string]string{"/dev/disk/by-path/x-lun-1": "/dev/sdb"}}}
	pending := service.Observation{Present: true, Err: service.NewConnError(ErrNoLUN, "no block device yet")}
	t0 := time.Unix(1000, 0)

	b.smoothLinks(key, s, 1, good, lunsReady, t0)
	// The link is gone for a moment: still connected, with the devices it had.
	if got := b.smoothLinks(key, s, 1, pending, lunsPending, t0.Add(time.Second)); !got.Connected {
		t.Fatalf("a missing link right after a connected look reported %+v", got)
	}
	// For too long: reported.
	if got := b.smoothLinks(key, s, 1, pending, lunsPending, t0.Add(time.Second+linkGrace)); got.Connected {
		t.Fatal("a link missing for the whole grace is still reported connected")
	}

	// Never smoothed: another session, a block device gone or renamed, a
	// failed session.
	for name, c := range map[string]struct {
		s  session
		st lunState
	}{
		"new session":    {session{ID: 4, State: stateLoggedIn, LUNs: s.LUNs}, lunsPending},
		"device gone":    {session{ID: 3, State: stateLoggedIn, LUNs: []lun{{LUN: 1, Type: 0}}}, lunsPending},
		"device renamed": {session{ID: 3, State: stateLoggedIn, LUNs: []lun{{LUN: 1, Type: 0, Block: "sdc"}}}, lunsPending},
		"session failed": {session{ID: 3, State: "FAILED", LUNs: s.LUNs}, lunsPending},
		"LUN missing":    {s, lunsMissing},
	} {
		b.smoothLinks(key, s, 1, good, lunsReady, t0)
		if got := b.smoothLinks(key, c.s, 1, pending, c.st, t0.Add(time.Second)); got.Connected {
			t.Errorf("%s: reported connected", name)
		}
	}
}

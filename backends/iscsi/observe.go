// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/storkeep/storkeep/service"
)

// Keys of Observation.Info (the D-Bus layer shows them as the
// Connection.ISCSI properties).
const (
	infoSessionID    = "sessionID"    // uint32: the N of sessionN
	infoDevices      = "devices"      // map[string]string: by-path link -> kernel node
	infoSessionState = "sessionState" // string: LOGGED_IN, FAILED or FREE
)

// lunState says how far a session's LUNs are from usable.
type lunState int

const (
	lunsReady   lunState = iota // every wanted LUN has a block device and its link
	lunsPending                 // the LUNs are there, their devices or links not yet
	lunsMissing                 // a wanted LUN is not there, or not a disk
)

// checkLUNs tells whether the LUN asked for (want >= 0), or every disk LUN
// of the session (want < 0), has a block device and a by-path link. The
// ConnError says why not.
func checkLUNs(s session, want int, pending map[int]bool) (lunState, *service.ConnError) {
	if want >= 0 {
		for _, l := range s.LUNs {
			if l.LUN != want {
				continue
			}
			switch {
			case !l.hasBlock():
				return lunsMissing, service.NewConnError(ErrNoLUN,
					"LUN %d of %s is a SCSI device of type %d, not a disk", want, s.Target, l.Type)
			case l.Block == "" || pending[want]:
				return lunsPending, service.NewConnError(ErrNoLUN,
					"LUN %d of %s has no block device yet (session %d)", want, s.Target, s.ID)
			}
			return lunsReady, nil
		}
		return lunsMissing, service.NewConnError(ErrNoLUN,
			"%s has no LUN %d (its LUNs: %s)", s.Target, want, lunList(s))
	}
	disks := 0
	for _, l := range s.LUNs {
		if !l.hasBlock() {
			continue
		}
		disks++
		if l.Block == "" || pending[l.LUN] {
			return lunsPending, service.NewConnError(ErrNoLUN,
				"LUN %d of %s has no block device yet (session %d)", l.LUN, s.Target, s.ID)
		}
	}
	if disks == 0 {
		return lunsMissing, service.NewConnError(ErrNoLUN,
			"%s has no LUN with a block device (its LUNs: %s)", s.Target, lunList(s))
	}
	return lunsReady, nil
}

func lunList(s session) string {
	if len(s.LUNs) == 0 {
		return "none"
	}
	parts := make([]string, len(s.LUNs))
	for i, l := range s.LUNs {
		parts[i] = strconv.Itoa(l.LUN)
	}
	return strings.Join(parts, ", ")
}

// observation builds what Observe reports for s, a session of the target
// spec asks for (want is the spec's LUN). The state comes first: a session
// that is not logged in is not usable whatever its devices.
func observation(devRoot string, s session, want int) (service.Observation, lunState) {
	devs, pending := devices(devRoot, s)
	obs := service.Observation{
		Present: true,
		Info: map[string]any{
			infoSessionID:    s.ID,
			infoDevices:      devs,
			infoSessionState: s.State,
		},
	}
	if s.State != stateLoggedIn {
		state := s.State
		if state == "" {
			state = "in an unknown state"
		}
		obs.Err = service.NewConnError(ErrSessionFailed,
			"session %d to %s at %s is %s; the kernel and iscsid are recovering it", s.ID, s.Target, service.HostPort(s.Address, s.Port), state)
		return obs, lunsPending
	}
	st, err := checkLUNs(s, want, pending)
	obs.Err = err
	obs.Connected = st == lunsReady
	obs.Instance, obs.Settling = instance(s, want, st)
	return obs, st
}

// instance names the session and the block devices of the LUNs that
// count (want, or every disk), so that the service can tell the same
// connection from a new one. settling: the session is logged in and every
// such LUN has its block device; only by-path links are missing, which
// udev re-creates on a change event (after a session recovers, say).
func instance(s session, want int, st lunState) (id string, settling bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "session%d", s.ID)
	all := true
	for _, l := range s.LUNs {
		if !l.hasBlock() || (want >= 0 && l.LUN != want) {
			continue
		}
		if l.Block == "" {
			all = false
		}
		fmt.Fprintf(&b, " %d:%s", l.LUN, l.Block)
	}
	return b.String(), st == lunsPending && all
}

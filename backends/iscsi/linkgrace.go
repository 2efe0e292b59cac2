// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"path/filepath"
	"time"

	"github.com/storkeep/storkeep/service"
)

// linkGrace is how long a connected target stays connected while udev
// re-creates the by-path link of a block device that is still there.
const linkGrace = 10 * time.Second

// whole is the last observation of a target that was connected: in which
// session, and since when its links have been missing, if they are.
type whole struct {
	session      uint32
	obs          service.Observation
	pendingSince time.Time
}

// smoothLinks keeps a target connected through a moment without by-path
// links. udev removes and re-creates them on a change event (after a
// session recovers, for one), and Observe would otherwise report a loss
// and a reconnect for nothing. It applies only while the session is the
// same and logged in and every LUN that counts still has the block device
// it had; a missing device, a new session or a longer wait is reported.
func (b *Backend) smoothLinks(key service.TargetKey, s session, want int, obs service.Observation, st lunState, now time.Time) service.Observation {
	b.mu.Lock()
	defer b.mu.Unlock()
	if obs.Connected {
		if b.whole == nil {
			b.whole = make(map[service.TargetKey]*whole)
		}
		b.whole[key] = &whole{session: s.ID, obs: obs}
		return obs
	}
	w := b.whole[key]
	if w == nil || st != lunsPending || s.State != stateLoggedIn || w.session != s.ID || !sameBlocks(s, want, w.obs) {
		delete(b.whole, key)
		return obs
	}
	if w.pendingSince.IsZero() {
		w.pendingSince = now
	}
	if now.Sub(w.pendingSince) >= linkGrace {
		delete(b.whole, key)
		return obs
	}
	return w.obs
}

// sameBlocks reports whether every LUN that counts (want, or every disk)
// has a block device, and the one the connected observation named.
func sameBlocks(s session, want int, prev service.Observation) bool {
	devs, _ := prev.Info[infoDevices].(map[string]string)
	had := make(map[string]bool, len(devs))
	for _, node := range devs {
		had[filepath.Base(node)] = true
	}
	counted := 0
	for _, l := range s.LUNs {
		if !l.hasBlock() || (want >= 0 && l.LUN != want) {
			continue
		}
		if l.Block == "" || !had[l.Block] {
			return false
		}
		counted++
	}
	return counted > 0
}

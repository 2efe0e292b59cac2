// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/storkeep/storkeep/logging"
)

// holds are the state files that did not load, and what they keep from
// teardown. storkeep never disconnects because it could not read its own
// state: a target such a file names is held (never torn down, whatever
// the CIDs that did load say) until the file is fixed or removed, and a
// file too damaged to name its target holds every teardown. Written only
// by the state loader (at start, and Recheck); guarded by Service.mu.
type holds struct {
	bad []BadFile
}

// recheckEvery is how often the files that did not load are read again.
const recheckEvery = 5 * time.Second

func (h *holds) set(bad []BadFile, log *slog.Logger) {
	h.bad = bad
	for _, b := range bad {
		if b.Target != "" {
			log.Error("state file did not load; its target is held: never disconnected until the file is fixed or removed",
				logging.Held.Attr(), "path", b.Path, "target", string(b.Target), "err", b.Err)
		} else {
			log.Error("state file did not load and names no target it can be read for; every disconnect is held until it is fixed or removed",
				logging.Held.Attr(), "path", b.Path, "err", b.Err)
		}
	}
}

// heldLocked reports whether a file that did not load may refer to key.
func (s *Service) heldLocked(key TargetKey) bool {
	for _, b := range s.holds.bad {
		if b.Target == "" || b.Target == key {
			return true
		}
	}
	return false
}

// recordBadLocked reports whether key's own target record did not load.
func (s *Service) recordBadLocked(key TargetKey) bool {
	for _, b := range s.holds.bad {
		if b.Record && b.Target == key {
			return true
		}
	}
	return false
}

// holdersLocked returns the files that hold key, for its status.
func (s *Service) holdersLocked(key TargetKey) []string {
	var out []string
	for _, b := range s.holds.bad {
		if b.Target == "" || b.Target == key {
			out = append(out, b.Path)
		}
	}
	return out
}

// loadCIDLocked adds a CID read from disk to the desired state.
func (s *Service) loadCIDLocked(lc LoadedCID) {
	t := s.targets[lc.Spec.Target]
	if t == nil {
		t = s.newTarget(lc.Spec)
		s.targets[lc.Spec.Target] = t
	} else if len(t.cids) > 0 && !t.spec.Compatible(lc.Spec) {
		// Only a hand-edited state can get here: Manage refuses it.
		s.log.Error("state file conflicts with another CID on the same target; managing it anyway with the first one's settings",
			"cid", string(lc.CID), "target", string(lc.Spec.Target))
	} else if len(t.cids) == 0 {
		t.spec = lc.Spec
	}
	e := &cidEntry{cid: lc.CID, spec: t.shared(lc.Spec), target: t}
	s.cids[lc.CID] = e
	s.ids.add(string(lc.CID))
	t.cids[lc.CID] = e
}

// loadTargetLocked adds a target record read from disk: the origin of a
// target storkeep looked at before.
func (s *Service) loadTargetLocked(lt LoadedTarget) {
	t := s.targets[lt.Spec.Target]
	if t == nil {
		// No CID refers to it: a disconnect was pending when we stopped.
		t = s.newTarget(lt.Spec)
		s.targets[lt.Spec.Target] = t
	}
	if t.actual.origin == originUnknown {
		t.actual.originFound(lt.Preexisting)
	}
}

// Recheck reads again the state files that did not load. A file fixed is
// loaded (a CID file adds its CID, as at start); a file removed counts as
// an Unmanage that an admin did; either way the hold it made lifts and the
// targets it held are looked at again. The daemon calls it on SIGHUP; Run
// calls it every few seconds while any file is bad.
func (s *Service) Recheck() {
	s.lockAlone()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	bad := slices.Clone(s.holds.bad)
	known := make(map[string]TargetKey, len(s.targets))
	for k := range s.targets {
		known[hashName(string(k))] = k
	}
	s.mu.RUnlock()
	if len(bad) == 0 {
		return
	}
	var (
		still   []BadFile
		cids    []LoadedCID
		records []LoadedTarget
		lifted  []BadFile
	)
	for _, b := range bad {
		c, t, nb, err := s.store.Reread(b.Path, func(h string) TargetKey { return known[h] })
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.log.Info("state file that did not load is gone: its hold lifts", "path", b.Path)
			lifted = append(lifted, b)
		case nb != nil:
			still = append(still, *nb)
		case c != nil:
			s.log.Info("state file loads now", "path", b.Path, "cid", string(c.CID))
			cids = append(cids, *c)
			lifted = append(lifted, b)
		case t != nil:
			s.log.Info("state file loads now", "path", b.Path, "target", string(t.Spec.Target))
			records = append(records, *t)
			lifted = append(lifted, b)
		}
	}
	if len(lifted) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds.bad = still
	for _, lc := range cids {
		if _, ok := s.cids[lc.CID]; ok {
			continue // managed again since: Manage wrote this very file
		}
		s.loadCIDLocked(lc)
		s.publishLocked(Event{Type: EventAdded, CID: lc.CID})
	}
	for _, lt := range records {
		s.loadTargetLocked(lt)
	}
	s.liftedLocked(lifted)
}

// liftedLocked looks again at the targets whose holds were lifted: every
// target when a lifted file named none, else only those named (looked up,
// not searched for: Manage calls this on every write).
func (s *Service) liftedLocked(lifted []BadFile) {
	if slices.ContainsFunc(lifted, func(b BadFile) bool { return b.Target == "" }) {
		for _, t := range s.targets {
			s.changedLocked(t)
			s.pokeLocked(t)
		}
		return
	}
	seen := make(map[TargetKey]bool, len(lifted))
	for _, b := range lifted {
		if t := s.targets[b.Target]; t != nil && !seen[b.Target] {
			seen[b.Target] = true
			s.changedLocked(t)
			s.pokeLocked(t)
		}
	}
}

// forgetBadLocked drops a bad file that a write has just replaced.
func (s *Service) forgetBadLocked(path string) {
	if len(s.holds.bad) == 0 {
		return // the usual case, at no cost
	}
	var lifted []BadFile
	s.holds.bad = slices.DeleteFunc(s.holds.bad, func(b BadFile) bool {
		if b.Path == path {
			lifted = append(lifted, b)
			return true
		}
		return false
	})
	s.liftedLocked(lifted)
}

// recheckLoop runs Recheck every recheckEvery until the service stops.
func (s *Service) recheckLoop() {
	var tick func()
	tick = func() {
		if s.ctx.Err() != nil {
			return
		}
		s.mu.RLock()
		any := len(s.holds.bad) > 0
		s.mu.RUnlock()
		if any {
			s.Recheck()
		}
		s.mu.Lock()
		if s.ctx.Err() == nil {
			s.recheckTimer = s.clock.AfterFunc(recheckEvery, tick)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.recheckTimer = s.clock.AfterFunc(recheckEvery, tick)
	s.mu.Unlock()
}

// badStatusLocked lists the files that did not load, as List shows them.
func (s *Service) badStatusLocked(prefix string) []Status {
	var out []Status
	for _, b := range s.holds.bad {
		id := "statefile/" + filepath.Base(b.Path)
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		info := map[string]any{"path": b.Path}
		msg := b.Err.Error()
		if b.Target != "" {
			info["held"] = string(b.Target)
			msg += "; " + string(b.Target) + " is held: never disconnected until this file is fixed or removed"
		} else {
			info["held"] = "all"
			msg += "; names no target that can be read, so every disconnect is held until this file is fixed or removed"
		}
		out = append(out, Status{ID: id, State: StateRetrying, LastError: ErrNameBadStateFile,
			LastErrorMessage: msg, Info: info})
	}
	return out
}

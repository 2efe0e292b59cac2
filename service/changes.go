// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"sort"
)

// A change of one CID (a Manage or an Unmanage) on its way to disk.
// Changes of different CIDs are written at the same time, so that they
// share the disk's syncs (the Store's group commit); the changes of one
// CID are made one after the other. Each is checked against the state as
// it will be once every change on its way has landed (a CID, or a spec
// on a target, that is being written counts), written, and only then
// put into memory: nothing is seen that is not durable.
type change struct {
	done   chan struct{} // closed when the change has landed or failed
	manage *Spec         // the spec a Manage writes; nil for an Unmanage
}

// errNoChange: the call asks for what is already so.
var errNoChange = errors.New("no change")

// reserve waits until no change of c is on its way to disk, then runs
// check under writeMu; if it returns nil, c is reserved for ch until land.
func (s *Service) reserve(c CID, ch *change, check func() error) error {
	for {
		s.writeMu.Lock()
		if p := s.pending[c]; p != nil {
			s.writeMu.Unlock()
			<-p.done
			continue
		}
		if err := check(); err != nil {
			s.writeMu.Unlock()
			return err
		}
		ch.done = make(chan struct{})
		s.pending[c] = ch
		s.writeMu.Unlock()
		return nil
	}
}

// land ends c's change: apply, when its write succeeded (nil when it
// failed), puts it into memory under the service's lock.
func (s *Service) land(c CID, ch *change, apply func()) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if apply != nil {
		s.mu.Lock()
		apply()
		s.mu.Unlock()
	}
	delete(s.pending, c)
	close(ch.done)
}

// lockAlone takes writeMu once no change is on its way to disk, for the
// changes that run alone (UnmanagePrefix's journal, the loader's Recheck).
// The caller unlocks writeMu.
func (s *Service) lockAlone() {
	s.writeMu.Lock()
	for len(s.pending) > 0 {
		var p *change
		for _, p = range s.pending {
			break
		}
		s.writeMu.Unlock()
		<-p.done
		s.writeMu.Lock()
	}
}

// pendingManagesLocked counts the Manages on their way to disk (under
// writeMu).
func (s *Service) pendingManagesLocked() int {
	n := 0
	for _, p := range s.pending {
		if p.manage != nil {
			n++
		}
	}
	return n
}

// addLocked puts c, whose file is durable, into memory.
func (s *Service) addLocked(c CID, spec Spec) {
	t := s.targets[spec.Target]
	// A CID that joins a target other CIDs want changes nothing for them
	// or for the target's pass: no event for them and no pass, so that a
	// Manage costs the same however many CIDs share the target.
	wake := t == nil || len(t.cids) == 0
	if t == nil {
		t = s.newTarget(spec)
		s.targets[spec.Target] = t
	} else if len(t.cids) == 0 {
		// A disconnect was pending: cancel it, take the new settings, and
		// look now.
		t.spec = spec
		t.force = true
	}
	e := &cidEntry{cid: c, spec: t.shared(spec), target: t}
	s.cids[c] = e
	s.ids.add(string(c))
	t.cids[c] = e
	s.forgetBadLocked(s.store.cidPath(c)) // this write replaced it
	s.publishLocked(Event{Type: EventAdded, CID: c})
	if wake {
		s.changedLocked(t)
		s.pokeLocked(t)
	}
	s.log.Info("managed", "cid", string(c), "uri", spec.URI, "target", string(spec.Target))
}

// conflictLocked returns a *ConflictError when spec cannot share its
// target with the CIDs that refer to it, or will once their writes land.
// Compatibility is equality of settings, so every CID of a target shares
// its spec's: the CIDs are listed only when there is a conflict.
func (s *Service) conflictLocked(spec Spec) error {
	var others []CID
	if t := s.targets[spec.Target]; t != nil && len(t.cids) > 0 && !t.spec.Compatible(spec) {
		for oc, e := range t.cids {
			if !e.spec.Compatible(spec) {
				others = append(others, oc)
			}
		}
	}
	for pc, p := range s.pending {
		if p.manage != nil && p.manage.Target == spec.Target && !p.manage.Compatible(spec) {
			others = append(others, pc)
		}
	}
	if len(others) == 0 {
		return nil
	}
	sort.Slice(others, func(i, j int) bool { return others[i] < others[j] })
	return &ConflictError{Target: spec.Target, CIDs: others, Reason: conflictReason(spec)}
}

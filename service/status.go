// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"
)

// Status is what clients see of one connection: a managed CID, or an
// unmanaged entry with a transient ID (one that contains '/').
type Status struct {
	// ID is the CID, or a transient ID for an unmanaged entry.
	ID      string
	Managed bool
	Kind    Kind
	// URI is canonical and never holds credentials.
	URI    string
	Target TargetKey

	Connected        bool
	State            State
	Preexisting      bool
	LastError        string
	LastErrorMessage string
	LastErrorTime    time.Time
	ConnectedSince   time.Time
	Attempts         uint32
	NextAttempt      time.Time
	// ReadDelay is how long the last read through the connection took,
	// LastProbe when it was made (zero: never; see Prober).
	ReadDelay time.Duration
	LastProbe time.Time
	// Info is the connection info shown to clients: never credentials.
	Info map[string]any
}

// Status returns the status of cid, and whether it is managed.
func (s *Service) Status(c CID) (Status, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.cids[c]
	if !ok {
		return Status{}, false
	}
	return e.statusLocked(), true
}

func (e *cidEntry) statusLocked() Status {
	st := e.target.statusLocked(e.spec)
	st.ID = string(e.cid)
	st.Managed = true
	return st
}

func (t *target) statusLocked(spec Spec) Status {
	st := t.stateLocked(spec)
	st.Info = t.infoLocked(spec)
	return st
}

// stateLocked is statusLocked without Info, whose map is most of the
// cost of an entry (List's brief entries do not show it).
func (t *target) stateLocked(spec Spec) Status {
	st := Status{
		Kind:           spec.Kind,
		URI:            spec.URI,
		Target:         spec.Target,
		Connected:      t.actual.usable,
		State:          t.actual.state,
		Preexisting:    t.actual.origin == originPreexisting,
		LastErrorTime:  t.actual.errAt,
		ConnectedSince: t.actual.since,
		Attempts:       t.actual.attempts,
		NextAttempt:    t.actual.next,
		ReadDelay:      t.actual.readDelay,
		LastProbe:      t.actual.probedAt,
	}
	if t.actual.lastErr != nil {
		st.LastError = t.actual.lastErr.Name
		st.LastErrorMessage = t.actual.lastErr.Err.Error()
	}
	return st
}

// infoLocked is the ConnectionInfo of the target for spec.
func (t *target) infoLocked(spec Spec) map[string]any {
	info := spec.Info()
	for k, v := range t.described {
		info[k] = v
	}
	for k, v := range t.actual.info {
		info[k] = v
	}
	return info
}

// CIDs returns every managed CID, sorted.
func (s *Service) CIDs() []CID {
	s.mu.RLock()
	out := make([]CID, 0, len(s.cids))
	for c := range s.cids {
		out = append(out, c)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// List returns the status of every managed CID that starts with prefix,
// then unmanaged entries: targets storkeep is still tearing down, state
// files it could not read, and (when withHost is set) the connections on
// the host that no CID refers to.
func (s *Service) List(ctx context.Context, prefix string, withHost bool) []Status {
	var host []HostConnection
	if withHost {
		host = s.listHost(ctx)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Status, 0, len(s.cids)+len(host))
	for c, e := range s.cids {
		if strings.HasPrefix(string(c), prefix) {
			out = append(out, e.statusLocked())
		}
	}
	return append(out, s.unmanagedLocked(prefix, host)...)
}

// unmanagedLocked is List's entries with no CID: targets being torn down
// (or held), state files that did not load, and the connections of host
// that no target is, each that starts with prefix.
func (s *Service) unmanagedLocked(prefix string, host []HostConnection) []Status {
	var out []Status
	for _, t := range s.targets {
		if len(t.cids) > 0 {
			continue
		}
		st := t.statusLocked(t.spec)
		st.ID = "unmanaged/" + string(t.key)
		if h := s.holdersLocked(t.key); len(h) > 0 {
			st.LastError = ErrNameBadStateFile
			st.LastErrorMessage = "held: no CID that loaded refers to it, but " + strings.Join(h, ", ") +
				" did not load and may; storkeep will not disconnect it until that is fixed or removed"
		}
		if strings.HasPrefix(st.ID, prefix) {
			out = append(out, st)
		}
	}
	out = append(out, s.badStatusLocked(prefix)...)
	for _, h := range host {
		if _, ok := s.targets[h.Target]; ok || !strings.HasPrefix(h.ID, prefix) {
			continue
		}
		state := StateRetrying
		if h.Connected {
			state = StateConnected
		}
		info := h.Info
		if info == nil {
			info = map[string]any{}
		}
		out = append(out, Status{ID: h.ID, Kind: h.Kind, URI: h.URI, Target: h.Target,
			Connected: h.Connected, State: state, Preexisting: true, Info: info})
	}
	return out
}

// listHost asks every backend that can for the connections on the host,
// in parallel and within HostListTimeout.
func (s *Service) listHost(ctx context.Context) []HostConnection {
	ctx, cancel := context.WithTimeout(ctx, s.opts.HostListTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out []HostConnection
	)
	for kind, be := range s.opts.Backends {
		hl, ok := be.(HostLister)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc, err := hl.ListHost(ctx)
			if err != nil {
				s.log.Warn("listing host connections failed", "kind", string(kind), "err", err)
			}
			mu.Lock()
			for _, h := range hc {
				if strings.Contains(h.ID, "/") {
					out = append(out, h)
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

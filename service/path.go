// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"slices"

	"github.com/storkeep/storkeep/logging"
)

// Path is what the network says about the way to a target's host.
type Path struct {
	// Usable: a route exists and its link can carry packets.
	Usable bool
	// Link is the interface the route leaves through ("" when none).
	Link string
	// Why names, for a path that is not usable, the connection error a
	// client sees: ErrNameLinkDown or ErrNameNoRoute.
	Why string
	// Detail says it for people ("link eth1 has no carrier").
	Detail string
}

// PathWatcher follows the network path to the hosts of targets (in the
// daemon: netmon, over rtnetlink). The service stays free of netlink: it
// only names hosts and hears about their paths.
type PathWatcher interface {
	// Watch starts following host (counted); it must not block.
	Watch(host string)
	// Unwatch undoes one Watch.
	Unwatch(host string)
	// Run reports, until ctx ends, the path of every watched host when
	// it is first known and whenever it changes.
	Run(ctx context.Context, report func(host string, p Path))
}

// PathListener is implemented by backends that keep their own view of a
// server's health (the NFS backend's liveness probe): the service tells
// them when the path to a target became usable again, so that they look
// now instead of at their next period.
type PathListener interface {
	PathUsable(key TargetKey)
}

// Connection error names for a target whose network path is not usable.
// The connection itself is kept: it comes back with the path.
const (
	ErrNameLinkDown = "LinkDown" // the link the route leaves through is down or has no carrier
	ErrNameNoRoute  = "NoRoute"  // no route to the target's host
)

// PathEvent tells subscribers that the path to a host changed, and which
// CIDs it carries (for `storkeepctl monitor`).
type PathEvent struct {
	Host string
	Path Path
	CIDs []CID
}

// Host is the server or portal a spec's target lives on.
func (s Spec) Host() string {
	switch {
	case s.NFS != nil:
		return s.NFS.Server
	case s.ISCSI != nil:
		return s.ISCSI.Host
	}
	return ""
}

// pathChanged takes a PathWatcher's report: it records the path of every
// target on host and pokes them. A path that became usable again ends the
// wait of the targets that are down: an attempt now, with the backoff
// reset, however long it had grown.
func (s *Service) pathChanged(host string, p Path) {
	var again []*target
	wasDown := false // some target on host had known the path unusable
	s.mu.Lock()
	if s.hostUsedLocked(host) {
		s.hostPaths[host] = p
	}
	ev := PathEvent{Host: host, Path: p}
	for _, t := range s.targets {
		if t.host != host {
			continue
		}
		was, known := t.path, t.pathKnown
		t.path, t.pathKnown = p, true
		if !known || was.Usable != p.Usable || was.Link != p.Link {
			t.recheck = true
			t.interruptProbeLocked()
		}
		wasDown = wasDown || (known && !was.Usable)
		for c := range t.cids {
			ev.CIDs = append(ev.CIDs, c)
		}
		if p.Usable && known && (!was.Usable || was.Link != p.Link) && !t.actual.usable {
			t.force = true
			again = append(again, t)
		}
		s.pokeLocked(t)
	}
	slices.Sort(ev.CIDs)
	if len(ev.CIDs) > 0 {
		s.publishLocked(Event{Type: EventPath, Path: &ev})
	}
	s.mu.Unlock()
	switch {
	case p.Usable && wasDown:
		s.log.Info("network path usable", logging.PathUp.Attr(), "host", host, "link", p.Link, "reconnecting", len(again))
	case p.Usable:
		s.log.Info("network path usable", "host", host, "link", p.Link, "reconnecting", len(again))
	default:
		s.log.Warn("network path not usable", logging.PathDown.Attr(), "host", host, "why", p.Detail, "cids", len(ev.CIDs))
	}
	for _, t := range again {
		if l, ok := s.opts.Backends[t.spec.Kind].(PathListener); ok {
			l.PathUsable(t.key)
		}
	}
}

// pathError is the error a target reports while its path is not usable.
func pathError(p Path) *ConnError {
	name := p.Why
	if name == "" {
		name = ErrNameNoRoute
	}
	return NewConnError(name, "%s", p.Detail)
}

// hostUsedLocked reports whether any target lives on host.
func (s *Service) hostUsedLocked(host string) bool {
	for _, t := range s.targets {
		if t.host == host {
			return true
		}
	}
	return false
}

// pathMisjudged forgets the path of a target that connected although its
// path looked unusable (policy routing or an interface binding the route
// lookup does not see): the connection is the better witness, until the
// path's next report.
func (s *Service) pathMisjudged(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.pathKnown = false
	s.log.Warn("connected although the network path looked unusable; ignoring the path until it changes",
		"target", string(t.key), "path", t.path.Detail)
}

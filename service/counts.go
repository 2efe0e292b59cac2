// SPDX-License-Identifier: Apache-2.0

package service

// Counts sums up the managed CIDs for the daemon's one-line status
// (systemctl status storkeepd).
type Counts struct {
	Managed    int // CIDs
	Connected  int // CIDs whose connection is up
	Connecting int // CIDs whose connection is being attempted
	Retrying   int // CIDs whose connection is down, waiting to retry
	// PathsDown counts the storage hosts of managed CIDs whose network
	// path is known to be unusable.
	PathsDown int
	// BadFiles counts the state files that did not load.
	BadFiles int
}

// Counts returns the current counts. It takes the service's lock once
// and costs a pass over the targets (a fifth of a pass over the CIDs with
// five CIDs a target: at 100,000 CIDs the daemon's status line, updated
// after changes, held the lock long enough to show in Manage's p99).
func (s *Service) Counts() Counts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := Counts{Managed: len(s.cids), BadFiles: len(s.holds.bad)}
	down := map[string]bool{}
	for _, t := range s.targets {
		n := len(t.cids)
		if n == 0 {
			continue
		}
		switch {
		case t.actual.usable:
			c.Connected += n
		case t.actual.state == StateConnecting:
			c.Connecting += n
		default:
			c.Retrying += n
		}
		if t.pathKnown && !t.path.Usable && t.host != "" {
			down[t.host] = true
		}
	}
	c.PathsDown = len(down)
	return c
}

// Ping returns once it has taken and released the service's lock: a
// cheap round trip that a wedged service (a lock never released) does
// not finish, for the watchdog.
func (s *Service) Ping() {
	s.mu.Lock()
	s.mu.Unlock()
}

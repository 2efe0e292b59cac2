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
// and costs a pass over the CIDs.
func (s *Service) Counts() Counts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := Counts{Managed: len(s.cids), BadFiles: len(s.holds.bad)}
	down := map[string]bool{}
	for _, e := range s.cids {
		t := e.target
		switch {
		case t.actual.usable:
			c.Connected++
		case t.actual.state == StateConnecting:
			c.Connecting++
		default:
			c.Retrying++
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

// SPDX-License-Identifier: Apache-2.0

package service

import "sync"

// EventType says what happened to a CID.
type EventType int

const (
	EventAdded   EventType = iota // a CID was managed
	EventChanged                  // its status changed
	EventRemoved                  // it was unmanaged
	EventPath                     // the network path to a host changed (Path is set)
)

// Event names a CID whose status a subscriber should read again.
type Event struct {
	Type EventType
	CID  CID
	Path *PathEvent // EventPath only
}

// Subscription receives events without ever slowing the service down:
// events queue up in the subscription, repeated changes of one CID
// coalesce into one, and Ready signals that there is something to take.
type Subscription struct {
	s     *Service
	ready chan struct{}

	mu      sync.Mutex // guards all following fields
	pending []Event
	last    map[CID]EventType // the last pending event of each CID
}

// Subscribe returns a new subscription. Close it when done.
func (s *Service) Subscribe() *Subscription {
	sub := &Subscription{s: s, ready: make(chan struct{}, 1), last: make(map[CID]EventType)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Ready receives a value when events are pending.
func (sub *Subscription) Ready() <-chan struct{} { return sub.ready }

// Take returns the pending events in order and clears them. A Changed event
// that follows an Added or Changed event of the same CID is dropped: the
// subscriber reads the current status when it handles the first.
func (sub *Subscription) Take() []Event {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	ev := sub.pending
	sub.pending = nil
	clear(sub.last)
	return ev
}

// Close stops the subscription. It is safe to call more than once.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
}

func (sub *Subscription) add(e Event) {
	sub.mu.Lock()
	if e.Type == EventPath {
		sub.pending = append(sub.pending, e)
		sub.mu.Unlock()
		sub.signal()
		return
	}
	if e.Type == EventChanged {
		if _, ok := sub.last[e.CID]; ok && sub.last[e.CID] != EventRemoved {
			sub.mu.Unlock()
			return
		}
	}
	sub.pending = append(sub.pending, e)
	sub.last[e.CID] = e.Type
	sub.mu.Unlock()
	sub.signal()
}

func (sub *Subscription) signal() {
	select {
	case sub.ready <- struct{}{}:
	default:
	}
}

func (s *Service) publishLocked(e Event) {
	for sub := range s.subs {
		sub.add(e)
	}
}

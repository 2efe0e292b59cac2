// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"fmt"
)

// Wait returns nil once cid is connected, ErrUnknownCID if it is (or
// becomes) unmanaged, and a *WaitTimeoutError carrying the last connection
// error when ctx is done first.
func (s *Service) Wait(ctx context.Context, c CID) error {
	for {
		s.mu.RLock()
		e, ok := s.cids[c]
		if !ok {
			s.mu.RUnlock()
			return fmt.Errorf("%w: %q is not managed", ErrUnknownCID, c)
		}
		t := e.target
		if t.actual.usable {
			s.mu.RUnlock()
			return nil
		}
		ch := t.changed
		last := t.actual.lastErr
		state := t.actual.state
		s.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return &WaitTimeoutError{CID: c, State: state, Last: last}
		}
	}
}

// WaitTimeoutError says that a connection did not come up in time, and why.
type WaitTimeoutError struct {
	CID   CID
	State State
	Last  *ConnError
}

func (e *WaitTimeoutError) Error() string {
	msg := fmt.Sprintf("CID %q is not connected (state %s)", e.CID, e.State)
	if e.Last != nil {
		msg += "; last error " + e.Last.Error()
	}
	return msg
}

func (e *WaitTimeoutError) Is(target error) bool { return target == ErrTimeout }

// SPDX-License-Identifier: Apache-2.0

package dbus

import "context"

// Ping returns nil once Serve's loop, which owns the bus name and sends
// every change signal, has answered it: a round trip that a wedged loop
// never finishes (the watchdog's question). Before Serve owns the name
// and after it returns, Ping waits until ctx is done.
func (s *Server) Ping(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case s.pings <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

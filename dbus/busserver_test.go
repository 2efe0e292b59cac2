// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"testing"

	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

// newBusServer exports svc on a fresh private dbus-daemon, as the daemon
// does on the system bus, and returns the Server (not yet serving) and
// the bus's address for clients.
func newBusServer(t *testing.T, svc *service.Service) (*Server, string) {
	t.Helper()
	bus := dbustest.Start(t)
	c, err := Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv, err := NewServer(c, Options{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	return srv, bus.Address
}

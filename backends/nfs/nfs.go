// Package nfs makes nfs:// connections: one systemd mount unit per
// (server, port, export) target.
//
// This first version only checks what NFS mounts need on the host (systemd
// reachable on the system bus) and reports honestly that mounting is not
// built yet; the mount-unit backend replaces Connect and Observe.
package nfs

import (
	"context"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// Error names this backend reports in LastError.
const (
	ErrSystemdUnavailable = "SystemdUnavailable"
	ErrNotImplemented     = "NotImplemented"
)

// Backend implements service.Backend for NFS.
type Backend struct {
	// SystemBus dials the bus systemd listens on. nil means the system bus.
	SystemBus func() (*godbus.Conn, error)
}

// Observe reports the target as absent: nothing is mounted by this version.
func (b *Backend) Observe(ctx context.Context, spec service.Spec) (service.Observation, error) {
	return service.Observation{}, nil
}

// Connect checks that systemd can take a mount unit, then reports that
// mounting is not built yet.
func (b *Backend) Connect(ctx context.Context, spec service.Spec) (service.Observation, error) {
	if err := b.checkSystemd(ctx); err != nil {
		return service.Observation{}, err
	}
	return service.Observation{}, service.NewConnError(ErrNotImplemented,
		"mounting %s needs the mount-unit backend, which this build does not have yet", spec.Target)
}

// Disconnect has nothing to tear down.
func (b *Backend) Disconnect(ctx context.Context, spec service.Spec) error { return nil }

// checkSystemd asks systemd for its version over the system bus.
//
// Equivalent to: busctl get-property org.freedesktop.systemd1
// /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version
func (b *Backend) checkSystemd(ctx context.Context) error {
	dial := b.SystemBus
	if dial == nil {
		dial = func() (*godbus.Conn, error) { return godbus.SystemBusPrivate() }
	}
	conn, err := dial()
	if err == nil {
		defer conn.Close()
		if err = conn.Auth(nil); err == nil {
			err = conn.Hello()
		}
	}
	if err == nil {
		var v godbus.Variant
		err = conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
			CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Manager", "Version").Store(&v)
	}
	if err != nil {
		return service.NewConnError(ErrSystemdUnavailable,
			"NFS mounts are systemd mount units, and systemd is not reachable on the system bus: %v", err)
	}
	return nil
}

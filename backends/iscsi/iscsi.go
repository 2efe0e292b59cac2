// Package iscsi makes iscsi:// connections: one iscsiadm session per
// (portal, target IQN, tpgt, iface) target.
//
// This first version only checks what iSCSI logins need on the host
// (iscsiadm and the kernel's iSCSI initiator) and reports honestly that
// logging in is not built yet; the iscsiadm backend replaces it.
package iscsi

import (
	"context"
	"os"
	"os/exec"

	"github.com/storkeep/storkeep/service"
)

// Error names this backend reports in LastError.
const (
	ErrInitiatorUnavailable = "InitiatorUnavailable"
	ErrNotImplemented       = "NotImplemented"
)

// Backend implements service.Backend for iSCSI.
type Backend struct {
	// SysfsRoot is where sysfs is mounted ("" means /sys).
	SysfsRoot string
}

// Observe reports the target as absent: nothing is logged in by this version.
func (b *Backend) Observe(ctx context.Context, spec service.Spec) (service.Observation, error) {
	return service.Observation{}, nil
}

// Connect checks for an iSCSI initiator, then reports that logging in is
// not built yet.
func (b *Backend) Connect(ctx context.Context, spec service.Spec) (service.Observation, error) {
	if _, err := exec.LookPath("iscsiadm"); err != nil {
		return service.Observation{}, service.NewConnError(ErrInitiatorUnavailable,
			"iscsiadm is not installed (Debian package open-iscsi): %v", err)
	}
	sys := b.SysfsRoot
	if sys == "" {
		sys = "/sys"
	}
	if _, err := os.Stat(sys + "/class/iscsi_transport"); err != nil {
		return service.Observation{}, service.NewConnError(ErrInitiatorUnavailable,
			"the kernel has no iSCSI initiator (module scsi_transport_iscsi): %v", err)
	}
	return service.Observation{}, service.NewConnError(ErrNotImplemented,
		"logging in to %s needs the iscsiadm backend, which this build does not have yet", spec.Target)
}

// Disconnect has nothing to tear down.
func (b *Backend) Disconnect(ctx context.Context, spec service.Spec) error { return nil }

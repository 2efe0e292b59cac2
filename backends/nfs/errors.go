// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"context"
	"errors"
	"strings"

	"github.com/storkeep/storkeep/service"
	"github.com/storkeep/storkeep/units"
)

// Error names this backend reports in LastError. A client can act on
// each: fix the URI, the server's exports or its network, or wait.
const (
	ErrSystemdUnavailable  = "SystemdUnavailable"  // no systemd on the system bus
	ErrServerUnreachable   = "ServerUnreachable"   // refused, no route, unknown host
	ErrExportNotFound      = "ExportNotFound"      // the server has no such export
	ErrAccessDenied        = "AccessDenied"        // the server refuses this host
	ErrVersionUnsupported  = "VersionNotSupported" // the server does not speak the asked version
	ErrTimeout             = service.ErrNameTimeout
	ErrMountFailed         = "MountFailed"         // anything else the helper said
	ErrMountPointBusy      = "MountPointBusy"      // something else is mounted there
	ErrServerNotResponding = "ServerNotResponding" // mounted, but the server does not answer
	ErrUnmountFailed       = "UnmountFailed"
)

// reasons maps words of mount.nfs (and of the kernel errors it prints) to
// error names. The first match wins, so the specific come first.
var reasons = []struct{ words, name string }{
	{"access denied", ErrAccessDenied},
	{"permission denied", ErrAccessDenied},
	{"operation not permitted", ErrAccessDenied},
	{"no such file or directory", ErrExportNotFound},
	{"protocol not supported", ErrVersionUnsupported},
	{"version or transport protocol is not supported", ErrVersionUnsupported},
	{"connection refused", ErrServerUnreachable},
	{"no route to host", ErrServerUnreachable},
	{"network is unreachable", ErrServerUnreachable},
	{"host is down", ErrServerUnreachable},
	{"failed to resolve server", ErrServerUnreachable},
	{"name or service not known", ErrServerUnreachable},
	{"timed out", ErrTimeout},
}

// classify turns a failed mount into a ConnError whose name says what went
// wrong and whose message carries the helper's own words.
func classify(target service.TargetKey, err error) *service.ConnError {
	var ue *units.UnitError
	switch {
	case errors.Is(err, units.ErrUnavailable):
		return service.NewConnError(ErrSystemdUnavailable,
			"NFS mounts are systemd mount units, and systemd is not reachable on the system bus: %v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return service.NewConnError(ErrTimeout, "mounting %s did not finish in time: %v", target, err)
	case errors.As(err, &ue):
		msg := strings.ToLower(strings.Join(ue.Log, "\n"))
		for _, r := range reasons {
			if strings.Contains(msg, r.words) {
				return &service.ConnError{Name: r.name, Err: err}
			}
		}
		if ue.Result == "timeout" || ue.Job == "timeout" {
			return &service.ConnError{Name: ErrTimeout, Err: err}
		}
	}
	return &service.ConnError{Name: ErrMountFailed, Err: err}
}

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storkeep/storkeep/backends/ioprobe"
	"github.com/storkeep/storkeep/service"
)

// Probe reads the first 4 KiB of each LUN that counts (the one asked for,
// or every disk) with O_DIRECT, in a helper process killed at ctx's
// deadline: a LUN whose I/O hangs in recovery holds up only the helper.
//
// Equivalent to: dd if=/dev/sdX of=/dev/null bs=4096 count=1 iflag=direct
func (b *Backend) Probe(ctx context.Context, spec service.Spec, obs service.Observation) service.ProbeResult {
	devs := probeDevices(obs, spec.ISCSI.LUN)
	if len(devs) == 0 {
		return service.ProbeResult{Err: service.NewConnError(service.ErrNameIOError,
			"%s: no block device to read", spec.Target)}
	}
	return b.ioProbe().Probe(ctx, string(spec.Target), ioprobe.Block, devs...).ForService()
}

// probeDevices returns the kernel nodes of the LUNs obs shows, sorted:
// only LUN want's when want >= 0.
func probeDevices(obs service.Observation, want int) []string {
	devs, _ := obs.Info[infoDevices].(map[string]string)
	var out []string
	for link, node := range devs {
		if want >= 0 && !strings.HasSuffix(link, "-lun-"+strconv.Itoa(want)) {
			continue
		}
		out = append(out, node)
	}
	slices.Sort(out)
	return out
}

func (b *Backend) ioProbe() *ioprobe.Runner {
	b.ioProbeOnce.Do(func() {
		if b.IOProbe == nil {
			b.IOProbe = &ioprobe.Runner{}
		}
	})
	return b.IOProbe
}

// Server names the portal a target's reachability check asks.
func (b *Backend) Server(spec service.Spec) string {
	return service.HostPort(spec.ISCSI.Host, spec.ISCSI.PortalPort())
}

// Reach opens and closes a TCP connection to spec's portal, without
// touching any session.
//
// Equivalent to: nc -z HOST PORT
func (b *Backend) Reach(ctx context.Context, spec service.Spec) error {
	is := spec.ISCSI
	addrs, err := b.resolver().Addrs(ctx, is.Host)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s: no address", is.Host)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", service.HostPort(addrs[0].String(), is.PortalPort()))
	if err != nil {
		return err
	}
	return c.Close()
}

// defaultRecoveryTmo is the kernel's recovery_tmo when sysfs does not say
// (open-iscsi's default replacement_timeout).
const defaultRecoveryTmo = 120 * time.Second

// recoveryMargin is added to a session's recovery_tmo before storkeep
// gives up on iscsid's recovery: the kernel fails the I/O at recovery_tmo,
// iscsid keeps trying after that.
const recoveryMargin = 10 * time.Second

// failingFor records s's state at now and returns how long it has been
// seen not logged in (0 when it is logged in).
func (b *Backend) failingFor(s session, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.State == stateLoggedIn {
		delete(b.failedAt, s.ID)
		return 0
	}
	if b.failedAt == nil {
		b.failedAt = make(map[uint32]time.Time)
	}
	at, ok := b.failedAt[s.ID]
	if !ok {
		b.failedAt[s.ID] = now
		return 0
	}
	return now.Sub(at)
}

// pastRecovery reports whether s has been FAILED for longer than the
// kernel holds I/O for it, plus a margin: a session still within it is
// recovering and is never logged out.
func (b *Backend) pastRecovery(s session, now time.Time) bool {
	d := b.failingFor(s, now)
	return s.State == stateFailed && d > s.RecoveryTmo+recoveryMargin
}

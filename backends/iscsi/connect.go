// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/storkeep/storkeep/service"
)

// Connect logs in to spec's target and waits for its devices. It is
// idempotent: a logged-in session is only waited on (and rescanned once
// when the LUN asked for is missing); a session the kernel is recovering
// is left to the kernel and reported. The login itself:
//
//  1. a TCP check of the portal, so that an unreachable portal is
//     reported in seconds rather than after iscsid's retries (about two
//     minutes), and without waiting for the node database;
//  2. a static node record for the target (iscsiadm -m node -o new), with
//     node.startup=manual and the CHAP settings written into the record
//     file by storkeep (never on a command line), under iscsiadm's lock;
//  3. iscsiadm --login (exit code 15, already logged in, is success);
//  4. the session in sysfs, then a block device and a by-path link for
//     the LUN(s).
//
// A failed login never logs out or deletes a session: it only deletes
// the node record storkeep made for it, when no session uses it.
func (b *Backend) Connect(ctx context.Context, spec service.Spec) (service.Observation, error) {
	is, err := iscsiSpec(spec)
	if err != nil {
		return service.Observation{}, err
	}
	b.remember(spec)
	if err := is.CHAP.Check(); err != nil {
		return service.Observation{}, service.NewConnError(ErrLoginFailed, "%s: %v", spec.Target, err)
	}
	addrs, err := b.hostAddrs(ctx, is.Host)
	if err != nil {
		return service.Observation{}, err
	}
	if len(addrs) == 0 {
		return service.Observation{}, service.NewConnError(ErrPortalUnreachable, "portal host %s has no address", is.Host)
	}
	sessions, err := readSessions(b.sysRoot())
	if err != nil {
		return service.Observation{}, connErrorFor(ErrLoginFailed, err)
	}
	if s, ok := pick(sessions, is, addrs); ok {
		switch {
		case s.State == stateLoggedIn:
			return b.waitDevices(ctx, s.ID, is)
		case !b.pastRecovery(s, time.Now()):
			// The kernel and iscsid recover it on their own; a second
			// login would only be refused with "session exists".
			obs, _ := observation(b.devRoot(), s, is.LUN)
			return obs, nil
		}
		// Failed for longer than the kernel holds I/O for it: its devices
		// fail every I/O already. If the portal answers, a new login
		// works where iscsid's recovery is stuck.
		if err := b.checkPortal(ctx, nodeRecord{IQN: is.IQN, Addr: s.Address, Port: s.Port, TPGT: is.TPGT, Iface: is.Iface}); err != nil {
			obs, _ := observation(b.devRoot(), s, is.LUN)
			return obs, nil
		}
		b.log().Warn("session failed past its replacement timeout and the portal answers; logging in again",
			"target", string(spec.Target), "session", s.ID, "recovery_tmo", s.RecoveryTmo)
		if err := b.logout(ctx, s.ID); err != nil {
			return service.Observation{}, connErrorFor(ErrLoginFailed, err)
		}
	}
	if err := b.initiatorAvailable(); err != nil {
		return service.Observation{}, err
	}

	rec := nodeRecord{IQN: is.IQN, Addr: addrs[0].String(), Port: is.PortalPort(), TPGT: is.TPGT, Iface: is.Iface}
	// The portal first: an unreachable one is reported without touching
	// the node database, whose updates wait for each other.
	if err := b.checkPortal(ctx, rec); err != nil {
		return service.Observation{}, err
	}
	ours, err := b.prepareRecord(ctx, rec, is.CHAP)
	if err != nil {
		return service.Observation{}, connErrorFor(ErrLoginFailed, err)
	}
	start := time.Now()
	if err := b.login(ctx, rec); err != nil {
		b.dropRecordAfterFailure(ctx, rec, is, ours)
		return service.Observation{}, err
	}
	s, err := b.waitSession(ctx, is, addrs)
	if err != nil {
		return service.Observation{}, err
	}
	b.log().Info("logged in", "target", string(spec.Target), "session", s.ID, "took", time.Since(start).Round(time.Millisecond))
	return b.waitDevices(ctx, s.ID, is)
}

// prepareRecord makes sure the node record for rec exists and carries the
// settings storkeep needs, and reports whether the record is storkeep's
// own (created now or by an earlier run). Node database changes are
// serialized.
func (b *Backend) prepareRecord(ctx context.Context, rec nodeRecord, chap service.CHAP) (ours bool, err error) {
	b.nodeMu.Lock()
	defer b.nodeMu.Unlock()
	path := rec.path(b.nodesDir())
	content, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := b.newRecord(ctx, rec); err != nil {
			return false, err
		}
		if content, err = os.ReadFile(path); err != nil {
			return false, fmt.Errorf("read node record %s after creating it: %w", path, err)
		}
		ours = true
	case err != nil:
		return false, fmt.Errorf("read node record %s: %w", path, err)
	default:
		ours = hasMarker(content)
	}
	edited := editRecord(content, recordSettings(chap, ours), ours)
	if bytes.Equal(edited, content) {
		return ours, nil
	}
	unlock, err := idbmLock(ctx, b.lockDir())
	if err != nil {
		return ours, err
	}
	defer unlock()
	if err := writeRecord(path, b.configRoot(), edited); err != nil {
		return ours, err
	}
	return ours, nil
}

// dropRecordAfterFailure deletes the record storkeep made for a login
// that failed, unless a session uses it: nothing is left behind that the
// service, which sees no session, would never disconnect.
func (b *Backend) dropRecordAfterFailure(ctx context.Context, rec nodeRecord, is *service.ISCSISpec, ours bool) {
	if !ours {
		return
	}
	// The caller's deadline may be what failed: the cleanup gets its own
	// (deleteRecord bounds the iscsiadm call once the node lock is held).
	cctx := context.WithoutCancel(ctx)
	addr, _ := netip.ParseAddr(rec.Addr)
	if sessions, err := readSessions(b.sysRoot()); err != nil {
		return
	} else if _, ok := pick(sessions, is, []netip.Addr{addr}); ok {
		return
	}
	if err := b.removeOwnRecord(cctx, rec); err != nil {
		b.log().Warn("could not delete the node record of a failed login", "record", rec.String(), "err", err)
	}
}

// removeOwnRecord deletes rec if it carries storkeep's marker.
func (b *Backend) removeOwnRecord(ctx context.Context, rec nodeRecord) error {
	b.nodeMu.Lock()
	defer b.nodeMu.Unlock()
	content, err := os.ReadFile(rec.path(b.nodesDir()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read node record %s: %w", rec, err)
	}
	if !hasMarker(content) {
		return nil
	}
	return b.deleteRecord(ctx, rec)
}

// checkPortal opens and closes a TCP connection to the portal. Only for
// the default iface: other ifaces may bind to a NIC or an offload card
// this process would not go through.
func (b *Backend) checkPortal(ctx context.Context, rec nodeRecord) error {
	timeout := b.portalTimeout()
	if timeout < 0 || rec.Iface != service.DefaultIface {
		return nil
	}
	if _, err := netip.ParseAddr(rec.Addr); err != nil {
		return nil
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", service.HostPort(rec.Addr, rec.Port))
	if err != nil {
		if ctx.Err() != nil {
			return service.NewConnError(ErrTimeout, "connect to portal %s: %v", service.HostPort(rec.Addr, rec.Port), err)
		}
		return service.NewConnError(ErrPortalUnreachable, "connect to portal %s: %v", service.HostPort(rec.Addr, rec.Port), err)
	}
	c.Close()
	return nil
}

// sessionAppearWait bounds the wait for a session in sysfs after iscsiadm
// said the login succeeded (or that a session exists: iscsid says so too
// while an earlier login is still retrying).
const sessionAppearWait = 5 * time.Second

// waitSession waits for the target's session to show in sysfs.
func (b *Backend) waitSession(ctx context.Context, is *service.ISCSISpec, addrs []netip.Addr) (session, error) {
	deadline := time.Now().Add(sessionAppearWait)
	for {
		next := b.nextChange()
		sessions, err := readSessions(b.sysRoot())
		if err != nil {
			return session{}, connErrorFor(ErrLoginFailed, err)
		}
		if s, ok := pick(sessions, is, addrs); ok {
			return s, nil
		}
		if time.Now().After(deadline) {
			return session{}, service.NewConnError(ErrLoginFailed,
				"iscsiadm reported a login to %s at %s, but no session shows in sysfs (an earlier login may still be retrying in iscsid)",
				is.IQN, service.HostPort(addrs[0].String(), is.PortalPort()))
		}
		if err := b.pause(ctx, next); err != nil {
			return session{}, service.NewConnError(ErrTimeout, "waiting for the session to %s: %v", is.IQN, err)
		}
	}
}

// waitDevices waits until session id's LUN(s) have block devices and
// by-path links, within DeviceTimeout. A missing LUN gets one rescan
// (it may have been added on the target since the login); still missing,
// it is reported as NoLUN and the session stays logged in.
//
// Equivalent to: udevadm settle, then ls /dev/disk/by-path (without
// waiting for unrelated devices).
func (b *Backend) waitDevices(ctx context.Context, id uint32, is *service.ISCSISpec) (service.Observation, error) {
	deadline := time.Now().Add(b.deviceTimeout())
	rescanned := false
	for {
		next := b.nextChange()
		s, err := readSession(b.sysRoot(), id)
		if errors.Is(err, fs.ErrNotExist) {
			return service.Observation{}, service.NewConnError(ErrLost, "session %d to %s vanished", id, is.IQN)
		}
		if err != nil {
			return service.Observation{}, connErrorFor(ErrLoginFailed, err)
		}
		obs, st := observation(b.devRoot(), s, is.LUN)
		if s.State != stateLoggedIn {
			return obs, nil
		}
		if obs.Connected {
			// Other CIDs may want the session's other LUNs: let udev finish
			// with them too, so that their links exist when this returns.
			if all, _ := checkLUNs(s, -1, pendingOf(b.devRoot(), s)); all != lunsPending || time.Now().After(deadline) {
				return obs, nil
			}
			if b.pause(ctx, next) != nil {
				return obs, nil
			}
			continue
		}
		if st == lunsMissing {
			if rescanned {
				return obs, nil
			}
			rescanned = true
			if err := b.rescan(ctx, id); err != nil {
				b.log().Warn("rescan failed", "session", id, "err", err)
			}
			continue
		}
		if time.Now().After(deadline) {
			obs.Err = service.NewConnError(ErrTimeout, "devices of session %d did not appear within %s: %v",
				id, b.deviceTimeout(), obs.Err)
			return obs, nil
		}
		if err := b.pause(ctx, next); err != nil {
			obs.Err = service.NewConnError(ErrTimeout, "waiting for the devices of session %d: %v", id, err)
			return obs, nil
		}
	}
}

// pendingOf returns the LUNs of s whose block device has no link yet.
func pendingOf(devRoot string, s session) map[int]bool {
	_, pending := devices(devRoot, s)
	return pending
}

// pause waits for the next uevent about sessions or devices (next, taken
// before the last read of sysfs), or PollInterval, whichever comes first:
// udev's event for a by-path link ends the wait for it at once, and the
// re-read covers a host whose uevents the watcher does not get.
func (b *Backend) pause(ctx context.Context, next <-chan struct{}) error {
	t := time.NewTimer(b.pollInterval())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-next:
		return nil
	case <-t.C:
		return nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Disconnect logs out every session of spec's target (by session id) and
// deletes the node record if storkeep made it. A target with no session is
// success. Records storkeep did not make are left as they are. The
// service calls Disconnect only for targets storkeep connected, never for
// sessions that were there before (boot from iSCSI, a login by hand).
//
// Equivalent to: iscsiadm -m session -r ID --logout; iscsiadm -m node -o delete ...
func (b *Backend) Disconnect(ctx context.Context, spec service.Spec) error {
	is, err := iscsiSpec(spec)
	if err != nil {
		return err
	}
	addrs := b.cachedAddrs(is.Host)
	if len(addrs) == 0 {
		if addrs, err = b.hostAddrs(ctx, is.Host); err != nil {
			return err
		}
	}
	sessions, err := readSessions(b.sysRoot())
	if err != nil {
		return connErrorFor(ErrLoginFailed, err)
	}
	recs := make(map[nodeRecord]bool)
	for _, a := range addrs {
		recs[nodeRecord{IQN: is.IQN, Addr: a.String(), Port: is.PortalPort(), TPGT: is.TPGT, Iface: is.Iface}] = true
	}
	for _, s := range sessions {
		if !matches(s, is, addrs) {
			continue
		}
		if err := b.initiatorAvailable(); err != nil {
			return err
		}
		if err := b.logout(ctx, s.ID); err != nil {
			return connErrorFor(ErrLoginFailed, fmt.Errorf("%s: %w", spec.Target, err))
		}
		b.log().Info("logged out", "target", string(spec.Target), "session", s.ID)
		// The record iscsiadm logged in with names the target as sysfs does.
		recs[nodeRecord{IQN: s.Target, Addr: s.Address, Port: s.Port, TPGT: s.TPGT, Iface: is.Iface}] = true
	}
	for rec := range recs {
		if err := b.removeOwnRecord(ctx, rec); err != nil {
			return connErrorFor(ErrLoginFailed, err)
		}
	}
	b.forget(spec.Target)
	return nil
}

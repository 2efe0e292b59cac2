// SPDX-License-Identifier: Apache-2.0

// Package iscsi makes iscsi:// connections: one iSCSI session per
// (portal address, port, target IQN, tpgt, iface) target, logged in with
// iscsiadm and observed in sysfs.
//
// What the host shows is the truth: sessions, their state and their
// devices are read from /sys/class/iscsi_session, /sys/class/iscsi_connection
// and /dev/disk/by-path every time, never remembered and never parsed out
// of iscsiadm's human output. iscsiadm is only run to change something:
// create or delete a node record, log in, log out, rescan.
//
// CHAP secrets never reach a command line: storkeep writes them into the
// node record file itself (mode 0600, under open-iscsi's own database
// lock), which is where `iscsiadm -o update` would have put them, and
// iscsiadm reads them from there when it logs in (see noderec.go).
//
// A node record storkeep creates carries a comment marker, so that a
// Disconnect, even one by a later run of the daemon, deletes only
// records storkeep made: records made by hand or by discovery are left
// alone.
package iscsi

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/storkeep/storkeep/backends/ioprobe"
	"github.com/storkeep/storkeep/netmon"
	"github.com/storkeep/storkeep/service"
)

// Interfaces the service looks for.
var (
	_ service.Backend    = (*Backend)(nil)
	_ service.HostLister = (*Backend)(nil)
	_ service.Watcher    = (*Backend)(nil)
)

// Backend implements service.Backend, service.HostLister and
// service.Watcher for iSCSI. Its zero value works on a standard host;
// the fields are for tests and unusual layouts.
type Backend struct {
	// SysRoot is where sysfs is mounted ("" means /sys).
	SysRoot string
	// DevRoot is where device nodes live ("" means /dev).
	DevRoot string
	// ConfigRoot is open-iscsi's configuration directory, which holds the
	// node database in nodes/ ("" means /etc/iscsi).
	ConfigRoot string
	// LockDir holds open-iscsi's node database lock ("" means
	// /run/lock/iscsi).
	LockDir string
	// Iscsiadm is the iscsiadm command ("" means iscsiadm, from PATH).
	Iscsiadm string
	// Log receives what the backend does (nil means slog.Default()).
	Log *slog.Logger

	// DeviceTimeout bounds the wait for a LUN's block device and udev's
	// by-path link after a login (0 means 30 s).
	DeviceTimeout time.Duration
	// PortalTimeout bounds the TCP check of the portal before a login, so
	// that an unreachable portal is reported in seconds instead of after
	// iscsid's login retries (about 2 minutes). 0 means 10 s; negative
	// skips the check.
	PortalTimeout time.Duration
	// WatchInterval is the period of the sysfs re-read that backs up the
	// kernel's uevents in Watch (0 means 1 s).
	WatchInterval time.Duration
	// PollInterval is how often a Connect that waits for its session or
	// devices re-reads sysfs when no uevent wakes it first (0 means 20 ms).
	PollInterval time.Duration
	// Resolver answers for portal host names: the daemon's one cache,
	// shared with the path monitor; nil means a cache of the backend's own.
	Resolver     *netmon.Resolver
	resolverOnce sync.Once
	// IOProbe runs the reads that prove a LUN usable (Probe); nil runs
	// the daemon's own executable as the helper.
	IOProbe     *ioprobe.Runner
	ioProbeOnce sync.Once

	// nodeMu serializes changes to the node database: iscsiadm's own lock
	// only covers one call, and a record is created and then edited.
	nodeMu sync.Mutex

	mu sync.Mutex
	// changes is closed and replaced at every uevent Watch sees about
	// iSCSI, SCSI or block devices (sysfsChanged): it wakes the waits
	// after a login.
	changes chan struct{}
	// known holds the targets Observe or Connect was asked about, so that
	// the watcher can poke them and ListHost can name their sessions with
	// the key the service uses (a DNS name, say, where sysfs shows an
	// address). Entries go when the service forgets the target (Forget).
	known map[service.TargetKey]*service.ISCSISpec
	// failedAt is when each session was first seen not logged in (see
	// failingFor); a session leaves it when it is logged in again.
	failedAt map[uint32]time.Time
}

func (b *Backend) sysRoot() string    { return orDefault(b.SysRoot, "/sys") }
func (b *Backend) devRoot() string    { return orDefault(b.DevRoot, "/dev") }
func (b *Backend) configRoot() string { return orDefault(b.ConfigRoot, "/etc/iscsi") }
func (b *Backend) nodesDir() string   { return filepath.Join(b.configRoot(), "nodes") }
func (b *Backend) lockDir() string    { return orDefault(b.LockDir, "/run/lock/iscsi") }
func (b *Backend) iscsiadmPath() string {
	return orDefault(b.Iscsiadm, "iscsiadm")
}

func (b *Backend) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

func (b *Backend) deviceTimeout() time.Duration { return durOrDefault(b.DeviceTimeout, 30*time.Second) }
func (b *Backend) watchInterval() time.Duration { return durOrDefault(b.WatchInterval, time.Second) }
func (b *Backend) portalTimeout() time.Duration { return durOrDefault(b.PortalTimeout, 10*time.Second) }
func (b *Backend) pollInterval() time.Duration {
	return durOrDefault(b.PollInterval, 20*time.Millisecond)
}

// nextChange returns a channel that is closed at the next uevent that may
// change what sysfs or /dev show of a session. Take it before reading
// them, so that a change between the read and the wait is not missed.
func (b *Backend) nextChange() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changes == nil {
		b.changes = make(chan struct{})
	}
	return b.changes
}

// sysfsChanged wakes the waits for a session or its devices.
func (b *Backend) sysfsChanged() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changes != nil {
		close(b.changes)
		b.changes = nil
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func durOrDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// iscsiSpec returns spec's iSCSI part, or an error for a spec of another kind.
func iscsiSpec(spec service.Spec) (*service.ISCSISpec, error) {
	if spec.Kind != service.KindISCSI || spec.ISCSI == nil {
		return nil, service.NewConnError(ErrLoginFailed, "%s is not an iscsi:// target", spec.Target)
	}
	return spec.ISCSI, nil
}

// remember records that the service asks about spec's target.
func (b *Backend) remember(spec service.Spec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known == nil {
		b.known = make(map[service.TargetKey]*service.ISCSISpec)
	}
	if _, ok := b.known[spec.Target]; !ok {
		is := *spec.ISCSI
		is.CHAP = service.CHAP{} // the watcher needs no secret
		b.known[spec.Target] = &is
	}
}

func (b *Backend) forget(key service.TargetKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.known, key)
}

// Forget drops what the backend knows of a target the service is done
// with, disconnected or left in place (an adopted session), and the
// answer for its portal's host name if no other target needs it.
func (b *Backend) Forget(key service.TargetKey) {
	b.mu.Lock()
	is := b.known[key]
	delete(b.known, key)
	used := false
	for _, o := range b.known {
		used = used || (is != nil && o.Host == is.Host)
	}
	b.mu.Unlock()
	if is != nil && !used {
		b.resolver().Forget(is.Host)
	}
}

// hostAddrs returns the addresses host stands for: itself when it is an
// IP address; otherwise the daemon's resolver's answer (cached, so that
// Observe stays cheap after the first look, and the same answer the path
// monitor acts on).
func (b *Backend) hostAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := b.resolver().Addrs(ctx, host)
	if err != nil {
		return nil, service.NewConnError(ErrPortalUnreachable, "resolve portal host %s: %v", host, err)
	}
	return addrs, nil
}

// cachedAddrs returns what is known of host's addresses without asking a
// resolver.
func (b *Backend) cachedAddrs(host string) []netip.Addr { return b.resolver().Cached(host) }

func (b *Backend) resolver() *netmon.Resolver {
	b.resolverOnce.Do(func() {
		if b.Resolver == nil {
			b.Resolver = &netmon.Resolver{}
		}
	})
	return b.Resolver
}

// matches reports whether s is a session of the target is names.
func matches(s session, is *service.ISCSISpec, addrs []netip.Addr) bool {
	iface := s.Iface
	if iface == "" {
		iface = service.DefaultIface
	}
	if !equalFoldASCII(s.Target, is.IQN) || s.TPGT != is.TPGT || iface != is.Iface || s.Port != is.PortalPort() {
		return false
	}
	a, err := netip.ParseAddr(s.Address)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, want := range addrs {
		if a == want {
			return true
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// pick returns the session of the target among sessions: a logged-in one
// if there is one, else the oldest.
func pick(sessions []session, is *service.ISCSISpec, addrs []netip.Addr) (session, bool) {
	var found session
	ok := false
	for _, s := range sessions {
		if !matches(s, is, addrs) {
			continue
		}
		if !ok || (s.State == stateLoggedIn && found.State != stateLoggedIn) {
			found, ok = s, true
		}
	}
	return found, ok
}

// Observe reports the target's session as sysfs shows it: Present when a
// session exists in any state, Connected when it is logged in and the
// LUN asked for (or every disk LUN) has a block device and its by-path
// link. It runs no helper and never blocks on the target.
func (b *Backend) Observe(ctx context.Context, spec service.Spec) (service.Observation, error) {
	is, err := iscsiSpec(spec)
	if err != nil {
		return service.Observation{}, err
	}
	b.remember(spec)
	addrs, err := b.hostAddrs(ctx, is.Host)
	if err != nil {
		return service.Observation{}, err
	}
	sessions, err := readSessions(b.sysRoot())
	if err != nil {
		return service.Observation{}, err
	}
	s, ok := pick(sessions, is, addrs)
	if !ok {
		return service.Observation{}, nil
	}
	b.failingFor(s, time.Now())
	obs, _ := observation(b.devRoot(), s, is.LUN)
	return obs, nil
}

// initiatorAvailable checks that iscsiadm can be run at all.
func (b *Backend) initiatorAvailable() error {
	if _, err := exec.LookPath(b.iscsiadmPath()); err != nil {
		return service.NewConnError(ErrInitiatorUnavailable,
			"iscsiadm is not installed (Debian package open-iscsi): %v", err)
	}
	return nil
}

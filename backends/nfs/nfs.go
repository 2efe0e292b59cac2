// SPDX-License-Identifier: Apache-2.0

// Package nfs makes nfs:// connections: one systemd mount unit per
// (server, port, export) target, mounted at a mount point of its own under
// the daemon's runtime directory.
//
// The mount table (/proc/self/mountinfo) is the truth about what is
// mounted; systemd runs the mount helper and reports how it went. Nothing
// here ever stats a mount point or reads through a mount, so a hung server
// can't block the daemon.
package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/backends/ioprobe"
	"github.com/storkeep/storkeep/service"
	"github.com/storkeep/storkeep/units"
)

// Keys this backend adds to ConnectionInfo. The D-Bus layer shows the first
// two as the Connection.NFS properties MountPoint and MountUnit.
const (
	InfoMountPoint = "mountPoint"
	InfoMountUnit  = "mountUnit"
	InfoFSType     = "fsType"
	InfoVersion    = "nfsVersion"
	InfoSource     = "source"
)

// Backend implements service.Backend for NFS. Set its fields before the
// service starts; the zero value mounts under /run/storkeep/nfs through the
// system bus's systemd.
type Backend struct {
	// RuntimeDir is the daemon's runtime directory; mount points go under
	// RuntimeDir/nfs. Default /run/storkeep.
	RuntimeDir string
	// Units starts and stops mount units; nil means systemd on the system
	// bus (a units.Manager).
	Units UnitManager
	// SystemBus dials the bus on which the watcher follows systemd's unit
	// changes; nil means the system bus.
	SystemBus func() (*godbus.Conn, error)
	// MountInfo is the mount table to read; default /proc/self/mountinfo.
	MountInfo string
	// MountTimeout bounds one mount helper run (default 30 s).
	MountTimeout time.Duration
	// ProbeInterval is how often a mounted server is asked whether it
	// still answers (default 2 s); ProbeTimeout bounds one question
	// (default 1.5 s).
	ProbeInterval, ProbeTimeout time.Duration
	// AskServer asks a server whether it answers (nil: an NFS NULL call
	// over TCP); tests replace it.
	AskServer func(ctx context.Context, server string, port uint16, vers uint32) error
	// DialServer opens a TCP connection to a server's NFS port and closes
	// it, before a mount (nil: reachServer); tests replace it.
	DialServer func(ctx context.Context, server string, port uint16) error
	Log        *slog.Logger
	// IOProbe runs the reads that prove a mount usable (Probe); the zero
	// value runs the daemon's own executable as the helper.
	IOProbe *ioprobe.Runner

	initOnce sync.Once
	mu       sync.Mutex // guards targets, byPath and servers
	targets  map[service.TargetKey]*entry
	byPath   map[godbus.ObjectPath]*entry // by the unit's object path
	probeNow chan struct{}                // PathUsable asks watchServers for a probe now
}

// UnitManager starts and stops transient mount units.
type UnitManager interface {
	Start(ctx context.Context, m units.Mount) error
	Stop(ctx context.Context, name string) error
}

// entry is what the backend knows about one target.
type entry struct {
	spec  service.Spec
	where string
	unit  string
	// Written under Backend.mu:
	mounted bool  // the last look at the mount table found it mounted
	down    error // the server does not answer (see probed)
	misses  int   // unanswered probes in a row
	// shown, while a Connect waits for its mount, is closed when the
	// mount table watcher sees the export mounted at where.
	shown chan struct{}
}

// mountShown tells a Connect waiting for e's mount that the mount table
// shows it. Called with Backend.mu held.
func (e *entry) mountShown() {
	if e.shown != nil {
		close(e.shown)
		e.shown = nil
	}
}

func (b *Backend) init() {
	b.initOnce.Do(func() {
		if b.RuntimeDir == "" {
			b.RuntimeDir = "/run/storkeep"
		}
		if b.Log == nil {
			b.Log = slog.Default()
		}
		if b.Units == nil {
			b.Units = &units.Manager{}
		}
		if b.MountInfo == "" {
			b.MountInfo = "/proc/self/mountinfo"
		}
		if b.MountTimeout <= 0 {
			b.MountTimeout = 30 * time.Second
		}
		if b.ProbeInterval <= 0 {
			b.ProbeInterval = 2 * time.Second
		}
		if b.ProbeTimeout <= 0 {
			b.ProbeTimeout = 1500 * time.Millisecond
		}
		if b.AskServer == nil {
			b.AskServer = probeServer
		}
		if b.IOProbe == nil {
			b.IOProbe = &ioprobe.Runner{}
		}
		if b.DialServer == nil {
			b.DialServer = reachServer
		}
		b.targets = make(map[service.TargetKey]*entry)
		b.byPath = make(map[godbus.ObjectPath]*entry)
		b.probeNow = make(chan struct{}, 1)
	})
}

func (b *Backend) mountRoot() string { return filepath.Join(b.RuntimeDir, "nfs") }

// entry returns the backend's record of spec's target, making it on first
// use.
func (b *Backend) entry(spec service.Spec) *entry {
	b.init()
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.targets[spec.Target]; e != nil {
		return e
	}
	where, unit := MountPoint(b.mountRoot(), spec)
	e := &entry{spec: spec, where: where, unit: unit}
	b.targets[spec.Target] = e
	b.byPath[unitPath(unit)] = e
	return e
}

// Describe tells where the export will be mounted, before it is.
func (b *Backend) Describe(spec service.Spec) map[string]any {
	e := b.entry(spec)
	return map[string]any{InfoMountPoint: e.where, InfoMountUnit: e.unit}
}

// Forget drops what the backend knows of a released target.
func (b *Backend) Forget(key service.TargetKey) {
	b.init()
	b.mu.Lock()
	if e := b.targets[key]; e != nil {
		delete(b.byPath, unitPath(e.unit))
		delete(b.targets, key)
	}
	b.mu.Unlock()
}

// readMounts reads the whole mount table.
func (b *Backend) readMounts() ([]Mount, error) {
	f, err := os.Open(b.MountInfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// mountAt returns the topmost mount at where (the one a path lookup sees).
func mountAt(mounts []Mount, where string) (Mount, bool) {
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].MountPoint == where {
			return mounts[i], true
		}
	}
	return Mount{}, false
}

// isExport reports whether m is an NFS mount of n's export.
func isExport(m Mount, n *service.NFSSpec) bool {
	if !m.IsNFS() {
		return false
	}
	server, export, ok := m.ServerExport()
	if !ok || !strings.EqualFold(server, n.Server) {
		return false
	}
	return filepath.Clean(export) == n.Export
}

// look reads what the mount table says about e, and records it.
func (b *Backend) look(e *entry, mounts []Mount) service.Observation {
	m, ok := mountAt(mounts, e.where)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !ok {
		e.mounted = false
		return service.Observation{}
	}
	if !isExport(m, e.spec.NFS) {
		e.mounted = false
		return service.Observation{Err: service.NewConnError(ErrMountPointBusy,
			"%s holds a %s mount of %q, not %s; storkeep leaves it alone", e.where, m.FSType, m.Source, e.spec.Target)}
	}
	e.mounted = true
	obs := service.Observation{Present: true, Connected: true, Info: mountInfo(e.where, e.unit, m)}
	if e.down != nil {
		obs.Connected = false
		obs.Err = service.NewConnError(ErrServerNotResponding,
			"%s is mounted at %s, but the server does not answer: %v", e.spec.Target, e.where, e.down)
	}
	return obs
}

func mountInfo(where, unit string, m Mount) map[string]any {
	info := map[string]any{InfoMountPoint: where, InfoMountUnit: unit, InfoFSType: m.FSType}
	if v := superOpt(m.SuperOpts, "vers"); v != "" {
		info[InfoVersion] = v
	}
	return info
}

// superOpt returns the value of one per-superblock option.
func superOpt(opts, name string) string {
	for o := range strings.SplitSeq(opts, ",") {
		if v, ok := strings.CutPrefix(o, name+"="); ok {
			return v
		}
	}
	return ""
}

// Observe reads the mount table; it never touches the mount itself.
func (b *Backend) Observe(ctx context.Context, spec service.Spec) (service.Observation, error) {
	e := b.entry(spec)
	mounts, err := b.readMounts()
	if err != nil {
		return service.Observation{}, fmt.Errorf("read mount table: %w", err)
	}
	return b.look(e, mounts), nil
}

// Connect mounts the export through a transient systemd mount unit and
// waits until it is mounted or has failed. An export that is already
// mounted at its mount point is left as it is.
func (b *Backend) Connect(ctx context.Context, spec service.Spec) (service.Observation, error) {
	e := b.entry(spec)
	mounts, err := b.readMounts()
	if err != nil {
		return service.Observation{}, fmt.Errorf("read mount table: %w", err)
	}
	switch obs := b.look(e, mounts); {
	case obs.Present:
		return obs, nil // already mounted: left as it is
	case obs.Err != nil:
		return obs, obs.Err // something else is mounted there
	}
	if err := b.preflight(ctx, spec.NFS); err != nil {
		return service.Observation{}, err
	}
	if err := os.MkdirAll(b.mountRoot(), 0o755); err != nil {
		return service.Observation{}, service.NewConnError(ErrMountFailed, "mount root: %v", err)
	}
	if err := guardMountPoint(e.where); err != nil {
		// The mount works without the guard; say so once per attempt.
		b.Log.Warn("could not guard the mount point against writes while unmounted", "path", e.where, "err", err)
	}
	mnt := units.Mount{
		What:        what(spec.NFS),
		Where:       e.where,
		Type:        "nfs",
		Options:     mountOptions(spec.NFS),
		Description: description(spec.Target, service.TargetCIDs(ctx)),
		Timeout:     b.MountTimeout,
	}
	b.Log.Info("mounting", "target", string(spec.Target), "unit", e.unit, "options", mnt.Options)
	serr := b.start(ctx, e, mnt)

	// Whatever systemd said, the mount table decides: a mount whose job
	// timed out may still have come up.
	if mounts, err = b.readMounts(); err != nil {
		return service.Observation{}, fmt.Errorf("read mount table: %w", err)
	}
	if serr == nil {
		b.mu.Lock()
		e.down, e.misses = nil, 0 // the server just answered the mount
		b.mu.Unlock()
	}
	obs := b.look(e, mounts)
	if obs.Present {
		return obs, nil
	}
	if serr == nil {
		serr = errors.New("systemd reports the unit active, but the mount table does not show the mount")
	}
	return service.Observation{}, classify(spec.Target, serr)
}

// Disconnect stops the mount unit (a lazy, forced unmount that finishes
// even when the server is dead), falls back to umount if the unit could not
// do it, and removes the empty mount point.
func (b *Backend) Disconnect(ctx context.Context, spec service.Spec) error {
	e := b.entry(spec)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	serr := b.Units.Stop(sctx, e.unit)
	cancel()
	mounts, err := b.readMounts()
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	if m, ok := mountAt(mounts, e.where); ok && isExport(m, spec.NFS) {
		b.Log.Warn("stopping the mount unit did not unmount; unmounting directly",
			"target", string(spec.Target), "unit", e.unit, "err", serr)
		if err := unmount(ctx, e.where); err != nil {
			return service.NewConnError(ErrUnmountFailed, "unmount %s: %v", e.where, err)
		}
	}
	if err := unguardMountPoint(e.where); err != nil {
		b.Log.Warn("could not lift the mount point's guard", "path", e.where, "err", err)
	}
	if err := os.Remove(e.where); err != nil && !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, syscall.EBUSY) {
			return service.NewConnError(ErrUnmountFailed, "%s is still a mount point: %v", e.where, err)
		}
		b.Log.Warn("could not remove the mount point", "path", e.where, "err", err)
	}
	b.Log.Info("unmounted", "target", string(spec.Target), "unit", e.unit)
	return nil
}

// description names the target and its CIDs for `systemctl status`. CIDs
// are quoted when they hold anything but plain printable text, and the
// list is cut short: a description is for people.
func description(target service.TargetKey, cids []service.CID) string {
	var b strings.Builder
	b.WriteString("storkeep " + string(target))
	for i, c := range cids {
		if i == 0 {
			b.WriteString(" for ")
		} else {
			b.WriteString(", ")
		}
		if i == 5 || b.Len() > 400 {
			fmt.Fprintf(&b, "and %d more", len(cids)-i)
			break
		}
		s := string(c)
		if q := strconv.QuoteToGraphic(s); q[1:len(q)-1] != s || strings.ContainsAny(s, ", ") {
			s = q
		}
		if len(s) > 64 {
			s = s[:60] + "..."
		}
		b.WriteString(s)
	}
	return b.String()
}

// ListHost lists every NFS mount on the host, with transient IDs built
// from the kernel's mount IDs.
func (b *Backend) ListHost(ctx context.Context) ([]service.HostConnection, error) {
	b.init()
	mounts, err := b.readMounts()
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	var out []service.HostConnection
	for _, m := range mounts {
		if !m.IsNFS() {
			continue
		}
		spec, ok := specOfMount(m)
		if !ok {
			continue
		}
		info := map[string]any{InfoMountPoint: m.MountPoint, InfoFSType: m.FSType, InfoSource: m.Source}
		if v := superOpt(m.SuperOpts, "vers"); v != "" {
			info[InfoVersion] = v
		}
		out = append(out, service.HostConnection{
			ID:        "nfs/mount" + strconv.Itoa(m.ID),
			Kind:      service.KindNFS,
			Target:    spec.Target,
			URI:       spec.URI,
			Connected: true,
			Info:      info,
		})
	}
	slices.SortFunc(out, func(a, c service.HostConnection) int { return strings.Compare(a.ID, c.ID) })
	return out, nil
}

// specOfMount builds the spec an nfs:// URI for m would give, so that a
// host mount and a managed target of the same export have one TargetKey.
func specOfMount(m Mount) (service.Spec, bool) {
	server, export, ok := m.ServerExport()
	if !ok {
		return service.Spec{}, false
	}
	// No port, or port=0, is the default; ParseURI drops an explicit 2049.
	var port uint16
	if p := superOpt(m.SuperOpts, "port"); p != "" && p != "0" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return service.Spec{}, false
		}
		port = uint16(n)
	}
	u := url.URL{Scheme: "nfs", Host: service.HostPort(server, port), Path: export}
	if v := superOpt(m.SuperOpts, "vers"); v != "" {
		u.RawQuery = "vers=" + v
	}
	spec, err := service.ParseURI(u.String())
	if err != nil {
		// The version may be one the URI syntax doesn't take; the target
		// is the same without it.
		u.RawQuery = ""
		if spec, err = service.ParseURI(u.String()); err != nil {
			return service.Spec{}, false
		}
	}
	return spec, true
}

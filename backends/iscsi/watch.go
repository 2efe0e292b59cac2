// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/storkeep/storkeep/service"
)

// debounce gathers the burst of uevents one login or logout makes (a
// session, its connection, a SCSI target, devices, block devices, udev's
// replays) into one re-read of sysfs.
const debounce = 15 * time.Millisecond

// Watch pokes the targets whose sessions change: a session that appears,
// goes, changes state (LOGGED_IN, FAILED, FREE), or gains or loses a
// device or a by-path link. It never acts itself: the service's runner
// observes and decides.
//
// Events come from the kernel's uevents and udev's (a NETLINK_KOBJECT_UEVENT
// socket, both multicast groups): sessions, connections, SCSI devices and
// block devices appear and go with a uevent, and udev's event says when
// the by-path link exists. A session's state changes (a connection
// failure, the end of a recovery) make no uevent, so sysfs is also
// re-read every WatchInterval (1 s): a loss shows within a second of the
// kernel noticing it; and while a session is not logged in, its state is
// re-read every 100 ms (fastInterval), so that the end of its recovery is
// read through and reported as soon as it happens. If the socket cannot
// be opened, the re-reads alone keep Watch working.
func (b *Backend) Watch(ctx context.Context, poke func(service.TargetKey)) {
	events := make(chan struct{}, 1)
	var wg sync.WaitGroup
	if f, err := openUevents(); err != nil {
		b.log().Warn("no uevents; watching iSCSI sessions by re-reading sysfs only", "err", err, "interval", b.watchInterval())
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.readUevents(ctx, f, events)
		}()
		// Close unblocks the reader.
		stop := context.AfterFunc(ctx, func() { f.Close() })
		defer stop()
	}
	defer wg.Wait()

	ticker := time.NewTicker(b.watchInterval())
	defer ticker.Stop()
	prev := b.snapshot()
	for {
		var fast <-chan time.Time
		waiting := notLoggedIn(prev)
		if len(waiting) > 0 {
			fast = time.After(fastInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-fast:
			if !b.statesChanged(prev, waiting) {
				continue
			}
		case <-events:
			if sleepCtx(ctx, debounce) != nil {
				return
			}
			// Events that came during the pause are covered by this pass.
			select {
			case <-events:
			default:
			}
		case <-ticker.C:
		}
		cur := b.snapshot()
		for _, key := range b.changedKeys(prev, cur) {
			poke(key)
		}
		prev = cur
	}
}

// fastInterval is how often the state of a session that is not logged
// in is re-read: one small sysfs file each.
const fastInterval = 100 * time.Millisecond

// notLoggedIn lists the sessions of a snapshot that are failed,
// recovering or being set up.
func notLoggedIn(snap map[uint32]watched) []uint32 {
	var ids []uint32
	for id, w := range snap {
		if w.s.State != stateLoggedIn {
			ids = append(ids, id)
		}
	}
	return ids
}

// statesChanged tells whether any of the sessions ids changed state (or
// went) since snap.
func (b *Backend) statesChanged(snap map[uint32]watched, ids []uint32) bool {
	for _, id := range ids {
		if st, err := readAttr(sessionDir(b.sysRoot(), id), "state"); err != nil || st != snap[id].s.State {
			return true
		}
	}
	return false
}

// watched is what the watcher remembers of a session between passes.
type watched struct {
	s session
	// fingerprint changes whenever anything a target's observation shows
	// changes.
	fingerprint string
}

// snapshot reads every session with its devices. A read error gives an
// empty snapshot's worth of nothing: the next pass compares again.
func (b *Backend) snapshot() map[uint32]watched {
	sessions, err := readSessions(b.sysRoot())
	if err != nil {
		b.log().Debug("watch: reading sessions failed", "err", err)
		return nil
	}
	out := make(map[uint32]watched, len(sessions))
	for _, s := range sessions {
		devs, pending := devices(b.devRoot(), s)
		out[s.ID] = watched{s: s, fingerprint: fingerprint(s, devs, pending)}
	}
	return out
}

func fingerprint(s session, devs map[string]string, pending map[int]bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%d|%s|%s|%d", s.State, s.Target, s.TPGT, s.Iface, s.Address, s.Port)
	for _, l := range s.LUNs {
		fmt.Fprintf(&b, "|%d:%d:%s:%t", l.LUN, l.Type, l.Block, pending[l.LUN])
	}
	links := make([]string, 0, len(devs))
	for k, v := range devs {
		links = append(links, k+"="+v)
	}
	slices.Sort(links)
	b.WriteString("|" + strings.Join(links, ","))
	return b.String()
}

// changedKeys returns the keys of the targets whose sessions differ
// between two snapshots: each session's canonical key and every known
// target it belongs to.
func (b *Backend) changedKeys(prev, cur map[uint32]watched) []service.TargetKey {
	var changed []session
	for id, w := range cur {
		if p, ok := prev[id]; !ok || p.fingerprint != w.fingerprint {
			changed = append(changed, w.s)
		}
	}
	for id, p := range prev {
		if _, ok := cur[id]; !ok {
			changed = append(changed, p.s)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	seen := make(map[service.TargetKey]bool)
	var keys []service.TargetKey
	add := func(k service.TargetKey) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range changed {
		if s.Address == "" {
			// Being set up or torn down: no portal yet, no target to name.
			// The pass that sees its connection pokes it.
			continue
		}
		k, _ := canonicalKey(s)
		add(k)
		for key, is := range b.known {
			if matches(s, is, b.cachedAddrs(is.Host)) {
				add(key)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// Multicast groups of NETLINK_KOBJECT_UEVENT.
const (
	ueventGroupKernel = 1 // the kernel's uevents
	ueventGroupUdev   = 2 // udev's, sent once its rules ran (links exist)
)

// openUevents opens a netlink socket that receives the kernel's and
// udev's uevents. It is non-blocking, so the returned file's Read waits in
// the runtime poller and Close unblocks it.
func openUevents() (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: ueventGroupKernel | ueventGroupUdev}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("uevent socket: bind: %w", err)
	}
	// A login makes a burst of events; a bigger buffer makes an overflow
	// (ENOBUFS, which only costs a re-read) rarer.
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	}
	return os.NewFile(uintptr(fd), "uevent"), nil
}

// readUevents signals events for every uevent about iSCSI, SCSI or block
// devices, until f is closed.
func (b *Backend) readUevents(ctx context.Context, f *os.File, events chan<- struct{}) {
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ENOBUFS) {
				// Events were lost: re-read everything.
				signal(events)
				b.sysfsChanged()
				continue
			}
			b.log().Warn("uevent socket failed; watching by re-reading sysfs only", "err", err)
			return
		}
		if relevantUevent(parseUevent(buf[:n])) {
			signal(events)
			b.sysfsChanged()
		}
	}
}

func signal(events chan<- struct{}) {
	select {
	case events <- struct{}{}:
	default:
	}
}

// uevent is the part of a uevent message the watcher looks at.
type uevent struct {
	Action    string
	DevPath   string
	Subsystem string
	DevType   string
}

// udevPrefix starts the messages udev sends (libudev's monitor header).
var udevPrefix = []byte("libudev\x00")

// parseUevent parses a kernel uevent ("ACTION@DEVPATH\0KEY=VALUE\0...") or
// a udev one (a libudev header, then KEY=VALUE\0... from the offset it
// gives).
func parseUevent(msg []byte) uevent {
	var u uevent
	if bytes.HasPrefix(msg, udevPrefix) {
		// struct udev_monitor_netlink_header: prefix[8], magic, header_size,
		// properties_off, properties_len, ... (host byte order; Linux on
		// the machines storkeep runs on is little-endian).
		if len(msg) < 24 {
			return u
		}
		off := int(le32(msg[16:20]))
		if off < 24 || off > len(msg) {
			return u
		}
		msg = msg[off:]
	} else if i := bytes.IndexByte(msg, 0); i > 0 {
		head := string(msg[:i])
		if action, path, ok := strings.Cut(head, "@"); ok {
			u.Action, u.DevPath = action, path
		}
		msg = msg[i+1:]
	}
	for len(msg) > 0 {
		field := msg
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			field, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			continue
		}
		switch key {
		case "ACTION":
			u.Action = value
		case "DEVPATH":
			u.DevPath = value
		case "SUBSYSTEM":
			u.Subsystem = value
		case "DEVTYPE":
			u.DevType = value
		}
	}
	return u
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// relevantUevent reports whether u may change what a target's observation
// shows.
func relevantUevent(u uevent) bool {
	switch u.Subsystem {
	case "iscsi_session", "iscsi_connection", "iscsi_host", "scsi", "scsi_host", "scsi_disk", "block":
		return true
	}
	return strings.Contains(u.DevPath, "/session")
}

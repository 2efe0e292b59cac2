// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// Watch tells the service about changes to its targets as they happen:
// the mount table changing (a mount appearing, or vanishing behind the
// daemon's back), systemd reporting a mount unit's state, and a mounted
// server that stops or starts answering. It only pokes; the target's
// runner then observes and decides. Watch owns the goroutines it starts
// and returns when all of them have ended, after ctx ends.
func (b *Backend) Watch(ctx context.Context, poke func(service.TargetKey)) {
	b.init()
	var wg sync.WaitGroup
	for _, w := range []func(context.Context, func(service.TargetKey)){
		b.watchMountTable, b.watchUnits, b.watchServers,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w(ctx, poke)
		}()
	}
	wg.Wait()
}

// retryDelay is how long a watcher waits before it tries again to open
// its source after a failure.
const retryDelay = 2 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// watchMountTable waits for the kernel to report a change of the mount
// table (poll(2) on /proc/self/mountinfo gives POLLPRI|POLLERR), then
// pokes every target whose mount came or went.
func (b *Backend) watchMountTable(ctx context.Context, poke func(service.TargetKey)) {
	var last string
	for ctx.Err() == nil {
		err := b.followMountTable(ctx, poke)
		if ctx.Err() != nil {
			return
		}
		if err.Error() != last {
			b.Log.Warn("watching the mount table failed; retrying", "err", err)
			last = err.Error()
		}
		if !sleepCtx(ctx, retryDelay) {
			return
		}
	}
}

func (b *Backend) followMountTable(ctx context.Context, poke func(service.TargetKey)) error {
	f, err := os.Open(b.MountInfo)
	if err != nil {
		return err
	}
	defer f.Close()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer syscall.Close(ep)
	// A pipe wakes the wait when ctx ends.
	var wake [2]int
	if err := syscall.Pipe2(wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return fmt.Errorf("pipe2: %w", err)
	}
	defer syscall.Close(wake[0])
	defer syscall.Close(wake[1])
	stop := context.AfterFunc(ctx, func() { syscall.Write(wake[1], []byte{0}) })
	defer stop()

	mfd := int(f.Fd())
	for _, reg := range []struct {
		fd     int
		events uint32
	}{{mfd, syscall.EPOLLPRI | syscall.EPOLLERR}, {wake[0], syscall.EPOLLIN}} {
		ev := syscall.EpollEvent{Events: reg.events, Fd: int32(reg.fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, reg.fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	events := make([]syscall.EpollEvent, 2)
	for {
		// Read the table through the watched descriptor: that re-arms it.
		if _, err := f.Seek(0, 0); err != nil {
			return err
		}
		mounts, err := ParseMountInfo(f)
		if err != nil {
			return err
		}
		b.mountTableChanged(mounts, poke)
		n, err := syscall.EpollWait(ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(wake[0]) {
				return ctx.Err()
			}
		}
	}
}

// mountTableChanged pokes the targets whose mount is not where it was at
// the last look.
func (b *Backend) mountTableChanged(mounts []Mount, poke func(service.TargetKey)) {
	top := make(map[string]Mount, len(mounts))
	for _, m := range mounts {
		top[m.MountPoint] = m // later lines are mounted on top
	}
	b.mu.Lock()
	var changed []service.TargetKey
	for key, e := range b.targets {
		m, ok := top[e.where]
		now := ok && isExport(m, e.spec.NFS)
		if now {
			e.mountShown()
		}
		if now != e.mounted {
			changed = append(changed, key)
		}
	}
	b.mu.Unlock()
	for _, k := range changed {
		poke(k)
	}
}

// Match rule for state changes of systemd's units: the mount units among
// them are what this backend follows.
const unitChangesRule = "type='signal',sender='org.freedesktop.systemd1'," +
	"interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'," +
	"path_namespace='/org/freedesktop/systemd1/unit',arg0='org.freedesktop.systemd1.Unit'"

// watchUnits follows systemd's PropertiesChanged signals for units and
// pokes the target whose mount unit changed ActiveState or SubState. It
// redials after the bus goes away, and then pokes every target, since
// changes may have been missed.
//
// Equivalent to: busctl monitor --match "$unitChangesRule" (after
// calling org.freedesktop.systemd1.Manager.Subscribe)
func (b *Backend) watchUnits(ctx context.Context, poke func(service.TargetKey)) {
	first := true
	var last string
	for ctx.Err() == nil {
		err := b.followUnits(ctx, poke, !first)
		first = false
		if ctx.Err() != nil {
			return
		}
		if err.Error() != last { // once per kind of failure, not every retry
			b.Log.Warn("following systemd's unit changes failed; retrying", "err", err)
			last = err.Error()
		}
		if !sleepCtx(ctx, retryDelay) {
			return
		}
	}
}

func (b *Backend) followUnits(ctx context.Context, poke func(service.TargetKey), resync bool) error {
	dial := b.SystemBus
	if dial == nil {
		dial = func() (*godbus.Conn, error) {
			c, err := godbus.SystemBusPrivate()
			if err != nil {
				return nil, err
			}
			if err = c.Auth(nil); err == nil {
				err = c.Hello()
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	signals := make(chan *godbus.Signal, 256)
	conn.Signal(signals)
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.AddMatch", 0, unitChangesRule).Err; err != nil {
		return fmt.Errorf("AddMatch: %w", err)
	}
	// systemd sends unit signals only while someone is subscribed; the
	// subscription ends with this connection.
	if err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		return fmt.Errorf("subscribe to systemd: %w", err)
	}
	if resync {
		b.pokeAll(poke)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-signals:
			if !ok {
				return fmt.Errorf("the bus connection closed")
			}
			if len(sig.Body) < 2 {
				continue
			}
			changed, _ := sig.Body[1].(map[string]godbus.Variant)
			state, hasState := changed["ActiveState"]
			_, sub := changed["SubState"]
			if len(sig.Body) > 2 {
				inv, _ := sig.Body[2].([]string)
				hasState = hasState || slices.Contains(inv, "ActiveState")
			}
			if !hasState && !sub {
				continue
			}
			e := b.entryOfUnitPath(sig.Path)
			if e == nil {
				continue
			}
			if n, ok := b.Units.(unitNotifier); ok {
				s, _ := state.Value().(string)
				n.UnitChanged(e.unit, s)
			}
			poke(e.spec.Target)
		}
	}
}

// unitNotifier is told of unit state changes (units.Manager is): its
// Start and Stop calls wait on them.
type unitNotifier interface {
	UnitChanged(name, activeState string)
}

func (b *Backend) entryOfUnitPath(p godbus.ObjectPath) *entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byPath[p]
}

// unitPath is the object path systemd gives a unit. Unit names hold only
// printable ASCII, which go-systemd's escaper handles correctly.
func unitPath(unit string) godbus.ObjectPath {
	return godbus.ObjectPath("/org/freedesktop/systemd1/unit/" + sd.PathBusEscape(unit))
}

func (b *Backend) pokeAll(poke func(service.TargetKey)) {
	b.mu.Lock()
	keys := make([]service.TargetKey, 0, len(b.targets))
	for k := range b.targets {
		keys = append(keys, k)
	}
	b.mu.Unlock()
	for _, k := range keys {
		poke(k)
	}
}

// watchServers asks every mounted server, every ProbeInterval, whether it
// still answers (an NFS NULL call with a deadline, never through the
// mount), and pokes the targets whose answer changed. No event reports a
// server that stopped answering: this is the one poll. PathUsable asks for
// a round at once.
func (b *Backend) watchServers(ctx context.Context, poke func(service.TargetKey)) {
	tick := time.NewTicker(b.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-b.probeNow:
			tick.Reset(b.ProbeInterval)
		}
		b.probeMounted(ctx, poke)
	}
}

// PathUsable is told by the service that the network path to key's server
// works again (its link came up, a route appeared): the servers are asked
// now, not at the next tick, so that a mount whose server was marked
// silent during the outage is reported back within milliseconds.
func (b *Backend) PathUsable(key service.TargetKey) {
	b.init()
	select {
	case b.probeNow <- struct{}{}:
	default:
	}
}

// server is one NFS server as the prober asks it.
type server struct {
	host string
	port uint16
	vers uint32
}

// probeMounted asks each server that has a mounted target once, all in
// parallel, and gives the answer to all of its targets. A refusal counts
// at once (the server's host said no); a question that goes unanswered
// counts only the second time in a row, so that one slow answer on a busy
// host does not report every mount of that server lost.
func (b *Backend) probeMounted(ctx context.Context, poke func(service.TargetKey)) {
	b.mu.Lock()
	byServer := make(map[server][]*entry)
	for _, e := range b.targets {
		if e.mounted {
			n := e.spec.NFS
			k := server{n.Server, n.Port, probeVersion(n)}
			byServer[k] = append(byServer[k], e)
		}
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for srv, entries := range byServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, b.ProbeTimeout)
			err := b.AskServer(pctx, srv.host, srv.port, srv.vers)
			cancel()
			if ctx.Err() != nil {
				return
			}
			for _, e := range entries {
				if b.probed(e, err) {
					poke(e.spec.Target)
				}
			}
		}()
	}
	wg.Wait()
}

// probed records one probe's answer for e and reports whether e's health
// changed.
func (b *Backend) probed(e *entry, err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	was := e.down != nil
	switch {
	case err == nil:
		e.misses = 0
		e.down = nil
	case definitelyUnreachable(err):
		e.down = err
	default:
		e.misses++
		if e.misses >= 2 {
			e.down = err
		}
	}
	if was == (e.down != nil) {
		return false
	}
	if e.down != nil {
		b.Log.Warn("NFS server does not answer", "target", string(e.spec.Target), "err", e.down)
	} else {
		b.Log.Info("NFS server answers again", "target", string(e.spec.Target))
	}
	return true
}

// probeVersion is the NFS version to ask with. Any reply will do, even
// one that rejects the version.
func probeVersion(n *service.NFSSpec) uint32 {
	if n.Version == "3" {
		return 3
	}
	return 4
}

package nfs

import (
	"context"
	"fmt"
	"os"
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
	b.mu.Lock()
	var changed []service.TargetKey
	for key, e := range b.targets {
		m, ok := mountAt(mounts, e.where)
		now := ok && isExport(m, e.spec.NFS)
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
			_, active := changed["ActiveState"]
			_, sub := changed["SubState"]
			if !active && !sub {
				continue
			}
			if key, ok := b.targetOfUnitPath(sig.Path); ok {
				poke(key)
			}
		}
	}
}

func (b *Backend) targetOfUnitPath(p godbus.ObjectPath) (service.TargetKey, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, e := range b.targets {
		if unitPath(e.unit) == p {
			return key, true
		}
	}
	return "", false
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
// server that stopped answering: this is the one poll.
func (b *Backend) watchServers(ctx context.Context, poke func(service.TargetKey)) {
	tick := time.NewTicker(b.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b.probeMounted(ctx, poke)
	}
}

// probeMounted probes the servers of all mounted targets in parallel.
func (b *Backend) probeMounted(ctx context.Context, poke func(service.TargetKey)) {
	b.mu.Lock()
	var todo []*entry
	for _, e := range b.targets {
		if e.mounted {
			todo = append(todo, e)
		}
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, b.ProbeTimeout)
			err := probeServer(pctx, e.spec.NFS.Server, e.spec.NFS.Port, probeVersion(e.spec.NFS))
			cancel()
			if ctx.Err() != nil {
				return
			}
			b.mu.Lock()
			was := e.down != nil
			e.down = err
			b.mu.Unlock()
			if was != (err != nil) {
				if err != nil {
					b.Log.Warn("NFS server does not answer", "target", string(e.spec.Target), "err", err)
				} else {
					b.Log.Info("NFS server answers again", "target", string(e.spec.Target))
				}
				poke(e.spec.Target)
			}
		}()
	}
	wg.Wait()
}

// probeVersion is the NFS version to ask with. Any reply will do, even
// one that rejects the version.
func probeVersion(n *service.NFSSpec) uint32 {
	if n.Version == "3" {
		return 3
	}
	return 4
}

// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"cmp"
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/storkeep/storkeep/service"
	"github.com/storkeep/storkeep/units"
)

// start starts the mount unit and waits until systemd's job for it has
// ended or the mount table watcher sees the export mounted, whichever
// comes first. The mount is there, and usable, once mount(2) returned;
// the job ends only after the helper has exited, systemd has reaped it
// and read the mount table itself, and the JobRemoved signal has crossed
// the bus: tens to hundreds of milliseconds more on a busy host. Without
// a watcher (or one that misses the change), the job's end decides.
func (b *Backend) start(ctx context.Context, e *entry, mnt units.Mount) error {
	shown := make(chan struct{})
	b.mu.Lock()
	e.shown = shown
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		if e.shown == shown {
			e.shown = nil
		}
		b.mu.Unlock()
	}()
	jctx, cancel := context.WithCancel(ctx)
	defer cancel() // once the mount is seen, nothing waits for the job
	done := make(chan error, 1)
	go func() { done <- b.Units.Start(jctx, mnt) }()
	select {
	case err := <-done:
		return err
	case <-shown:
		return nil
	}
}

// preflight opens a TCP connection to the server's NFS port before a
// mount (within ProbeTimeout): a server that cannot be reached at all
// (refused, no route) fails the attempt in milliseconds instead of a
// mount unit that hangs until its timeout and holds up the attempt after
// it. Silence proves nothing (a busy server, a slow network): the mount
// goes ahead and decides. It asks nfsd nothing: the mount is that
// question, and an RPC before it would only add a round trip to nfsd.
func (b *Backend) preflight(ctx context.Context, n *service.NFSSpec) error {
	pctx, cancel := context.WithTimeout(ctx, b.ProbeTimeout)
	defer cancel()
	err := b.DialServer(pctx, n.Server, n.Port)
	if definitelyUnreachable(err) {
		return service.NewConnError(ErrServerUnreachable, "NFS server %s: %v", n.Server, err)
	}
	return nil
}

// reachServer opens a TCP connection to server's NFS port and closes it.
//
// Equivalent to: nc -z SERVER PORT
func reachServer(ctx context.Context, server string, port uint16) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", service.HostPort(server, cmp.Or(port, service.DefaultNFSPort)))
	if err != nil {
		return err
	}
	return c.Close()
}

func definitelyUnreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/storkeep/storkeep/backends/ioprobe"
	"github.com/storkeep/storkeep/service"
)

// Probe reads the mount's root directory in a helper process (ioprobe.Dir:
// open, statfs, readdir), so that a hung server holds up only the helper,
// which is killed at ctx's deadline.
//
// Equivalent to: stat -f WHERE && ls WHERE
func (b *Backend) Probe(ctx context.Context, spec service.Spec, _ service.Observation) service.ProbeResult {
	e := b.entry(spec)
	return b.IOProbe.Probe(ctx, string(spec.Target), ioprobe.Dir, e.where).ForService()
}

// Heal replaces a mount whose root went stale (the server's file system was
// replaced under the export): the mount is detached at once (umount2 with
// MNT_DETACH in a goroutine of its own: nothing waits on the server), the
// unit, which then has nothing left to unmount, is stopped, and the export
// is mounted again at the same mount point.
func (b *Backend) Heal(ctx context.Context, spec service.Spec, broken *service.ConnError) (service.Observation, error) {
	e := b.entry(spec)
	b.Log.Warn("replacing a broken mount", "target", string(spec.Target), "unit", e.unit, "err", broken)
	mounts, err := b.readMounts()
	if err != nil {
		return service.Observation{}, fmt.Errorf("read mount table: %w", err)
	}
	if m, ok := mountAt(mounts, e.where); ok && isExport(m, spec.NFS) {
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := unmount(uctx, e.where)
		cancel()
		if err != nil {
			return service.Observation{}, service.NewConnError(ErrUnmountFailed, "detach %s: %v", e.where, err)
		}
	}
	// Bounded short: the unit has nothing left to unmount, and the
	// mount below only needs it not active.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := b.Units.Stop(sctx, e.unit); err != nil {
		b.Log.Debug("stopping the unit of a detached mount", "unit", e.unit, "err", err)
	}
	cancel()
	return b.Connect(ctx, spec)
}

// Server names the NFS server a target's reachability check asks: targets
// on the same server, port and version share one check.
func (b *Backend) Server(spec service.Spec) string {
	n := spec.NFS
	return service.HostPort(n.Server, n.Port) + " v" + strconv.Itoa(int(probeVersion(n)))
}

// Reach asks spec's server whether it answers (an NFS NULL call), without
// touching any mount. An answer also clears what the server prober
// remembered of its silence, so that a mount of that server is seen usable
// at once, not at the prober's next round.
//
// Equivalent to: rpcinfo -T tcp SERVER nfs 4
func (b *Backend) Reach(ctx context.Context, spec service.Spec) error {
	b.init()
	n := spec.NFS
	err := b.AskServer(ctx, n.Server, n.Port, probeVersion(n))
	if err == nil {
		b.mu.Lock()
		for _, e := range b.targets {
			if e.spec.NFS.Server == n.Server && e.spec.NFS.Port == n.Port {
				e.down, e.misses = nil, 0
			}
		}
		b.mu.Unlock()
	}
	return err
}

// guardMountPoint makes the (unmounted) mount point immutable, so that
// while the export is not mounted nothing can create files in it, where
// they would land on the local file system instead of the storage: a VM
// or backup writing there fails at once. Mounting over it still works.
// The directory is checked to be on the local file system first (a mount
// that appeared meanwhile is never touched).
//
// Equivalent to: chattr +i WHERE
func guardMountPoint(where string) error {
	if err := os.Mkdir(where, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return setImmutable(where, true)
}

// unguardMountPoint lifts the guard, so that the mount point can be
// removed.
//
// Equivalent to: chattr -i WHERE
func unguardMountPoint(where string) error { return setImmutable(where, false) }

// nfsSuperMagic is NFS_SUPER_MAGIC (statfs f_type of an NFS mount).
const nfsSuperMagic = 0x6969

func setImmutable(dir string, on bool) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) && !on {
			return nil
		}
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if st.Type == nfsSuperMagic {
		return nil // mounted: the guard is underneath, untouched
	}
	var flags uint32
	if err := ioctl(fd, fsIocGetFlags, &flags); err != nil {
		return &os.PathError{Op: "get flags of", Path: dir, Err: err}
	}
	want := flags &^ fsImmutableFL
	if on {
		want = flags | fsImmutableFL
	}
	if want == flags {
		return nil
	}
	if err := ioctl(fd, fsIocSetFlags, &want); err != nil {
		return &os.PathError{Op: "set the immutable flag of", Path: dir, Err: err}
	}
	return nil
}

// The inode flags ioctls (linux/fs.h); the kernel reads and writes an int.
const (
	fsIocGetFlags = 0x80086601 // FS_IOC_GETFLAGS
	fsIocSetFlags = 0x40086602 // FS_IOC_SETFLAGS
	fsImmutableFL = 0x00000010 // FS_IMMUTABLE_FL
)

func ioctl(fd int, req uintptr, v *uint32) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(v))); e != 0 {
		return e
	}
	return nil
}

// LiftGuards lifts the guard of every mount point under runtimeDir/nfs,
// for whoever must remove them by hand with the daemon stopped (an admin
// cleaning up after uninstalling, a test's temporary directory).
//
// Equivalent to: chattr -i RUNTIMEDIR/nfs/*
func LiftGuards(runtimeDir string) error {
	root := filepath.Join(runtimeDir, "nfs")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, unguardMountPoint(filepath.Join(root, e.Name())))
		}
	}
	return errors.Join(errs...)
}

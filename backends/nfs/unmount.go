// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"context"
	"fmt"
	"syscall"
)

// unmount detaches the mount at where at once and aborts its pending
// requests, even if the server is dead or files are open (they keep
// working on the detached mount until closed). It calls umount2 itself:
// umount(8) would look the path up first, and a path lookup can hang on a
// dead server. The call runs in a goroutine of its own, so that even a
// kernel that blocks can hold up only that goroutine, never the caller
// past ctx.
//
// Equivalent to: umount --force --lazy WHERE
func unmount(ctx context.Context, where string) error {
	done := make(chan error, 1)
	go func() { done <- syscall.Unmount(where, syscall.MNT_FORCE|syscall.MNT_DETACH) }()
	select {
	case err := <-done:
		if err != nil && err != syscall.EINVAL { // EINVAL: not a mount point (any more)
			return fmt.Errorf("umount2 %s: %w", where, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("umount2 %s: %w", where, ctx.Err())
	}
}

// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// readDir opens dir, asks its file system's statistics and reads its
// first entries. On NFS, statfs is always a call to the server; the open
// revalidates the directory's attributes (close-to-open), so a stale file
// handle shows here.
func readDir(dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	buf := make([]byte, 4096)
	if _, err := syscall.Getdents(fd, buf); err != nil {
		return &os.PathError{Op: "read directory", Path: dir, Err: err}
	}
	return nil
}

// blockSize is what is read of a block device: one page, the largest
// logical block size a disk has, so an O_DIRECT read of it is aligned on
// every device.
const blockSize = 4096

// readBlock reads the first blockSize bytes of a block device with
// O_DIRECT: past the page cache, from the device.
func readBlock(dev string) error {
	fd, err := syscall.Open(dev, syscall.O_RDONLY|syscall.O_DIRECT|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer syscall.Close(fd)
	buf := aligned(blockSize)
	n, err := syscall.Pread(fd, buf, 0)
	if err != nil {
		return &os.PathError{Op: "read", Path: dev, Err: err}
	}
	if n != blockSize {
		return &os.PathError{Op: "read", Path: dev, Err: fmt.Errorf("%d of %d bytes: %w", n, blockSize, syscall.EIO)}
	}
	return nil
}

// aligned returns n bytes aligned on blockSize, as O_DIRECT needs.
func aligned(n int) []byte {
	b := make([]byte, n+blockSize)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (blockSize - 1))
	if off != 0 {
		off = blockSize - off
	}
	return b[off : off+n]
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// StateLock is the exclusive hold of one daemon on its state directory:
// an flock on <state dir>/lock, with the holder's pid written in the
// file for the one that is refused. The kernel drops the lock when the
// process dies, however it dies, so a stale file never blocks a start.
type StateLock struct {
	f *os.File
}

// LockFileName is the lock file's name inside the state directory.
const LockFileName = "lock"

// LockStateDir takes the state directory dir for this process. Call it
// before OpenStore: when another process holds the lock it returns an
// error naming the lock file and the holder's pid, having changed nothing
// (no directory created or tightened, no file written). Only a state
// directory that does not exist yet is created (0700), to hold the lock.
//
// The descriptor is close-on-exec, so helpers the daemon starts never
// inherit the lock and cannot keep it after the daemon is gone.
func LockStateDir(dir string) (*StateLock, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, privateDirMode); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	path := filepath.Join(dir, LockFileName)
	// O_RDWR|O_CREATE on an existing file changes neither its content nor
	// its times: a refused instance leaves it as it was.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, privateFileMode)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory %s is in use: %s is locked by %s", dir, path, holder(f))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Ours: say who holds it. The pid is for people and for the refused
	// instance's message; the flock alone decides.
	pid := strconv.Itoa(os.Getpid()) + "\n"
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(pid), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &StateLock{f: f}, nil
}

// holder names the process that holds the lock from the pid in the file.
func holder(f *os.File) string {
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return "another process (its pid could not be read: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
		return "pid " + s
	}
	// It took the lock an instant ago and has not written its pid yet.
	return "another process (no pid in the file yet)"
}

// Close releases the lock. The file stays: removing it would let a
// process that opened it meanwhile lock a file no one else sees.
func (l *StateLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

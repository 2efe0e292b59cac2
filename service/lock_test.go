// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockStateDir(t *testing.T) {
	// Arrange: a state directory that does not exist yet.
	dir := filepath.Join(t.TempDir(), "state")
	lockPath := filepath.Join(dir, LockFileName)

	// Act
	first, err := LockStateDir(dir)

	// Assert
	if err != nil {
		t.Fatalf("LockStateDir(new dir) = %v", err)
	}
	defer first.Close()
	if b, err := os.ReadFile(lockPath); err != nil || string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Fatalf("lock file holds %q, %v; want our pid", b, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, %v; want mode 0700", fi.Mode(), err)
	}

	// A second hold (another open file description, as another process
	// would have) is refused, names the file and the holder, and changes
	// nothing.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, p := range []string{lockPath, dir} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	_, err = LockStateDir(dir)
	want := fmt.Sprintf("state directory %s is in use: %s is locked by pid %d", dir, lockPath, os.Getpid())
	if err == nil || err.Error() != want {
		t.Errorf("second LockStateDir = %v; want %q", err, want)
	}
	for _, p := range []string{lockPath, dir} {
		if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(old) {
			t.Errorf("%s was touched by the refused lock: mtime %v, want %v", p, fi.ModTime(), old)
		}
	}

	// Released, it can be taken again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := LockStateDir(dir)
	if err != nil {
		t.Fatalf("LockStateDir after Close = %v", err)
	}
	again.Close()
}

func TestLockStateDirStaleFile(t *testing.T) {
	// A lock file left by a process that is gone holds no lock: it is
	// taken over and gets our pid instead of the old one.
	dir := t.TempDir()
	path := filepath.Join(dir, LockFileName)
	if err := os.WriteFile(path, []byte("999999999\nleft over\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	l, err := LockStateDir(dir)

	if err != nil {
		t.Fatalf("LockStateDir over a stale file = %v", err)
	}
	defer l.Close()
	if b, _ := os.ReadFile(path); string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("lock file holds %q; want only our pid", b)
	}
}

func TestLockStateDirNoPidYet(t *testing.T) {
	// Held, but the holder has not written its pid yet: the refusal says so.
	dir := t.TempDir()
	l, err := LockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.f.Truncate(0); err != nil {
		t.Fatal(err)
	}

	_, err = LockStateDir(dir)

	if err == nil || !strings.Contains(err.Error(), "is locked by another process (no pid in the file yet)") {
		t.Errorf("LockStateDir = %v; want a refusal saying the pid is not known yet", err)
	}
}

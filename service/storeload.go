// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// loadWorkers read and decode state files side by side at start: with
// 100,000 CIDs the files' system calls and decoding are most of a
// restart, and they need no order until the end.
const loadWorkers = 4

// loadedFile is what reading one state file gave.
type loadedFile[T any] struct {
	v         T
	skip      bool // a leftover temporary file, removed
	bad       *BadFile
	tightened []string
	loose     string
}

// eachFile decodes every *.toml file in dir with decode, in parallel,
// and returns what decoded in the directory's (name) order; the files
// that did not decode go to s.Bad, and the permissions it fixed or could
// not fix to s.Tightened and s.Loose, in the same order. It removes
// leftover temporary files. decode must be safe to call concurrently.
func eachFile[T any](dir string, s *Loaded, decode func(path string, data []byte) (T, error)) ([]T, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	defer d.Close()
	dirfd := int(d.Fd())
	files := make([]loadedFile[T], len(entries))
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			euid := os.Geteuid()
			for i := w; i < len(entries); i += loadWorkers {
				files[i] = loadFile(dirfd, dir, entries[i], euid, decode)
			}
		}()
	}
	wg.Wait()
	out := make([]T, 0, len(files))
	for i := range files {
		f := &files[i]
		s.Tightened = append(s.Tightened, f.tightened...)
		if f.loose != "" {
			s.Loose = append(s.Loose, f.loose)
		}
		switch {
		case f.skip:
		case f.bad != nil:
			s.Bad = append(s.Bad, *f.bad)
		default:
			out = append(out, f.v)
		}
	}
	return out, nil
}

// loadFile reads and decodes one entry of dir. A temporary file left by
// a write cut short (never acknowledged) is removed and skipped.
func loadFile[T any](dirfd int, dir string, e os.DirEntry, euid int, decode func(string, []byte) (T, error)) loadedFile[T] {
	var f loadedFile[T]
	name := e.Name()
	path := filepath.Join(dir, name)
	if strings.HasPrefix(name, ".tmp-") {
		_ = os.Remove(path)
		f.skip = true
		return f
	}
	if !e.Type().IsRegular() || !strings.HasSuffix(name, ".toml") {
		f.bad = &BadFile{Path: path, Err: errors.New("not a state file")}
		return f
	}
	data, st, err := readAt(dirfd, name)
	if err == nil && (int(st.Uid) != euid || st.Mode&0o077 != 0) {
		// Secrets may be inside: make it private. Its content may still
		// be sound: it is loaded either way.
		if info, err := os.Lstat(path); err == nil {
			changes, err := makePrivate(path, info, privateFileMode)
			f.tightened = changes
			if err != nil {
				f.loose = err.Error()
			}
		}
	}
	if err == nil {
		f.v, err = decode(path, data)
	}
	if err != nil {
		f.bad = &BadFile{Path: path, Err: err}
	}
	return f
}

// readAt reads file name of the directory open as dirfd, and its status,
// in four system calls (five for a file of another owner): os.ReadFile takes twice as many (a status by
// path, the poller's registration), which counted at 100,000 files. A
// file that is not a regular one (it was replaced since the directory
// was read) is not a state file.
func readAt(dirfd int, name string) ([]byte, syscall.Stat_t, error) {
	var st syscall.Stat_t
	var fd int
	var err error
	// O_NOATIME: no inode write per file read (a fifth of the reads' CPU
	// when relatime updates them); only a file's owner may ask for it.
	flags := syscall.O_RDONLY | syscall.O_CLOEXEC | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOATIME
	for {
		fd, err = syscall.Openat(dirfd, name, flags, 0)
		if err == syscall.EPERM && flags&syscall.O_NOATIME != 0 {
			flags &^= syscall.O_NOATIME
			continue
		}
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, st, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, st, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, st, errors.New("not a state file")
	}
	// One byte more than the size: a read that fills it means the file
	// grew, and the loop reads on.
	data := make([]byte, 0, st.Size+1)
	for {
		n, err := syscall.Read(fd, data[len(data):cap(data)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, st, &os.PathError{Op: "read", Path: name, Err: err}
		}
		data = data[:len(data)+n]
		if n == 0 || len(data) < cap(data) && int64(len(data)) >= st.Size {
			return data, st, nil
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
	}
}

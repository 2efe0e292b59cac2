// SPDX-License-Identifier: Apache-2.0

// Package ioprobe proves a storage connection usable with one bounded read
// through it, made in a helper process so that a read that hangs (a dead
// NFS server, a SCSI device in recovery) can never block the daemon: the
// helper runs in its own process group and is killed at its deadline.
//
// The helper is the daemon's own executable run with HelperArg first
// (cmd/storkeepd dispatches to Main). What it does is what an admin would
// type to check by hand:
//
//	stat -f /run/storkeep/nfs/srv:_export && ls /run/storkeep/nfs/srv:_export   # NFS
//	dd if=/dev/sdb of=/dev/null bs=4096 count=1 iflag=direct                   # iSCSI
package ioprobe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/storkeep/storkeep/service"
)

// HelperArg, as the first argument, makes the daemon's executable run Main.
const HelperArg = "__storkeep-ioprobe"

// Mode says how a path is read.
type Mode string

const (
	// Dir: open the directory, ask its file system's statistics (always a
	// round trip to an NFS server, never a cached answer) and read its
	// first entries.
	Dir Mode = "dir"
	// Block: an O_DIRECT read of the first 4 KiB of a block device (past
	// every cache, as a VM's I/O goes).
	Block Mode = "block"
)

// Outcome names what a probe found.
type Outcome int

const (
	OK      Outcome = iota
	Timeout         // no answer by the deadline: the helper was killed
	Stale           // ESTALE: the server no longer knows the file handle
	Failed          // any other error, or the helper could not run
)

// Result is one probe.
type Result struct {
	Outcome Outcome
	// Delay is how long the reads took, measured by the helper (without
	// its start-up); for a timeout, how long the daemon waited.
	Delay time.Duration
	// Message is the helper's words (or the daemon's, for a timeout).
	Message string
}

// Runner starts probes. The zero value runs this process's executable.
type Runner struct {
	// Helper is the executable to run with HelperArg (default: this
	// process's own, os.Executable at the first probe).
	Helper string
	// Env is the helper's environment (nil: none but LC_ALL=C).
	Env []string

	once     sync.Once
	helper   string
	helperOK error
	mu       sync.Mutex
	stuck    map[string]time.Time // key -> since when its killed helper has not exited
}

// waitDelay bounds the wait for the helper's output after it was killed.
const waitDelay = time.Second

// Probe reads paths (in mode) in one helper run, at most until ctx's
// deadline. key names the target: while the helper of an earlier probe of
// the same key is still alive after being killed (a process in an
// uninterruptible sleep cannot die until its I/O returns), no new one is
// started, so a hung device never piles up helpers.
func (r *Runner) Probe(ctx context.Context, key string, mode Mode, paths ...string) Result {
	start := time.Now()
	if len(paths) == 0 {
		return Result{Outcome: Failed, Message: "nothing to read"}
	}
	r.once.Do(func() {
		r.helper = r.Helper
		if r.helper == "" {
			r.helper, r.helperOK = os.Executable()
		}
		r.stuck = make(map[string]time.Time)
	})
	if r.helperOK != nil {
		return Result{Outcome: Failed, Message: fmt.Sprintf("probe helper: %v", r.helperOK)}
	}
	r.mu.Lock()
	since, stuck := r.stuck[key]
	r.mu.Unlock()
	if stuck {
		return Result{Outcome: Timeout, Message: fmt.Sprintf("the read of %s started %s ago has still not returned",
			strings.Join(paths, ", "), time.Since(since).Round(time.Second))}
	}
	args := append([]string{HelperArg, string(mode)}, paths...)
	cmd := exec.Command(r.helper, args...)
	cmd.Env = r.Env
	if cmd.Env == nil {
		cmd.Env = []string{"LC_ALL=C"}
	}
	// Its own process group: the kill reaches whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout = &capped{b: &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return Result{Outcome: Failed, Delay: time.Since(start), Message: fmt.Sprintf("start probe helper: %v", err)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return parse(out.String(), err, time.Since(start))
	case <-ctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	waited := time.Since(start)
	select {
	case <-done:
	case <-time.After(waitDelay):
		// Still alive: in an uninterruptible read. Reap it when it ends.
		r.mu.Lock()
		r.stuck[key] = start
		r.mu.Unlock()
		go func() {
			<-done
			r.mu.Lock()
			delete(r.stuck, key)
			r.mu.Unlock()
		}()
	}
	return Result{Outcome: Timeout, Delay: waited,
		Message: fmt.Sprintf("no answer from a read of %s within %s", strings.Join(paths, ", "), waited.Round(time.Millisecond))}
}

// parse reads the helper's one-line answer: "ok <µs>" or
// "err <errno> <message>".
func parse(out string, waitErr error, took time.Duration) Result {
	line := strings.TrimSpace(out)
	if first, _, ok := strings.Cut(line, "\n"); ok {
		line = first
	}
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "ok":
		us, err := strconv.ParseInt(rest, 10, 64)
		if err == nil && waitErr == nil {
			return Result{Outcome: OK, Delay: time.Duration(us) * time.Microsecond}
		}
	case "err":
		num, msg, _ := strings.Cut(rest, " ")
		errno, _ := strconv.Atoi(num)
		res := Result{Outcome: Failed, Delay: took, Message: msg}
		if syscall.Errno(errno) == syscall.ESTALE {
			res.Outcome = Stale
		}
		return res
	}
	msg := fmt.Sprintf("probe helper said %q", line)
	if waitErr != nil {
		msg = fmt.Sprintf("probe helper: %v (output %q)", waitErr, line)
	}
	return Result{Outcome: Failed, Delay: took, Message: msg}
}

// capped keeps the first 4 KiB written: the helper's answer is one line.
type capped struct{ b *strings.Builder }

func (c *capped) Write(p []byte) (int, error) {
	if room := 4096 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Main is the helper: it reads each path in args[1:] as args[0] (a Mode)
// says, prints "ok <µs>" and returns 0, or prints "err <errno> <path>:
// <message>" for the first that fails and returns 1.
func Main(args []string) int {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if len(args) < 2 {
		fmt.Fprintf(w, "err %d usage: %s dir|block PATH...\n", syscall.EINVAL, HelperArg)
		return 2
	}
	mode, paths := Mode(args[0]), args[1:]
	start := time.Now()
	for _, p := range paths {
		var err error
		switch mode {
		case Dir:
			err = readDir(p)
		case Block:
			err = readBlock(p)
		default:
			err = fmt.Errorf("unknown mode %q: %w", mode, syscall.EINVAL)
		}
		if err != nil {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				errno = syscall.EIO
			}
			fmt.Fprintf(w, "err %d %v\n", int(errno), err)
			return 1
		}
	}
	fmt.Fprintf(w, "ok %d\n", time.Since(start).Microseconds())
	return 0
}

// ForService names r for the service: nil Err when the read worked;
// IOTimeout, Stale or IOError otherwise, with the helper's words.
func (r Result) ForService() service.ProbeResult {
	out := service.ProbeResult{Delay: r.Delay}
	switch r.Outcome {
	case OK:
	case Timeout:
		out.Err = service.NewConnError(service.ErrNameIOTimeout, "%s", r.Message)
	case Stale:
		out.Err = service.NewConnError(service.ErrNameStale, "%s", r.Message)
	default:
		out.Err = service.NewConnError(service.ErrNameIOError, "%s", r.Message)
	}
	return out
}

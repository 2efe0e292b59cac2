// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// maxOutput caps what is kept of a helper's output: enough for its error
// message, never a flood in memory or in an error.
const maxOutput = 16 << 10

// waitDelay is how long Wait waits for the helper's output pipes to close
// after the helper was killed (a grandchild may still hold them).
const waitDelay = 2 * time.Second

// result is what a helper run left behind.
type result struct {
	// Code is the exit code; -1 when the helper was killed by a signal.
	Code int
	// Output is stdout and stderr interleaved, trimmed and capped.
	Output string
	// Took is how long the helper ran.
	Took time.Duration
}

// errNotFound says the helper itself could not be started.
var errNotFound = errors.New("not found")

// runCommand runs name with args until it exits or ctx ends. On ctx's end
// the helper's whole process group is killed, not only the helper: a
// `timeout`-style kill of the direct child would leave a blocked
// grandchild behind. The returned error is nil when the helper ran to its
// end, whatever its exit code; it wraps ctx.Err() when ctx ended first,
// and errNotFound when the helper could not be started.
//
// Nothing secret may ever be passed in args: they are visible to every
// user in /proc/PID/cmdline.
func runCommand(ctx context.Context, name string, args ...string) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{Code: -1}, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	// Its own process group, so that a kill reaches its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	var out cappedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	res := result{Code: -1, Output: strings.TrimSpace(out.String()), Took: time.Since(start)}
	if cmd.ProcessState != nil {
		res.Code = cmd.ProcessState.ExitCode()
	}
	if cerr := ctx.Err(); cerr != nil && (err != nil || res.Code != 0) {
		// Killed on the deadline (or raced with it): the outcome is unknown.
		// Make sure nothing of the group is left.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return res, fmt.Errorf("%s: %w after %s", name, cerr, res.Took.Round(time.Millisecond))
	}
	var ee *exec.ExitError
	switch {
	case err == nil, errors.As(err, &ee):
		return res, nil
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, syscall.ENOENT):
		return res, fmt.Errorf("%s: %w: %v", name, errNotFound, err)
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited, but something it started still holds the pipes.
		return res, nil
	default:
		return res, fmt.Errorf("%s: %w", name, err)
	}
}

// cappedBuffer keeps the first maxOutput bytes written to it.
type cappedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
			c.truncated = true
		} else {
			c.buf.Write(p)
		}
	} else if len(p) > 0 {
		c.truncated = true
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	if c.truncated {
		return c.buf.String() + "\n[output truncated]"
	}
	return c.buf.String()
}

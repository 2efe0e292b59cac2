// SPDX-License-Identifier: Apache-2.0

// Package ioprobe proves a storage connection usable with one bounded read
// through it, made in a helper process so that a read that hangs (a dead
// NFS server, a SCSI device in recovery) can never block the daemon: the
// helper runs in its own process group and is killed at its deadline.
//
// The helper is the daemon's own executable run with HelperArg first
// (cmd/storkeepd dispatches to Main). A helper that answered is kept for
// the next read (one request and one answer a line over its stdin and
// stdout), so a read costs a pipe round trip, not a process start; a
// helper that did not answer in time is killed and never reused. What it
// does is what an admin would type to check by hand:
//
//	stat -f /run/storkeep/nfs/srv:_export && ls /run/storkeep/nfs/srv:_export   # NFS
//	dd if=/dev/sdb of=/dev/null bs=4096 count=1 iflag=direct                   # iSCSI
package ioprobe

import (
	"fmt"
	"strconv"
	"strings"
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

// parse reads the helper's one-line answer: "ok <µs>" or
// "err <errno> <message>".
func parse(out string, took time.Duration) Result {
	line := strings.TrimSpace(out)
	if first, _, ok := strings.Cut(line, "\n"); ok {
		line = first
	}
	word, rest, _ := strings.Cut(line, " ")
	switch word {
	case "ok":
		us, err := strconv.ParseInt(rest, 10, 64)
		if err == nil {
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
	return Result{Outcome: Failed, Delay: took, Message: fmt.Sprintf("probe helper said %q", line)}
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

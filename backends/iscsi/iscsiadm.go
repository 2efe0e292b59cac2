// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/storkeep/storkeep/service"
)

// Deadlines of iscsiadm calls that only touch the node database or the
// local kernel; logins and logouts get the caller's whole deadline
// (iscsid bounds them itself with the record's login and logout timeouts).
const (
	recordTimeout = 30 * time.Second // -o new, -o delete: a little more than the idbm lock wait
	rescanTimeout = 30 * time.Second
	logoutTimeout = 90 * time.Second // iscsid's logout_timeout (15 s) with room for recovery
	probeTimeout  = 60 * time.Second // SendTargets discovery to explain a refused login
)

// iscsiadmError is a failed iscsiadm call: its exit code and its words.
type iscsiadmError struct {
	Args []string
	Code int
	Out  string
}

func (e *iscsiadmError) Error() string {
	out := e.Out
	if out == "" {
		out = "no output"
	}
	return fmt.Sprintf("iscsiadm %s: exit code %d: %s", strings.Join(e.Args, " "), e.Code, oneLine(out))
}

// oneLine joins a helper's lines with "; " so that an error stays one line.
func oneLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// iscsiadm runs iscsiadm with args, within timeout (0: ctx's deadline
// only). The error is an *iscsiadmError for a non-zero exit code not in
// okCodes, and wraps ctx's error or errNotFound otherwise.
func (b *Backend) iscsiadm(ctx context.Context, timeout time.Duration, okCodes []int, args ...string) (result, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	res, err := runCommand(ctx, b.iscsiadmPath(), args...)
	b.log().Debug("iscsiadm", "args", strings.Join(args, " "), "exit", res.Code, "took", res.Took.Round(time.Millisecond), "err", err)
	if err != nil {
		return res, err
	}
	if res.Code == 0 {
		return res, nil
	}
	for _, c := range okCodes {
		if res.Code == c {
			return res, nil
		}
	}
	return res, &iscsiadmError{Args: args, Code: res.Code, Out: res.Output}
}

// newRecord creates a static node record with iscsiadm's defaults (from
// iscsid.conf) and no discovery, so that no other record is touched.
//
// Equivalent to: iscsiadm -m node -o new -T IQN -p ADDR:PORT,TPGT -I IFACE
func (b *Backend) newRecord(ctx context.Context, r nodeRecord) error {
	_, err := b.iscsiadm(ctx, recordTimeout, nil, "-m", "node", "-o", "new", "-T", r.IQN, "-p", r.portalArg(), "-I", r.Iface)
	if err != nil {
		return fmt.Errorf("create node record %s: %w", r, err)
	}
	return nil
}

// deleteRecord deletes a node record; one that is gone already is success.
//
// Equivalent to: iscsiadm -m node -o delete -T IQN -p ADDR:PORT,TPGT -I IFACE
func (b *Backend) deleteRecord(ctx context.Context, r nodeRecord) error {
	_, err := b.iscsiadm(ctx, recordTimeout, []int{exitNoObjects}, "-m", "node", "-o", "delete", "-T", r.IQN, "-p", r.portalArg(), "-I", r.Iface)
	if err != nil {
		return fmt.Errorf("delete node record %s: %w", r, err)
	}
	return nil
}

// login logs in with the record's settings. Already logged in (exit code
// 15) is success. The error is a *service.ConnError named after the
// exit code.
//
// Equivalent to: iscsiadm -m node -T IQN -p ADDR:PORT,TPGT -I IFACE --login
func (b *Backend) login(ctx context.Context, r nodeRecord) error {
	_, err := b.iscsiadm(ctx, 0, []int{exitSessionExists}, "-m", "node", "-T", r.IQN, "-p", r.portalArg(), "-I", r.Iface, "--login")
	if err == nil {
		return nil
	}
	if ie, ok := err.(*iscsiadmError); ok {
		name := loginErrorName(ie.Code)
		if ie.Code == exitFatalLogin {
			name = b.explainFatalLogin(ctx, r)
		}
		return &service.ConnError{Name: name, Err: fmt.Errorf("login to %s: %w", r, err)}
	}
	return connErrorFor(ErrLoginFailed, fmt.Errorf("login to %s: %w", r, err))
}

// explainFatalLogin tells TargetNotFound from other refusals after a
// non-retryable login failure (exit code 19: iscsiadm does not say which
// status the target gave). It asks the portal for its targets without
// recording anything.
//
// Equivalent to: iscsiadm -m discovery -t st -p ADDR:PORT -o nonpersistent
func (b *Backend) explainFatalLogin(ctx context.Context, r nodeRecord) string {
	res, err := b.iscsiadm(ctx, probeTimeout, nil, "-m", "discovery", "-t", "st", "-p", service.HostPort(r.Addr, r.Port), "-o", "nonpersistent")
	if err != nil {
		return ErrLoginFailed
	}
	if discoveredTarget(res.Output, r.IQN) {
		return ErrLoginFailed
	}
	return ErrTargetNotFound
}

// discoveredTarget reports whether SendTargets output ("ADDR:PORT,TPGT IQN"
// per line) lists iqn.
func discoveredTarget(out, iqn string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[1], iqn) {
			return true
		}
	}
	return false
}

// logout logs session id out. A session that is gone already is success
// (exit codes 2 and 21; 22 when its sysfs entry went between our look and
// iscsiadm's).
//
// Equivalent to: iscsiadm -m session -r ID --logout
func (b *Backend) logout(ctx context.Context, id uint32) error {
	_, err := b.iscsiadm(ctx, logoutTimeout, []int{exitSessionNotFound, exitNoObjects, exitSysfsLookup}, "-m", "session", "-r", strconv.FormatUint(uint64(id), 10), "--logout")
	if err != nil {
		return fmt.Errorf("logout of session %d: %w", id, err)
	}
	return nil
}

// rescan asks the kernel to scan session id for new LUNs; the scan is
// done when it returns.
//
// Equivalent to: iscsiadm -m session -r ID --rescan
func (b *Backend) rescan(ctx context.Context, id uint32) error {
	_, err := b.iscsiadm(ctx, rescanTimeout, nil, "-m", "session", "-r", strconv.FormatUint(uint64(id), 10), "--rescan")
	if err != nil {
		return fmt.Errorf("rescan of session %d: %w", id, err)
	}
	return nil
}

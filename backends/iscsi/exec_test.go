// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "iscsiadm")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunExitCodes(t *testing.T) {
	b := &Backend{Iscsiadm: script(t, `echo "iscsiadm: $*" >&2; exit "$1"`)}
	ctx := context.Background()
	for _, c := range []struct {
		code    int
		ok      []int
		wantErr bool
	}{{0, nil, false}, {15, []int{exitSessionExists}, false}, {15, nil, true}, {24, nil, true}} {
		res, err := b.iscsiadm(ctx, 0, c.ok, strconv.Itoa(c.code))
		if res.Code != c.code || (err != nil) != c.wantErr {
			t.Errorf("exit %d ok %v: %+v, %v", c.code, c.ok, res, err)
		}
		var ie *iscsiadmError
		if c.wantErr && (!errors.As(err, &ie) || ie.Code != c.code || !strings.Contains(err.Error(), "iscsiadm: "+strconv.Itoa(c.code))) {
			t.Errorf("exit %d: error %v does not carry the code and output", c.code, err)
		}
	}
}

func TestLoginErrorNames(t *testing.T) {
	for code, want := range map[string]string{
		"0": "", "15": "", "24": ErrAuthenticationFailed, "8": ErrPortalUnreachable, "4": ErrPortalUnreachable,
		"20": ErrInitiatorUnavailable, "12": ErrInitiatorUnavailable, "5": ErrLoginFailed, "19": ErrTargetNotFound,
	} {
		b := &Backend{Iscsiadm: script(t, `case "$*" in *discovery*) exit 0;; esac; exit `+code)}
		err := b.login(context.Background(), nodeRecord{IQN: testIQN, Addr: testAddr, Port: 3260, TPGT: 1, Iface: "default"})
		got := ""
		if err != nil {
			got = connErrorFor("", err).Name
		}
		if got != want {
			t.Errorf("login exit %s: %q (%v), want %q", code, got, err, want)
		}
	}
}

func TestRunNotFound(t *testing.T) {
	b := &Backend{Iscsiadm: filepath.Join(t.TempDir(), "no-iscsiadm")}
	_, err := b.iscsiadm(context.Background(), 0, nil, "-m", "session")
	if !errors.Is(err, errNotFound) || connErrorFor(ErrLoginFailed, err).Name != ErrInitiatorUnavailable {
		t.Fatalf("missing iscsiadm: %v", err)
	}
}

// TestRunKillsProcessGroup: on the deadline the helper and what it started
// die, and the call returns at once even though a grandchild held the
// output pipe.
func TestRunKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	b := &Backend{Iscsiadm: script(t, `sleep 60 & echo $! > `+pidFile+`; wait`)}
	start := time.Now()
	_, err := b.iscsiadm(context.Background(), 300*time.Millisecond, nil, "--login")
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || connErrorFor(ErrLoginFailed, err).Name != ErrTimeout {
		t.Fatalf("err = %v; want a deadline error named Timeout", err)
	}
	if took > 3*time.Second {
		t.Errorf("took %s to return after a 300ms deadline", took)
	}
	b2, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b2)))
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the helper's child %d survived the deadline", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestRunCapsOutput(t *testing.T) {
	b := &Backend{Iscsiadm: script(t, `head -c 100000 /dev/zero | tr '\0' x; exit 3`)}
	res, err := b.iscsiadm(context.Background(), 0, nil)
	if err == nil || len(res.Output) > maxOutput+100 || !strings.HasSuffix(res.Output, "[output truncated]") {
		t.Fatalf("output of %d bytes, err %v", len(res.Output), err)
	}
}

func TestDiscoveredTarget(t *testing.T) {
	out := "10.252.0.1:3260,1 iqn.2026-01.org.storkeep.e2e:plain\n[fd00::1]:3260,1 IQN.2026-01.org.storkeep.e2e:CHAP\n"
	for iqn, want := range map[string]bool{
		"iqn.2026-01.org.storkeep.e2e:plain": true, "iqn.2026-01.org.storkeep.e2e:chap": true, "iqn.2026-01.org.storkeep.e2e:nope": false,
	} {
		if got := discoveredTarget(out, iqn); got != want {
			t.Errorf("discoveredTarget(%s) = %t", iqn, got)
		}
	}
}

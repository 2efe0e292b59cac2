// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain makes the test binary its own probe helper, as storkeepd is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperArg {
		os.Exit(Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestProbeDir(t *testing.T) {
	var r Runner
	dir := t.TempDir()
	res := r.Probe(context.Background(), "k", Dir, dir)
	if res.Outcome != OK || res.Delay <= 0 {
		t.Fatalf("probe of %s: %+v, want OK with a delay", dir, res)
	}
	res = r.Probe(context.Background(), "k", Dir, filepath.Join(dir, "missing"))
	if res.Outcome != Failed || !strings.Contains(res.Message, "no such file") {
		t.Fatalf("probe of a missing dir: %+v, want Failed naming ENOENT", res)
	}
}

func TestProbeBlockNeedsAlignedDirectRead(t *testing.T) {
	// A regular file on a disk file system takes O_DIRECT like a disk.
	f := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(f, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	var r Runner
	res := r.Probe(context.Background(), "k", Block, f)
	if res.Outcome == Failed && strings.Contains(res.Message, "invalid argument") {
		t.Skipf("%s does not take O_DIRECT here: %s", f, res.Message)
	}
	if res.Outcome != OK {
		t.Fatalf("probe of %s: %+v", f, res)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if res := r.Probe(context.Background(), "k", Block, short); res.Outcome != Failed {
		t.Fatalf("probe of an empty device: %+v, want Failed", res)
	}
}

// A read that never returns (here: opening a FIFO nobody writes) is killed
// at the deadline and reported as a timeout, in about the deadline.
func TestProbeTimeoutKillsHelper(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var r Runner
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := r.Probe(ctx, "k", Block, fifo)
	if res.Outcome != Timeout || !strings.Contains(res.Message, "no answer") {
		t.Fatalf("probe of a FIFO with no writer: %+v, want Timeout", res)
	}
	// The helper was killed: the next probe of the key starts a new one.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if res := r.Probe(ctx2, "k", Block, fifo); res.Outcome != Timeout || strings.Contains(res.Message, "still not returned") {
		t.Fatalf("second probe: %+v, want a new helper timing out", res)
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		out  string
		want Outcome
		msg  string
	}{
		{"ok 1234\n", OK, ""},
		{"err 116 open /mnt/x: stale file handle\n", Stale, "open /mnt/x: stale file handle"},
		{"err 5 read /dev/sdb: input/output error\n", Failed, "read /dev/sdb: input/output error"},
		{"panic: something\n", Failed, `probe helper said "panic: something"`},
		{"", Failed, `probe helper said ""`},
	} {
		res := parse(c.out, nil, time.Millisecond)
		if res.Outcome != c.want || res.Message != c.msg {
			t.Errorf("parse(%q) = %+v, want outcome %d message %q", c.out, res, c.want, c.msg)
		}
		if c.want == OK && res.Delay != 1234*time.Microsecond {
			t.Errorf("parse(%q) delay %s", c.out, res.Delay)
		}
	}
}

func TestMainUsage(t *testing.T) {
	if code := Main(nil); code != 2 {
		t.Fatalf("Main(nil) = %d, want 2", code)
	}
}

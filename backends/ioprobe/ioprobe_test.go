// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
		res := parse(c.out, time.Millisecond)
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

// A helper that answered is asked again: steady probing starts no process.
func TestRunnerReusesHelpers(t *testing.T) {
	var r Runner
	defer r.Close()
	dir := t.TempDir()
	for i := range 20 {
		if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK {
			t.Fatalf("probe %d: %+v", i, res)
		}
	}
	if n := r.Started(); n != 1 {
		t.Fatalf("20 probes one after the other started %d helpers, want 1", n)
	}
	// A failed read is an answer too: the helper stays.
	if res := r.Probe(context.Background(), "k", Dir, filepath.Join(dir, "missing")); res.Outcome != Failed {
		t.Fatalf("probe of a missing dir: %+v", res)
	}
	if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK || r.Started() != 1 {
		t.Fatalf("after a failed read: %+v, %d helpers started, want OK from the same one", res, r.Started())
	}
}

// A kept helper that died meanwhile (killed by an admin, the OOM killer)
// costs nothing but a new start: the probe still answers.
func TestRunnerReplacesADeadHelper(t *testing.T) {
	var r Runner
	defer r.Close()
	dir := t.TempDir()
	if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK {
		t.Fatalf("probe: %+v", res)
	}
	r.mu.Lock()
	w := r.idle[0]
	r.mu.Unlock()
	if err := syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.exited
	if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK {
		t.Fatalf("probe after the kept helper died: %+v", res)
	}
	if n := r.Started(); n != 2 {
		t.Fatalf("%d helpers started, want 2", n)
	}
}

// No more than Keep idle helpers are kept, and those beyond the first two
// exit after Idle.
func TestRunnerKeepsFewIdleHelpers(t *testing.T) {
	r := Runner{Keep: 3, Idle: 100 * time.Millisecond}
	defer r.Close()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK {
				t.Errorf("probe: %+v", res)
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	kept := slices.Clone(r.idle)
	r.mu.Unlock()
	if len(kept) > 3 || len(kept) == 0 {
		t.Fatalf("%d helpers kept after 8 concurrent probes, want 1 to 3", len(kept))
	}
	want := min(len(kept), alwaysKept)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		n := len(r.idle)
		r.mu.Unlock()
		if n == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d helpers idle %s after use, want %d", n, 5*time.Second, want)
		}
	}
	countExited := func() int {
		n := 0
		for _, w := range kept {
			select {
			case <-w.exited:
				n++
			default:
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); countExited() < len(kept)-want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle helpers exited, want %d", countExited(), len(kept), len(kept)-want)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := countExited(); n != len(kept)-want {
		t.Fatalf("%d of %d idle helpers exited, want %d: the first two stay", n, len(kept), len(kept)-want)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	paths := []string{"/run/storkeep/nfs/srv:_export", "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.x-lun-0", "a b\"c\nd\\e"}
	line := request(Block, paths)
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("request %q is not one line", line)
	}
	mode, got, err := parseRequest(strings.TrimSuffix(line, "\n"))
	if err != nil || mode != Block || !slices.Equal(got, paths) {
		t.Fatalf("parseRequest(%q) = %q %q %v", line, mode, got, err)
	}
	for _, bad := range []string{"dir", "dir /x", `dir "/x`} {
		if _, _, err := parseRequest(bad); err == nil {
			t.Errorf("parseRequest(%q) took it", bad)
		}
	}
}

// serve answers each request on its line, an unreadable request included.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	in := request(Dir, []string{dir}) + "nonsense\n" + request(Dir, []string{filepath.Join(dir, "x\ny")})
	var out strings.Builder
	if err := serve(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ok ") || !strings.HasPrefix(lines[1], "err 22 ") || !strings.HasPrefix(lines[2], "err 2 ") {
		t.Fatalf("answers %q", lines)
	}
}

// Helpers that cannot die at once (here: their stdout held open by a
// process outside their group, as a read in uninterruptible sleep holds
// the helper itself) do not hold up a new read of their key, up to
// maxStuck of them: then the next probe waits for one to exit, within its
// own deadline, and reads (with the helper started when the last one was
// killed: a read after a hang waits for no process start).
func TestProbeAfterStuckHelpers(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m1, m2 := filepath.Join(dir, "started-once"), filepath.Join(dir, "started-twice")
	script := filepath.Join(dir, "helper")
	body := "#!/bin/sh\nif [ -e " + m2 + " ]; then exec " + self + " \"$@\"; fi\n" +
		"if [ -e " + m1 + " ]; then : > " + m2 + "; else : > " + m1 + "; fi\n" +
		"setsid sleep 6 &\nexec sleep 60\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	r := Runner{Helper: script, Keep: 1}
	defer r.Close()
	probe := func(d time.Duration) Result {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return r.Probe(ctx, "k", Dir, dir)
	}
	refilled := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r.mu.Lock()
			n := len(r.idle)
			r.mu.Unlock()
			if n == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no helper started after a kill")
			}
		}
	}
	for i := range maxStuck {
		if res := probe(200 * time.Millisecond); res.Outcome != Timeout || strings.Contains(res.Message, "still not returned") {
			t.Fatalf("probe %d: %+v, want a helper timing out", i, res)
		}
		refilled()
	}
	if res := probe(100 * time.Millisecond); res.Outcome != Timeout || !strings.Contains(res.Message, "still not returned") {
		t.Fatalf("probe while %d killed helpers live: %+v, want Timeout naming the old read", maxStuck, res)
	}
	if res := probe(30 * time.Second); res.Outcome != OK {
		t.Fatalf("probe once a killed helper exits: %+v, want OK", res)
	}
	// Each kill started one helper for the next reads, and no more.
	if n := r.Started(); n != maxStuck+1 {
		t.Fatalf("%d helpers started, want %d", n, maxStuck+1)
	}
}

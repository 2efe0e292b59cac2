// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The health tests (issue 14) check what storkeep says against what a
// read through the connection does. Every such read runs on a thread of
// its own (a read of a hung mount or a queued block device can block for
// minutes) with a deadline; the test stops waiting for it at the deadline
// whatever the thread does.

// readDeadline is the deadline of one read through a connection, from
// the moment its thread runs.
const readDeadline = 500 * time.Millisecond

// healthPrefix is the CID prefix of the NFS health tests (iSCSI CIDs use
// isCIDPrefix, so that the iSCSI fixture cleans them up).
const healthPrefix = "e2e-health-"

// The [health] settings of scenarios 1-6: a probe every second (the
// default, 5 s, would only make the tests slower), each with the default
// deadline, 5 s: a shorter one fails healthy probes when the test host is
// busy (measured with 2 s: IOTimeout for a mount that reads in 0.1 s,
// since the deadline counts the helper's start).
const (
	healthInterval = time.Second
	healthTimeout  = 5 * time.Second
	healthConfig   = "[health]\ninterval = \"1s\"\ntimeout = \"5s\"\n"
)

// readResult is one read through a connection.
type readResult struct {
	start, end time.Time
	ok         bool
	msg        string // the error when it failed, or why it was given up
	// slow: past its deadline, its thread was runnable (waiting for a
	// CPU, not for the I/O), or it was not started: the test host was
	// slow, which says nothing about the connection. Such a read counts
	// neither as working nor as failed.
	slow bool
}

// failed is a read that says the connection does not work. A read the
// server answered with "no such file" went through the connection and
// back: what the export holds is the server's business (after the stale
// scenario's remount, nfsd serves the replaced directory for a moment
// before its export cache sees the new file system), not the link's.
func (r readResult) failed() bool { return !r.ok && !r.slow && !r.noEntry() }

// noEntry is a read the server answered: the file is not there.
func (r readResult) noEntry() bool {
	return !r.ok && strings.Contains(strings.ToLower(r.msg), "no such file or directory")
}

func (r readResult) String() string {
	if r.ok {
		return fmt.Sprintf("ok in %s", r.end.Sub(r.start).Round(time.Millisecond))
	}
	return fmt.Sprintf("failed after %s: %s", r.end.Sub(r.start).Round(time.Millisecond), r.msg)
}

// procState returns the command name and the state letter of a process
// (/proc/PID/stat), or "" for both if it cannot be read.
func procState(pid any) (comm, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%v/stat", pid))
	if err != nil {
		return "", ""
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open || len(s) < closing+3 {
		return "", ""
	}
	return s[open+1 : closing], s[closing+2 : closing+3]
}

// readThrough reads the first 4 KiB of path with O_DIRECT (a file on an
// NFS mount, or an iSCSI LUN's block device), as dd iflag=direct would,
// on a thread of its own, and waits for it at most readDeadline. A read
// that does not answer is left to its thread (a read of a hung mount, or
// one queued on a recovering iSCSI session, waits in the kernel until its
// I/O ends; the thread ends with it): no process is started per read, so
// the time of a read is the read's, not a fork's in a busy test host.
func readThrough(path string) readResult {
	if blockedReads.Load() >= maxBlockedReads {
		now := time.Now()
		return readResult{start: now, end: now, slow: true,
			msg: fmt.Sprintf("not started: %d earlier reads still blocked", maxBlockedReads)}
	}
	type answer struct {
		err error
		end time.Time
	}
	type begun struct {
		tid int
		at  time.Time
	}
	done := make(chan answer, 1)
	started := make(chan begun, 1)
	blockedReads.Add(1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, so a read
		// that blocked for minutes leaves no thread behind.
		runtime.LockOSThread()
		at := time.Now()
		started <- begun{syscall.Gettid(), at}
		err := directRead(path)
		end := time.Now()
		blockedReads.Add(-1)
		done <- answer{err, end}
	}()
	b := <-started
	id := b.tid
	r := readResult{start: b.at}
	timer := time.NewTimer(time.Until(r.start.Add(readDeadline)))
	defer timer.Stop()
	select {
	case a := <-done:
		r.end, r.ok = a.end, a.err == nil
		if a.err != nil {
			r.msg = a.err.Error()
		}
	case <-timer.C:
		r.end = time.Now()
		state := threadState(id)
		select {
		case a := <-done:
			// It ended as the deadline came: its result stands.
			r.ok = a.err == nil
			if a.err != nil {
				r.msg = a.err.Error()
			}
			return r
		default:
		}
		// A read waiting for its I/O sleeps uninterruptibly (D: block
		// I/O, and NFS's killable waits). A thread runnable (R) or
		// asleep (S: parked by the Go runtime, waiting for a CPU to run
		// on once its syscall returned) waits for the test process, not
		// for the connection: the test host was slow, which says nothing
		// about the connection.
		r.slow = state != "D"
		r.msg = fmt.Sprintf("no answer within %s (thread state %s)", readDeadline, state)
		if w, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/wchan", id)); err == nil && len(w) > 0 {
			r.msg = fmt.Sprintf("no answer within %s (thread state %s in %s)", readDeadline, state, w)
		}
	}
	return r
}

// blockedReads counts the reads of readThrough that have not returned;
// past maxBlockedReads no more are started.
var blockedReads atomic.Int64

const maxBlockedReads = 200

// directRead opens path with O_DIRECT and reads its first 4 KiB.
func directRead(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECT|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 2*4096)
	off := int(uintptr(unsafe.Pointer(&buf[0])) & 4095)
	if off != 0 {
		off = 4096 - off
	}
	n, err := syscall.Pread(fd, buf[off:off+4096], 0)
	if err != nil {
		return &os.PathError{Op: "read", Path: path, Err: err}
	}
	if n <= 0 {
		return &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%d bytes", n)}
	}
	return nil
}

// threadState returns the state letter of one of this process's threads
// (/proc/self/task/TID/stat), or "" if it cannot be read (the thread
// ended).
func threadState(tid int) string {
	_, state := procState(fmt.Sprintf("self/task/%d", tid))
	return state
}

// getProp reads one Connection property with a deadline: a daemon that
// does not answer fails the test instead of hanging it.
func getProp(c *godbus.Conn, cid, name string) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var v godbus.Variant
	err := conn(c, cid).CallWithContext(ctx, skdbus.PropertiesIface+".Get", 0, skdbus.ConnInterface, name).Store(&v)
	if err != nil {
		return nil, fmt.Errorf("%s: Get %s: %w", cid, name, err)
	}
	return v.Value(), nil
}

// connState is what storkeep says about a CID at one moment.
type connState struct {
	connected bool
	since     uint64 // ConnectedSince, µs
	state     string
	lastError string
	message   string
}

func (s connState) String() string {
	return fmt.Sprintf("Connected=%v State=%s LastError=%q (%s)", s.connected, s.state, s.lastError, s.message)
}

// stateOf reads cid's Connection properties in one GetAll.
func stateOf(c *godbus.Conn, cid string) (connState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var all map[string]godbus.Variant
	if err := conn(c, cid).CallWithContext(ctx, skdbus.PropertiesIface+".GetAll", 0, skdbus.ConnInterface).Store(&all); err != nil {
		return connState{}, fmt.Errorf("%s: GetAll: %w", cid, err)
	}
	s := connState{}
	s.connected, _ = all["Connected"].Value().(bool)
	s.since, _ = all["ConnectedSince"].Value().(uint64)
	s.state, _ = all["State"].Value().(string)
	s.lastError, _ = all["LastError"].Value().(string)
	s.message, _ = all["LastErrorMessage"].Value().(string)
	return s, nil
}

// propEvent is one PropertiesChanged signal of a connection object, with
// the moment the test received it.
type propEvent struct {
	at      time.Time
	changed map[string]godbus.Variant
}

// propWatch records the PropertiesChanged signals of one CID's object on
// a bus connection of its own, so that a state that lasts less than a
// poll (Stale, then remounted at once) is seen too.
type propWatch struct {
	mu     sync.Mutex
	events []propEvent
}

func watchProps(t *testing.T, cid string) *propWatch {
	t.Helper()
	c := systemBus(t)
	path := skdbus.ConnectionPath(cid)
	if err := c.AddMatchSignal(godbus.WithMatchObjectPath(path), godbus.WithMatchInterface(skdbus.PropertiesIface),
		godbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *godbus.Signal, 256)
	c.Signal(ch)
	w := &propWatch{}
	go func() {
		for sig := range ch {
			if sig.Path != path || len(sig.Body) < 2 {
				continue
			}
			changed, ok := sig.Body[1].(map[string]godbus.Variant)
			if !ok {
				continue
			}
			w.mu.Lock()
			w.events = append(w.events, propEvent{at: time.Now(), changed: changed})
			w.mu.Unlock()
		}
	}()
	return w
}

// first returns the moment of the first signal at or after since in which
// property name changed to a value for which want holds.
func (w *propWatch) first(since time.Time, name string, want func(any) bool) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events {
		if v, ok := e.changed[name]; ok && !e.at.Before(since) && want(v.Value()) {
			return e.at, true
		}
	}
	return time.Time{}, false
}

// waitSignal waits up to d for first to find a signal.
func (w *propWatch) waitSignal(since time.Time, d time.Duration, name string, want func(any) bool) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		if at, ok := w.first(since, name, want); ok {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func is(v any) func(any) bool { return func(x any) bool { return x == v } }

// healthScenario starts a health scenario: the exports, the [health]
// settings in content, and none of the health CIDs managed.
func healthScenario(t *testing.T, content string) *godbus.Conn {
	t.Helper()
	healthExports(t)
	c := systemBus(t)
	useHealthConfig(t, c, content)
	unmanageHealth(t, c)
	return c
}

// useHealthConfig writes storkeepd's configuration and reloads it (a
// reload applies [health]); the file in place before comes back, and is
// reloaded, when the test ends. A refused reload is an error of the test,
// which goes on with the settings in use (so that a daemon without
// [health] still shows how it fails the scenario).
func useHealthConfig(t *testing.T, c *godbus.Conn, content string) {
	t.Helper()
	old, readErr := os.ReadFile(configPath)
	t.Cleanup(func() {
		if readErr == nil {
			_ = os.WriteFile(configPath, old, 0o644)
		} else {
			_ = os.Remove(configPath)
		}
		try(t, "systemctl", "reload", "storkeepd.service")
	})
	if os.Getenv("STORKEEP_E2E_DEBUG") != "" {
		// Every read in the journal (journal.txt in the run's output).
		content = "[daemon]\nlog_level = \"debug\"\n" + content
	}
	if err := os.WriteFile(configPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cursor := journalCursor(t)
	must(t, "systemctl", "reload", "storkeepd.service")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := sh(t, "journalctl", "-u", "storkeepd.service", "--after-cursor="+cursor, "-o", "cat", "--no-pager")
		if strings.Contains(out, "configuration not reloaded") {
			t.Errorf("storkeepd refused the configuration:\n%s\n%s", content, out)
			return
		}
		if strings.Contains(out, "configuration reloaded") {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no word of the reload in the daemon's journal within 20 s:\n%s", out)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sampleTarget is a CID and the path a read through its connection reads.
type sampleTarget struct{ cid, path string }

// sampler checks, every ~100 ms per target until stopped, what storkeep
// says against what a read through the connection does: a read, then
// Connected, read after the read ended.
//
// The rule, for "Connected never says true while a read through the
// connection fails": a sample whose read failed (not merely slow, see
// readResult) while Connected (read after it) was true is a suspect. It
// is a violation only if
//   - its read started outside the detection window of a break the test
//     caused (broke): from the break to the break plus the next probe and
//     its deadline (interval + timeout) plus 1 s (the probes' spread and
//     the helper's start). storkeep cannot know of a hang before a probe
//     has waited for it; detection bounds are the scenarios' own checks;
//   - and 1 s later Connected is still true and a second read fails too
//     (a read at the very moment storkeep's verdict changes, or one read
//     slowed past its deadline by the test host, is not a false verdict).
type sampler struct {
	t       *testing.T
	c       *godbus.Conn
	targets []sampleTarget
	window  time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	breaks     []time.Time
	events     []string // what the test did, when: for the reader of a violation
	samples    int
	readFailed int
	slow       int // reads the test host was too slow to start in time
	suspects   int
	excused    int // in a break's detection window
	caughtUp   int // Connected false 1 s later
	transient  int // the second read worked
	violations []string
	readTimes  []time.Duration // of reads that worked
}

// sampledTotals adds up the samplers of all scenarios, for the log.
type samplerTotals struct{ samples, suspects, excused, violations, run int }

var sampledTotals struct {
	mu sync.Mutex
	samplerTotals
}

func startSampler(t *testing.T, c *godbus.Conn, window time.Duration, targets ...sampleTarget) *sampler {
	s := &sampler{t: t, c: c, targets: targets, window: window, stop: make(chan struct{})}
	for _, tg := range targets {
		s.wg.Add(1)
		go s.loop(tg)
	}
	t.Cleanup(func() { s.end() })
	return s
}

// add samples one more target from now on.
func (s *sampler) add(tg sampleTarget) {
	s.wg.Add(1)
	go s.loop(tg)
}

// broke records that the test broke the connections now.
func (s *sampler) broke() {
	s.mu.Lock()
	s.breaks = append(s.breaks, time.Now())
	s.events = append(s.events, time.Now().Format("15:04:05.000")+" break")
	s.mu.Unlock()
}

// note records, for the log, something the test did (the storage's return).
func (s *sampler) note(what string) {
	s.mu.Lock()
	s.events = append(s.events, time.Now().Format("15:04:05.000")+" "+what)
	s.mu.Unlock()
}

func (s *sampler) inBreakWindow(at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.breaks {
		if !at.Before(b) && at.Before(b.Add(s.window)) {
			return true
		}
	}
	return false
}

func (s *sampler) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *sampler) loop(tg sampleTarget) {
	defer s.wg.Done()
	for !s.stopped() {
		next := time.Now().Add(100 * time.Millisecond)
		s.sample(tg)
		time.Sleep(time.Until(next))
	}
}

func (s *sampler) sample(tg sampleTarget) {
	r := readThrough(tg.path)
	st, err := stateOf(s.c, tg.cid)
	s.mu.Lock()
	s.samples++
	switch {
	case r.ok:
		s.readTimes = append(s.readTimes, r.end.Sub(r.start))
	case r.slow:
		s.slow++
	default:
		s.readFailed++
	}
	s.mu.Unlock()
	if err != nil {
		s.mu.Lock()
		s.violations = append(s.violations, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		s.mu.Unlock()
		return
	}
	if !r.failed() || !st.connected {
		return
	}
	s.mu.Lock()
	s.suspects++
	s.mu.Unlock()
	if s.inBreakWindow(r.start) {
		s.mu.Lock()
		s.excused++
		s.mu.Unlock()
		return
	}
	time.Sleep(time.Second)
	st2, err := stateOf(s.c, tg.cid)
	if err == nil && !st2.connected {
		s.mu.Lock()
		s.caughtUp++
		s.mu.Unlock()
		return
	}
	r2 := readThrough(tg.path)
	if !r2.failed() {
		s.mu.Lock()
		s.transient++
		s.mu.Unlock()
		s.t.Logf("sampler: %s: read %s at %s while Connected; the read 1 s later worked", tg.cid, r, r.start.Format("15:04:05.000"))
		return
	}
	st3, _ := stateOf(s.c, tg.cid)
	if !st3.connected {
		s.mu.Lock()
		s.caughtUp++
		s.mu.Unlock()
		return
	}
	v := fmt.Sprintf("%s: read at %s %s, then %s; storkeep said %s, 1 s later %s",
		tg.cid, r.start.Format("15:04:05.000"), r, r2, st, st3)
	s.mu.Lock()
	s.violations = append(s.violations, v)
	s.mu.Unlock()
}

// end stops the sampler and waits for its last samples.
func (s *sampler) end() {
	select {
	case <-s.stop:
		return
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// check stops the sampler, logs its counts and fails the test for each
// violation.
func (s *sampler) check(t *testing.T) {
	t.Helper()
	s.end()
	s.mu.Lock()
	defer s.mu.Unlock()
	var p50, pmax time.Duration
	if len(s.readTimes) > 0 {
		r := slices.Clone(s.readTimes)
		slices.Sort(r)
		p50, pmax = r[len(r)/2], r[len(r)-1]
	}
	sampledTotals.mu.Lock()
	sampledTotals.run++
	sampledTotals.samples += s.samples
	sampledTotals.suspects += s.suspects
	sampledTotals.excused += s.excused
	sampledTotals.violations += len(s.violations)
	tot := sampledTotals.samplerTotals
	sampledTotals.mu.Unlock()
	t.Logf("sampler: %d samples, %d reads failed, %d too slow to tell; Connected=true with a failed read: %d (%d in a break's detection window of %s, "+
		"%d caught up within 1 s, %d not repeated by a second read), violations %d; reads that worked: p50 %s, max %s",
		s.samples, s.readFailed, s.slow, s.suspects, s.excused, s.window, s.caughtUp, s.transient, len(s.violations),
		p50.Round(time.Millisecond), pmax.Round(time.Millisecond))
	t.Logf("sampler, all health scenarios so far (%d): %d samples, %d suspects, %d excused, %d violations",
		tot.run, tot.samples, tot.suspects, tot.excused, tot.violations)
	if len(s.violations) > 0 {
		t.Logf("sampler: what the test did: %s", strings.Join(s.events, ", "))
	}
	for _, v := range s.violations {
		t.Errorf("Connected while a read through the connection fails: %s", v)
	}
}

// healthExports adds the export of the stale scenario: its own tmpfs at
// hs under the v4 root, fsid 4711, so that the test can replace the file
// system under it. The mount is made in the guest's mount namespace and
// reaches rpc.mountd's (a slave of it) by propagation.
var healthOnce sync.Once

// The stale scenario mounts a directory under the export's root, not the
// root: nfsd's handle for an export's root names only the export (it
// resolves to whatever file system is there now), while the handle of
// any other directory names its inode, which a new file system does not
// have.
const (
	staleExport = nfsV4Root + "/hs"
	staleDir    = "sub" // what the client mounts: hs/sub
	staleFile   = "probe"
	bFile       = "hello-b" // a file in export b, for reads through its mounts
)

func healthExports(t *testing.T) {
	t.Helper()
	nfsServers(t)
	var failed string
	healthOnce.Do(func() {
		script := fmt.Sprintf(`set -ex
mkdir -p %[1]s
mount -t tmpfs -o size=8m,mode=0755 tmpfs %[1]s
mkdir %[1]s/%[7]s
echo "first file system" >%[1]s/%[7]s/%[2]s
echo "%[1]s %[3]s/32(rw,sync,no_subtree_check,no_root_squash,fsid=4711)" >/etc/exports.d/e2e-health.exports
ip netns exec %[4]s exportfs -r
echo "from export b" >%[5]s/b/%[6]s
`, staleExport, staleFile, nfsHostIP, nfsNS, nfsV4Root, bFile, staleDir)
		if out, err := sh(t, "bash", "-c", script); err != nil {
			failed = fmt.Sprintf("health export: %v\n%s", err, out)
		}
	})
	if failed != "" {
		t.Fatal(failed)
	}
}

// replaceStaleExport puts a new tmpfs under the export (the old one is
// detached lazily: nfsd may still hold it) and flushes nfsd's export
// cache, so that the client's file handles no longer resolve: reads
// through the client's mount return ESTALE.
func replaceStaleExport(t *testing.T) {
	t.Helper()
	must(t, "bash", "-c", fmt.Sprintf(`set -e
umount -l %[1]s
mount -t tmpfs -o size=8m,mode=0755 tmpfs %[1]s
mkdir %[1]s/%[4]s
echo "second file system" >%[1]s/%[4]s/%[2]s
ip netns exec %[3]s exportfs -f`, staleExport, staleFile, nfsNS, staleDir))
}

// blackhole adds (or with del, removes) a blackhole route for the
// client's address in a storage namespace: the server gets the client's
// packets and its replies go nowhere, with every link up.
func blackhole(t *testing.T, ns, client string, del bool) {
	t.Helper()
	op := "add"
	if del {
		op = "del"
	}
	must(t, "ip", "-n", ns, "route", op, "blackhole", client+"/32")
}

// comeback is what happened when storage came back: from the moment it
// did (up) to the end of the first read through the connection that
// worked, and to Connected (ConnectedSince, the daemon's own time); and
// the reads that failed (not merely slow) although they started after
// Connected: each is Connected said before reads work.
type comeback struct {
	read, connected time.Duration // limit when not within it
	late            []string
	reads           int
	// the reads started after Connected: worked, failed, too slow to tell
	afterOK, afterFailed, afterSlow int
	afterNoEntry                    int      // answered "no such file" (see readResult.noEntry)
	slowSamples                     []string // the first few too slow to tell, for the log
}

// measureReturn starts a read of path every 50 ms (0.5 s deadline each,
// at most 20 in flight: reads queued on a recovering session stay blocked)
// and polls cid every 20 ms, from up until both a read that works and
// Connected (since after down) are seen and reads went on for 1 s after
// Connected, or limit.
func measureReturn(c *godbus.Conn, cid, path string, down, up time.Time, limit time.Duration) comeback {
	var (
		mu       sync.Mutex
		results  []readResult
		inflight int
		wg       sync.WaitGroup
	)
	// The reads start on their own clock: a slow D-Bus call must not
	// space them out.
	stop := make(chan struct{})
	spawner := make(chan struct{})
	go func() {
		defer close(spawner)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			mu.Lock()
			ok := inflight < 20
			if ok {
				inflight++
			}
			mu.Unlock()
			if ok {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := readThrough(path)
					mu.Lock()
					inflight--
					results = append(results, r)
					mu.Unlock()
				}()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var connAt, readAt time.Time
	for time.Since(up) < limit {
		if !connAt.IsZero() && !readAt.IsZero() && time.Since(connAt) > time.Second {
			break
		}
		if connAt.IsZero() {
			if st, err := stateOf(c, cid); err == nil && st.connected && time.UnixMicro(int64(st.since)).After(down) {
				connAt = time.UnixMicro(int64(st.since))
			}
		}
		mu.Lock()
		for _, r := range results {
			if r.ok && (readAt.IsZero() || r.end.Before(readAt)) {
				readAt = r.end
			}
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-spawner
	// The reads in flight end by their deadline (or are given up).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	m := comeback{read: limit, connected: limit}
	if !readAt.IsZero() {
		m.read = readAt.Sub(up)
	}
	if !connAt.IsZero() {
		m.connected = connAt.Sub(up)
	}
	mu.Lock()
	defer mu.Unlock()
	m.reads = len(results)
	for _, r := range results {
		if connAt.IsZero() || !r.start.After(connAt) {
			continue
		}
		switch {
		case r.ok:
			m.afterOK++
		case r.noEntry():
			m.afterNoEntry++
		case r.slow:
			m.afterSlow++
			if len(m.slowSamples) < 3 {
				m.slowSamples = append(m.slowSamples, fmt.Sprintf("+%s %s", roundMS(r.start.Sub(connAt)), r))
			}
		default:
			m.afterFailed++
			m.late = append(m.late, fmt.Sprintf("read started %s after Connected: %s", roundMS(r.start.Sub(connAt)), r))
		}
	}
	return m
}

// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runner runs probes in helper processes and keeps the helpers that
// answered for the next probes. The zero value runs this process's
// executable and is ready to use.
type Runner struct {
	// Helper is the executable to run with HelperArg (default: this
	// process's own, os.Executable at the first probe).
	Helper string
	// Env is the helpers' environment (nil: LC_ALL=C and GOMAXPROCS=1).
	Env []string
	// Keep is how many idle helpers are kept (default 4; see SetKeep);
	// Idle, how long one beyond the first two is kept unused before it
	// is told to exit (default 30 s). Two stay: the first read after a
	// long outage must not wait for a process start.
	Keep int
	Idle time.Duration

	once      sync.Once
	helper    string
	helperErr error

	mu       sync.Mutex
	stuck    map[string][]stuckRead // key -> its killed helpers that have not exited
	idle     []*worker              // the most recently used last
	starting int                    // helpers being started to refill idle
	closed   bool
	starts   int // helpers started, for tests and benchmarks
}

// waitDelay bounds the wait for a killed helper to exit before its key is
// marked stuck.
const waitDelay = time.Second

const (
	defaultKeep = 4
	defaultIdle = 30 * time.Second
	alwaysKept  = 2 // idle helpers that never time out
)

// stuckRead is a helper killed during a read that has not exited yet: a
// process in an uninterruptible read cannot die until its I/O returns.
type stuckRead struct {
	since  time.Time
	exited <-chan struct{}
}

// maxStuck is how many killed helpers of one key may be alive when a new
// read starts: a new read must not wait for an old one (a read sent while
// the link was down may wait for its RPC's retransmission long after the
// link is back, while a new read answers at once), yet a device that
// hangs holds at most this many and one reading.
const maxStuck = 2 // Probe waits for the first two

// Probe reads paths (in mode) in a helper, at most until ctx's deadline.
// key names the target: while maxStuck helpers killed during probes of
// the same key are still alive, the probe waits for one of them to exit
// (its read returned: the device answers again) before it reads, so a
// hung device never piles up helpers.
func (r *Runner) Probe(ctx context.Context, key string, mode Mode, paths ...string) Result {
	start := time.Now()
	if len(paths) == 0 {
		return Result{Outcome: Failed, Message: "nothing to read"}
	}
	r.init()
	if r.helperErr != nil {
		return Result{Outcome: Failed, Message: fmt.Sprintf("probe helper: %v", r.helperErr)}
	}
	r.mu.Lock()
	old := slices.Clone(r.stuck[key])
	r.mu.Unlock()
	if len(old) >= maxStuck {
		select {
		case <-old[0].exited:
		case <-old[1].exited:
		case <-ctx.Done():
			return Result{Outcome: Timeout, Delay: time.Since(start), Message: fmt.Sprintf("the read of %s started %s ago has still not returned",
				strings.Join(paths, ", "), time.Since(old[0].since).Round(time.Second))}
		}
	}
	req := request(mode, paths)
	for {
		w, reused, err := r.get()
		if err != nil {
			return Result{Outcome: Failed, Delay: time.Since(start), Message: fmt.Sprintf("start probe helper: %v", err)}
		}
		_, werr := io.WriteString(w.stdin, req)
		var line string
		ok := werr == nil
		if ok {
			select {
			case line, ok = <-w.answers:
			case <-ctx.Done():
				return r.abandon(w, key, start, paths)
			}
		}
		if ok && (strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "err ")) {
			r.put(w)
			return parse(line, time.Since(start))
		}
		// The helper is gone or talks nonsense: never reuse it. One kept
		// from before may have been killed meanwhile; try a new one.
		w.kill()
		if reused {
			continue
		}
		msg := fmt.Sprintf("probe helper ended without an answer (%s)", w.stderr.String())
		if ok {
			msg = fmt.Sprintf("probe helper said %q", line)
		} else if werr != nil {
			msg = fmt.Sprintf("probe helper: %v", werr)
		}
		return Result{Outcome: Failed, Delay: time.Since(start), Message: msg}
	}
}

// abandon kills a helper whose read did not answer in time, and starts
// another for the reads to come: when the storage answers again, the
// first read must not wait for a process start (which takes a second in
// a busy one-CPU guest).
func (r *Runner) abandon(w *worker, key string, start time.Time, paths []string) Result {
	w.kill()
	go r.refill()
	waited := time.Since(start)
	select {
	case <-w.exited:
	case <-time.After(waitDelay):
		// Still alive: in an uninterruptible read. Reaped when it ends.
		r.mu.Lock()
		r.stuck[key] = append(r.stuck[key], stuckRead{since: start, exited: w.exited})
		r.mu.Unlock()
		go func() {
			<-w.exited
			r.mu.Lock()
			left := slices.DeleteFunc(r.stuck[key], func(s stuckRead) bool { return s.exited == w.exited })
			if len(left) == 0 {
				delete(r.stuck, key)
			} else {
				r.stuck[key] = left
			}
			r.mu.Unlock()
		}()
	}
	return Result{Outcome: Timeout, Delay: waited,
		Message: fmt.Sprintf("no answer from a read of %s within %s", strings.Join(paths, ", "), waited.Round(time.Millisecond))}
}

func (r *Runner) init() {
	r.once.Do(func() {
		r.helper = r.Helper
		if r.helper == "" {
			r.helper, r.helperErr = os.Executable()
		}
		r.mu.Lock()
		r.stuck = make(map[string][]stuckRead)
		if r.Keep <= 0 {
			r.Keep = defaultKeep
		}
		if r.Idle <= 0 {
			r.Idle = defaultIdle
		}
		r.mu.Unlock()
	})
}

// SetKeep sets how many idle helpers are kept: about as many as reads may
// be in flight at once, so that steady probing starts none.
func (r *Runner) SetKeep(n int) {
	r.init()
	r.mu.Lock()
	r.Keep = max(n, 1)
	extra := r.trimLocked(r.Keep)
	r.mu.Unlock()
	for _, w := range extra {
		w.close()
	}
}

// Close tells every idle helper to exit; a probe after Close starts and
// ends its own.
func (r *Runner) Close() {
	r.init()
	r.mu.Lock()
	r.closed = true
	extra := r.trimLocked(0)
	r.mu.Unlock()
	for _, w := range extra {
		w.close()
	}
}

// Started is how many helpers were started so far.
func (r *Runner) Started() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts
}

// trimLocked takes the least recently used idle helpers off the list
// until at most n are left, and returns them.
func (r *Runner) trimLocked(n int) []*worker {
	if len(r.idle) <= n {
		return nil
	}
	cut := len(r.idle) - n
	extra := slices.Clone(r.idle[:cut])
	r.idle = slices.Delete(r.idle, 0, cut)
	for _, w := range extra {
		w.timer.Stop()
	}
	return extra
}

// get returns an idle helper that is still alive, or a new one.
func (r *Runner) get() (w *worker, reused bool, err error) {
	r.mu.Lock()
	for len(r.idle) > 0 {
		w = r.idle[len(r.idle)-1]
		r.idle = r.idle[:len(r.idle)-1]
		w.timer.Stop()
		select {
		case <-w.exited:
			continue
		default:
		}
		r.mu.Unlock()
		return w, true, nil
	}
	r.starts++
	r.mu.Unlock()
	w, err = r.start()
	return w, false, err
}

// refill starts one helper for the idle list, unless it is full.
func (r *Runner) refill() {
	r.mu.Lock()
	if r.closed || len(r.idle)+r.starting >= r.Keep {
		r.mu.Unlock()
		return
	}
	r.starting++
	r.starts++
	r.mu.Unlock()
	w, err := r.start()
	r.mu.Lock()
	r.starting--
	r.mu.Unlock()
	if err == nil {
		r.put(w)
	}
}

// put keeps a helper that answered, or tells it to exit when enough are
// kept.
func (r *Runner) put(w *worker) {
	r.mu.Lock()
	if r.closed || len(r.idle) >= r.Keep {
		r.mu.Unlock()
		w.close()
		return
	}
	r.idle = append(r.idle, w)
	w.timer = time.AfterFunc(r.Idle, func() {
		r.mu.Lock()
		i := slices.Index(r.idle, w)
		if i >= 0 && len(r.idle) > alwaysKept {
			r.idle = slices.Delete(r.idle, i, i+1)
		} else {
			i = -1
		}
		r.mu.Unlock()
		if i >= 0 {
			w.close()
		}
	})
	r.mu.Unlock()
}

// worker is one serving helper process.
type worker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	answers chan string   // its answer lines; closed when its stdout ends
	exited  chan struct{} // closed once it has exited and been waited for
	stderr  tail
	timer   *time.Timer // while idle: when it is told to exit
}

func (r *Runner) start() (*worker, error) {
	cmd := exec.Command(r.helper, HelperArg, serveArg)
	cmd.Env = r.Env
	if cmd.Env == nil {
		cmd.Env = []string{"LC_ALL=C", "GOMAXPROCS=1"}
	}
	// Its own process group: the kill reaches whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &worker{cmd: cmd, answers: make(chan string, 1), exited: make(chan struct{})}
	cmd.Stderr = &w.stderr
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			// One request is answered at a time, and a helper that did
			// not answer is never asked again: the buffer never fills.
			select {
			case w.answers <- sc.Text():
			default:
			}
		}
		close(w.answers)
		_ = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// close ends an idle helper: it exits when its stdin ends.
func (w *worker) close() { _ = w.stdin.Close() }

// kill ends a helper now, with whatever it started.
func (w *worker) kill() {
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	_ = w.stdin.Close()
}

// tail keeps the last 512 bytes a helper wrote to its stderr.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 512 {
		t.b = t.b[len(t.b)-512:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) == 0 {
		return "no words on stderr"
	}
	return strings.TrimSpace(string(t.b))
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

// notifySocket stands in for systemd: a datagram socket at NOTIFY_SOCKET
// whose messages the test reads.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// next returns the next notification, failing after a generous timeout.
func next(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// fakeDaemon is what the notifier watches: counts the test sets, and a
// round trip the test answers one at a time.
type fakeDaemon struct {
	mu      sync.Mutex
	c       service.Counts
	changes chan struct{}
	answer  chan struct{}
	asked   chan struct{}
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{changes: make(chan struct{}, 1), answer: make(chan struct{}), asked: make(chan struct{}, 100)}
}

func (f *fakeDaemon) counts() service.Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c
}

func (f *fakeDaemon) set(c service.Counts) {
	f.mu.Lock()
	f.c = c
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeDaemon) alive(ctx context.Context) error {
	f.asked <- struct{}{}
	select {
	case <-f.answer:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startNotifier(t *testing.T, f *fakeDaemon, watchdog time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := &notifier{send: sdNotify, counts: f.counts, changes: f.changes, alive: f.alive,
		watchdog: watchdog, minGap: time.Millisecond}
	go func() { n.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestNotifyReadyAndStatus(t *testing.T) {
	sock := notifySocket(t)
	f := newFakeDaemon()
	f.set(service.Counts{Managed: 42, Connected: 40, Retrying: 2, PathsDown: 1})
	startNotifier(t, f, 0)

	<-f.asked
	f.answer <- struct{}{} // Serve's loop answers: the daemon serves
	if got, want := next(t, sock), "READY=1\nSTATUS=42 managed, 40 connected, 2 retrying, 1 path down"; got != want {
		t.Fatalf("first notification %q; want %q", got, want)
	}
	f.set(service.Counts{Managed: 42, Connected: 39, Connecting: 1, Retrying: 2, PathsDown: 2, BadFiles: 1})
	if got, want := next(t, sock), "STATUS=42 managed, 39 connected, 1 connecting, 2 retrying, 2 paths down, 1 bad state file"; got != want {
		t.Fatalf("after a change %q; want %q", got, want)
	}
	// Unchanged counts send nothing; the next change is the next message.
	f.set(service.Counts{Managed: 42, Connected: 39, Connecting: 1, Retrying: 2, PathsDown: 2, BadFiles: 1})
	f.set(service.Counts{Managed: 1, Connected: 1})
	if got, want := next(t, sock), "STATUS=1 managed, 1 connected, 0 retrying"; got != want {
		t.Fatalf("after another change %q; want %q", got, want)
	}
}

func TestWatchdogFedOnlyAfterTheLoopsAnswer(t *testing.T) {
	sock := notifySocket(t)
	f := newFakeDaemon()
	startNotifier(t, f, 30*time.Millisecond)
	<-f.asked
	f.answer <- struct{}{}
	if got := next(t, sock); !strings.HasPrefix(got, "READY=1\n") {
		t.Fatalf("first notification %q; want READY=1", got)
	}
	// Each answered round trip is one WATCHDOG=1.
	for range 3 {
		<-f.asked
		f.answer <- struct{}{}
		if got := next(t, sock); got != "WATCHDOG=1" {
			t.Fatalf("got %q; want WATCHDOG=1", got)
		}
	}
	// A wedged loop: asked, never answered. Nothing is sent however long
	// it stays so (well past the 30 ms period, several times over).
	<-f.asked
	sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := sock.Read(buf); err == nil {
		t.Fatalf("watchdog fed while the loop is wedged: %q", buf[:n])
	}
	// Once it answers again, the feeding resumes.
	f.answer <- struct{}{}
	if got := next(t, sock); got != "WATCHDOG=1" {
		t.Fatalf("got %q; want WATCHDOG=1", got)
	}
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		c    service.Counts
		want string
	}{
		{service.Counts{}, "0 managed, 0 connected, 0 retrying"},
		{service.Counts{Managed: 42, Connected: 40, Retrying: 2, PathsDown: 1}, "42 managed, 40 connected, 2 retrying, 1 path down"},
		{service.Counts{Managed: 3, Connecting: 3, BadFiles: 2}, "3 managed, 0 connected, 3 connecting, 0 retrying, 2 bad state files"},
	}
	for _, tt := range tests {
		if got := statusText(tt.c); got != tt.want {
			t.Errorf("statusText(%+v) = %q; want %q", tt.c, got, tt.want)
		}
	}
}

// The real daemon, as systemd runs it: READY=1 once it serves, the
// watchdog fed, STATUS= following a Manage.
func TestDaemonNotifiesSystemd(t *testing.T) {
	sock := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "300000")
	d := newDaemon(t)
	var got []string
	want := map[string]bool{"ready": false, "watchdog": false}
	for !want["ready"] || !want["watchdog"] {
		m := next(t, sock)
		got = append(got, m)
		want["ready"] = want["ready"] || m == "READY=1\nSTATUS=0 managed, 0 connected, 0 retrying"
		want["watchdog"] = want["watchdog"] || m == "WATCHDOG=1"
		if len(got) > 20 {
			t.Fatalf("notifications %q; want READY=1 with the status, and WATCHDOG=1", got)
		}
	}
	c := d.client()
	defer c.Close()
	if _, err := manage(c, "nfs://127.0.0.1:1/x", "cid1", nil); err != nil {
		t.Fatal(err)
	}
	for {
		m := next(t, sock)
		if strings.HasPrefix(m, "STATUS=1 managed, ") {
			break
		}
		if m != "WATCHDOG=1" && !strings.HasPrefix(m, "STATUS=") {
			t.Fatalf("unexpected notification %q", m)
		}
	}
}

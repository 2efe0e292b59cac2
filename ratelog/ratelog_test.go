// SPDX-License-Identifier: Apache-2.0

package ratelog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake time that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// setup returns a limiter on a fake clock and the lines it writes.
func setup(o Options) (*Limiter, *clock, func() []string) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	o.Now = c.Now
	lines := func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.TrimSpace(buf.String())
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	testLog = log
	return New(log, o), c, lines
}

// testLog is the logger of the last setup.
var testLog *slog.Logger

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var ctx = context.Background()

func TestBurstThenSummary(t *testing.T) {
	l, c, lines := setup(Options{Burst: 3, Every: 10 * time.Second, Quiet: 2 * time.Second})
	for i := range 1200 {
		l.Log(ctx, testLog, "uid 65534", slog.LevelWarn, "denied", "uid", 65534, "n", i)
		c.Add(time.Millisecond)
	}
	got := lines()
	if len(got) != 3 {
		t.Fatalf("1200 lines in 1.2 s wrote %d lines, want the burst of 3:\n%s", len(got), strings.Join(got, "\n"))
	}
	if !strings.Contains(got[2], "n=2") {
		t.Errorf("the burst is not the first lines: %q", got[2])
	}

	// Not quiet long enough yet: no summary.
	c.Add(time.Second)
	l.Flush(ctx)
	if n := len(lines()); n != 3 {
		t.Fatalf("a summary before the caller was quiet for 2 s: %d lines", n)
	}
	c.Add(time.Second)
	l.Flush(ctx)
	got = lines()
	if len(got) != 4 {
		t.Fatalf("after the burst: %d lines, want one summary more:\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, want := range []string{"level=WARN", `msg="log lines suppressed"`, `caller="uid 65534"`, "suppressed=1197",
		`what="denied: 1197"`, "over=1.196s"} {
		if !strings.Contains(got[3], want) {
			t.Errorf("summary %q lacks %s", got[3], want)
		}
	}
	// Said once.
	c.Add(time.Minute)
	l.Flush(ctx)
	if n := len(lines()); n != 4 {
		t.Errorf("the summary was repeated: %d lines", n)
	}
}

// TestSustainedFlood: a caller that never stops gets one line per period,
// each preceded by the count of what was held back since the last one.
func TestSustainedFlood(t *testing.T) {
	l, c, lines := setup(Options{Burst: 2, Every: 10 * time.Second, Quiet: 2 * time.Second})
	for i := range 12_000 { // 100 a second for 2 minutes
		l.Log(ctx, testLog, "uid 1000", slog.LevelWarn, "denied")
		c.Add(10 * time.Millisecond)
		if i%100 == 0 {
			l.Flush(ctx) // as Run would: the caller is never quiet, so no summary from here
		}
	}
	got := lines()
	// 2 at once, then one per 10 s for 120 s, each after a summary.
	if len(got) < 2+2*11 || len(got) > 2+2*13 {
		t.Fatalf("2 minutes of 100 lines a second wrote %d lines, want about %d", len(got), 2+2*12)
	}
	total := 0
	for _, line := range got {
		var n int
		if i := strings.Index(line, "suppressed="); i >= 0 {
			fmt.Sscanf(line[i:], "suppressed=%d", &n)
			total += n
		}
	}
	c.Add(3 * time.Second)
	l.Flush(ctx)
	last := lines()[len(lines())-1]
	var n int
	fmt.Sscanf(last[strings.Index(last, "suppressed="):], "suppressed=%d", &n)
	written := len(got) - (len(got)-2)/2
	if total+n+written != 12_000 {
		t.Errorf("written %d + suppressed %d (summaries) + %d (last summary) = %d, want 12000",
			written, total, n, total+n+written)
	}
}

// TestCallersAreSeparate: one caller's flood does not silence another.
func TestCallersAreSeparate(t *testing.T) {
	l, _, lines := setup(Options{Burst: 2})
	for range 100 {
		l.Log(ctx, testLog, "uid 65534", slog.LevelWarn, "denied")
	}
	l.Log(ctx, testLog, "uid 0", slog.LevelWarn, "denied", "who", "root")
	got := lines()
	if len(got) != 3 || !strings.Contains(got[2], "who=root") {
		t.Fatalf("another caller's line was held back:\n%s", strings.Join(got, "\n"))
	}
}

// TestBounded: the limiter tracks at most MaxCallers callers; the rest
// share one bucket, and callers with nothing to report are forgotten.
func TestBounded(t *testing.T) {
	l, c, lines := setup(Options{Burst: 1, Every: time.Second, Quiet: time.Second, MaxCallers: 10})
	for i := range 10_000 {
		l.Log(ctx, testLog, fmt.Sprintf("bus name :1.%d", i), slog.LevelInfo, "call refused")
	}
	l.mu.Lock()
	n := len(l.callers)
	l.mu.Unlock()
	if n > 11 {
		t.Fatalf("tracking %d callers, want at most 10 and %q", n, OtherCallers)
	}
	if got := len(lines()); got != 11 {
		t.Errorf("10,000 callers wrote %d lines, want 10 (one each) + 1 (the others' bucket)", got)
	}
	c.Add(2 * time.Second)
	l.Flush(ctx)
	got := lines()
	if last := got[len(got)-1]; !strings.Contains(last, `caller="other callers"`) || !strings.Contains(last, "suppressed=9989") {
		t.Errorf("summary of the others: %q", last)
	}
	c.Add(time.Minute)
	l.Flush(ctx)
	l.mu.Lock()
	n = len(l.callers)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d idle callers still tracked", n)
	}
}

// TestKindsAreBounded: a summary names at most a few messages.
func TestKindsAreBounded(t *testing.T) {
	l, c, lines := setup(Options{Burst: 1, Quiet: time.Second})
	for i := range 100 {
		l.Log(ctx, testLog, "uid 7", slog.LevelWarn, fmt.Sprintf("message %02d", i))
	}
	c.Add(time.Second)
	l.Flush(ctx)
	got := lines()
	summary := got[len(got)-1]
	if !strings.Contains(summary, "suppressed=99") || !strings.Contains(summary, "other: 91") ||
		strings.Count(summary, ": 1") != maxKinds {
		t.Errorf("summary %q: want 99 suppressed, %d messages named, 91 as other", summary, maxKinds)
	}
}

// TestNilLimiter: without a limiter every line is written.
func TestNilLimiter(t *testing.T) {
	_, _, lines := setup(Options{})
	var l *Limiter
	for range 10 {
		l.Log(ctx, testLog, "x", slog.LevelWarn, "denied")
	}
	l.Flush(ctx)
	l.Run(ctx)
	if n := len(lines()); n != 10 {
		t.Errorf("%d lines, want 10", n)
	}
}

// TestLineKeepsItsLogger: a line goes through the logger it is given,
// with that logger's attributes.
func TestLineKeepsItsLogger(t *testing.T) {
	l, _, lines := setup(Options{})
	l.Log(ctx, testLog.With("component", "policy"), "uid 1", slog.LevelWarn, "denied", "uid", 1)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "component=policy") {
		t.Errorf("lines %q, want one with component=policy", got)
	}
}

// TestRunWritesPendingSummariesAtStop: a burst still going on when the
// daemon stops is counted too.
func TestRunWritesPendingSummariesAtStop(t *testing.T) {
	l, _, lines := setup(Options{Burst: 1, Quiet: time.Hour})
	for range 4 {
		l.Log(ctx, testLog, "uid 5", slog.LevelWarn, "denied")
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	l.Run(stopped)
	got := lines()
	if len(got) != 2 || !strings.Contains(got[1], "suppressed=3") {
		t.Errorf("lines %q, want one and a summary of 3", got)
	}
}

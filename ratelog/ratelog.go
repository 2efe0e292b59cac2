// SPDX-License-Identifier: Apache-2.0

// Package ratelog keeps a caller from flooding the daemon's log. Every
// local user may call the daemon, and each refused or malformed call is
// worth a line, but a user who sends a thousand of them must not write a
// thousand lines to the journal (and push out everything else). Each
// caller gets a token bucket: a burst of lines, then one line per period;
// what is held back is counted, and when the caller's burst ends one line
// says what was suppressed and how much.
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options tune a Limiter. Zero fields mean the defaults.
type Options struct {
	// Burst is how many lines a caller may write at once (default 5).
	Burst int
	// Every is how often a caller gets one more line (default 10 s).
	Every time.Duration
	// Quiet is how long a caller must send nothing for its burst to be
	// over and its summary written (default 2 s).
	Quiet time.Duration
	// MaxCallers bounds the callers tracked at once (default 1024), so
	// that the limiter cannot grow without bound itself; callers beyond
	// it share one bucket, OtherCallers.
	MaxCallers int
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// OtherCallers is the caller that lines of callers beyond
// Options.MaxCallers are counted under.
const OtherCallers = "other callers"

// maxKinds bounds the distinct messages a summary counts one by one.
const maxKinds = 8

// Limiter rate-limits log lines per caller. It is safe for concurrent
// use. Summaries go to the logger given to New.
type Limiter struct {
	log  *slog.Logger
	opts Options

	mu      sync.Mutex // guards callers
	callers map[string]*bucket
}

// bucket is one caller's tokens and what it had suppressed since its
// last summary.
type bucket struct {
	tokens     float64
	refilled   time.Time // when tokens was last brought up to date
	lastSeen   time.Time // the caller's last line, written or not
	suppressed int
	since      time.Time      // the first suppressed line
	kinds      map[string]int // suppressed lines by message
}

// New returns a Limiter that writes to log.
func New(log *slog.Logger, o Options) *Limiter {
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	if o.Quiet <= 0 {
		o.Quiet = 2 * time.Second
	}
	if o.MaxCallers <= 0 {
		o.MaxCallers = 1024
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{log: log, opts: o, callers: make(map[string]*bucket)}
}

// Log writes one line (msg and args, at level, through log, so that the
// line keeps log's attributes) about caller, such as "uid 65534", unless
// the caller has used up its burst; then it counts the line for the
// caller's summary. A caller whose lines were held back and who may write
// again gets its summary first. A nil Limiter writes every line.
func (l *Limiter) Log(ctx context.Context, log *slog.Logger, caller string, level slog.Level, msg string, args ...any) {
	if l == nil {
		log.Log(ctx, level, msg, args...)
		return
	}
	now := l.opts.Now()
	l.mu.Lock()
	b := l.callers[caller]
	if b == nil {
		if len(l.callers) >= l.opts.MaxCallers {
			caller = OtherCallers
			b = l.callers[caller]
		}
		if b == nil {
			b = &bucket{tokens: float64(l.opts.Burst), refilled: now}
			l.callers[caller] = b
		}
	}
	l.refill(b, now)
	b.lastSeen = now
	if b.tokens < 1 {
		if b.suppressed == 0 {
			b.since = now
			b.kinds = make(map[string]int)
		}
		b.suppressed++
		if _, ok := b.kinds[msg]; ok || len(b.kinds) < maxKinds {
			b.kinds[msg]++
		} else {
			b.kinds["other"]++
		}
		l.mu.Unlock()
		return
	}
	b.tokens--
	summary := l.takeSummary(caller, b)
	l.mu.Unlock()
	if summary != nil {
		summary(ctx)
	}
	log.Log(ctx, level, msg, args...)
}

// Flush ends the bursts that are over: for each caller that has sent
// nothing for Options.Quiet and had lines held back, it writes one line
// saying what and how many; and it forgets callers that have nothing to
// report and a full bucket again.
func (l *Limiter) Flush(ctx context.Context) { l.flush(ctx, false) }

// flush is Flush; with all, it also ends the bursts still going on (the
// daemon is stopping).
func (l *Limiter) flush(ctx context.Context, all bool) {
	if l == nil {
		return
	}
	now := l.opts.Now()
	var summaries []func(context.Context)
	l.mu.Lock()
	names := make([]string, 0, len(l.callers))
	for c := range l.callers {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		b := l.callers[c]
		l.refill(b, now)
		if b.suppressed > 0 && (all || now.Sub(b.lastSeen) >= l.opts.Quiet) {
			summaries = append(summaries, l.takeSummary(c, b))
		}
		if b.suppressed == 0 && b.tokens >= float64(l.opts.Burst) {
			delete(l.callers, c)
		}
	}
	l.mu.Unlock()
	for _, s := range summaries {
		s(ctx)
	}
}

// Run flushes twice per Options.Quiet until ctx ends; then it writes
// every summary still pending, so that no count is lost at a stop.
func (l *Limiter) Run(ctx context.Context) {
	if l == nil {
		return
	}
	t := time.NewTicker(l.opts.Quiet / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flush(context.WithoutCancel(ctx), true)
			return
		case <-t.C:
			l.Flush(ctx)
		}
	}
}

// refill adds the tokens earned since the bucket was last brought up to
// date. Call with l.mu held.
func (l *Limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.refilled); d > 0 {
		b.tokens = min(float64(l.opts.Burst), b.tokens+float64(d)/float64(l.opts.Every))
		b.refilled = now
	}
}

// takeSummary resets what b had suppressed and returns the line that says
// so ("over": from the first line held back to the caller's last), to
// write once l.mu is released; nil if there was nothing. Call with l.mu
// held.
func (l *Limiter) takeSummary(caller string, b *bucket) func(context.Context) {
	if b.suppressed == 0 {
		return nil
	}
	n, kinds, d := b.suppressed, b.kinds, b.lastSeen.Sub(b.since)
	b.suppressed, b.kinds = 0, nil
	return func(ctx context.Context) {
		l.log.Log(ctx, slog.LevelWarn, "log lines suppressed", "caller", caller, "suppressed", n,
			"what", describe(kinds), "over", d.Round(time.Millisecond).String())
	}
}

// describe lists suppressed messages with their counts, most first:
// "denied: 1180, call refused: 15".
func describe(kinds map[string]int) string {
	type kc struct {
		k string
		n int
	}
	list := make([]kc, 0, len(kinds))
	for k, n := range kinds {
		list = append(list, kc{k, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].k < list[j].k
	})
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = fmt.Sprintf("%s: %d", e.k, e.n)
	}
	return strings.Join(parts, ", ")
}

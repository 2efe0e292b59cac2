// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// Options configure New.
type Options struct {
	// Level is the minimum level written (default info).
	Level slog.Leveler
	// Journal says that w is the journal's stream (in the daemon:
	// journal.StderrIsJournalStream, which compares JOURNAL_STREAM with
	// stderr's device and inode, as systemd documents).
	Journal bool
	// Send writes a native journal entry (default journal.Send).
	Send SendFunc
	// Identifier is the journal's SYSLOG_IDENTIFIER.
	Identifier string
}

// New returns the handler storkeepd logs through. When w is the journal
// (o.Journal), entries go to journald natively; an entry that cannot be
// sent that way goes to w as a text line that carries its priority as a
// syslog prefix ("<4>"), which journald reads, and no time, which journald
// adds itself. Otherwise w gets slog's text lines, time included.
func New(w io.Writer, o Options) slog.Handler {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if !o.Journal {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: o.Level})
	}
	return NewJournalHandler(JournalOptions{
		Level:      o.Level,
		Send:       o.Send,
		Identifier: o.Identifier,
		Fallback:   NewStreamHandler(w, o.Level),
	})
}

// StderrIsJournal reports whether stderr is the journal's stream; a
// malformed JOURNAL_STREAM counts as not.
func StderrIsJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// NewStreamHandler returns a text handler for a stream journald reads:
// each line starts with its syslog priority ("<3>", "<4>", ...) and has
// neither a time nor a level (journald records both).
func NewStreamHandler(w io.Writer, level slog.Leveler) slog.Handler {
	pw := &prefixWriter{w: w}
	text := slog.NewTextHandler(pw, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	})
	return &streamHandler{Handler: text, pw: pw}
}

// streamHandler puts the record's priority in front of the line its text
// handler writes.
type streamHandler struct {
	slog.Handler
	pw *prefixWriter
}

func (h *streamHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = fmt.Sprintf("<%d>", Priority(r.Level))
	return h.Handler.Handle(ctx, r)
}

func (h *streamHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &streamHandler{Handler: h.Handler.WithAttrs(attrs), pw: h.pw}
}

func (h *streamHandler) WithGroup(name string) slog.Handler {
	return &streamHandler{Handler: h.Handler.WithGroup(name), pw: h.pw}
}

// prefixWriter writes prefix, then the line, in one write. Its lock is
// held by streamHandler.Handle around the text handler's one write.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(p.prefix)+len(b))
	line = append(append(line, p.prefix...), b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

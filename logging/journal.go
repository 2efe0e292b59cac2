// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// SendFunc writes one journal entry; journal.Send is the real one.
type SendFunc func(message string, priority journal.Priority, fields map[string]string) error

// fieldNames maps the attribute keys storkeep logs with to journal fields
// that admins filter on (journalctl CID=vm1-disk). Other attributes become
// fields named by their key in upper case (host -> HOST).
var fieldNames = map[string]string{
	"cid":    "CID",
	"target": "TARGET",
	"err":    "ERROR",
}

// JournalOptions configure a JournalHandler.
type JournalOptions struct {
	// Level is the minimum level written (default info).
	Level slog.Leveler
	// Send writes an entry (default journal.Send).
	Send SendFunc
	// Identifier is SYSLOG_IDENTIFIER (default none: journald shows the
	// command name).
	Identifier string
	// Fallback takes a record that Send failed to write (journald gone
	// or restarting), so that no line is lost; nil drops it.
	Fallback slog.Handler
}

// JournalHandler is a slog.Handler that writes native journal entries.
// MESSAGE is the message followed by its attributes as key=value (what the
// text handler writes, less the time and level, which the journal keeps
// itself); each attribute is also a field of its own.
type JournalHandler struct {
	opts   JournalOptions
	attrs  []slog.Attr // from WithAttrs, keys already qualified by groups
	prefix string      // the open groups, "a.b."
}

// NewJournalHandler returns a handler that writes to the journal.
func NewJournalHandler(o JournalOptions) *JournalHandler {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.Send == nil {
		o.Send = journal.Send
	}
	return &JournalHandler{opts: o}
}

// Enabled reports whether level is written.
func (h *JournalHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.opts.Level.Level()
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = slices.Clip(h.attrs)
	for _, a := range attrs {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	if h.opts.Fallback != nil {
		h2.opts.Fallback = h.opts.Fallback.WithAttrs(attrs)
	}
	return &h2
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	if h.opts.Fallback != nil {
		h2.opts.Fallback = h.opts.Fallback.WithGroup(name)
	}
	return &h2
}

// Handle writes r as one journal entry.
func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := slices.Clip(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = appendAttr(attrs, h.prefix, a)
		return true
	})
	var msg strings.Builder
	msg.WriteString(r.Message)
	fields := make(map[string]string, len(attrs)+2)
	if h.opts.Identifier != "" {
		fields["SYSLOG_IDENTIFIER"] = h.opts.Identifier
	}
	for _, a := range attrs {
		v := a.Value.String()
		if a.Key == EventKey {
			if id, ok := Event(v).MessageID(); ok {
				fields["MESSAGE_ID"] = id
			}
		}
		name := fieldName(a.Key)
		if _, dup := fields[name]; name != "" && !dup {
			// One value per field (journal.Send takes a map): the first.
			fields[name] = v
		}
		msg.WriteByte(' ')
		msg.WriteString(a.Key)
		msg.WriteByte('=')
		msg.WriteString(quoteValue(v))
	}
	err := h.opts.Send(msg.String(), Priority(r.Level), fields)
	if err != nil && h.opts.Fallback != nil {
		return h.opts.Fallback.Handle(ctx, r)
	}
	return err
}

// appendAttr flattens a (groups become "group.key") onto attrs.
func appendAttr(attrs []slog.Attr, prefix string, a slog.Attr) []slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return attrs
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			attrs = appendAttr(attrs, p, g)
		}
		return attrs
	}
	a.Key = prefix + a.Key
	return append(attrs, a)
}

// Priority maps a slog level to the syslog priority journald files it
// under: debug, info, warning (from slog.LevelWarn), err (from
// slog.LevelError).
func Priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// fieldName is the journal field for an attribute key: a known name, or
// the key in upper case with every other character as '_'; "" for a key
// that cannot be one (journald drops fields that start with '_').
func fieldName(key string) string {
	if n, ok := fieldNames[key]; ok {
		return n
	}
	if key == EventKey {
		return "STORKEEP_EVENT"
	}
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '_' || b[0] >= '0' && b[0] <= '9' || len(b) > 64 {
		return ""
	}
	switch string(b) {
	case "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC":
		return "" // journald's own
	}
	return string(b)
}

// quoteValue quotes v as slog's text handler does: when it is empty or
// has spaces, quotes, '=' or unprintable characters.
func quoteValue(v string) string {
	if v == "" {
		return `""`
	}
	for _, r := range v {
		if r == ' ' || r == '"' || r == '=' || !strconv.IsPrint(r) {
			return strconv.Quote(v)
		}
	}
	return v
}

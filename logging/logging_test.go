// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

// entry is one journal entry a fakeJournal got.
type entry struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

// fakeJournal records what the handler would send to journald.
type fakeJournal struct {
	mu      sync.Mutex
	entries []entry
	fail    error
}

func (f *fakeJournal) send(msg string, pri journal.Priority, fields map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.entries = append(f.entries, entry{msg, pri, fields})
	return nil
}

func (f *fakeJournal) only(t *testing.T) entry {
	t.Helper()
	if len(f.entries) != 1 {
		t.Fatalf("want 1 journal entry, got %d: %+v", len(f.entries), f.entries)
	}
	return f.entries[0]
}

func TestJournalPriorityFromLevel(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  journal.Priority
	}{
		{slog.LevelDebug, journal.PriDebug},
		{slog.LevelInfo, journal.PriInfo},
		{slog.LevelInfo + 2, journal.PriInfo},
		{slog.LevelWarn, journal.PriWarning},
		{slog.LevelError, journal.PriErr},
		{slog.LevelError + 4, journal.PriErr},
	}
	for _, tt := range tests {
		f := &fakeJournal{}
		log := slog.New(NewJournalHandler(JournalOptions{Level: slog.LevelDebug, Send: f.send}))
		log.Log(t.Context(), tt.level, "x")
		if got := f.only(t).pri; got != tt.want {
			t.Errorf("level %v: PRIORITY %d, want %d", tt.level, got, tt.want)
		}
	}
}

func TestJournalFieldsAndMessage(t *testing.T) {
	f := &fakeJournal{}
	log := slog.New(NewJournalHandler(JournalOptions{Send: f.send, Identifier: "storkeepd"})).
		With("component", "service")
	log.Warn("connection lost", ConnectionLost.Attr(), "cid", "vm1-disk", "target", "nfs://10.0.0.1/a",
		"err", errors.New("Lost: mount went away"), "host", "10.0.0.1")

	e := f.only(t)
	want := map[string]string{
		"SYSLOG_IDENTIFIER": "storkeepd",
		"MESSAGE_ID":        "2d279693895f4684b83cd61b9d430304",
		"STORKEEP_EVENT":    "connection-lost",
		"CID":               "vm1-disk",
		"TARGET":            "nfs://10.0.0.1/a",
		"ERROR":             "Lost: mount went away",
		"COMPONENT":         "service",
		"HOST":              "10.0.0.1",
	}
	for k, v := range want {
		if e.fields[k] != v {
			t.Errorf("field %s = %q, want %q", k, e.fields[k], v)
		}
	}
	if len(e.fields) != len(want) {
		t.Errorf("fields %v, want exactly %v", e.fields, want)
	}
	if e.pri != journal.PriWarning {
		t.Errorf("PRIORITY %d, want warning", e.pri)
	}
	// What journalctl shows: the message and its attributes, no time, no level.
	wantMsg := `connection lost component=service event=connection-lost cid=vm1-disk target=nfs://10.0.0.1/a err="Lost: mount went away" host=10.0.0.1`
	if e.msg != wantMsg {
		t.Errorf("MESSAGE\n got %s\nwant %s", e.msg, wantMsg)
	}
}

func TestJournalEveryEventHasItsOwnMessageID(t *testing.T) {
	seen := map[string]Event{}
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, ev := range Events() {
		id, ok := ev.MessageID()
		if !ok || !hex.MatchString(id) {
			t.Errorf("%s: MESSAGE_ID %q is not 32 hex digits", ev, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share MESSAGE_ID %s", ev, other, id)
		}
		seen[id] = ev
		f := &fakeJournal{}
		slog.New(NewJournalHandler(JournalOptions{Send: f.send})).Info("x", ev.Attr())
		if got := f.only(t).fields["MESSAGE_ID"]; got != id {
			t.Errorf("%s: MESSAGE_ID %q, want %q", ev, got, id)
		}
	}
	// An unknown event is a field, not a MESSAGE_ID.
	f := &fakeJournal{}
	slog.New(NewJournalHandler(JournalOptions{Send: f.send})).Info("x", "event", "made-up")
	if e := f.only(t); e.fields["MESSAGE_ID"] != "" || e.fields["STORKEEP_EVENT"] != "made-up" {
		t.Errorf("unknown event: fields %v", e.fields)
	}
}

func TestJournalLevelGroupsAndOddKeys(t *testing.T) {
	f := &fakeJournal{}
	level := new(slog.LevelVar)
	log := slog.New(NewJournalHandler(JournalOptions{Level: level, Send: f.send}))
	log.Debug("hidden")
	if len(f.entries) != 0 {
		t.Fatalf("debug written at info level: %+v", f.entries)
	}
	level.Set(slog.LevelDebug)
	log.WithGroup("call").With("uid", 1000).Debug("refused",
		slog.Group("peer", "pid", 42), "_secret", "x", "MESSAGE", "spoof", "2x", "y", "x-y", "z")
	e := f.only(t)
	for k, v := range map[string]string{"CALL_UID": "1000", "CALL_PEER_PID": "42", "CALL_X_Y": "z",
		"CALL__SECRET": "x", "CALL_MESSAGE": "spoof", "CALL_2X": "y"} {
		if e.fields[k] != v {
			t.Errorf("field %s = %q, want %q (fields %v)", k, e.fields[k], v, e.fields)
		}
	}
	if strings.Contains(e.msg, "\n") || !strings.HasPrefix(e.msg, "refused call.uid=1000 call.peer.pid=42") {
		t.Errorf("MESSAGE %q", e.msg)
	}
	// Keys no field can carry are left out of the fields, kept in MESSAGE.
	for _, k := range []string{"_SECRET", "2X", "MESSAGE"} {
		if got := fieldName(k); got != "" {
			t.Errorf("fieldName(%q) = %q, want none", k, got)
		}
	}
}

func TestJournalFirstValueOfARepeatedKey(t *testing.T) {
	f := &fakeJournal{}
	slog.New(NewJournalHandler(JournalOptions{Send: f.send})).Warn("x", "cid", "a", "cid", "b")
	e := f.only(t)
	if e.fields["CID"] != "a" || e.msg != "x cid=a cid=b" {
		t.Errorf("got CID=%q MESSAGE=%q", e.fields["CID"], e.msg)
	}
}

func TestJournalFallsBackToTheStream(t *testing.T) {
	f := &fakeJournal{fail: errors.New("journald is restarting")}
	var buf bytes.Buffer
	log := slog.New(New(&buf, Options{Journal: true, Send: f.send})).With("component", "dbus")
	log.Error("bus connection lost", "err", "EOF")
	log.Info("stopped")
	want := "<3>msg=\"bus connection lost\" component=dbus err=EOF\n<6>msg=stopped component=dbus\n"
	if buf.String() != want {
		t.Errorf("stream got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestNewPlainTextOffTheJournal(t *testing.T) {
	var buf bytes.Buffer
	f := &fakeJournal{}
	slog.New(New(&buf, Options{Send: f.send})).Warn("state file skipped", "path", "/x")
	if len(f.entries) != 0 {
		t.Errorf("sent to the journal when not asked: %+v", f.entries)
	}
	if !regexp.MustCompile(`^time=\S+ level=WARN msg="state file skipped" path=/x\n$`).MatchString(buf.String()) {
		t.Errorf("text line %q", buf.String())
	}
}

func TestStderrIsJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if StderrIsJournal() {
		t.Error("no JOURNAL_STREAM, but stderr counts as the journal")
	}
	t.Setenv("JOURNAL_STREAM", "garbage")
	if StderrIsJournal() {
		t.Error("malformed JOURNAL_STREAM counts as the journal")
	}
	t.Setenv("JOURNAL_STREAM", "1:1")
	if StderrIsJournal() {
		t.Error("JOURNAL_STREAM naming another file counts as the journal")
	}
}

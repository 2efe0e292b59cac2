// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/ratelog"
)

// TestRefusedCallsAreLogged: a malformed call is logged with its method,
// caller and error (the message cut short), a few per caller; other
// errors are not logged here.
func TestRefusedCallsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := &Server{log: log, refused: ratelog.New(log, ratelog.Options{Burst: 2}),
		callerUID: func(context.Context, string) (uint32, error) { return 65534, nil }}
	msg := godbus.Message{Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldInterface: godbus.MakeVariant(ManagerInterface),
		godbus.FieldMember:    godbus.MakeVariant("Manage"),
		godbus.FieldSender:    godbus.MakeVariant(":1.9"),
	}}
	for range 10 {
		e := godbus.NewError(ErrorInvalidURI, []any{"invalid URI: " + strings.Repeat("x", 500)})
		s.noteRefused(msg, &e)
	}
	for _, e := range []*godbus.Error{nil, godbus.NewError(ErrorUnknownCID, []any{"no"}),
		godbus.NewError(ErrorNotAuthorized, []any{"no"}), godbus.NewError(ErrorTimeout, []any{"no"})} {
		s.noteRefused(msg, &e)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want the burst of 2:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{`msg="call refused"`, "method=" + ManagerInterface + ".Manage", "sender=:1.9", "uid=65534",
		"error=" + ErrorInvalidURI, strings.Repeat("x", maxLoggedMessage-len("invalid URI: ")) + `..."`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %s", lines[0], want)
		}
	}
}

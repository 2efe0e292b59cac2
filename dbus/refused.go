// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"log/slog"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// refusedErrors are the replies that say a call was malformed or asked
// for what no caller may: each is worth a line in the log, rate-limited
// per caller. NotAuthorized is not here: the Authorizer logs its own
// decisions, under the same limit.
var refusedErrors = map[string]bool{
	"org.freedesktop.DBus.Error.InvalidArgs":      true,
	"org.freedesktop.DBus.Error.PropertyReadOnly": true,
	ErrorInvalidArgument:                          true,
	ErrorInvalidURI:                               true,
	ErrorInvalidCID:                               true,
	ErrorLimitExceeded:                            true,
}

// maxLoggedMessage bounds the error message a log line repeats.
const maxLoggedMessage = 200

// noteRefused logs a call the daemon refused as malformed, once the
// handler has returned *refused: one line with the method, the caller and
// the error, rate-limited per caller (Options.Refused), so that a user
// who sends a thousand bad calls writes a few lines and a count.
func (s *Server) noteRefused(msg godbus.Message, refused **godbus.Error) {
	e := *refused
	if e == nil || !refusedErrors[e.Name] {
		return
	}
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	text := ""
	if len(e.Body) > 0 {
		text, _ = e.Body[0].(string)
	}
	if len(text) > maxLoggedMessage {
		text = text[:maxLoggedMessage] + "..."
	}
	args := []any{"method", iface + "." + member, "sender", sender}
	caller := "bus name " + sender
	if s.callerUID != nil && sender != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		uid, err := s.callerUID(ctx, sender)
		cancel()
		if err == nil {
			caller = CallerKey(uid)
			args = append(args, "uid", uid)
		}
	}
	args = append(args, "error", e.Name, "message", text)
	s.refused.Log(context.Background(), s.log, caller, slog.LevelInfo, "call refused", args...)
}

// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"context"
	"fmt"
	"log/slog"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/ratelog"
)

// RootOnly allows changes to callers with uid 0 (or to the uid the daemon
// runs as, so that a daemon on a private bus can be driven by its owner)
// and denies everyone else. It logs every decision with the caller's uid
// and pid. It is what storkeepd uses with --authorization=root, and the
// rule Polkit falls back to when polkit is not on the bus.
type RootOnly struct {
	Conn *godbus.Conn
	Log  *slog.Logger
	// AllowUID is a second uid that may change things (the daemon's own
	// uid when it is not root); -1 for none.
	AllowUID int64
	// Callers caches credentials; nil asks the bus every time.
	Callers *CallerCache
	// Refused rate-limits the lines about denials per caller, so that a
	// user who sends a thousand cannot flood the log; nil writes each.
	Refused *ratelog.Limiter
}

// Trusts reports whether uid may change things without asking anyone:
// root, or AllowUID.
func (r RootOnly) Trusts(uid uint32) bool { return uid == 0 || int64(uid) == r.AllowUID }

// Authorize implements dbus.Authorizer.
func (r RootOnly) Authorize(ctx context.Context, req skdbus.AuthRequest) error {
	c, err := r.Callers.Lookup(ctx, r.Conn, req.Sender)
	if err != nil {
		r.Refused.Log(ctx, r.Log, "bus name "+req.Sender, slog.LevelWarn, "denied: unknown caller",
			"action", req.Action, "sender", req.Sender, "by", "root-only", "err", err)
		return fmt.Errorf("%w for %s: could not identify the caller: %v", skdbus.ErrNotAuthorized, req.Action, err)
	}
	if r.Trusts(c.UID) {
		r.Log.Info("authorized", "action", req.Action, "uid", c.UID, "pid", c.PID, "by", "root-only")
		return nil
	}
	r.Refused.Log(ctx, r.Log, skdbus.CallerKey(c.UID), slog.LevelWarn, "denied",
		"action", req.Action, "uid", c.UID, "pid", c.PID, "by", "root-only")
	return fmt.Errorf("%w for %s: this requires root (caller uid %d)", skdbus.ErrNotAuthorized, req.Action, c.UID)
}

// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/ratelog"
)

// Where polkit's authority lives on the system bus.
const (
	PolkitBusName   = "org.freedesktop.PolicyKit1"
	PolkitPath      = godbus.ObjectPath("/org/freedesktop/PolicyKit1/Authority")
	PolkitInterface = "org.freedesktop.PolicyKit1.Authority"
)

// PolkitAllowUserInteraction is the CheckAuthorizationFlags bit that lets
// polkit ask a person (through an authentication agent) before it answers.
const PolkitAllowUserInteraction uint32 = 1

// Polkit asks polkit whether a caller may do what it asks, as udisks2 and
// systemd do. The actions are in packaging/org.storkeep.StorKeep1.policy
// (installed in /usr/share/polkit-1/actions/); admins grant them to users
// and groups with rules in /etc/polkit-1/rules.d/.
//
// Trusted callers (root) are allowed without asking: polkit cannot take
// anything from root that root could not do anyway (write the state files,
// run mount and iscsiadm), and asking would make root's every change wait on
// polkitd, or fail while polkitd hangs. systemd does the same
// (bus-polkit.c allows a caller with the needed capability before it asks).
//
// When polkit is not on the bus (its name has no owner and cannot be
// activated, or its unit is masked), only trusted callers are allowed: the
// fallback is RootOnly's rule, never "allow". When polkit is there but the
// question fails (a timeout, an error reply), the call is denied.
//
// Every decision is logged with the caller's uid and pid, the action, the
// result and who decided ("polkit", "root-only fallback", "trusted uid").
type Polkit struct {
	Conn *godbus.Conn
	Log  *slog.Logger
	// Callers caches credentials; nil asks the bus every time.
	Callers *CallerCache
	// Trusted reports the uids allowed without asking polkit; they are
	// also the only uids allowed when polkit is not on the bus. storkeepd
	// passes RootOnly.Trusts (root and its own uid); nil trusts no one.
	Trusted func(uid uint32) bool
	// Refused rate-limits the lines about denials per caller, so that a
	// user who sends a thousand cannot flood the log; nil writes each.
	Refused *ratelog.Limiter

	// fallback is whether polkit was last found absent: the change is the
	// daemon's, logged once each way whatever any caller's limit says.
	fallback atomic.Bool
}

// polkitSubject is a PolkitSubject on the wire, (sa{sv}).
type polkitSubject struct {
	Kind    string
	Details map[string]godbus.Variant
}

// PolkitResult is a PolkitAuthorizationResult on the wire, (bba{ss}).
type PolkitResult struct {
	IsAuthorized bool
	// IsChallenge: polkit would authorize after authentication, but the
	// question did not allow user interaction.
	IsChallenge bool
	// Details such as polkit.dismissed ("true" when the person dismissed
	// the authentication dialog).
	Details map[string]string
}

// CheckAuthorization asks polkit whether the process behind the bus name
// sender may do action. details (nil for none) describe what it acts on;
// rules read them with action.lookup(key). With interactive, polkit may ask the person at the caller's session for a
// password before it answers.
//
// Equivalent to: busctl call org.freedesktop.PolicyKit1
// /org/freedesktop/PolicyKit1/Authority org.freedesktop.PolicyKit1.Authority
// CheckAuthorization '(sa{sv})sa{ss}us' system-bus-name 1 name s SENDER
// ACTION N KEY VALUE... FLAGS ""
func CheckAuthorization(ctx context.Context, conn *godbus.Conn, sender, action string, details map[string]string,
	interactive bool) (PolkitResult, error) {
	subject := polkitSubject{Kind: "system-bus-name",
		Details: map[string]godbus.Variant{"name": godbus.MakeVariant(sender)}}
	if details == nil {
		details = map[string]string{}
	}
	var flags uint32
	if interactive {
		flags = PolkitAllowUserInteraction
	}
	var res PolkitResult
	err := conn.Object(PolkitBusName, PolkitPath).CallWithContext(ctx, PolkitInterface+".CheckAuthorization", 0,
		subject, action, details, flags, "").Store(&res)
	if err != nil {
		return PolkitResult{}, fmt.Errorf("polkit CheckAuthorization of %s for %s: %w", action, sender, err)
	}
	return res, nil
}

// polkitAbsentErrors are the replies that mean nobody answers for polkit
// on this bus: no owner and nothing to activate, or an activation that
// systemd refuses because polkit.service is missing or masked.
var polkitAbsentErrors = map[string]bool{
	"org.freedesktop.DBus.Error.ServiceUnknown":        true,
	"org.freedesktop.DBus.Error.NameHasNoOwner":        true,
	"org.freedesktop.DBus.Error.Spawn.ServiceNotFound": true,
	"org.freedesktop.systemd1.NoSuchUnit":              true,
	"org.freedesktop.systemd1.UnitMasked":              true,
}

// polkitAbsent reports whether err says that polkit is not on the bus.
func polkitAbsent(err error) bool {
	var e godbus.Error
	if errors.As(err, &e) {
		return polkitAbsentErrors[e.Name]
	}
	var pe *godbus.Error
	if errors.As(err, &pe) {
		return polkitAbsentErrors[pe.Name]
	}
	return false
}

// Authorize implements dbus.Authorizer.
func (p *Polkit) Authorize(ctx context.Context, req skdbus.AuthRequest) error {
	c, err := p.Callers.Lookup(ctx, p.Conn, req.Sender)
	if err != nil {
		p.Refused.Log(ctx, p.Log, "bus name "+req.Sender, slog.LevelWarn, "denied: unknown caller",
			"action", req.Action, "sender", req.Sender, "by", "polkit", "err", err)
		return fmt.Errorf("%w for %s: could not identify the caller: %v", skdbus.ErrNotAuthorized, req.Action, err)
	}
	log := p.Log.With("action", req.Action, "uid", c.UID, "pid", c.PID)
	// What the call acts on, as polkit is told (cid=..., host=...): what
	// a rule decided on is in the log with the decision.
	for _, k := range slices.Sorted(maps.Keys(req.Details)) {
		log = log.With(k, req.Details[k])
	}
	deny := func(args ...any) {
		p.Refused.Log(ctx, log, skdbus.CallerKey(c.UID), slog.LevelWarn, "denied", args...)
	}
	trusted := p.Trusted != nil && p.Trusted(c.UID)
	if trusted {
		log.Info("authorized", "by", "trusted uid", "result", "authorized")
		return nil
	}
	res, err := CheckAuthorization(ctx, p.Conn, req.Sender, req.Action, req.Details, req.Interactive)
	if err == nil && p.fallback.Swap(false) {
		p.Log.Info("polkit is back: it decides again", "by", "polkit")
	}
	switch {
	case err != nil && polkitAbsent(err):
		if !p.fallback.Swap(true) {
			p.Log.Warn("polkit is not on the bus: until it is back, only root and the daemon's own uid may change things",
				"by", "root-only fallback", "err", err)
		}
		deny("by", "root-only fallback", "result", "denied", "reason", "polkit is not on the bus", "err", err)
		return fmt.Errorf("%w for %s: polkit is not available, so this requires root (caller uid %d)",
			skdbus.ErrNotAuthorized, req.Action, c.UID)
	case err != nil:
		deny("by", "polkit", "result", "error", "err", err)
		return p.denied(req, c, "could not ask polkit: %v", err)
	case res.IsAuthorized:
		log.Info("authorized", "by", "polkit", "result", "authorized", "interactive", req.Interactive)
		return nil
	case res.IsChallenge && !req.Interactive:
		deny("by", "polkit", "result", "challenge", "interactive", req.Interactive)
		return p.denied(req, c, "polkit would allow it after authentication, but the call did not allow interactive "+
			"authorization (set ALLOW_INTERACTIVE_AUTHORIZATION, e.g. busctl --allow-interactive-authorization=yes)")
	case res.IsChallenge:
		deny("by", "polkit", "result", "challenge", "interactive", req.Interactive)
		return p.denied(req, c, "polkit asked for authentication, which did not happen")
	case res.Details["polkit.dismissed"] != "":
		deny("by", "polkit", "result", "dismissed", "interactive", req.Interactive)
		return p.denied(req, c, "the authentication was dismissed")
	default:
		deny("by", "polkit", "result", "denied", "interactive", req.Interactive)
		return p.denied(req, c, "polkit denied it")
	}
}

// denied returns the error for a denial by (or while asking) polkit.
func (p *Polkit) denied(req skdbus.AuthRequest, c Caller, format string, args ...any) error {
	return fmt.Errorf("%w for %s: %s (caller uid %d); this requires root, or an authorization by polkit "+
		"(an administrator's authentication, or a rule in /etc/polkit-1/rules.d)",
		skdbus.ErrNotAuthorized, req.Action, fmt.Sprintf(format, args...), c.UID)
}

// Package policy decides who may change what storkeep manages: it finds out
// who is calling over the bus and answers the bus layer's Authorize calls.
// Reading stays open to every local user; changing needs authority.
package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// Caller is who sent a method call, as the bus daemon vouches for it.
type Caller struct {
	Sender string // unique bus name, e.g. ":1.42"
	UID    uint32
	PID    uint32 // 0 when the bus could not tell
}

// LookupCaller asks the bus daemon for the credentials of sender.
//
// Equivalent to: busctl call org.freedesktop.DBus /org/freedesktop/DBus
// org.freedesktop.DBus GetConnectionCredentials s SENDER
func LookupCaller(ctx context.Context, conn *godbus.Conn, sender string) (Caller, error) {
	var creds map[string]godbus.Variant
	err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds)
	if err != nil {
		return Caller{}, fmt.Errorf("credentials of %s: %w", sender, err)
	}
	c := Caller{Sender: sender}
	uid, ok := creds["UnixUserID"].Value().(uint32)
	if !ok {
		return Caller{}, fmt.Errorf("credentials of %s: the bus gave no UnixUserID", sender)
	}
	c.UID = uid
	if pid, ok := creds["ProcessID"].Value().(uint32); ok {
		c.PID = pid
	}
	return c, nil
}

// RootOnly allows changes to callers with uid 0 (or to the uid the daemon
// runs as, so that a daemon on a private bus can be driven by its owner)
// and denies everyone else. It logs every decision with the caller's uid
// and pid.
type RootOnly struct {
	Conn *godbus.Conn
	Log  *slog.Logger
	// AllowUID is a second uid that may change things (the daemon's own
	// uid when it is not root); -1 for none.
	AllowUID int64
	// Callers caches credentials; nil asks the bus every time.
	Callers *CallerCache
}

// CallerCache remembers the credentials of unique bus names. A unique name
// is never reused while the bus runs and its process and uid cannot
// change, so an entry never goes stale; the cache only bounds its size.
type CallerCache struct {
	mu sync.Mutex // guards m
	m  map[string]Caller
}

// NewCallerCache returns an empty cache.
func NewCallerCache() *CallerCache { return &CallerCache{m: make(map[string]Caller)} }

const callerCacheMax = 4096

// Lookup returns the credentials of sender, asking the bus on a miss.
func (cc *CallerCache) Lookup(ctx context.Context, conn *godbus.Conn, sender string) (Caller, error) {
	if cc == nil {
		return LookupCaller(ctx, conn, sender)
	}
	cc.mu.Lock()
	c, ok := cc.m[sender]
	cc.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := LookupCaller(ctx, conn, sender)
	if err != nil {
		return c, err
	}
	cc.mu.Lock()
	if len(cc.m) >= callerCacheMax {
		clear(cc.m)
	}
	cc.m[sender] = c
	cc.mu.Unlock()
	return c, nil
}

// Authorize implements dbus.Authorizer.
func (r RootOnly) Authorize(ctx context.Context, sender, action string) error {
	c, err := r.Callers.Lookup(ctx, r.Conn, sender)
	if err != nil {
		r.Log.Warn("authorization failed: unknown caller", "action", action, "sender", sender, "err", err)
		return fmt.Errorf("%w: %s: could not identify the caller: %v", skdbus.ErrNotAuthorized, action, err)
	}
	if c.UID == 0 || int64(c.UID) == r.AllowUID {
		r.Log.Info("authorized", "action", action, "uid", c.UID, "pid", c.PID)
		return nil
	}
	r.Log.Warn("denied", "action", action, "uid", c.UID, "pid", c.PID)
	return fmt.Errorf("%w: %s requires root (caller uid %d)", skdbus.ErrNotAuthorized, action, c.UID)
}

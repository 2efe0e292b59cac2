// SPDX-License-Identifier: Apache-2.0

// Package policy decides who may change what storkeep manages: it finds out
// who is calling over the bus and answers the bus layer's Authorize calls,
// by asking polkit (Polkit) or by allowing root alone (RootOnly). Reading
// stays open to every local user; changing needs authority.
package policy

import (
	"context"
	"fmt"
	"sync"

	godbus "github.com/godbus/dbus/v5"
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

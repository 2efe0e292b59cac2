// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"log/slog"
	"os"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/policy"
	"github.com/storkeep/storkeep/ratelog"
)

// Values of --authorization.
const (
	authAuto   = "auto"   // polkit on the system bus, root-only elsewhere
	authPolkit = "polkit" // ask polkit; root-only when polkit is not on the bus
	authRoot   = "root"   // root (and the daemon's own uid) only
)

// checkAuthorizationFlag refuses an unknown --authorization value.
func checkAuthorizationFlag(mode string) error {
	switch mode {
	case authAuto, authPolkit, authRoot:
		return nil
	}
	return fmt.Errorf("--authorization %q: want %s, %s or %s", mode, authAuto, authPolkit, authRoot)
}

// newAuthorizer returns who decides on changing calls. Root and the
// daemon's own uid are always allowed (so a daemon on a private bus can be
// driven by its owner); with polkit, everyone else is asked about. auto
// uses polkit only on the system bus: polkitd serves no other bus.
// Denials are logged through refused, a few per caller and then a count.
func newAuthorizer(mode, bus string, conn *skdbus.Conn, callers *policy.CallerCache, refused *ratelog.Limiter,
	log *slog.Logger) skdbus.Authorizer {
	rootOnly := policy.RootOnly{Conn: conn.Conn, Log: log, AllowUID: int64(os.Getuid()), Callers: callers, Refused: refused}
	if mode == authRoot || (mode == authAuto && bus != "system") {
		log.Info("authorization: root only", "allowed uids", fmt.Sprintf("0,%d", os.Getuid()))
		return rootOnly
	}
	log.Info("authorization: polkit, root only when polkit is not on the bus")
	return &policy.Polkit{Conn: conn.Conn, Log: log, Callers: callers, Trusted: rootOnly.Trusts, Refused: refused}
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// completeCIDsCommand is the hidden command that the bash and zsh
// completion scripts run to complete a CID:
//
//	storkeepctl [--bus B] __complete-cids [PREFIX]
//
// It prints the managed CIDs that start with PREFIX, one a line, sorted.
// A CID with a character a shell line cannot hold as typed (a control
// character) is left out. On any failure it prints nothing and exits 1:
// a completion must never write errors into the user's command line.
const completeCIDsCommand = "__complete-cids"

// completeTimeout bounds the List call when no --timeout was given: a
// shell waits on it at every Tab.
const completeTimeout = 2 * time.Second

func (c *cli) completeCIDs(ctx context.Context, args []string) int {
	if len(args) > 1 {
		return exitUsage
	}
	opts := noOptions()
	if len(args) == 1 && args[0] != "" {
		opts[skdbus.OptPrefix] = dbus.MakeVariant(args[0])
	}
	opts["host"] = dbus.MakeVariant(false) // managed CIDs only
	if c.callTimeout == defaultCallTimeout {
		c.callTimeout = completeTimeout
	}
	if checkBus(c.bus) != nil {
		return exitUsage
	}
	conns, err := c.listPages(ctx, opts, []string{skdbus.ListManaged})
	if err != nil {
		return exitCode(err)
	}
	cids := make([]string, 0, len(conns))
	for cid, st := range conns {
		if managed, _ := st[skdbus.ListManaged].Value().(bool); !managed {
			continue
		}
		if strings.ContainsFunc(cid, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			continue
		}
		cids = append(cids, cid)
	}
	sort.Strings(cids)
	for _, cid := range cids {
		fmt.Fprintln(c.stdout, cid)
	}
	return exitOK
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func setupWait(fs *flag.FlagSet) runFunc {
	timeout := defaultWaitTimeout
	fs.Var((*durationFlag)(&timeout), "timeout", "wait at most `duration` for the connection")
	var many waitManyFlags
	many.declare(fs)
	return func(ctx context.Context, c *cli, args []string) error {
		if many.set() {
			return c.waitMany(ctx, &many, args, timeout)
		}
		if err := wantCIDArgs("wait", args, "CID"); err != nil {
			return err
		}
		if timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		path, err := c.connectionPath(ctx, args[0])
		if err != nil {
			return err
		}
		if err := c.wait(ctx, path, timeout); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s: connected\n", escapeText(args[0]))
		return nil
	}
}

// wait calls Wait on the connection object at path. The daemon answers
// within timeout; the call itself gets the call timeout on top of that.
func (c *cli) wait(ctx context.Context, path dbus.ObjectPath, timeout time.Duration) error {
	if timeout <= 0 {
		return usagef("the wait timeout must be positive")
	}
	defer c.showWaitProgress(ctx, path, timeout)()
	return c.call(ctx, timeout+c.callTimeout, path, skdbus.ConnInterface+".Wait",
		[]any{microseconds(timeout), noOptions()})
}

func setupReconnect(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantCIDArgs("reconnect", args, "CID"); err != nil {
			return err
		}
		path, err := c.connectionPath(ctx, args[0])
		if err != nil {
			return err
		}
		return c.call(ctx, 0, path, skdbus.ConnInterface+".Reconnect", []any{noOptions()})
	}
}

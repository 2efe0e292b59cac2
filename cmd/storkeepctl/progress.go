// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// progressEvery is how often the wait's status line is redrawn.
const progressEvery = time.Second

// showWaitProgress draws, while a Wait on path runs and only when stdout
// is a terminal, one status line updated in place every second: the
// connection's state and last error, and the time waited. The returned
// function stops it and erases the line.
func (c *cli) showWaitProgress(ctx context.Context, path dbus.ObjectPath, timeout time.Duration) (stop func()) {
	terminal := c.terminal
	if terminal == nil {
		terminal = isTerminal
	}
	if !terminal(c.stdout) {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	drawn := false
	go func() {
		defer close(done)
		start := time.Now()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var props map[string]dbus.Variant
			if err := c.call(ctx, 0, path, skdbus.PropertiesIface+".GetAll", []any{skdbus.ConnInterface}, &props); err != nil {
				props = nil // say how long, at least
			}
			if ctx.Err() != nil {
				return
			}
			drawProgress(c.stdout, path, props, time.Since(start), timeout)
			drawn = true
		}
	}()
	return func() {
		cancel()
		<-done
		if drawn {
			fmt.Fprint(c.stdout, "\r\x1b[K")
		}
	}
}

// drawProgress writes the status line: "\r", the line, and an erase to
// the end of the line (what a shorter line leaves of a longer one).
func drawProgress(w io.Writer, path dbus.ObjectPath, props map[string]dbus.Variant, waited, timeout time.Duration) {
	cid, ok := unwrapVariant(props["CID"]).(string)
	if !ok {
		cid, _ = skdbus.CIDFromPath(path)
	}
	line := "waiting for " + escapeText(cid)
	if state, ok := unwrapVariant(props["State"]).(string); ok && state != "" {
		line += ": " + escapeText(state)
	}
	if last, ok := unwrapVariant(props["LastError"]).(string); ok && last != "" {
		line += ", last error " + escapeText(last)
	}
	if n, ok := unwrapVariant(props["Attempts"]).(uint32); ok && n > 0 {
		line += fmt.Sprintf(", %d attempts", n)
	}
	line += fmt.Sprintf(" (%s of %s)", humanDuration(waited), humanDuration(timeout))
	fmt.Fprintf(w, "\r%s\x1b[K", line)
}

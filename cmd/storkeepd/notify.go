// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	sdd "github.com/coreos/go-systemd/v22/daemon"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/service"
)

// notifier tells systemd how the daemon is (sd_notify): READY=1 once it
// serves, STATUS= with the counts whenever they change (systemctl status
// storkeepd), and WATCHDOG=1 while its loops answer.
type notifier struct {
	// send writes one notification (sdNotify in the daemon).
	send func(state string) error
	// counts are what STATUS= says.
	counts func() service.Counts
	// changes receives when the counts may have changed; then take (if
	// set) clears what signalled it (a service.Subscription's Take).
	changes <-chan struct{}
	take    func()
	// alive returns once the daemon's loops have answered; it blocks
	// for as long as one of them is wedged (and then the watchdog is
	// not fed). It fails only when ctx is done.
	alive func(ctx context.Context) error
	// watchdog is systemd's WatchdogSec (0: off); it is fed three times
	// per period.
	watchdog time.Duration
	// close ends what the notifier follows (optional).
	close func()
	// minGap is the least time between two STATUS= updates (default
	// 250 ms): a burst of changes is one update.
	minGap time.Duration
}

// newNotifier returns the daemon's notifier: the counts of svc, and a
// watchdog (when systemd set one: WatchdogSec=) fed after a round trip
// through srv's loop and svc's lock.
func newNotifier(svc *service.Service, srv *skdbus.Server, log *slog.Logger) *notifier {
	wd, err := sdd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("watchdog not fed: WATCHDOG_USEC is not valid", "err", err)
	}
	sub := svc.Subscribe()
	return &notifier{
		send:    sdNotify,
		counts:  svc.Counts,
		changes: sub.Ready(),
		take:    func() { sub.Take() },
		alive: func(ctx context.Context) error {
			if err := srv.Ping(ctx); err != nil {
				return err
			}
			svc.Ping()
			return nil
		},
		watchdog: wd,
		close:    sub.Close,
	}
}

// sdNotify sends state to systemd's NOTIFY_SOCKET, if there is one.
func sdNotify(state string) error {
	_, err := sdd.SdNotify(false, state)
	return err
}

// run notifies until ctx is done: READY=1 when alive first answers (Serve
// owns the name by then), then the status and the watchdog.
func (n *notifier) run(ctx context.Context) {
	if n.close != nil {
		defer n.close()
	}
	if n.minGap <= 0 {
		n.minGap = 250 * time.Millisecond
	}
	if n.alive(ctx) != nil {
		return
	}
	ready := statusText(n.counts())
	n.send("READY=1\nSTATUS=" + ready)
	done := make(chan struct{})
	if n.watchdog > 0 {
		go func() { n.feedWatchdog(ctx); close(done) }()
	} else {
		close(done)
	}
	n.followStatus(ctx, ready)
	<-done
}

// followStatus sends STATUS= each time the text changes from last (what
// was sent already), at most once per minGap. A change that came before it
// started is compared with what was sent, not missed.
func (n *notifier) followStatus(ctx context.Context, last string) {
	var sent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.changes:
		}
		if wait := n.minGap - time.Since(sent); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select { // what came meanwhile is in this update
		case <-n.changes:
		default:
		}
		if n.take != nil {
			n.take()
		}
		text := statusText(n.counts())
		if text == last {
			continue
		}
		if err := n.send("STATUS=" + text); err == nil {
			last, sent = text, time.Now()
		}
	}
}

// feedWatchdog sends WATCHDOG=1 every third of the watchdog period, each
// time only after a round trip through the daemon's loops: a daemon whose
// loop or lock is wedged stops feeding, and systemd restarts it.
func (n *notifier) feedWatchdog(ctx context.Context) {
	tick := time.NewTicker(n.watchdog / 3)
	defer tick.Stop()
	for {
		if n.alive(ctx) != nil {
			return
		}
		n.send("WATCHDOG=1")
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// statusText is the one-line status: "42 managed, 40 connected, 2
// retrying, 1 path down". Connecting CIDs, paths down and bad state files
// are named only when there are any.
func statusText(c service.Counts) string {
	parts := []string{
		fmt.Sprintf("%d managed", c.Managed),
		fmt.Sprintf("%d connected", c.Connected),
	}
	if c.Connecting > 0 {
		parts = append(parts, fmt.Sprintf("%d connecting", c.Connecting))
	}
	parts = append(parts, fmt.Sprintf("%d retrying", c.Retrying))
	if c.PathsDown > 0 {
		parts = append(parts, plural(c.PathsDown, "path", "paths")+" down")
	}
	if c.BadFiles > 0 {
		parts = append(parts, plural(c.BadFiles, "bad state file", "bad state files"))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

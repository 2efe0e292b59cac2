// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// TestNetBenchLinkUp measures, in one run, with the netlink watcher on and
// then off (reconnect.link_events = false, the backoff alone):
//   - loss: from taking the links down to Connected false, for an NFS
//     mount and an iSCSI session that were up;
//   - link up to Connected for connections that must be made anew: an NFS
//     export and an iSCSI target managed while the links were down, whose
//     attempts failed and whose backoff (1 s doubling) has grown to 8 s;
//   - link up to Connected for the connections that were up before (the
//     mount and session survive; only the report has to come back).
func TestNetBenchLinkUp(t *testing.T) {
	skipUnlessBench(t)
	f := newNetFixture(t)
	c := f.c
	const rounds = 7
	const hold = 12 * time.Second // links down this long each round

	type series struct{ lossNFS, lossIS, newNFS, newIS, oldNFS, oldIS []time.Duration }
	results := map[string]*series{}
	for _, mode := range []string{"on", "off"} {
		setConfig(t, c, fmt.Sprintf("[reconnect]\ninitial_backoff = \"1s\"\nmax_backoff = \"60s\"\nlink_events = %v\n", mode == "on"))
		s := &series{}
		results[mode] = s
		oldNFS, oldIS := f.manageBoth("-bench")
		waitConnected(t, c, oldNFS, true, 90*time.Second)
		waitConnected(t, c, oldIS, true, 90*time.Second)
		for r := range rounds {
			newNFS, newIS := netCIDPrefix+"bench-new", isCIDPrefix+"bench-new"
			down := time.Now()
			setLinks(t, "down")
			var wg sync.WaitGroup
			var lossNFS, lossIS time.Duration
			wg.Add(2)
			go func() { defer wg.Done(); lossNFS = untilConnected(c, oldNFS, false, down, hold) }()
			go func() { defer wg.Done(); lossIS = untilConnected(c, oldIS, false, down, hold) }()
			if err := manage(c, netNFSURI2, newNFS, nil); err != nil {
				t.Fatal(err)
			}
			f.is.manage(newIS, isURIChap+"/1", isChapUser, isSecret)
			wg.Wait()
			time.Sleep(time.Until(down.Add(hold)))

			up := time.Now()
			setLinks(t, "up")
			var times [4]time.Duration
			for i, cid := range []string{newNFS, newIS, oldNFS, oldIS} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := waitUp(c, cid, 120*time.Second); err != nil {
						t.Errorf("round %d (%s): %s: %v", r, mode, cid, err)
					}
					times[i] = time.Since(up)
				}()
			}
			wg.Wait()
			s.lossNFS = append(s.lossNFS, lossNFS)
			s.lossIS = append(s.lossIS, lossIS)
			s.newNFS = append(s.newNFS, times[0])
			s.newIS = append(s.newIS, times[1])
			s.oldNFS = append(s.oldNFS, times[2])
			s.oldIS = append(s.oldIS, times[3])
			unmanage(t, c, newNFS)
			f.is.unmanage(newIS)
			waitUntil(t, "the new iSCSI session logged out", 60*time.Second, func() bool { return len(sessionsTo(isIQNChap)) == 0 })
			time.Sleep(time.Second) // the next round starts from quiet
		}
		unmanage(t, c, oldNFS)
		f.is.unmanage(oldIS)
		waitUntil(t, "the old iSCSI session logged out", 60*time.Second, func() bool { return len(sessionsTo("")) == 0 })
	}

	var b strings.Builder
	fmt.Fprintf(&b, "links down %s per round, %d rounds per mode; backoff 1 s doubling (8 s by link up); p95 of %d is the largest\n", hold, rounds, rounds)
	fmt.Fprintf(&b, "%-44s %-26s %-26s\n", "", "watcher on: median / p95", "watcher off: median / p95")
	row := func(name string, limit time.Duration, get func(*series) []time.Duration) {
		fmt.Fprintf(&b, "%-44s %-26s %-26s\n", name, stat(get(results["on"]), limit), stat(get(results["off"]), limit))
	}
	const never = 120 * time.Second
	row("loss -> Connected false, NFS mount", hold, func(s *series) []time.Duration { return s.lossNFS })
	row("loss -> Connected false, iSCSI session", hold, func(s *series) []time.Duration { return s.lossIS })
	row("link up -> Connected, NFS managed in outage", never, func(s *series) []time.Duration { return s.newNFS })
	row("link up -> Connected, iSCSI managed in outage", never, func(s *series) []time.Duration { return s.newIS })
	row("link up -> Connected, NFS mount kept", never, func(s *series) []time.Duration { return s.oldNFS })
	row("link up -> Connected, iSCSI session kept", never, func(s *series) []time.Duration { return s.oldIS })
	benchReport(t, "netlink", "%s", b.String())
}

// untilConnected waits until cid's Connected is want, polling every 10 ms,
// and returns the time since start; limit means "not within limit".
func untilConnected(c *godbus.Conn, cid string, want bool, start time.Time, limit time.Duration) time.Duration {
	for time.Since(start) < limit {
		v, err := conn(c, cid).GetProperty(skdbus.ConnInterface + ".Connected")
		if err == nil && v.Value() == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return limit
}

// stat is "median / p95" (the largest, with few samples), with values at
// the limit shown as "> limit".
func stat(d []time.Duration, limit time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	f := func(x time.Duration) string {
		if x >= limit {
			return "> " + limit.String()
		}
		return x.Round(time.Millisecond).String()
	}
	return f(s[len(s)/2]) + " / " + f(s[len(s)-1])
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The iSCSI benchmarks log measurements; they run only with
// STORKEEP_E2E_BENCH=1 (make e2e STORKEEP_E2E_RUN=ISCSIBench STORKEEP_E2E_BENCH=1).
// connectedProp reads cid's Connected property (cheaper than List).
func (f *iscsiFixture) connectedProp(cid string) bool {
	v, err := f.conn.Object(skdbus.BusName, skdbus.ConnectionPath(cid)).GetProperty(skdbus.ConnInterface + ".Connected")
	return err == nil && v.Value() == true
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func linkExists(iqn string, lun int) func() bool {
	p := fmt.Sprintf("/dev/disk/by-path/ip-%s:3260-iscsi-%s-lun-%d", isPortal, iqn, lun)
	return func() bool { _, err := os.Stat(p); return err == nil }
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, x := range d {
		out[i] = x.Round(time.Millisecond)
	}
	return out
}

// TestISCSIBench50TargetsOneUnreachable manages 49 reachable targets and
// one on an address nobody answers, all at once: the reachable ones must
// not wait for the unreachable one.
func TestISCSIBench50TargetsOneUnreachable(t *testing.T) {
	skipUnlessBench(t)
	f := newISCSIFixture(t)
	const n = 49
	iqn := func(i int) string { return fmt.Sprintf("iqn.2026-01.org.storkeep.e2e:many%02d", i) }
	for i := range n {
		path := filepath.Join(isLUNDir, fmt.Sprintf("many%02d.img", i))
		must(t, "truncate", "-s", "1M", path)
		f.addTarget(10+i, iqn(i), fmt.Sprintf("many%02d", i))
	}
	t.Cleanup(func() {
		// Many sessions: give the teardown's wait a head start.
		var cids []string
		_ = root(f.conn).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, isCIDPrefix, map[string]godbus.Variant{}).Store(&cids)
		deadline := time.Now().Add(3 * time.Minute)
		for len(sessionsTo("")) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
	})

	start := time.Now()
	bad := isCIDPrefix + "many-unreachable"
	f.manage(bad, "iscsi://"+isNoAnswer+"/"+iqn(0))
	for i := range n {
		f.manage(fmt.Sprintf("%smany%02d", isCIDPrefix, i), "iscsi://"+isPortal+"/"+iqn(i))
	}
	managed := time.Since(start)
	var mu sync.Mutex
	done := map[string]time.Duration{}
	var badAt time.Duration
	waitUntil(t, "49 targets connected", 5*time.Minute, func() bool {
		if badAt == 0 {
			if st := f.status(bad); st != nil && st["lastError"].Value() == "PortalUnreachable" {
				badAt = time.Since(start)
			}
		}
		for i := range n {
			cid := fmt.Sprintf("%smany%02d", isCIDPrefix, i)
			mu.Lock()
			_, ok := done[cid]
			mu.Unlock()
			if !ok && f.connectedProp(cid) {
				mu.Lock()
				done[cid] = time.Since(start)
				mu.Unlock()
			}
		}
		return len(done) == n
	})
	all := time.Since(start)
	var times []time.Duration
	for _, d := range done {
		times = append(times, d)
	}
	slices.Sort(times)
	st := f.waitFor(bad, "PortalUnreachable", 3*time.Minute, lastError("PortalUnreachable"))
	if badAt == 0 {
		badAt = time.Since(start)
	}
	t.Logf("50 Manage calls took %s", managed.Round(time.Millisecond))
	t.Logf("49 reachable targets: first connected after %s, median %s, last %s",
		times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), all.Round(time.Millisecond))
	t.Logf("unreachable %s: PortalUnreachable first seen after %s: %s", isNoAnswer, badAt.Round(time.Millisecond), st["lastErrorMessage"].Value())
	if f.connectedProp(bad) {
		t.Error("the unreachable target is connected")
	}
}

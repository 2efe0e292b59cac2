// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestHealthBenchLinkUpGroundTruth measures, per kind, after outages of
// 5 s and 45 s (both links down, then up): link up -> the first O_DIRECT
// read through the connection that works, and link up -> Connected. It
// asserts that Connected never comes before reads work: no read started
// after Connected fails. Rounds per outage: STORKEEP_E2E_LINKUP_ROUNDS
// (default 3).
func TestHealthBenchLinkUpGroundTruth(t *testing.T) {
	skipUnlessBench(t)
	healthExports(t)
	f := newNetFixture(t)
	c := f.c
	if os.Getenv("STORKEEP_E2E_DEBUG") != "" {
		useHealthConfig(t, c, "")
	}
	nfsCID, isCID := f.manageBoth("-linkup")
	waitConnected(t, c, nfsCID, true, 90*time.Second)
	waitConnected(t, c, isCID, true, 90*time.Second)
	where, _ := nfsMountPoint(t, c, nfsCID)
	paths := map[string]string{
		"NFS":   filepath.Join(where, bFile),
		"ISCSI": lunLink(t, devices(t, f.is.status(isCID)), isIQNPlain, 1),
	}
	cids := map[string]string{"NFS": nfsCID, "ISCSI": isCID}
	kinds := []string{"NFS", "ISCSI"}
	rounds := envInt("STORKEEP_E2E_LINKUP_ROUNDS", 3)
	const limit = 120 * time.Second

	type series struct{ read, connected []time.Duration }
	results := map[string]*series{}
	for _, outage := range []time.Duration{5 * time.Second, 45 * time.Second} {
		for r := range rounds {
			for _, k := range kinds {
				waitConnected(t, c, cids[k], true, limit)
				waitReadable(t, paths[k], limit)
			}
			time.Sleep(time.Second)
			down := time.Now()
			setLinks(t, "down")
			time.Sleep(time.Until(down.Add(outage)))
			setLinks(t, "up")
			up := time.Now()
			var wg sync.WaitGroup
			got := map[string]comeback{}
			var mu sync.Mutex
			for _, k := range kinds {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := measureReturn(c, cids[k], paths[k], down, up, limit)
					mu.Lock()
					got[k] = m
					mu.Unlock()
				}()
			}
			wg.Wait()
			for _, k := range kinds {
				m := got[k]
				key := fmt.Sprintf("%s/outage=%s", k, outage)
				if results[key] == nil {
					results[key] = &series{}
				}
				results[key].read = append(results[key].read, m.read)
				results[key].connected = append(results[key].connected, m.connected)
				t.Logf("%s outage %s round %d: link up -> read %s, -> Connected %s (%d reads; of those started after Connected "+
					"%d worked, %d failed, %d too slow to tell %v)", k, outage, r,
					roundMS(m.read), roundMS(m.connected), m.reads, m.afterOK, m.afterFailed, m.afterSlow, m.slowSamples)
				if m.read >= limit || m.connected >= limit {
					t.Errorf("%s outage %s round %d: no read or no Connected within %s", k, outage, r, limit)
				}
				for _, l := range m.late {
					t.Errorf("%s outage %s round %d: Connected before reads work: %s", k, outage, r, l)
				}
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "link up -> first O_DIRECT read that works (reads every 50 ms, 0.5 s deadline, time at its end) and -> Connected; %d rounds per outage\n", rounds)
	for _, outage := range []time.Duration{5 * time.Second, 45 * time.Second} {
		for _, k := range kinds {
			s := results[fmt.Sprintf("%s/outage=%s", k, outage)]
			fmt.Fprintf(&b, "%-6s outage %-4s read %v  Connected %v\n", k, outage, roundAll(s.read), roundAll(s.connected))
		}
	}
	t.Log(b.String())
	for _, outage := range []time.Duration{5 * time.Second, 45 * time.Second} {
		for _, k := range kinds {
			s := results[fmt.Sprintf("%s/outage=%s", k, outage)]
			read, conn := median(s.read).Milliseconds(), median(s.connected).Milliseconds()
			benchReport(t, "health", "BenchmarkHostLinkUpToRead%s/outage=%s %d %d ms/linkup-read", k, outage, len(s.read), read)
			benchReport(t, "health", "BenchmarkHostLinkUpToConnected%s/outage=%s %d %d ms/linkup-connected %d ms/linkup-connected-floor",
				k, outage, len(s.connected), conn, read)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// benchReport writes measurements to the test log and to bench-*.txt in
// the test host's output directory (dist/e2e/out on the host).
func benchReport(t *testing.T, name, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if out := os.Getenv("STORKEEP_TESTHOST_OUT"); out != "" {
		f, err := os.OpenFile(filepath.Join(out, "bench-"+name+".txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}

func skipUnlessBench(t *testing.T) {
	if os.Getenv("STORKEEP_E2E_BENCH") != "1" {
		t.Skip("benchmarks run with STORKEEP_E2E_BENCH=1 (make bench-host)")
	}
}

// waitUp calls Connection.Wait, which returns as soon as the CID is
// connected: no polling in the measurement.
func waitUp(c *godbus.Conn, cid string, d time.Duration) error {
	return conn(c, cid).Call(skdbus.ConnInterface+".Wait", 0, uint64(d/time.Microsecond), map[string]godbus.Variant{}).Err
}

// daemonCPU returns the daemon's user+system CPU time so far.
func daemonCPU(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile("/proc/" + mainPID(t) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestNFSBenchManyExports manages 200 exports at once: time until all are
// connected, and the daemon's CPU time for it.
func TestNFSBenchManyExports(t *testing.T) {
	skipUnlessBench(t)
	nfsServers(t)
	c := systemBus(t)
	// The bus allows 128 pending calls per connection: Wait on several.
	waiters := []*godbus.Conn{systemBus(t), systemBus(t), systemBus(t), systemBus(t)}
	const n = 200
	cpu0 := daemonCPU(t)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		cid := fmt.Sprintf("e2e-many-%03d", i)
		uri := fmt.Sprintf("nfs://%s/bench/d%03d?vers=4.2", nfsSrvIP, i)
		if err := manage(c, uri, cid, nil); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := waitUp(waiters[i%len(waiters)], cid, 5*time.Minute); err != nil {
				errs <- fmt.Errorf("%s: %w", cid, err)
			}
		}()
	}
	managedAt := time.Since(start)
	wg.Wait()
	all := time.Since(start)
	cpu := daemonCPU(t) - cpu0
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	benchReport(t, "nfs", "200 exports: Manage calls done after %v, all connected after %v, daemon CPU %v",
		managedAt.Round(time.Millisecond), all.Round(time.Millisecond), cpu)

	cpu0 = daemonCPU(t)
	start = time.Now()
	if err := root(c).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, "e2e-many-", map[string]godbus.Variant{}).Err; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Minute, "all unmounted", func() (bool, string) {
		out, _ := os.ReadFile("/proc/self/mountinfo")
		k := strings.Count(string(out), "/run/storkeep/nfs/"+nfsSrvIP+":_bench_")
		return k == 0, fmt.Sprintf("%d still mounted", k)
	})
	benchReport(t, "nfs", "200 exports: all unmounted after %v, daemon CPU %v",
		time.Since(start).Round(time.Millisecond), daemonCPU(t)-cpu0)
}

// SPDX-License-Identifier: Apache-2.0

package main

// Benchmarks over a private bus, with the real daemon holding 10,000 CIDs.
// Run them with `make bench`; the README reports the numbers.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

const benchCIDs = 10000

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

// benchState returns a state directory holding benchCIDs CIDs, written
// once per process through the real Store and copied for each benchmark.
func benchState(b *testing.B) string {
	templateOnce.Do(func() {
		templateDir, templateErr = os.MkdirTemp("", "storkeep-bench-state-")
		if templateErr != nil {
			return
		}
		st, _, err := service.OpenStore(templateDir)
		if err != nil {
			templateErr = err
			return
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < benchCIDs; i += 16 {
					spec, err := service.ParseURI(fmt.Sprintf("nfs://127.0.0.1/srv/export%d", i%2000))
					if err == nil {
						err = st.PutCID(service.CID(fmt.Sprintf("bench-%05d", i)), spec)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		templateErr = <-errs
	})
	if templateErr != nil {
		b.Fatalf("bench state: %v", templateErr)
	}
	dir := filepath.Join(b.TempDir(), "state")
	if out, err := exec.Command("cp", "-a", templateDir, dir).CombinedOutput(); err != nil {
		b.Fatalf("copy bench state: %v\n%s", err, out)
	}
	return dir
}

// newBenchDaemon starts the daemon over a copy of the 10,000-CID state.
// Retries are slow (60 s) so that 10,000 connections that cannot come up
// on this host don't keep the daemon busy while it is measured.
func newBenchDaemon(b *testing.B) *daemon {
	b.Helper()
	bus := dbustest.Start(b)
	cfg := filepath.Join(bus.Dir, "storkeep.toml")
	if err := os.WriteFile(cfg, []byte("[reconnect]\ninitial_backoff = \"60s\"\nmax_backoff = \"60s\"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	d := &daemon{t: b, bus: bus, stateDir: benchState(b), runtimeDir: filepath.Join(b.TempDir(), "run"), log: &syncBuffer{}}
	d.start()
	b.Cleanup(d.stop)
	return d
}

func percentiles(ds []time.Duration) (p50, p99 float64) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// BenchmarkManageUnmanage10k: Manage then Unmanage of new CIDs while
// 10,000 are managed; each reply comes after the change is durable.
func BenchmarkManageUnmanage10k(b *testing.B) {
	d := newBenchDaemon(b)
	conn := d.client()
	defer conn.Close()
	man := make([]time.Duration, 0, b.N)
	unm := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		cid := fmt.Sprintf("new-%d", i)
		t0 := time.Now()
		if _, err := manage(conn, fmt.Sprintf("nfs://127.0.0.1/srv/new%d", i), cid, nil); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := unmanage(conn, cid); err != nil {
			b.Fatal(err)
		}
		man = append(man, t1.Sub(t0))
		unm = append(unm, time.Since(t1))
	}
	b.StopTimer()
	p50, p99 := percentiles(man)
	b.ReportMetric(p50, "manage-p50-ms")
	b.ReportMetric(p99, "manage-p99-ms")
	p50, p99 = percentiles(unm)
	b.ReportMetric(p50, "unmanage-p50-ms")
	b.ReportMetric(p99, "unmanage-p99-ms")
}

// settle waits, up to 30 s, until process pid is idle (no CPU used in
// half a second): the daemon's start-up pass over 10,000 targets must not
// count as the measured calls' work.
func settle(b *testing.B, pid int) {
	last := cpuTime(b, pid)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := cpuTime(b, pid)
		if now == last {
			return
		}
		last = now
	}
}

// cpuTime is the CPU time, user and system, that process pid has used
// (in the kernel's clock ticks of 10 ms).
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkGetVsPing: a property Get of one connection against Peer.Ping
// on the same daemon and bus, interleaved so both see the same load.
func BenchmarkGetVsPing(b *testing.B) {
	d := newBenchDaemon(b)
	conn := d.client()
	defer conn.Close()
	obj := conn.Object(skdbus.BusName, skdbus.ConnectionPath("bench-04242"))
	var get, ping time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := obj.GetProperty(skdbus.ConnInterface + ".State"); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := obj.Call(skdbus.PeerIface+".Ping", 0).Err; err != nil {
			b.Fatal(err)
		}
		get += t1.Sub(t0)
		ping += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(get.Microseconds())/float64(b.N), "get-us")
	b.ReportMetric(float64(ping.Microseconds())/float64(b.N), "ping-us")
	b.ReportMetric(float64(get)/float64(ping), "get/ping")
}

// BenchmarkRestart10k: from exec to owning the bus name with 10,000
// persisted CIDs, and the resident memory it then holds.
func BenchmarkRestart10k(b *testing.B) {
	d := newBenchDaemon(b)
	var rss float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d.stop()
		b.StartTimer()
		d.start()
	}
	b.StopTimer()
	// Let the start-up pass over every target settle, then read memory.
	time.Sleep(2 * time.Second)
	conn := d.client()
	defer conn.Close()
	list(b, conn, nil)
	rss = residentMB(b, d.cmd.Process.Pid)
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/restart")
	b.ReportMetric(rss, "rss-MB")
}

func residentMB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

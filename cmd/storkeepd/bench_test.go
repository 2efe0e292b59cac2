// SPDX-License-Identifier: Apache-2.0

package main

// Benchmarks over a private bus, with the real daemon holding 10,000 CIDs.
// Run them with `make bench`; the README reports the numbers.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storkeep/storkeep/backends/nfs"
	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

const benchCIDs = 10000

// benchStates are the state directories written once per process, by
// their shape; TestMain removes them.
var (
	benchStatesMu sync.Mutex
	benchStates   = map[benchShape]*benchTemplate{}
)

// benchShape is a state of n CIDs, perExport of them on each NFS export
// (CID i on export i/perExport).
type benchShape struct{ n, perExport int }

type benchTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// removeBenchStates removes the state directories benchState wrote.
func removeBenchStates() {
	benchStatesMu.Lock()
	defer benchStatesMu.Unlock()
	for _, t := range benchStates {
		if t.dir != "" {
			os.RemoveAll(t.dir)
		}
	}
}

// benchState returns a state directory holding benchCIDs CIDs, 5 on each
// export.
func benchState(b *testing.B) string { return benchStateOf(b, benchShape{benchCIDs, 5}) }

// benchCID names CID i of a bench state, and benchURI its export.
func benchCID(i int) string { return fmt.Sprintf("bench-%06d", i) }

func benchURI(sh benchShape, i int) string {
	return fmt.Sprintf("nfs://127.0.0.1/srv/export%d", i/sh.perExport)
}

// benchStateOf returns a copy of a state directory of shape sh, written
// once per process.
func benchStateOf(b *testing.B, sh benchShape) string {
	benchStatesMu.Lock()
	tpl := benchStates[sh]
	if tpl == nil {
		tpl = &benchTemplate{}
		benchStates[sh] = tpl
	}
	benchStatesMu.Unlock()
	tpl.once.Do(func() { tpl.dir, tpl.err = writeBenchState(sh) })
	if tpl.err != nil {
		b.Fatalf("bench state: %v", tpl.err)
	}
	dir := filepath.Join(b.TempDir(), "state")
	if out, err := exec.Command("cp", "-a", tpl.dir, dir).CombinedOutput(); err != nil {
		b.Fatalf("copy bench state: %v\n%s", err, out)
	}
	return dir
}

// newBenchDaemon starts the daemon over a copy of the 10,000-CID state.
func newBenchDaemon(b *testing.B) *daemon {
	return newBenchDaemonOf(b, benchShape{benchCIDs, 5})
}

// newBenchDaemonOf starts the daemon over a copy of a state of shape sh.
// Retries are slow (an hour) so that connections that cannot come up on
// this host don't keep the daemon busy while it is measured: at a minute,
// 10,000 targets made 170 attempts a second, which counted as the
// measured calls' CPU.
func newBenchDaemonOf(b *testing.B, sh benchShape) *daemon {
	return newBenchDaemonBin(b, sh, "")
}

// newBenchDaemonBin is newBenchDaemonOf running binary bin ("" for the
// daemon under test).
func newBenchDaemonBin(b *testing.B, sh benchShape, bin string) *daemon {
	b.Helper()
	bus := dbustest.Start(b)
	cfg := filepath.Join(bus.Dir, "storkeep.toml")
	if err := os.WriteFile(cfg, []byte("[reconnect]\ninitial_backoff = \"1h\"\nmax_backoff = \"1h\"\n[limits]\nmax_cids = 200000\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	d := &daemon{t: b, bus: bus, stateDir: benchStateOf(b, sh), runtimeDir: filepath.Join(b.TempDir(), "run"), log: &syncBuffer{}, bin: bin}
	d.start()
	b.Cleanup(func() { stopBenchDaemon(b, d) })
	return d
}

// stopBenchDaemon stops d and lifts the guards of the mount points it
// made (immutable: the benchmark's temporary directory could not be
// removed, and the benchmark failed for it).
func stopBenchDaemon(b *testing.B, d *daemon) {
	d.stop()
	if err := nfs.LiftGuards(d.runtimeDir); err != nil {
		b.Errorf("lift the mount point guards: %v", err)
	}
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
	obj := conn.Object(skdbus.BusName, skdbus.ConnectionPath(benchCID(4242)))
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

// writeBenchState writes a state directory of shape sh. The first CID
// goes through the real Store; the others are its file with the CID and
// the URI replaced, under the name the Store gave it worked out for each
// (and checked against the Store's for the first), written without a
// sync each and synced once at the end: 100,000 durable writes took 7
// minutes on the development VM.
func writeBenchState(sh benchShape) (string, error) {
	dir, err := os.MkdirTemp("", "storkeep-bench-state-")
	if err != nil {
		return "", err
	}
	st, _, err := service.OpenStore(dir)
	if err != nil {
		return dir, err
	}
	spec, err := service.ParseURI(benchURI(sh, 0))
	if err != nil {
		return dir, err
	}
	if err := st.PutCID(service.CID(benchCID(0)), spec); err != nil {
		return dir, err
	}
	cids := filepath.Join(dir, "cids")
	name := func(c string) string {
		sum := sha256.Sum256([]byte(c))
		return hex.EncodeToString(sum[:16]) + ".toml"
	}
	first, err := os.ReadFile(filepath.Join(cids, name(benchCID(0))))
	if err != nil {
		return dir, fmt.Errorf("the Store no longer names CID files as this benchmark does: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1 + w; i < sh.n; i += 8 {
				data := strings.Replace(string(first), benchCID(0), benchCID(i), 1)
				for _, q := range []string{"'", `"`} {
					data = strings.Replace(data, benchURI(sh, 0)+q, benchURI(sh, i)+q, 1)
				}
				if err := os.WriteFile(filepath.Join(cids, name(benchCID(i))), []byte(data), 0o600); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	syscall.Sync()
	return dir, <-errs
}

// SPDX-License-Identifier: Apache-2.0

package main

// List benchmarks: 10,000 CIDs in one reply, and 100,000 in pages. Each
// measure is a pair, the value U and its floor U-floor, measured in turn
// in the same run: the bus relaying the same body from a peer that has it
// ready (and, for godbus, godbus decoding that relayed body).

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

var (
	listTemplatesMu sync.Mutex
	listTemplates   = map[int]string{}
)

// listBenchState returns a state directory holding n CIDs (NFS, 50 to an
// export), written once per process through the real Store and copied
// for each benchmark. TestMain removes the templates.
func listBenchState(b *testing.B, n int) string {
	listTemplatesMu.Lock()
	defer listTemplatesMu.Unlock()
	tmpl, ok := listTemplates[n]
	if !ok {
		var err error
		tmpl, err = os.MkdirTemp("", "storkeep-bench-state-")
		if err != nil {
			b.Fatal(err)
		}
		listTemplates[n] = tmpl
		afterTests = append(afterTests, func() { os.RemoveAll(tmpl) })
		st, _, err := service.OpenStore(tmpl)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 32 {
					spec, err := service.ParseURI(fmt.Sprintf("nfs://127.0.0.1/srv/export%d", i%(n/50)))
					if err == nil {
						err = st.PutCID(service.CID(fmt.Sprintf("bench-%06d", i)), spec)
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
		if err := <-errs; err != nil {
			b.Fatalf("bench state: %v", err)
		}
	}
	dir := filepath.Join(b.TempDir(), "state")
	// No time limit (runCmd's is 30 s): 100,000 files take longer on a
	// busy disk.
	if out, err := exec.Command("cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
		b.Fatalf("copy bench state: %v\n%s", err, out)
	}
	return dir
}

// newListBenchDaemon starts the daemon over a copy of an n-CID state,
// with slow retries so that connections that cannot come up on this
// host keep it idle while it is measured, and waits until it is idle.
func newListBenchDaemon(b *testing.B, n int) *daemon {
	b.Helper()
	bus := dbustest.Start(b)
	cfg := filepath.Join(bus.Dir, "storkeep.toml")
	if err := os.WriteFile(cfg, []byte("[reconnect]\ninitial_backoff = \"60s\"\nmax_backoff = \"60s\"\nlink_events = false\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	d := &daemon{t: b, bus: bus, stateDir: listBenchState(b, n), runtimeDir: filepath.Join(b.TempDir(), "run"), log: &syncBuffer{}}
	// STORKEEP_BENCH_GOMEMLIMIT is the daemon's GOMEMLIMIT, to compare
	// (this process's own was read when it started).
	if v := os.Getenv("STORKEEP_BENCH_GOMEMLIMIT"); v != "" {
		b.Setenv("GOMEMLIMIT", v)
	}
	d.start()
	b.Cleanup(func() { stopBenchDaemon(b, d) })
	settle(b, d.cmd.Process.Pid)
	return d
}

// rawOptions encodes an a{sv} of string, uint32 and []string values, in
// the order given (name, value, name, value...).
func rawOptions(kvs ...any) []byte {
	b := []byte{0, 0, 0, 0, 0, 0, 0, 0} // length, then padding to the first entry
	for i := 0; i < len(kvs); i += 2 {
		b = pad(b, 8)
		b = appendString(b, kvs[i].(string))
		switch v := kvs[i+1].(type) {
		case string:
			b = append(b, 1, 's', 0)
			b = appendString(pad(b, 4), v)
		case uint32:
			b = append(b, 1, 'u', 0)
			b = binary.LittleEndian.AppendUint32(pad(b, 4), v)
		case []string:
			b = append(b, 2, 'a', 's', 0)
			b = pad(b, 4)
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			for _, s := range v {
				b = appendString(pad(b, 4), s)
			}
			binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-8))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(pad(b, 4), uint32(len(s)))
	return append(append(b, s...), 0)
}

// listBody calls List with opts and returns the reply's body.
func listBody(b *testing.B, rc *rawClient, opts []byte) []byte {
	rc.keep = true
	defer func() { rc.keep, rc.body = false, nil }()
	if _, err := rc.call(skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List", "a{sv}", opts); err != nil {
		b.Fatalf("List: %v", err)
	}
	return rc.body
}

// listEntries counts the entries of an a{sa{sv}} body.
func listEntries(body []byte) int {
	end := 8 + int(binary.LittleEndian.Uint32(body))
	n := 0
	for pos := 8; pos < end; n++ {
		pos = (pos + 7) &^ 7
		pos += 4 + int(binary.LittleEndian.Uint32(body[pos:])) + 1 // the ID
		pos = (pos + 3) &^ 3
		l := int(binary.LittleEndian.Uint32(body[pos:])) // the a{sv}'s length,
		pos = (pos+4+7)&^7 + l                           // then padding to its first entry
	}
	return n
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	t0 := time.Now()
	f()
	return time.Since(t0)
}

func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }

// peakResidentMB is the process's peak resident size so far (VmHWM):
// every moment since it started, List calls included.
func peakResidentMB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// BenchmarkList10k: List of all 10,000 CIDs, each call followed by its
// floor, the bus relaying the same body:
//   - ms/list: the default reply (a paged call, brief keys) on a raw
//     client, which reads the bytes and decodes nothing;
//   - ms/list-v1: what a client written before paging gets (no options:
//     every key);
//   - ms/list-godbus: the default reply through godbus, decoded into
//     maps; its floor is godbus decoding the relayed body;
//   - bytes/entry of each, the daemon's CPU per default List, and its
//     peak resident size over the whole run (start-up and every List).
func BenchmarkList10k(b *testing.B) {
	const n = 10000
	d := newListBenchDaemon(b, n)
	rc, err := dialRaw(d.bus.Address)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	brief := rawOptions(skdbus.OptLimit, uint32(n))
	v1 := rawOptions()
	briefBody, v1Body := listBody(b, rc, brief), listBody(b, rc, v1)
	if got := listEntries(briefBody); got < n {
		b.Fatalf("List(limit %d) returned %d entries", n, got)
	}
	relay, err := startRelay(d.bus.Address, "a{sa{sv}}", briefBody)
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	relayV1, err := startRelay(d.bus.Address, "a{sa{sv}}", v1Body)
	if err != nil {
		b.Fatal(err)
	}
	defer relayV1.Close()
	conn := d.client()
	defer conn.Close()
	startPeak, idle := peakResidentMB(b, d.cmd.Process.Pid), residentMB(b, d.cmd.Process.Pid)
	if os.Getenv("STORKEEP_BENCH_STATS") != "" {
		_ = d.cmd.Process.Signal(syscall.SIGUSR1)
		time.Sleep(300 * time.Millisecond)
		for _, l := range strings.Split(d.log.String(), "\n") {
			if strings.Contains(l, "statistics") {
				b.Log(l)
			}
		}
	}
	godbusList := func(dest string, path godbus.ObjectPath, method string) {
		var out map[string]map[string]godbus.Variant
		err := conn.Object(dest, path).Call(method, 0, map[string]godbus.Variant{skdbus.OptLimit: godbus.MakeVariant(uint32(n))}).Store(&out)
		if err != nil || len(out) < n {
			b.Fatalf("%s: %d entries, %v", method, len(out), err)
		}
	}
	relayCall := func(r *relayPeer) {
		if _, err := rc.call(r.name, "/", "org.storkeep.Relay", "Get", "", nil); err != nil {
			b.Fatal(err)
		}
	}
	listCall := func(opts []byte) {
		if _, err := rc.call(skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface, "List", "a{sv}", opts); err != nil {
			b.Fatal(err)
		}
	}
	var list, floor, listV1, floorV1, viaGodbus, floorGodbus, cpu time.Duration
	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTime(b, d.cmd.Process.Pid)
		list += timed(func() { listCall(brief) })
		cpu += cpuTime(b, d.cmd.Process.Pid) - cpu0
		floor += timed(func() { relayCall(relay) })
		listV1 += timed(func() { listCall(v1) })
		floorV1 += timed(func() { relayCall(relayV1) })
		viaGodbus += timed(func() { godbusList(skdbus.BusName, skdbus.RootPath, skdbus.ManagerInterface+".List") })
		floorGodbus += timed(func() { godbusList(relay.name, "/", "org.storkeep.Relay.Get") })
	}
	b.StopTimer()
	b.ReportMetric(ms(list, b.N), "ms/list")
	b.ReportMetric(ms(floor, b.N), "ms/list-floor")
	b.ReportMetric(ms(listV1, b.N), "ms/list-v1")
	b.ReportMetric(ms(floorV1, b.N), "ms/list-v1-floor")
	b.ReportMetric(ms(viaGodbus, b.N), "ms/list-godbus")
	b.ReportMetric(ms(floorGodbus, b.N), "ms/list-godbus-floor")
	b.ReportMetric(ms(cpu, b.N), "ms/list-daemon-cpu")
	b.ReportMetric(float64(len(briefBody))/n, "bytes/entry")
	b.ReportMetric(float64(len(v1Body))/n, "bytes/entry-v1")
	b.ReportMetric(peakResidentMB(b, d.cmd.Process.Pid), "MB/rss-peak")
	b.ReportMetric(startPeak, "MB/rss-peak-before-list")
	b.ReportMetric(idle, "MB/rss-idle")
}

// BenchmarkListPaged100k: List of all 100,000 CIDs in pages of 1,000, as
// storkeepctl list follows them, against the bus relaying 100 pages of
// the same size; the daemon's peak resident size over the run, start-up
// with 100,000 CIDs included.
func BenchmarkListPaged100k(b *testing.B) {
	const n, limit = 100000, 1000
	d := newListBenchDaemon(b, n)
	rc, err := dialRaw(d.bus.Address)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	page := listBody(b, rc, rawOptions(skdbus.OptLimit, uint32(limit)))
	relay, err := startRelay(d.bus.Address, "a{sa{sv}}", page)
	if err != nil {
		b.Fatal(err)
	}
	defer relay.Close()
	var list, floor time.Duration
	pages := 0
	b.ResetTimer()
	for range b.N {
		list += timed(func() {
			after, total := "", 0
			for {
				opts := rawOptions(skdbus.OptLimit, uint32(limit))
				if after != "" {
					opts = rawOptions(skdbus.OptLimit, uint32(limit), skdbus.OptAfter, after)
				}
				body := listBody(b, rc, opts)
				got := listEntries(body)
				total += got
				if got < limit {
					break
				}
				after = lastListID(body)
			}
			if total < n {
				b.Fatalf("paged List: %d entries, want %d", total, n)
			}
		})
		pages = n/limit + 1
		floor += timed(func() {
			for range pages {
				if _, err := rc.call(relay.name, "/", "org.storkeep.Relay", "Get", "", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(ms(list, b.N), "ms/list-100k-paged")
	b.ReportMetric(ms(floor, b.N), "ms/list-100k-paged-floor")
	b.ReportMetric(peakResidentMB(b, d.cmd.Process.Pid), "MB/rss-peak-100k")
}

// lastListID is the ID of the last entry of an a{sa{sv}} body.
func lastListID(body []byte) string {
	end := 8 + int(binary.LittleEndian.Uint32(body))
	last := ""
	for pos := 8; pos < end; {
		pos = (pos + 7) &^ 7
		l := int(binary.LittleEndian.Uint32(body[pos:]))
		last = string(body[pos+4 : pos+4+l])
		pos += 4 + l + 1
		pos = (pos + 3) &^ 3
		l = int(binary.LittleEndian.Uint32(body[pos:]))
		pos = (pos+4+7)&^7 + l
	}
	return last
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The test host's two measures of Manage -> Connected, each against its
// floor: what an administrator does by hand for the same result, on the
// same export or target, alternating, in one run. Reported in the bench
// table's format (U and U-floor) into bench-host.txt.
//
// Where the time goes: STORKEEP_E2E_BENCH_TRACE=1 runs the daemon at
// debug level, copies the journal of the rounds (microsecond time stamps)
// to journal-nfs.txt / journal-iscsi.txt in the output directory, and adds
// a third arm to the NFS one, systemd-mount(1) of the same export (what a
// transient mount unit costs without storkeep). With
// STORKEEP_E2E_BENCH_TRACE_SYSTEMD=1 systemd logs at debug level too.

// hostBenchRounds is how many times each side runs.
const hostBenchRounds = 5

// hostBenchLine reports one measure and its floor, medians in ms.
func hostBenchLine(t *testing.T, name string, got, floor []time.Duration) {
	t.Helper()
	t.Logf("%s: storkeep %v, by hand %v", name, roundAll(got), roundAll(floor))
	benchReport(t, "host", "%s %d %.1f ms/connect %.1f ms/connect-floor", name, len(got), ms(median(got)), ms(median(floor)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func tracing() bool { return os.Getenv("STORKEEP_E2E_BENCH_TRACE") == "1" }

// traceBench, when tracing, runs the daemon at debug level for the test
// and copies the journal of its rounds to journal-<name>.txt.
func traceBench(t *testing.T, c *godbus.Conn, name string) {
	t.Helper()
	if !tracing() {
		return
	}
	setConfig(t, c, "[daemon]\nlog_level = \"debug\"\n")
	if os.Getenv("STORKEEP_E2E_BENCH_TRACE_SYSTEMD") == "1" {
		must(t, "systemd-analyze", "log-level", "debug")
		t.Cleanup(func() { try(t, "systemd-analyze", "log-level", "info") })
	}
	start := time.Now()
	t.Cleanup(func() {
		out := os.Getenv("STORKEEP_TESTHOST_OUT")
		if out == "" {
			return
		}
		text, _ := sh(t, "journalctl", "--no-pager", "-o", "short-precise",
			"--since", "@"+strconv.FormatInt(start.Unix()-1, 10))
		_ = os.WriteFile(filepath.Join(out, "journal-"+name+".txt"), []byte(text), 0o644)
	})
}

// readFile reads a whole file: the first read through a mount.
func readFile(t *testing.T, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || len(b) == 0 {
		t.Fatalf("read %s: %q, %v", path, b, err)
	}
}

// readDirect reads the first 4 KiB of a block device with O_DIRECT: from
// the disk, not the page cache.
func readDirect(t *testing.T, dev string) {
	t.Helper()
	fd, err := syscall.Open(dev, syscall.O_RDONLY|syscall.O_DIRECT|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dev, err)
	}
	defer syscall.Close(fd)
	// An anonymous mapping is page-aligned, as O_DIRECT wants.
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	if n, err := syscall.Pread(fd, buf, 0); err != nil || n != len(buf) {
		t.Fatalf("O_DIRECT read of %s: %d bytes, %v", dev, n, err)
	}
}

// tornDown waits until the daemon has finished every teardown (List shows
// no released target), so that the next round, by hand or not, does not
// share the host with it.
func tornDown(t *testing.T, c *godbus.Conn) {
	t.Helper()
	waitFor(t, 60*time.Second, "teardown done", func() (bool, string) {
		var l map[string]map[string]godbus.Variant
		opts := map[string]godbus.Variant{"host": godbus.MakeVariant(false)}
		if err := root(c).Call(skdbus.ManagerInterface+".List", 0, opts).Store(&l); err != nil {
			return false, err.Error()
		}
		for id := range l {
			if strings.HasPrefix(id, "unmanaged/") {
				return false, id + " is being torn down"
			}
		}
		return true, ""
	})
}

// TestBenchHostManageToReadNFS: Manage, Wait returns, a file read through
// the mount; against mount(8) with the same options and the same read.
// Each side unmounts before the other starts.
func TestBenchHostManageToReadNFS(t *testing.T) {
	skipUnlessBench(t)
	nfsServers(t)
	c := systemBus(t)
	traceBench(t, c, "nfs")
	uri := "nfs://" + nfsSrvIP + "/a?vers=4.2"
	opts := "nfsvers=4,minorversion=2,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0"
	const raw = "/mnt/bench-raw"
	where := "/run/storkeep/nfs/" + nfsSrvIP + ":_a" // MountPoint's rule
	if err := os.MkdirAll(raw, 0o755); err != nil {
		t.Fatal(err)
	}
	var byHand, sk, sdm []time.Duration
	for i := range hostBenchRounds {
		if tracing() {
			// systemd's own transient mount unit, for comparison.
			os.MkdirAll("/mnt/bench-sd", 0o755)
			start := time.Now()
			if out, err := sh(t, "systemd-mount", "-t", "nfs", "-o", opts, nfsSrvIP+":/a", "/mnt/bench-sd"); err != nil {
				t.Fatalf("systemd-mount: %v\n%s", err, out)
			}
			readFile(t, "/mnt/bench-sd/hello")
			sdm = append(sdm, time.Since(start))
			must(t, "systemd-mount", "--umount", "/mnt/bench-sd")
		}
		start := time.Now()
		if out, err := sh(t, "mount", "-t", "nfs", "-o", opts, nfsSrvIP+":/a", raw); err != nil {
			t.Fatalf("mount: %v\n%s", err, out)
		}
		readFile(t, raw+"/hello")
		byHand = append(byHand, time.Since(start))
		must(t, "umount", raw)

		cid := fmt.Sprintf("e2e-hostbench-nfs-%d", i)
		start = time.Now()
		if err := manage(c, uri, cid, nil); err != nil {
			t.Fatal(err)
		}
		if err := waitUp(c, cid, time.Minute); err != nil {
			t.Fatalf("Wait %s: %v", cid, err)
		}
		readFile(t, where+"/hello")
		sk = append(sk, time.Since(start))
		unmanage(t, c, cid)
		tornDown(t, c)
	}
	if len(sdm) > 0 {
		t.Logf("systemd-mount + read: median %v, all %v", median(sdm).Round(time.Millisecond), roundAll(sdm))
	}
	hostBenchLine(t, "BenchmarkHostManageToReadNFS", sk, byHand)
}

// TestBenchHostManageToReadISCSI: Manage, Wait returns, an O_DIRECT read
// of each LUN through its by-path link; against iscsiadm -o new, --login,
// the by-path links, and the same reads.
func TestBenchHostManageToReadISCSI(t *testing.T) {
	skipUnlessBench(t)
	f := newISCSIFixture(t)
	traceBench(t, f.conn, "iscsi")
	link := func(lun int) string {
		return fmt.Sprintf("/dev/disk/by-path/ip-%s:3260-iscsi-%s-lun-%d", isPortal, isIQNPlain, lun)
	}
	var byHand, sk []time.Duration
	for i := range hostBenchRounds {
		start := time.Now()
		must(t, "iscsiadm", "-m", "node", "-o", "new", "-T", isIQNPlain, "-p", isPortal+":3260,1", "-I", "default")
		must(t, "iscsiadm", "-m", "node", "-T", isIQNPlain, "-p", isPortal+":3260,1", "-I", "default", "--login")
		waitUntil(t, "by-path links after a login by hand", 30*time.Second, func() bool {
			return linkExists(isIQNPlain, 1)() && linkExists(isIQNPlain, 2)()
		})
		readDirect(t, link(1))
		readDirect(t, link(2))
		byHand = append(byHand, time.Since(start))
		must(t, "iscsiadm", "-m", "node", "-T", isIQNPlain, "-p", isPortal+":3260,1", "--logout")
		must(t, "iscsiadm", "-m", "node", "-o", "delete", "-T", isIQNPlain, "-p", isPortal+":3260,1")
		waitUntil(t, "links gone", 30*time.Second, func() bool { return !linkExists(isIQNPlain, 1)() })

		cid := isCIDPrefix + "hostbench-" + strconv.Itoa(i)
		start = time.Now()
		f.manage(cid, isURIPlain)
		if err := waitUp(f.conn, cid, time.Minute); err != nil {
			t.Fatalf("Wait %s: %v", cid, err)
		}
		readDirect(t, link(1))
		readDirect(t, link(2))
		sk = append(sk, time.Since(start))
		f.unmanage(cid)
		tornDown(t, f.conn)
		if len(sessionsTo(isIQNPlain)) > 0 || linkExists(isIQNPlain, 1)() || nodeRecordExists(isIQNPlain) {
			t.Fatal("torn down, but a session, a link or the node record is left")
		}
	}
	hostBenchLine(t, "BenchmarkHostManageToReadISCSI", sk, byHand)
}

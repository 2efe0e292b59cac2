// SPDX-License-Identifier: Apache-2.0

package main

// The harness for component tests and benchmarks: the real storkeepd
// binary on a real private dbus-daemon, driven as a client would drive it.

import (
	"bytes"
	"context"
	"fmt"
	"github.com/storkeep/storkeep/backends/nfs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
)

const testVersion = "9.9.9-test"

var daemonBin, ctlBin string

// fakeDaemonBin is storkeepd built with connections made in memory
// (benchfake.go), for BenchmarkScale100k.
var fakeDaemonBin string

// afterTests are run once every test and benchmark is done (benchmark
// state templates shared by their runs).
var afterTests []func()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "storkeepd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "storkeepd")
	build := exec.Command("go", "build", "-race", "-ldflags", "-X main.version="+testVersion, "-o", daemonBin, ".")
	if os.Getenv("STORKEEP_BENCH") != "" || !raceEnabled {
		build = exec.Command("go", "build", "-ldflags", "-X main.version="+testVersion, "-o", daemonBin, ".")
	}
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build storkeepd:", err)
		os.Exit(1)
	}
	ctlBin = filepath.Join(dir, "storkeepctl")
	build = exec.Command("go", "build", "-o", ctlBin, "../storkeepctl")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build storkeepctl:", err)
		os.Exit(1)
	}
	if os.Getenv("STORKEEP_BENCH_100K") != "" {
		fakeDaemonBin = filepath.Join(dir, "storkeepd-benchfake")
		build = exec.Command("go", "build", "-tags", "storkeep_benchfake", "-o", fakeDaemonBin, ".")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build storkeepd with fake backends:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	removeBenchStates()
	for _, f := range afterTests {
		f()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects the daemon's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is one storkeepd process.
type daemon struct {
	t          testing.TB
	bus        *dbustest.Bus
	stateDir   string
	runtimeDir string
	args       []string // more command-line arguments
	bin        string   // the binary ("" for daemonBin)
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{}
}

// newDaemon starts storkeepd on a fresh private bus with a fresh state dir.
func newDaemon(t testing.TB) *daemon {
	t.Helper()
	return newDaemonArgs(t)
}

// newDaemonArgs is newDaemon with more command-line arguments.
func newDaemonArgs(t testing.TB, args ...string) *daemon {
	t.Helper()
	return newDaemonConfig(t, "", args...)
}

// newDaemonConfig is newDaemonArgs with config as the configuration file
// ("" for the harness's default: fast retries, no link events).
func newDaemonConfig(t testing.TB, config string, args ...string) *daemon {
	t.Helper()
	bus := dbustest.Start(t)
	if config != "" {
		if err := os.WriteFile(filepath.Join(bus.Dir, "storkeep.toml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &daemon{t: t, bus: bus, stateDir: filepath.Join(t.TempDir(), "state"),
		runtimeDir: filepath.Join(t.TempDir(), "run"), log: &syncBuffer{}, args: args}
	d.start()
	t.Cleanup(func() {
		d.stop()
		// The NFS backend guards the mount points it made (immutable).
		if err := nfs.LiftGuards(d.runtimeDir); err != nil {
			t.Errorf("lift the mount point guards: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	return d
}

// start runs the daemon and returns once it owns its bus name.
func (d *daemon) start() {
	d.t.Helper()
	cfg := filepath.Join(d.bus.Dir, "storkeep.toml")
	if _, err := os.Stat(cfg); err != nil {
		// Fast retries keep tests short; the policy itself is tested in
		// service/. No link events: netmon would resolve the made-up
		// server names the tests use, and tests send nothing beyond
		// loopback (netmon has its own tests; e2e runs it for real).
		if err := os.WriteFile(cfg, []byte("[reconnect]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nlink_events = false\n"), 0o644); err != nil {
			d.t.Fatal(err)
		}
	}
	bin := daemonBin
	if d.bin != "" {
		bin = d.bin
	}
	d.cmd = exec.Command(bin, append([]string{"--bus", d.bus.Address, "--state-dir", d.stateDir,
		"--runtime-dir", d.runtimeDir, "--config", cfg}, d.args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start storkeepd: %v", err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(d.cmd, d.exited)
	conn := d.client()
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err == nil && has {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("storkeepd exited at start:\n%s", d.log.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	d.t.Fatalf("storkeepd did not own %s within 30 s:\n%s", skdbus.BusName, d.log.String())
}

// stop sends SIGTERM and waits.
func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("storkeepd did not stop within 20 s of SIGTERM")
	}
	d.cmd = nil
}

// kill9 kills the daemon the hard way.
func (d *daemon) kill9() {
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

// client opens a new private connection to the bus.
func (d *daemon) client() *godbus.Conn {
	d.t.Helper()
	conn, err := godbus.Connect(d.bus.Address)
	if err != nil {
		d.t.Fatalf("connect to test bus: %v", err)
	}
	return conn
}

func root(conn *godbus.Conn) godbus.BusObject {
	return conn.Object(skdbus.BusName, skdbus.RootPath)
}

func manage(conn *godbus.Conn, uri, cid string, opts map[string]godbus.Variant) (godbus.ObjectPath, error) {
	if opts == nil {
		opts = map[string]godbus.Variant{}
	}
	var p godbus.ObjectPath
	err := root(conn).Call(skdbus.ManagerInterface+".Manage", 0, uri, cid, opts).Store(&p)
	return p, err
}

func unmanage(conn *godbus.Conn, cid string) error {
	return root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, cid, map[string]godbus.Variant{}).Err
}

func list(t testing.TB, conn *godbus.Conn, opts map[string]godbus.Variant) map[string]map[string]godbus.Variant {
	t.Helper()
	if opts == nil {
		opts = map[string]godbus.Variant{}
	}
	var out map[string]map[string]godbus.Variant
	if err := root(conn).Call(skdbus.ManagerInterface+".List", 0, opts).Store(&out); err != nil {
		t.Fatalf("List: %v", err)
	}
	return out
}

// errName returns the D-Bus error name of err, or "" for nil.
func errName(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := err.(godbus.Error); ok {
		return e.Name
	}
	if e, ok := err.(*godbus.Error); ok {
		return e.Name
	}
	return "not a D-Bus error: " + err.Error()
}

// runCmd runs a command and returns its combined output.
func runCmd(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

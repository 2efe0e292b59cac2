// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
	"github.com/storkeep/storkeep/units"
)

func mustSpec(t *testing.T, uri string) service.Spec {
	t.Helper()
	s, err := service.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMountPoint(t *testing.T) {
	for _, c := range []struct{ uri, where, unit string }{
		{"nfs://10.0.0.1/exports/vm_data", "/run/storkeep/nfs/10.0.0.1:_exports_vm__data",
			`run-storkeep-nfs-10.0.0.1:_exports_vm__data.mount`},
		{"nfs://[fd00::1]:2050/", "/run/storkeep/nfs/[fd00::1]:2050:_",
			`run-storkeep-nfs-\x5bfd00::1\x5d:2050:_.mount`},
		{"nfs://Server.Example/a-b", "/run/storkeep/nfs/server.example:_a-b",
			`run-storkeep-nfs-server.example:_a\x2db.mount`},
	} {
		where, unit := MountPoint("/run/storkeep/nfs", mustSpec(t, c.uri))
		if where != c.where || unit != c.unit {
			t.Errorf("%s: %q %q, want %q %q", c.uri, where, unit, c.where, c.unit)
		}
		if unit != units.MountUnitName(where) {
			t.Errorf("%s: unit %q is not the name of %q", c.uri, unit, where)
		}
	}
}

func TestMountPointHashesOnlyWhatIsTooLong(t *testing.T) {
	long := mustSpec(t, "nfs://10.0.0.1/"+strings.Repeat("x-", 100))
	where, unit := MountPoint("/run/storkeep/nfs", long)
	if !strings.HasPrefix(filepath.Base(where), hashedDirPrefix) || len(unit) > units.MaxUnitNameLen {
		t.Errorf("long export: %q %q", where, unit)
	}
	again, _ := MountPoint("/run/storkeep/nfs", long)
	if again != where {
		t.Errorf("hash not stable: %q then %q", where, again)
	}
	other, _ := MountPoint("/run/storkeep/nfs", mustSpec(t, "nfs://10.0.0.1/"+strings.Repeat("x-", 101)))
	if other == where {
		t.Errorf("two exports share %q", where)
	}
	// Distinct exports never share a readable mount point either.
	a, _ := MountPoint("/r", mustSpec(t, "nfs://h/a_b"))
	b, _ := MountPoint("/r", mustSpec(t, "nfs://h/a/b"))
	if a == b {
		t.Errorf("/a_b and /a/b share %q", a)
	}
}

func TestMountOptions(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"nfs://h/e?vers=4.2", "nfsvers=4,minorversion=2,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0"},
		{"nfs://h/e?vers=3", "nfsvers=3,nolock,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0"},
		{"nfs://h/e", "nolock,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0"},
		{"nfs://h/e?vers=4", "nfsvers=4,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0"},
		{"nfs://h/e?vers=3&lock", "nfsvers=3,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0,lock"},
		{"nfs://h:2050/e?vers=4.1&hard&timeo=600&retrans=6&sharecache&retry=2&nosuid",
			"nfsvers=4,minorversion=1,timeo=600,retrans=6,nodev,port=2050,hard,nosuid,retry=2,sharecache"},
	} {
		if got := mountOptions(mustSpec(t, c.uri).NFS); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.uri, got, c.want)
		}
	}
	if w := what(mustSpec(t, "nfs://[fd00::1]/e").NFS); w != "[fd00::1]:/e" {
		t.Errorf("what = %q", w)
	}
}

func TestDescription(t *testing.T) {
	d := description("nfs://h/e", []service.CID{"vm1", "vm 2", "a,b", "tab\there"})
	want := `storkeep nfs://h/e for vm1, "vm 2", "a,b", "tab\there"`
	if d != want {
		t.Errorf("got  %s\nwant %s", d, want)
	}
	var many []service.CID
	for i := range 20 {
		many = append(many, service.CID(fmt.Sprint("cid", i)))
	}
	if d := description("nfs://h/e", many); !strings.HasSuffix(d, "and 15 more") {
		t.Errorf("many CIDs: %s", d)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		name string
	}{
		{&units.UnitError{Job: "failed", Result: "exit-code", Log: []string{
			"mount.nfs: mounting 10.250.0.1:/nope failed, reason given by server: No such file or directory"}}, ErrExportNotFound},
		{&units.UnitError{Job: "failed", Log: []string{"mount.nfs: access denied by server while mounting h:/e"}}, ErrAccessDenied},
		{&units.UnitError{Job: "failed", Log: []string{"mount.nfs: Connection refused"}}, ErrServerUnreachable},
		{&units.UnitError{Job: "failed", Log: []string{"mount.nfs: No route to host"}}, ErrServerUnreachable},
		{&units.UnitError{Job: "failed", Log: []string{"mount.nfs: Protocol not supported"}}, ErrVersionUnsupported},
		{&units.UnitError{Job: "failed", Log: []string{"mount.nfs: Connection timed out"}}, ErrTimeout},
		{&units.UnitError{Job: "timeout", Result: "timeout"}, ErrTimeout},
		{&units.UnitError{Job: "failed", Result: "exit-code", Log: []string{"something new"}}, ErrMountFailed},
		{fmt.Errorf("start x: %w: no bus", units.ErrUnavailable), ErrSystemdUnavailable},
		{fmt.Errorf("start x: %w", context.DeadlineExceeded), ErrTimeout},
	} {
		ce := classify("nfs://h/e", c.err)
		if ce.Name != c.name {
			t.Errorf("%v: %s, want %s", c.err, ce.Name, c.name)
		}
		if !strings.Contains(ce.Error(), c.err.Error()) {
			t.Errorf("%v: message %q lost the cause", c.err, ce.Error())
		}
	}
}

// fakeUnits mounts by writing mount table lines, as systemd would.
type fakeUnits struct {
	t           *testing.T
	mountinfo   string
	mu          sync.Mutex
	starts      []units.Mount
	stops       []string
	fail        error // what Start returns, after mounting if mountAnyway
	mountAnyway bool
	// onMount runs once the mount is in the table (the watcher's part);
	// with jobNeverEnds, Start then waits for its context to end, as for
	// a job whose end is slow to come.
	onMount      func()
	jobNeverEnds bool
	jobWaitEnded chan error
}

func (f *fakeUnits) Start(ctx context.Context, m units.Mount) error {
	f.mu.Lock()
	f.starts = append(f.starts, m)
	f.mu.Unlock()
	if f.fail == nil || f.mountAnyway {
		src := m.What
		addMount(f.t, f.mountinfo, m.Where, "nfs4", src)
	}
	if f.onMount != nil {
		f.onMount()
	}
	if f.jobNeverEnds {
		<-ctx.Done()
		f.jobWaitEnded <- ctx.Err()
		return ctx.Err()
	}
	return f.fail
}

func (f *fakeUnits) Stop(ctx context.Context, name string) error {
	f.mu.Lock()
	f.stops = append(f.stops, name)
	f.mu.Unlock()
	removeMountsByUnit(f.t, f.mountinfo, name)
	return nil
}

var mountID = 100

func addMount(t *testing.T, file, where, fstype, source string) {
	t.Helper()
	mountID++
	line := fmt.Sprintf("%d 25 0:%d / %s rw,nosuid,nodev,relatime shared:1 - %s %s rw,vers=4.2,addr=10.0.0.1\n",
		mountID, mountID, strings.ReplaceAll(where, " ", `\040`), fstype, source)
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, line); err != nil {
		t.Fatal(err)
	}
}

func removeMountsByUnit(t *testing.T, file, unit string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(data), "\n") {
		fields := strings.Fields(l)
		if len(fields) > 4 && units.MountUnitName(strings.ReplaceAll(fields[4], `\040`, " ")) == unit {
			continue
		}
		keep = append(keep, l)
	}
	if err := os.WriteFile(file, []byte(strings.Join(keep, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newTestBackend(t *testing.T) (*Backend, *fakeUnits) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"), 0o644)
	fu := &fakeUnits{t: t, mountinfo: mi}
	b := &Backend{RuntimeDir: filepath.Join(dir, "run"), Units: fu, MountInfo: mi,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		AskServer:  func(context.Context, string, uint16, uint32) error { return nil },
		DialServer: func(context.Context, string, uint16) error { return nil }}
	t.Cleanup(func() {
		if err := LiftGuards(filepath.Join(dir, "run")); err != nil {
			t.Errorf("lift the mount point guards: %v", err)
		}
	})
	return b, fu
}

// While the export is not mounted, nothing can create a file in its mount
// point (it would land on the local disk); Disconnect still removes it.
func TestMountPointGuard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting the immutable flag needs CAP_LINUX_IMMUTABLE (root)")
	}
	b, _ := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/guarded?vers=4.2")
	ctx := context.Background()
	if _, err := b.Connect(ctx, spec); err != nil {
		t.Fatal(err)
	}
	where, _ := MountPoint(b.mountRoot(), spec)
	err := os.WriteFile(filepath.Join(where, "vm.img"), []byte("x"), 0o600)
	if !errors.Is(err, syscall.EPERM) {
		if err == nil {
			var st syscall.Statfs_t
			syscall.Statfs(where, &st)
			if st.Type == 0x01021994 { // tmpfs without FS_IOC_SETFLAGS (Linux < 6.0)
				t.Skip("this kernel's tmpfs takes no inode flags")
			}
		}
		t.Fatalf("write into the unmounted mount point: %v, want EPERM", err)
	}
	if err := b.Disconnect(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(where); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mount point after Disconnect: %v, want removed", err)
	}
}

func TestConnectObserveDisconnect(t *testing.T) {
	b, fu := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/e?vers=4.2")
	ctx := context.Background()

	info := b.Describe(spec)
	where := info[InfoMountPoint].(string)
	if obs, err := b.Observe(ctx, spec); err != nil || obs.Present {
		t.Fatalf("before: %+v %v", obs, err)
	}
	obs, err := b.Connect(ctx, spec)
	if err != nil || !obs.Connected || obs.Info[InfoMountPoint] != where || obs.Info[InfoVersion] != "4.2" {
		t.Fatalf("Connect: %+v %v", obs, err)
	}
	if m := fu.starts[0]; m.What != "10.0.0.1:/e" || m.Where != where || m.Type != "nfs" || m.Timeout != 30*time.Second {
		t.Errorf("unit: %+v", m)
	}
	// Connecting again leaves the mount alone.
	if obs, err := b.Connect(ctx, spec); err != nil || !obs.Connected || len(fu.starts) != 1 {
		t.Fatalf("second Connect: %+v %v, %d starts", obs, err, len(fu.starts))
	}
	if err := b.Disconnect(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if len(fu.stops) != 1 || fu.stops[0] != info[InfoMountUnit] {
		t.Errorf("stops: %v", fu.stops)
	}
	if obs, _ := b.Observe(ctx, spec); obs.Present {
		t.Errorf("after Disconnect: %+v", obs)
	}
}

func TestConnectRefusesABusyMountPoint(t *testing.T) {
	b, fu := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/e")
	where := b.Describe(spec)[InfoMountPoint].(string)
	addMount(t, b.MountInfo, where, "nfs4", "10.0.0.9:/other")
	obs, err := b.Connect(context.Background(), spec)
	var ce *service.ConnError
	if !errors.As(err, &ce) || ce.Name != ErrMountPointBusy || obs.Present || len(fu.starts) != 0 {
		t.Fatalf("got %+v %v, %d starts", obs, err, len(fu.starts))
	}
}

func TestConnectTrustsTheMountTable(t *testing.T) {
	b, fu := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/e")
	// The job timed out, but the mount came up anyway.
	fu.fail, fu.mountAnyway = &units.UnitError{Job: "timeout", Result: "timeout"}, true
	if obs, err := b.Connect(context.Background(), spec); err != nil || !obs.Connected {
		t.Fatalf("got %+v %v", obs, err)
	}
	// A real failure is named, with the helper's words.
	b2, fu2 := newTestBackend(t)
	fu2.fail = &units.UnitError{Job: "failed", Result: "exit-code",
		Log: []string{"mount.nfs: mounting 10.0.0.1:/e failed, reason given by server: No such file or directory"}}
	_, err := b2.Connect(context.Background(), spec)
	var ce *service.ConnError
	if !errors.As(err, &ce) || ce.Name != ErrExportNotFound || !strings.Contains(err.Error(), "reason given by server") {
		t.Fatalf("got %v", err)
	}
}

// TestConnectEndsWhenTheMountShows: an export is mounted, and usable, as
// soon as the mount table shows it; systemd's job for the unit ends only
// after the helper has exited, systemd has read the table itself, and its
// JobRemoved signal has crossed the bus. Connect does not wait for that,
// and stops waiting for the job.
func TestConnectEndsWhenTheMountShows(t *testing.T) {
	b, fu := newTestBackend(t)
	fu.jobNeverEnds, fu.jobWaitEnded = true, make(chan error, 1)
	fu.onMount = func() { // what watchMountTable does on the kernel's word
		mounts, err := b.readMounts()
		if err != nil {
			t.Error(err)
			return
		}
		b.mountTableChanged(mounts, func(service.TargetKey) {})
	}
	type result struct {
		obs service.Observation
		err error
	}
	done := make(chan result, 1)
	go func() {
		obs, err := b.Connect(context.Background(), mustSpec(t, "nfs://10.0.0.1/e?vers=4.2"))
		done <- result{obs, err}
	}()
	// The job never ends: only the mount table can end this Connect.
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Connect still waits for systemd's job, with the mount in the table")
	}
	if r.err != nil || !r.obs.Connected {
		t.Fatalf("Connect = %+v, %v; want connected", r.obs, r.err)
	}
	if err := <-fu.jobWaitEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("the wait for the job ended with %v, want context.Canceled", err)
	}
}

// TestConnectWaitsForItsOwnExport: another export mounted at the mount
// point does not end the wait; the job's result does.
func TestConnectWaitsForItsOwnExport(t *testing.T) {
	b, fu := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/e?vers=4.2")
	where := b.Describe(spec)[InfoMountPoint].(string)
	fu.fail = &units.UnitError{Job: "failed", Result: "exit-code", Log: []string{"mount.nfs: Connection timed out"}}
	fu.onMount = func() {
		addMount(t, b.MountInfo, where, "nfs4", "10.0.0.9:/other")
		mounts, _ := b.readMounts()
		b.mountTableChanged(mounts, func(service.TargetKey) {})
	}
	_, err := b.Connect(context.Background(), spec)
	var ce *service.ConnError
	if !errors.As(err, &ce) || ce.Name != ErrTimeout {
		t.Fatalf("Connect = %v, want the job's failure (Timeout)", err)
	}
}

func TestObserveReportsAServerThatStoppedAnswering(t *testing.T) {
	b, _ := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/e")
	if _, err := b.Connect(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.targets[spec.Target].down = errors.New("connection refused")
	b.mu.Unlock()
	obs, err := b.Observe(context.Background(), spec)
	if err != nil || !obs.Present || obs.Connected || obs.Err == nil || obs.Err.Name != ErrServerNotResponding {
		t.Fatalf("got %+v %v", obs, err)
	}
}

func TestMountTableChangePokesOnlyWhatChanged(t *testing.T) {
	b, _ := newTestBackend(t)
	a, c := mustSpec(t, "nfs://10.0.0.1/a"), mustSpec(t, "nfs://10.0.0.1/c")
	for _, s := range []service.Spec{a, c} {
		if _, err := b.Connect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	removeMountsByUnit(t, b.MountInfo, b.Describe(a)[InfoMountUnit].(string))
	mounts, _ := b.readMounts()
	var poked []service.TargetKey
	b.mountTableChanged(mounts, func(k service.TargetKey) { poked = append(poked, k) })
	if len(poked) != 1 || poked[0] != a.Target {
		t.Errorf("poked %v, want only %s", poked, a.Target)
	}
}

func TestListHost(t *testing.T) {
	b, _ := newTestBackend(t)
	addMount(t, b.MountInfo, "/mnt/data", "nfs4", "10.0.0.1:/exports/data")
	addMount(t, b.MountInfo, "/mnt/v6", "nfs", "[fd00::1]:/x")
	addMount(t, b.MountInfo, "/mnt/tmp", "tmpfs", "tmpfs")
	hc, err := b.ListHost(context.Background())
	if err != nil || len(hc) != 2 {
		t.Fatalf("%+v %v", hc, err)
	}
	want := mustSpec(t, "nfs://10.0.0.1/exports/data")
	if hc[0].Target != want.Target || !strings.HasPrefix(hc[0].ID, "nfs/mount") || hc[0].Info[InfoMountPoint] != "/mnt/data" {
		t.Errorf("%+v", hc[0])
	}
	if hc[1].Target != mustSpec(t, "nfs://[fd00::1]/x").Target {
		t.Errorf("%+v", hc[1])
	}
}

// rpcServer answers NFS NULL calls on loopback; mute accepts but never
// answers.
func rpcServer(t *testing.T, mute bool) (host string, port uint16) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 44)
				if _, err := io.ReadFull(c, buf); err != nil || mute {
					io.Copy(io.Discard, c)
					return
				}
				reply := append([]byte{0x80, 0, 0, 24}, buf[4:8]...)      // xid
				reply = append(reply, 0, 0, 0, 1 /* REPLY */, 0, 0, 0, 0, /* accepted */
					0, 0, 0, 0, 0, 0, 0, 0 /* verifier */, 0, 0, 0, 0 /* success */)
				c.Write(reply)
			}()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", uint16(a.Port)
}

func TestProbeServer(t *testing.T) {
	host, port := rpcServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := probeServer(ctx, host, port, 4); err != nil {
		t.Errorf("live server: %v", err)
	}
	host, port = rpcServer(t, true)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := probeServer(ctx2, host, port, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("mute server: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if err := probeServer(context.Background(), "127.0.0.1", closed, 4); err == nil {
		t.Error("a closed port answered")
	}
}

func TestProbedNeedsTwoMissesButOneRefusal(t *testing.T) {
	b, _ := newTestBackend(t)
	e := b.entry(mustSpec(t, "nfs://10.0.0.1/e"))
	timeout := fmt.Errorf("no answer: %w", context.DeadlineExceeded)
	if b.probed(e, timeout) || e.down != nil {
		t.Fatal("one unanswered probe reported the server down")
	}
	if !b.probed(e, timeout) || e.down == nil {
		t.Fatal("two unanswered probes did not")
	}
	if !b.probed(e, nil) || e.down != nil {
		t.Fatal("an answer did not bring it back")
	}
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	if !b.probed(e, refused) || e.down == nil {
		t.Fatal("a refusal did not count at once")
	}
}

func TestConnectFailsFastWhenTheServerCannotBeReached(t *testing.T) {
	b, fu := newTestBackend(t)
	b.DialServer = func(context.Context, string, uint16) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}
	}
	_, err := b.Connect(context.Background(), mustSpec(t, "nfs://10.0.0.1/e?vers=4.2"))
	var ce *service.ConnError
	if !errors.As(err, &ce) || ce.Name != ErrServerUnreachable || len(fu.starts) != 0 {
		t.Fatalf("Connect = %v with %d unit starts; want ServerUnreachable and no mount unit", err, len(fu.starts))
	}
	// Silence is no proof: the mount goes ahead.
	b.DialServer = func(context.Context, string, uint16) error { return context.DeadlineExceeded }
	if _, err := b.Connect(context.Background(), mustSpec(t, "nfs://10.0.0.1/e?vers=4.2")); err != nil || len(fu.starts) != 1 {
		t.Fatalf("Connect = %v with %d unit starts; want a mount", err, len(fu.starts))
	}
}

// TestConnectAsksTheServerNothingBeforeMounting: the preflight only opens
// a TCP connection to the server's port (all it decides on is whether the
// host refuses it or has no route); the mount itself is the question to
// nfsd, and a NULL call before it would only add a round trip to it.
func TestConnectAsksTheServerNothingBeforeMounting(t *testing.T) {
	b, fu := newTestBackend(t)
	b.AskServer = func(context.Context, string, uint16, uint32) error {
		t.Error("Connect made an NFS call before mounting")
		return nil
	}
	var reached []string
	b.DialServer = func(_ context.Context, server string, port uint16) error {
		reached = append(reached, service.HostPort(server, port))
		return nil
	}
	if _, err := b.Connect(context.Background(), mustSpec(t, "nfs://10.0.0.1:2050/e?vers=4.2")); err != nil || len(fu.starts) != 1 {
		t.Fatalf("Connect = %v with %d unit starts", err, len(fu.starts))
	}
	if len(reached) != 1 || reached[0] != "10.0.0.1:2050" {
		t.Errorf("reached %v, want 10.0.0.1:2050 once", reached)
	}
}

// TestReachServer: a listening port is reached, a closed one is refused,
// which the preflight counts as unreachable.
func TestReachServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()
	if err := reachServer(ctx, "127.0.0.1", port); err != nil {
		t.Fatalf("reach a listening port: %v", err)
	}
	l.Close()
	if err := reachServer(ctx, "127.0.0.1", port); !definitelyUnreachable(err) {
		t.Fatalf("reach a closed port: %v, want a refusal", err)
	}
}

// TestSpecOfMountPort: the server's port in a mount's super options goes
// into its Target, the default one as no port at all; a port that is not
// one lists nothing.
func TestSpecOfMountPort(t *testing.T) {
	tests := []struct {
		source, superOpts, want string
	}{
		{"10.0.0.1:/x", "rw,vers=3", "nfs://10.0.0.1/x?vers=3"},
		{"10.0.0.1:/x", "rw,port=0", "nfs://10.0.0.1/x"},
		{"10.0.0.1:/x", "rw,port=2049", "nfs://10.0.0.1/x"},
		{"10.0.0.1:/x", "rw,port=2050", "nfs://10.0.0.1:2050/x"},
		{"[fd00::1]:/x", "rw,vers=4.2,port=2050", "nfs://[fd00::1]:2050/x?vers=4.2"},
		{"[fd00::1]:/x", "rw,port=2049", "nfs://[fd00::1]/x"},
		{"10.0.0.1:/x", "rw,port=65536", ""},
		{"10.0.0.1:/x", "rw,port=+5", ""},
		{"10.0.0.1:/x", "rw,port=x", ""},
		{"[fd00::1/x", "rw", ""},
		{"fd00::1:/x", "rw", ""},
	}
	for _, tc := range tests {
		spec, ok := specOfMount(Mount{FSType: "nfs", Source: tc.source, SuperOpts: tc.superOpts})
		if got := spec.URI; ok != (tc.want != "") || got != tc.want {
			t.Errorf("specOfMount(%q, %q) = %q, %v; want %q", tc.source, tc.superOpts, got, ok, tc.want)
		}
	}
}

// A stale mount is replaced: detached, its unit stopped, mounted again at
// the same mount point.
func TestHealReplacesTheMount(t *testing.T) {
	b, fu := newTestBackend(t)
	spec := mustSpec(t, "nfs://10.0.0.1/stale?vers=4.2")
	ctx := context.Background()
	if _, err := b.Connect(ctx, spec); err != nil {
		t.Fatal(err)
	}
	obs, err := b.Heal(ctx, spec, service.NewConnError(service.ErrNameStale, "stale file handle"))
	if err != nil || !obs.Present {
		t.Fatalf("Heal = %+v, %v; want mounted again", obs, err)
	}
	fu.mu.Lock()
	defer fu.mu.Unlock()
	if len(fu.stops) != 1 || len(fu.starts) != 2 || fu.starts[1].Where != fu.starts[0].Where {
		t.Fatalf("stops %v, starts %d; want one stop and a second start at the same mount point", fu.stops, len(fu.starts))
	}
}

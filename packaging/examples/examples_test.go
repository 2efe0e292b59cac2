package examples

// The example clients (python/storkeep_client.py and go/vmstorage), run
// against storkeep's D-Bus API on a private dbus-daemon: the daemon's own
// service and bus layers, in this process, with a fake storage backend
// whose servers answer until the test takes them down, so that the
// clients see a connection come up and go away.

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

// The Python the example's first line names: Debian's, where python3-gi
// installs Gio (an interpreter earlier on the PATH may not have it).
const python = "/usr/bin/python3"

// fakeStorage connects every target at once unless its host is down:
// hosts starting with "down" always are, others once the test says so.
type fakeStorage struct {
	mu        sync.Mutex
	down      map[string]bool
	connected map[service.TargetKey]string // target -> host
	poke      func(service.TargetKey)
}

func (f *fakeStorage) isDown(host string) bool {
	return f.down[host] || strings.HasPrefix(host, "down")
}

func (f *fakeStorage) Observe(_ context.Context, spec service.Spec) (service.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.connected[spec.Target]; !ok {
		return service.Observation{}, nil
	}
	if f.isDown(spec.Host()) {
		return service.Observation{Present: true,
			Err: service.NewConnError("ServerNotResponding", "%s does not answer", spec.Host())}, nil
	}
	return service.Observation{Present: true, Connected: true}, nil
}

func (f *fakeStorage) Connect(_ context.Context, spec service.Spec) (service.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isDown(spec.Host()) {
		return service.Observation{}, service.NewConnError("ServerUnreachable", "%s does not answer", spec.Host())
	}
	f.connected[spec.Target] = spec.Host()
	return service.Observation{Present: true, Connected: true}, nil
}

func (f *fakeStorage) Disconnect(_ context.Context, spec service.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.connected, spec.Target)
	return nil
}

// Watch keeps poke, to tell the service when a host goes down.
func (f *fakeStorage) Watch(ctx context.Context, poke func(service.TargetKey)) {
	f.mu.Lock()
	f.poke = poke
	f.mu.Unlock()
	<-ctx.Done()
}

// takeDown makes host stop answering and pokes its targets.
func (f *fakeStorage) takeDown(host string) {
	f.mu.Lock()
	f.down[host] = true
	poke := f.poke
	var keys []service.TargetKey
	for k, h := range f.connected {
		if h == host {
			keys = append(keys, k)
		}
	}
	f.mu.Unlock()
	for _, k := range keys {
		poke(k)
	}
}

// startDaemon serves the API on a private bus and returns its address.
func startDaemon(t *testing.T, storage *fakeStorage) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon is not installed (make deps installs it)")
	}
	bus := dbustest.Start(t)
	store, _, err := service.OpenStore(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Options{Store: store,
		Backends:  map[service.Kind]service.Backend{service.KindNFS: storage},
		Reconnect: service.ReconnectPolicy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := skdbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := skdbus.NewServer(conn, skdbus.Options{Service: svc, Version: "example-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = svc.Run(ctx) }()
	go func() { defer wg.Done(); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); conn.Close() })

	probe, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var has bool
		if err := probe.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, skdbus.BusName).Store(&has); err == nil && has {
			return bus.Address
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no owner after 30 s", skdbus.BusName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exampleClient runs one example with its arguments.
type exampleClient func(ctx context.Context, args ...string) *exec.Cmd

func goClient(t *testing.T) exampleClient {
	bin := filepath.Join(t.TempDir(), "vmstorage")
	build := exec.Command("go", "build", "-o", bin, "./go/vmstorage")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./go/vmstorage: %v\n%s", err, out)
	}
	return func(ctx context.Context, args ...string) *exec.Cmd { return exec.CommandContext(ctx, bin, args...) }
}

func pythonClient(t *testing.T) exampleClient {
	// .ci/run and make deps install python3-gi when it is missing, so in
	// CI this never skips.
	if out, err := exec.Command(python, "-c", "import gi; gi.require_version('Gio', '2.0')").CombinedOutput(); err != nil {
		t.Skipf("python3-gi is not installed (%s cannot import gi: %v: %s); make deps and .ci/run install it",
			python, err, strings.TrimSpace(string(out)))
	}
	script, err := filepath.Abs("python/storkeep_client.py")
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, python, append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
		return cmd
	}
}

func TestExampleClients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(*testing.T) exampleClient
	}{{"go", goClient}, {"python", pythonClient}} {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client(t)
			storage := &fakeStorage{down: map[string]bool{}, connected: map[service.TargetKey]string{}}
			addr := startDaemon(t, storage)
			runExample(t, client, addr, storage)
		})
	}
}

// runExample drives one client through what a virtualization engine does.
func runExample(t *testing.T, client exampleClient, addr string, storage *fakeStorage) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := client(ctx, append([]string{"--bus", addr}, args...)...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code <= 0 {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String(), errOut.String(), code
	}

	// Manage, Wait, and follow until the storage goes away.
	const cid, host = "vm1-disk", "filer.example"
	cmd := client(ctx, "--bus", addr, "attach", "--timeout", "20s", "--follow", "nfs://"+host+"/vm1", cid)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == cid+": connected" {
			storage.takeDown(host)
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("attach --follow: %v\n%s\n%s", err, strings.Join(lines, "\n"), errOut.String())
	}
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"managed " + cid + " as " + string(skdbus.ConnectionPath(cid)),
		cid + ": connected",
		cid + ": changed: Connected=false State=",
		cid + ": lost; a VM engine would pause the VM now",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("attach --follow: no %q in its output:\n%s", want, out)
		}
	}
	t.Logf("attach --follow:\n%s", out)

	// The error names, mapped.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "--timeout", "1s", "nfs://down.example/vm2", "vm2-disk"},
			`error: Timeout: CID "vm2-disk" is not connected`},
		{[]string{"attach", "nfs:/relative", "vm3-disk"}, "error: InvalidURI: "},
		{[]string{"attach", "nfs://filer.example/other", cid}, "error: CIDInUse: "},
		{[]string{"detach", "nobody"}, "error: UnknownCID: "},
	} {
		_, errOut, code := run(tc.args...)
		if code != 1 || !strings.HasPrefix(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q...", tc.args, code, errOut, tc.want)
		}
	}
	if out, errOut, code := run("detach", cid); code != 0 || out != "unmanaged "+cid+"\n" {
		t.Errorf("detach: exit %d\n%s%s", code, out, errOut)
	}
}

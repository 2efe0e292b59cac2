// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// waitFor bounds every poll in these tests. It is a deadline against hangs,
// never a statement about speed: nothing here measures how fast anything is.
const waitFor = 30 * time.Second

// ---------------------------------------------------------------------------
// Fake backend: a host with storage connections, seen through Backend.

type fakeOp string

const (
	opObserve    fakeOp = "Observe"
	opConnect    fakeOp = "Connect"
	opDisconnect fakeOp = "Disconnect"
)

// fakeBackend counts calls per target and can be told to fail a call with a
// given error, to have a connection already present, to block calls until
// released, and to lose a connection. It serves every Kind.
type fakeBackend struct {
	mu       sync.Mutex // guards all following fields
	targets  map[TargetKey]*fakeTarget
	inflight int              // backend calls under way
	host     []HostConnection // what ListHost returns
}

type fakeTarget struct {
	present   bool
	connected bool
	lost      *ConnError // reported by Observe after lose
	settling  bool       // Observe reports it settling (see settle)
	fail      map[fakeOp]error
	gates     map[fakeOp]*fakeGate
	calls     []fakeOp
	connSpec  Spec // the spec of the last Connect
}

// fakeGate holds every call of one operation on one target until released.
type fakeGate struct {
	once     sync.Once
	entered  chan struct{} // closed when the first call arrives
	released chan struct{}
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{targets: make(map[TargetKey]*fakeTarget)}
}

func (b *fakeBackend) targetLocked(k TargetKey) *fakeTarget {
	ft := b.targets[k]
	if ft == nil {
		ft = &fakeTarget{fail: make(map[fakeOp]error), gates: make(map[fakeOp]*fakeGate)}
		b.targets[k] = ft
	}
	return ft
}

// enter counts a call and waits at the operation's gate, if there is one.
// The caller must call b.exit when the call returns.
func (b *fakeBackend) enter(ctx context.Context, k TargetKey, op fakeOp) error {
	b.mu.Lock()
	ft := b.targetLocked(k)
	ft.calls = append(ft.calls, op)
	b.inflight++
	g := ft.gates[op]
	b.mu.Unlock()
	if g == nil {
		return nil
	}
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *fakeBackend) exit() {
	b.mu.Lock()
	b.inflight--
	b.mu.Unlock()
}

func fakeInfo(k TargetKey) map[string]any {
	return map[string]any{"device": "/dev/fake-" + string(k)}
}

func (b *fakeBackend) Observe(ctx context.Context, spec Spec) (Observation, error) {
	defer b.exit()
	if err := b.enter(ctx, spec.Target, opObserve); err != nil {
		return Observation{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targets[spec.Target]
	if err := ft.fail[opObserve]; err != nil {
		return Observation{}, err
	}
	obs := Observation{Present: ft.present, Connected: ft.connected, Err: ft.lost}
	if ft.present {
		obs.Info = fakeInfo(spec.Target)
		obs.Instance = "fake"
	}
	if ft.settling {
		obs.Connected, obs.Settling = false, true
	}
	return obs, nil
}

func (b *fakeBackend) Connect(ctx context.Context, spec Spec) (Observation, error) {
	defer b.exit()
	if err := b.enter(ctx, spec.Target, opConnect); err != nil {
		return Observation{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targets[spec.Target]
	ft.connSpec = spec
	if err := ft.fail[opConnect]; err != nil {
		return Observation{}, err
	}
	ft.present, ft.connected, ft.lost = true, true, nil
	return Observation{Present: true, Connected: true, Info: fakeInfo(spec.Target), Instance: "fake"}, nil
}

func (b *fakeBackend) Disconnect(ctx context.Context, spec Spec) error {
	defer b.exit()
	if err := b.enter(ctx, spec.Target, opDisconnect); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targets[spec.Target]
	if err := ft.fail[opDisconnect]; err != nil {
		return err
	}
	ft.present, ft.connected, ft.lost = false, false, nil
	return nil
}

func (b *fakeBackend) ListHost(ctx context.Context) ([]HostConnection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.host), nil
}

// setHost says what the host has for k, as if someone else had made it.
func (b *fakeBackend) setHost(k TargetKey, present, connected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targetLocked(k)
	ft.present, ft.connected = present, connected
}

// hostHas reports what the host has for k.
func (b *fakeBackend) hostHas(k TargetKey) (present, connected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targetLocked(k)
	return ft.present, ft.connected
}

// fail makes every later op on k return err; nil makes it succeed again.
func (b *fakeBackend) fail(k TargetKey, op fakeOp, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.targetLocked(k).fail[op] = err
}

// block holds every later op on k at a gate until release is called.
func (b *fakeBackend) block(k TargetKey, op fakeOp) *fakeGate {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := &fakeGate{entered: make(chan struct{}), released: make(chan struct{})}
	b.targetLocked(k).gates[op] = g
	return g
}

// release removes op's gate on k and lets the calls held there go on.
func (b *fakeBackend) release(k TargetKey, op fakeOp) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targetLocked(k)
	if g := ft.gates[op]; g != nil {
		close(g.released)
		delete(ft.gates, op)
	}
}

// lose makes the connection to k go away; Observe reports err (may be nil).
func (b *fakeBackend) lose(k TargetKey, err *ConnError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ft := b.targetLocked(k)
	ft.present, ft.connected, ft.lost = false, false, err
}

func (b *fakeBackend) count(k TargetKey, op fakeOp) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.targetLocked(k).calls {
		if c == op {
			n++
		}
	}
	return n
}

func (b *fakeBackend) ops(k TargetKey) []fakeOp {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.targetLocked(k).calls)
}

func (b *fakeBackend) connectSpec(k TargetKey) Spec {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.targetLocked(k).connSpec
}

func (b *fakeBackend) busy() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight
}

// resetCalls forgets the call counts, as a restarted daemon would see them.
func (b *fakeBackend) resetCalls() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ft := range b.targets {
		ft.calls = nil
	}
}

func (g *fakeGate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("timed out waiting for a backend call to reach its gate")
	}
}

// ---------------------------------------------------------------------------
// Test service: one helper builds every service under test.

type testService struct {
	t    *testing.T
	dir  string
	be   *fakeBackend
	opts Options
	svc  *Service

	autostart bool
	cancel    context.CancelFunc
	done      chan error
}

type testConfig func(*testService)

// withMaxCIDs sets Options.MaxCIDs.
func withMaxCIDs(n int) testConfig { return func(ts *testService) { ts.opts.MaxCIDs = n } }

// withBackoff sets the reconnect policy's first and largest delay.
func withBackoff(initial, max time.Duration) testConfig {
	return func(ts *testService) { ts.opts.Reconnect = ReconnectPolicy{Initial: initial, Max: max} }
}

// withOnlyBackends gives the fake backend for kinds only.
func withOnlyBackends(kinds ...Kind) testConfig {
	return func(ts *testService) {
		ts.opts.Backends = make(map[Kind]Backend)
		for _, k := range kinds {
			ts.opts.Backends[k] = ts.be
		}
	}
}

// withClock gives the service a clock the test moves.
func withClock(c Clock) testConfig { return func(ts *testService) { ts.opts.Clock = c } }

// notRunning leaves Run to the test (ts.start).
func notRunning() testConfig { return func(ts *testService) { ts.autostart = false } }

// newTestService returns a service over a fresh state directory with a
// fake backend for every kind and a reconnect policy of a few milliseconds.
// It is running unless notRunning is given. Cleanup stops it and checks
// that Run returned only after every runner and backend call had ended.
func newTestService(t *testing.T, cfg ...testConfig) *testService {
	t.Helper()
	ts := &testService{t: t, dir: t.TempDir(), be: newFakeBackend(), autostart: true}
	ts.opts = Options{
		Backends:  map[Kind]Backend{KindNFS: ts.be, KindISCSI: ts.be},
		Reconnect: ReconnectPolicy{Initial: 2 * time.Millisecond, Max: 20 * time.Millisecond},
	}
	for _, c := range cfg {
		c(ts)
	}
	ts.open()
	if ts.autostart {
		ts.start()
	}
	t.Cleanup(ts.stop)
	return ts
}

// open makes a new Service over the state directory.
func (ts *testService) open() {
	ts.t.Helper()
	st, _, err := OpenStore(ts.dir)
	if err != nil {
		ts.t.Fatalf("OpenStore: %v", err)
	}
	ts.opts.Store = st
	ts.svc, err = New(ts.opts)
	if err != nil {
		ts.t.Fatalf("New: %v", err)
	}
}

// start runs the service until stop.
func (ts *testService) start() {
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel, ts.done = cancel, make(chan error, 1)
	svc := ts.svc
	go func() { ts.done <- svc.Run(ctx) }()
}

// stop cancels Run's context, as a daemon shutting down does, and waits
// for Run to return. Run must not return before its runners have stopped:
// no backend call may still be under way and no target may have a runner.
func (ts *testService) stop() {
	ts.t.Helper()
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	select {
	case err := <-ts.done:
		if err != nil {
			ts.t.Errorf("Run returned %v; want nil on shutdown", err)
		}
	case <-time.After(waitFor):
		ts.t.Fatal("Run did not return after its context was cancelled")
	}
	if n := ts.be.busy(); n != 0 {
		ts.t.Errorf("Run returned with %d backend calls still under way", n)
	}
	ts.svc.mu.Lock()
	for k, t := range ts.svc.targets {
		if t.queue.running {
			ts.t.Errorf("Run returned while the runner of %s still runs", k)
		}
	}
	ts.svc.mu.Unlock()
}

// restart stops the daemon and starts a new one over the same state
// directory and the same host. The call counts start from zero.
func (ts *testService) restart() {
	ts.t.Helper()
	ts.stop()
	ts.be.resetCalls()
	ts.open()
	ts.start()
}

// manage manages c for uri and fails the test unless it was created.
func (ts *testService) manage(c CID, spec Spec) {
	ts.t.Helper()
	created, err := ts.svc.Manage(c, spec)
	if err != nil || !created {
		ts.t.Fatalf("Manage(%q, %s) = %v, %v; want true, nil", c, spec.URI, created, err)
	}
}

// waitConnected waits until Wait reports c connected.
func (ts *testService) waitConnected(c CID) {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ts.svc.Wait(ctx, c); err != nil {
		ts.t.Fatalf("Wait(%q) = %v; want nil", c, err)
	}
}

// status returns the status of a managed CID.
func (ts *testService) status(c CID) Status {
	ts.t.Helper()
	st, ok := ts.svc.Status(c)
	if !ok {
		ts.t.Fatalf("Status(%q): not managed", c)
	}
	return st
}

// list returns every entry List shows (without host connections).
func (ts *testService) list() []Status {
	return ts.svc.List(context.Background(), "", false)
}

// waitIdle waits until no runner works on k and none is due to start: the
// service has done all it will do about k until something changes.
func (ts *testService) waitIdle(k TargetKey) {
	ts.t.Helper()
	eventually(ts.t, fmt.Sprintf("the runner of %s is idle", k), func() bool {
		ts.svc.mu.RLock()
		defer ts.svc.mu.RUnlock()
		t := ts.svc.targets[k]
		return t == nil || (!t.queue.running && !t.queue.dirty)
	})
}

// waitForgotten waits until the service has forgotten every target: List
// is empty and no target record is left on disk (the record goes after the
// target leaves memory).
func (ts *testService) waitForgotten() {
	ts.t.Helper()
	eventually(ts.t, "every target is forgotten", func() bool {
		return len(ts.list()) == 0 && len(ts.files("targets")) == 0
	})
}

// files lists the names in a subdirectory of the state directory.
func (ts *testService) files(sub string) []string {
	ts.t.Helper()
	ents, err := os.ReadDir(filepath.Join(ts.dir, sub))
	if err != nil {
		ts.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// eventually polls cond until it holds; it fails the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func specFor(t *testing.T, raw string) Spec {
	t.Helper()
	s, err := ParseURI(raw)
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", raw, err)
	}
	return s
}

// specCHAP returns a copy of an iSCSI spec with credentials c.
func specCHAP(s Spec, c CHAP) Spec {
	i := *s.ISCSI
	i.CHAP = c
	s.ISCSI = &i
	return s
}

const (
	testIQN = "iqn.2004-04.org.example:store1"
	nfsA    = "nfs://files.example/exports/a"
	iscsiA  = "iscsi://san.example/" + testIQN
)

// ---------------------------------------------------------------------------
// Manage.

func TestManagePersists(t *testing.T) {
	chap := CHAP{Username: "init", Password: "s3cret-out", UsernameIn: "tgt", PasswordIn: "s3cret-in"}
	tests := []struct {
		name string
		spec func(t *testing.T) Spec
	}{
		{"nfs", func(t *testing.T) Spec { return specFor(t, nfsA) }},
		{"nfs with settings", func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=4.1&timeo=50&soft&rsize=65536") }},
		{"iscsi without chap", func(t *testing.T) Spec { return specFor(t, iscsiA+"/3") }},
		{"iscsi with mutual chap", func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA), chap) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t, notRunning())
			spec := tc.spec(t)

			// Act
			created, err := ts.svc.Manage("c1", spec)

			// Assert
			if err != nil || !created {
				t.Fatalf("Manage = %v, %v; want true, nil", created, err)
			}
			if st := ts.status("c1"); st.URI != spec.URI || st.Target != spec.Target || !st.Managed {
				t.Fatalf("Status = %+v; want managed %s", st, spec.URI)
			}
			ts.restart()
			if got := ts.svc.CIDs(); !slices.Equal(got, []CID{"c1"}) {
				t.Fatalf("after a restart CIDs() = %q; want [c1]", got)
			}
			// Equal specs, credentials included, make Manage a no-op.
			if created, err := ts.svc.Manage("c1", spec); err != nil || created {
				t.Fatalf("after a restart Manage(same spec) = %v, %v; want false, nil (the spec read back must be Equal)", created, err)
			}
			if spec.ISCSI != nil && !spec.ISCSI.CHAP.Empty() {
				other := specCHAP(spec, CHAP{Username: chap.Username, Password: "other"})
				if _, err := ts.svc.Manage("c1", other); !errors.Is(err, ErrCIDInUse) {
					t.Fatalf("after a restart Manage(other password) = %v; want ErrCIDInUse", err)
				}
				ts.waitConnected("c1")
				if got := ts.be.connectSpec(spec.Target); got.ISCSI == nil || got.ISCSI.CHAP != chap {
					t.Fatalf("after a restart Connect got CHAP %v; want the stored credentials", got.ISCSI)
				}
			}
		})
	}
}

func TestManageSameSpecIsNoOp(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	ts.waitIdle(spec.Target)
	path := ts.opts.Store.cidPath("c1")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sub := ts.svc.Subscribe()
	defer sub.Close()

	// Act
	created, err := ts.svc.Manage("c1", specFor(t, "NFS://Files.Example//exports/a/"))

	// Assert
	if err != nil || created {
		t.Fatalf("Manage(same CID, Equal spec) = %v, %v; want false, nil", created, err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("a no-op Manage rewrote the CID file")
	}
	ts.waitIdle(spec.Target)
	if ev := sub.Take(); len(ev) != 0 {
		t.Errorf("a no-op Manage sent events %v; want none", ev)
	}
	if n := ts.be.count(spec.Target, opConnect); n != 1 {
		t.Errorf("Connect was called %d times; want 1", n)
	}
}

func TestManageSameCIDOtherSpec(t *testing.T) {
	chap := CHAP{Username: "u", Password: "p1"}
	tests := []struct {
		name        string
		first, then func(t *testing.T) Spec
	}{
		{"other export",
			func(t *testing.T) Spec { return specFor(t, nfsA) },
			func(t *testing.T) Spec { return specFor(t, "nfs://files.example/exports/b") }},
		{"other nfs options",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?soft") },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?hard") }},
		{"other kind",
			func(t *testing.T) Spec { return specFor(t, nfsA) },
			func(t *testing.T) Spec { return specFor(t, iscsiA) }},
		{"other lun",
			func(t *testing.T) Spec { return specFor(t, iscsiA+"/1") },
			func(t *testing.T) Spec { return specFor(t, iscsiA+"/2") }},
		{"other chap password",
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA), chap) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA), CHAP{Username: "u", Password: "p2"}) }},
		{"chap added",
			func(t *testing.T) Spec { return specFor(t, iscsiA) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA), chap) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t, notRunning())
			first := tc.first(t)
			ts.manage("c1", first)

			// Act
			created, err := ts.svc.Manage("c1", tc.then(t))

			// Assert
			if created || !errors.Is(err, ErrCIDInUse) {
				t.Fatalf("Manage = %v, %v; want false, ErrCIDInUse", created, err)
			}
			for _, secret := range []string{"p1", "p2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a CHAP password", err)
				}
			}
			if st := ts.status("c1"); st.URI != first.URI {
				t.Errorf("Status.URI = %s; want the first spec's %s kept", st.URI, first.URI)
			}
			ts.restart()
			if created, err := ts.svc.Manage("c1", first); err != nil || created {
				t.Errorf("after a restart Manage(first spec) = %v, %v; want the first spec kept on disk", created, err)
			}
		})
	}
}

func TestManageConflict(t *testing.T) {
	chap1 := CHAP{Username: "u", Password: "secret-one"}
	chap2 := CHAP{Username: "u", Password: "secret-two"}
	tests := []struct {
		name     string
		existing func(t *testing.T) Spec // managed by "b" and "a"
		other    func(t *testing.T) Spec // then asked for by "c"
		reason   string
	}{
		{"nfs other vers",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=4.1") },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=3") },
			"NFS version or mount options"},
		{"nfs vers against auto",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=4.2") },
			func(t *testing.T) Spec { return specFor(t, nfsA) },
			"NFS version or mount options"},
		{"nfs other options",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?soft") },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?hard") },
			"NFS version or mount options"},
		{"nfs options added",
			func(t *testing.T) Spec { return specFor(t, nfsA) },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?ro") },
			"NFS version or mount options"},
		{"nfs other timeo",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?timeo=10") },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?timeo=20") },
			"NFS version or mount options"},
		{"iscsi other chap",
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/1"), chap1) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/1"), chap2) },
			"CHAP"},
		{"iscsi other chap on another lun",
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/1"), chap1) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/2"), chap2) },
			"CHAP"},
		{"iscsi chap against none",
			func(t *testing.T) Spec { return specFor(t, iscsiA) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA), chap1) },
			"CHAP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			existing := tc.existing(t)
			ts.manage("b", existing)
			ts.manage("a", existing)
			other := tc.other(t)
			if other.Target != existing.Target {
				t.Fatalf("test bug: targets differ: %s, %s", other.Target, existing.Target)
			}

			// Act
			created, err := ts.svc.Manage("c", other)

			// Assert
			var ce *ConflictError
			if created || !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
				t.Fatalf("Manage = %v, %v; want false, a *ConflictError that is ErrConflict", created, err)
			}
			if ce.Target != existing.Target || !slices.Equal(ce.CIDs, []CID{"a", "b"}) {
				t.Errorf("ConflictError = {Target: %s, CIDs: %q}; want {%s, [a b]}", ce.Target, ce.CIDs, existing.Target)
			}
			if !strings.Contains(ce.Reason, tc.reason) || !strings.Contains(err.Error(), `"a", "b"`) {
				t.Errorf("error %q; want it to name the CIDs and say %q", err, tc.reason)
			}
			for _, secret := range []string{chap1.Password, chap2.Password} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a CHAP password", err)
				}
			}
			if _, ok := ts.svc.Status("c"); ok {
				t.Error("the conflicting CID is managed")
			}
			if _, err := os.Stat(ts.opts.Store.cidPath("c")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the conflicting CID was written to disk (stat: %v)", err)
			}
		})
	}
}

func TestManageCompatibleSharesTarget(t *testing.T) {
	chap := CHAP{Username: "u", Password: "p"}
	tests := []struct {
		name string
		a, b func(t *testing.T) Spec
	}{
		{"nfs same uri",
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=4.1") },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=4.1") }},
		{"nfs auto spelled out",
			func(t *testing.T) Spec { return specFor(t, nfsA) },
			func(t *testing.T) Spec { return specFor(t, nfsA+"?vers=auto") }},
		{"iscsi other luns same chap",
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/1"), chap) },
			func(t *testing.T) Spec { return specCHAP(specFor(t, iscsiA+"/2"), chap) }},
		{"iscsi one lun and all luns",
			func(t *testing.T) Spec { return specFor(t, iscsiA+"/1") },
			func(t *testing.T) Spec { return specFor(t, iscsiA) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			a, b := tc.a(t), tc.b(t)
			ts.manage("a", a)
			ts.waitConnected("a")

			// Act
			created, err := ts.svc.Manage("b", b)

			// Assert
			if err != nil || !created {
				t.Fatalf("Manage(b) = %v, %v; want true, nil", created, err)
			}
			ts.waitConnected("b")
			ts.waitIdle(a.Target)
			if n := ts.be.count(a.Target, opConnect); n != 1 {
				t.Errorf("Connect was called %d times for two compatible CIDs; want 1", n)
			}
			list := ts.list()
			if len(list) != 2 || list[0].Target != list[1].Target {
				t.Errorf("List = %+v; want two managed entries on one target", list)
			}
		})
	}
}

// A CID that joins or leaves a target other CIDs keep changes nothing
// about them: no event for them, and no pass over the target (its look
// and its attempts are the same for one CID more or less). Each Manage
// costs the same however many CIDs share the target.
func TestJoiningASharedTargetTouchesNoOtherCID(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	for _, c := range []CID{"a1", "a2", "a3"} {
		ts.manage(c, spec)
	}
	ts.waitConnected("a1")
	ts.waitIdle(spec.Target)
	observed := ts.be.count(spec.Target, opObserve)
	sub := ts.svc.Subscribe()
	defer sub.Close()

	// Act
	ts.manage("b", spec)
	ts.waitIdle(spec.Target)
	afterManage := sub.Take()
	if err := ts.svc.Unmanage("b"); err != nil {
		t.Fatal(err)
	}
	ts.waitIdle(spec.Target)
	afterUnmanage := sub.Take()

	// Assert
	if !slices.Equal(afterManage, []Event{{Type: EventAdded, CID: "b"}}) {
		t.Errorf("events after Manage(b) = %v; want only Added b", afterManage)
	}
	if !slices.Equal(afterUnmanage, []Event{{Type: EventRemoved, CID: "b"}}) {
		t.Errorf("events after Unmanage(b) = %v; want only Removed b", afterUnmanage)
	}
	if n := ts.be.count(spec.Target, opObserve); n != observed {
		t.Errorf("Observe ran %d more times; want none (the target's CIDs still want it)", n-observed)
	}
	if !ts.status("a1").Connected {
		t.Errorf("a1 = %+v; want still connected", ts.status("a1"))
	}
}

func TestManageInvalidCID(t *testing.T) {
	tests := []struct {
		name string
		cid  CID
	}{
		{"empty", ""},
		{"slash", "a/b"},
		{"nul", "a\x00b"},
		{"too long", CID(strings.Repeat("x", 256))},
		{"invalid utf-8", "a\xffb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t, notRunning())

			created, err := ts.svc.Manage(tc.cid, specFor(t, nfsA))

			var ce *CIDError
			if created || !errors.As(err, &ce) {
				t.Fatalf("Manage(%q) = %v, %v; want false, a *CIDError", tc.cid, created, err)
			}
			if n := len(ts.files("cids")); n != 0 || len(ts.svc.CIDs()) != 0 {
				t.Errorf("an invalid CID was recorded (%d files)", n)
			}
		})
	}
}

func TestManageLimit(t *testing.T) {
	// Arrange
	ts := newTestService(t, withMaxCIDs(2), notRunning())
	spec := specFor(t, nfsA)
	ts.manage("a", spec)
	ts.manage("b", spec)

	// Act
	created, err := ts.svc.Manage("c", spec)

	// Assert
	if created || !errors.Is(err, ErrLimit) {
		t.Fatalf("Manage beyond MaxCIDs = %v, %v; want false, ErrLimit", created, err)
	}
	if created, err := ts.svc.Manage("a", spec); err != nil || created {
		t.Errorf("at the limit, Manage(existing, same spec) = %v, %v; want the no-op false, nil", created, err)
	}
	if err := ts.svc.Unmanage("a"); err != nil {
		t.Fatal(err)
	}
	if created, err := ts.svc.Manage("c", spec); err != nil || !created {
		t.Errorf("below the limit again, Manage = %v, %v; want true, nil", created, err)
	}
}

// ---------------------------------------------------------------------------
// Connecting.

func TestConnect(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA+"?vers=4.2")

	// Act
	ts.manage("c1", spec)

	// Assert
	ts.waitConnected("c1")
	st := ts.status("c1")
	if !st.Connected || st.State != StateConnected || st.ConnectedSince.IsZero() ||
		st.Attempts != 0 || st.LastError != "" || !st.NextAttempt.IsZero() || st.Preexisting {
		t.Errorf("Status = %+v; want connected, not preexisting, no error", st)
	}
	if st.Info["device"] != fakeInfo(spec.Target)["device"] || st.Info["server"] != "files.example" || st.Info["version"] != "4.2" {
		t.Errorf("Status.Info = %v; want the backend's and the spec's info", st.Info)
	}
	if ops := ts.be.ops(spec.Target); len(ops) != 2 || ops[0] != opObserve || ops[1] != opConnect {
		t.Errorf("backend calls = %v; want [Observe Connect]", ops)
	}
	if recs := ts.files("targets"); len(recs) != 1 {
		t.Errorf("target records = %v; want one, written before connecting", recs)
	}
}

func TestConnectRetriesUntilBackendSucceeds(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantName string
		wantMsg  string
	}{
		{"named error", NewConnError("AuthFailed", "login refused by %s", "san"), "AuthFailed", "login refused by san"},
		{"wrapped named error", fmt.Errorf("iscsiadm: %w", NewConnError("Unreachable", "no route")), "Unreachable", "no route"},
		{"plain error", errors.New("exit status 32"), ErrNameFailed, "exit status 32"},
		{"deadline", fmt.Errorf("mount: %w", context.DeadlineExceeded), ErrNameTimeout, "mount: context deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			spec := specFor(t, iscsiA)
			ts.be.fail(spec.Target, opConnect, tc.err)

			// Act
			ts.manage("c1", spec)

			// Assert: it keeps retrying, with the error and the next attempt shown.
			var last Status
			eventually(t, "5 failed attempts are reported", func() bool {
				last = ts.status("c1")
				return last.State == StateRetrying && last.Attempts >= 5
			})
			if last.Connected || last.LastError != tc.wantName || last.LastErrorMessage != tc.wantMsg ||
				last.LastErrorTime.IsZero() || last.NextAttempt.Before(last.LastErrorTime) {
				t.Errorf("Status = %+v; want retrying with LastError %s %q and NextAttempt after LastErrorTime",
					last, tc.wantName, tc.wantMsg)
			}
			ts.be.fail(spec.Target, opConnect, nil)
			ts.waitConnected("c1")
			if st := ts.status("c1"); st.Attempts != 0 || st.LastError != "" || st.LastErrorMessage != "" || !st.NextAttempt.IsZero() {
				t.Errorf("after success Status = %+v; want the error and attempts cleared", st)
			}
		})
	}
}

func TestObserveFailureBeforeFirstLookIsRetried(t *testing.T) {
	// Arrange: the host can't be read, so the origin can't be decided.
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.be.fail(spec.Target, opObserve, NewConnError("HostUnreadable", "mountinfo"))

	// Act
	ts.manage("c1", spec)

	// Assert: nothing is connected blind; it retries the look.
	eventually(t, "several observations failed", func() bool { return ts.be.count(spec.Target, opObserve) >= 3 })
	if st := ts.status("c1"); st.LastError != "HostUnreadable" || st.State != StateRetrying {
		t.Errorf("Status = %+v; want retrying with LastError HostUnreadable", st)
	}
	if n := ts.be.count(spec.Target, opConnect); n != 0 {
		t.Errorf("Connect was called %d times before the host was read", n)
	}
	ts.be.fail(spec.Target, opObserve, nil)
	ts.waitConnected("c1")
}

func TestReconnectForcesAnAttempt(t *testing.T) {
	// Arrange: the next attempt is an hour away.
	ts := newTestService(t, withBackoff(time.Hour, time.Hour))
	spec := failedAnHourAgo(t, ts, "c1")

	// Act
	err := ts.svc.Reconnect("c1")

	// Assert
	if err != nil {
		t.Fatalf("Reconnect = %v", err)
	}
	ts.waitConnected("c1")
	if n := ts.be.count(spec.Target, opConnect); n != 2 {
		t.Errorf("Connect was called %d times; want 2", n)
	}
	if err := ts.svc.Reconnect("nope"); !errors.Is(err, ErrUnknownCID) {
		t.Errorf("Reconnect(unknown) = %v; want ErrUnknownCID", err)
	}
}

func TestLostConnectionIsReconnected(t *testing.T) {
	tests := []struct {
		name     string
		lost     *ConnError
		wantName string
	}{
		{"backend says why", NewConnError("SessionFailed", "session 3 in recovery"), "SessionFailed"},
		{"backend says nothing", nil, ErrNameLost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			spec := specFor(t, iscsiA)
			ts.manage("c1", spec)
			ts.waitConnected("c1")
			ts.be.block(spec.Target, opConnect)

			// Act
			ts.be.lose(spec.Target, tc.lost)
			ts.svc.Poke(spec.Target)

			// Assert
			var st Status
			eventually(t, "the loss is reported", func() bool {
				st = ts.status("c1")
				return !st.Connected && st.LastError == tc.wantName
			})
			if !st.ConnectedSince.IsZero() {
				t.Errorf("Status = %+v; want ConnectedSince cleared", st)
			}
			ts.be.release(spec.Target, opConnect)
			ts.waitConnected("c1")
			if n := ts.be.count(spec.Target, opConnect); n != 2 {
				t.Errorf("Connect was called %d times; want 2", n)
			}
		})
	}
}

func TestPokeUnknownTargetIsIgnored(t *testing.T) {
	ts := newTestService(t)

	ts.svc.Poke("nfs://nowhere/x")
	ts.svc.PokeAll()

	if n := len(ts.list()); n != 0 {
		t.Errorf("List has %d entries; want none", n)
	}
}

func TestNoBackend(t *testing.T) {
	// Arrange
	ts := newTestService(t, withOnlyBackends(KindNFS))
	spec := specFor(t, iscsiA)

	// Act
	ts.manage("c1", spec)

	// Assert
	eventually(t, "NoBackend is reported", func() bool { return ts.status("c1").LastError == ErrNameNoBackend })
	if st := ts.status("c1"); st.State != StateRetrying || st.Connected {
		t.Errorf("Status = %+v; want retrying", st)
	}
	if err := ts.svc.Unmanage("c1"); err != nil {
		t.Fatal(err)
	}
	ts.waitForgotten()
}

// ---------------------------------------------------------------------------
// Wait.

func TestWait(t *testing.T) {
	t.Run("unknown CID", func(t *testing.T) {
		ts := newTestService(t)

		err := ts.svc.Wait(context.Background(), "nope")

		if !errors.Is(err, ErrUnknownCID) {
			t.Errorf("Wait = %v; want ErrUnknownCID", err)
		}
	})
	t.Run("context done first carries the last error", func(t *testing.T) {
		ts := newTestService(t)
		spec := specFor(t, nfsA)
		ts.be.fail(spec.Target, opConnect, NewConnError("AccessDenied", "export refused"))
		ts.manage("c1", spec)
		eventually(t, "an attempt failed", func() bool { return ts.status("c1").LastError != "" })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		err := ts.svc.Wait(ctx, "c1")

		var we *WaitTimeoutError
		if !errors.Is(err, ErrTimeout) || !errors.As(err, &we) {
			t.Fatalf("Wait = %v; want a *WaitTimeoutError that is ErrTimeout", err)
		}
		if we.CID != "c1" || we.Last == nil || we.Last.Name != "AccessDenied" || !strings.Contains(err.Error(), "export refused") {
			t.Errorf("WaitTimeoutError = %+v (%q); want CID c1 and the last error AccessDenied", we, err)
		}
	})
	t.Run("unmanaged while waiting", func(t *testing.T) {
		// synctest.Wait tells when Wait is blocked, so the unmanage
		// really happens while it waits.
		synctest.Test(t, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			spec := specFor(t, nfsA)
			ts.be.block(spec.Target, opConnect)
			ts.manage("c1", spec)
			errc := make(chan error, 1)
			go func() { errc <- ts.svc.Wait(context.Background(), "c1") }()
			synctest.Wait()
			select {
			case err := <-errc:
				t.Fatalf("Wait returned %v before the CID was unmanaged", err)
			default:
			}

			// Act
			if err := ts.svc.Unmanage("c1"); err != nil {
				t.Fatal(err)
			}

			// Assert
			if err := <-errc; !errors.Is(err, ErrUnknownCID) {
				t.Errorf("Wait = %v; want ErrUnknownCID", err)
			}
		})
	})
}

// ---------------------------------------------------------------------------
// Unmanage.

func TestUnmanageUnknown(t *testing.T) {
	ts := newTestService(t)

	err := ts.svc.Unmanage("nope")

	if !errors.Is(err, ErrUnknownCID) {
		t.Errorf("Unmanage(unknown) = %v; want ErrUnknownCID", err)
	}
}

func TestUnmanageDisconnectsWithTheLastCID(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("a", spec)
	ts.manage("b", spec)
	ts.waitConnected("a")
	ts.waitConnected("b")

	// Act 1: one of two.
	if err := ts.svc.Unmanage("a"); err != nil {
		t.Fatal(err)
	}

	// Assert 1
	ts.waitIdle(spec.Target)
	if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
		t.Fatalf("Disconnect was called %d times while b still refers to the target", n)
	}
	if st := ts.status("b"); !st.Connected {
		t.Fatalf("Status(b) = %+v; want connected", st)
	}
	if _, ok := ts.svc.Status("a"); ok {
		t.Fatal("a is still managed")
	}
	if n := len(ts.files("cids")); n != 1 {
		t.Fatalf("%d CID files; want 1", n)
	}

	// Act 2: the last one.
	if err := ts.svc.Unmanage("b"); err != nil {
		t.Fatal(err)
	}

	// Assert 2
	ts.waitForgotten()
	if n := ts.be.count(spec.Target, opDisconnect); n != 1 {
		t.Errorf("Disconnect was called %d times; want 1", n)
	}
	if present, _ := ts.be.hostHas(spec.Target); present {
		t.Error("the connection is still on the host")
	}
	if f := ts.files("targets"); len(f) != 0 {
		t.Errorf("target records left: %v", f)
	}
	if f := ts.files("cids"); len(f) != 0 {
		t.Errorf("CID files left: %v", f)
	}
}

func TestUnmanageRetriesFailingDisconnect(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	ts.be.fail(spec.Target, opDisconnect, NewConnError("Busy", "target is busy"))

	// Act
	if err := ts.svc.Unmanage("c1"); err != nil {
		t.Fatal(err)
	}

	// Assert: retried, and shown as an unmanaged entry meanwhile.
	eventually(t, "3 disconnect attempts", func() bool { return ts.be.count(spec.Target, opDisconnect) >= 3 })
	var entry Status
	eventually(t, "the failure shows in List", func() bool {
		l := ts.list()
		if len(l) != 1 {
			return false
		}
		entry = l[0]
		return entry.LastError == "Busy"
	})
	if !strings.Contains(entry.ID, "/") || entry.Managed || entry.Target != spec.Target ||
		entry.State != StateDisconnecting || entry.LastErrorMessage != "target is busy" || entry.URI != spec.URI {
		t.Errorf("List entry = %+v; want an unmanaged, disconnecting entry for %s", entry, spec.Target)
	}
	if _, ok := ts.svc.Status(CID(entry.ID)); ok {
		t.Errorf("Status(%q) finds the unmanaged entry; want it unknown as a CID", entry.ID)
	}
	if f := ts.files("targets"); len(f) != 1 {
		t.Errorf("target records = %v; want the record kept until the disconnect succeeds", f)
	}
	ts.be.fail(spec.Target, opDisconnect, nil)
	ts.waitForgotten()
	if present, _ := ts.be.hostHas(spec.Target); present {
		t.Error("the connection is still on the host")
	}
	if f := ts.files("targets"); len(f) != 0 {
		t.Errorf("target records left: %v", f)
	}
}

func TestManageCancelsPendingDisconnect(t *testing.T) {
	tests := []struct {
		name    string
		backoff time.Duration
	}{
		{"backing off", time.Hour},
		{"retrying fast", 2 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange: a disconnect that keeps failing.
			ts := newTestService(t, withBackoff(tc.backoff, tc.backoff))
			spec := specFor(t, nfsA)
			ts.manage("a", spec)
			ts.waitConnected("a")
			ts.be.fail(spec.Target, opDisconnect, NewConnError("Busy", "target is busy"))
			if err := ts.svc.Unmanage("a"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a disconnect failed", func() bool {
				l := ts.list()
				return len(l) == 1 && l[0].LastError == "Busy"
			})

			// Act
			ts.manage("b", spec)

			// Assert: connected again without a new connection, and no
			// further disconnect attempts.
			ts.waitConnected("b")
			settled := ts.be.count(spec.Target, opDisconnect)
			ts.waitIdle(spec.Target)
			if n := ts.be.count(spec.Target, opDisconnect); n != settled {
				t.Errorf("Disconnect was called %d more times after the target was managed again", n-settled)
			}
			if n := ts.be.count(spec.Target, opConnect); n != 1 {
				t.Errorf("Connect was called %d times; want 1 (no flapping)", n)
			}
			if _, connected := ts.be.hostHas(spec.Target); !connected {
				t.Error("the connection is gone from the host")
			}
			if l := ts.list(); len(l) != 1 || l[0].ID != "b" || l[0].Preexisting || l[0].LastError != "" {
				t.Errorf("List = %+v; want only b, ours, without error", l)
			}
			// It is still storkeep's to tear down.
			ts.be.fail(spec.Target, opDisconnect, nil)
			if err := ts.svc.Unmanage("b"); err != nil {
				t.Fatal(err)
			}
			ts.waitForgotten()
			if present, _ := ts.be.hostHas(spec.Target); present {
				t.Error("the connection is still on the host")
			}
		})
	}
}

func TestManageDuringReleaseObserveKeepsConnection(t *testing.T) {
	// Arrange: the release pass is looking at the host when the target is
	// managed again.
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("a", spec)
	ts.waitConnected("a")
	ts.waitIdle(spec.Target)
	gate := ts.be.block(spec.Target, opObserve)
	if err := ts.svc.Unmanage("a"); err != nil {
		t.Fatal(err)
	}
	gate.waitEntered(t)

	// Act
	ts.manage("b", spec)
	ts.be.release(spec.Target, opObserve)

	// Assert: the pending disconnect is cancelled.
	ts.waitConnected("b")
	ts.waitIdle(spec.Target)
	if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
		t.Errorf("Disconnect was called %d times although the target was managed again before it", n)
	}
	if n := ts.be.count(spec.Target, opConnect); n != 1 {
		t.Errorf("Connect was called %d times; want 1 (no flapping)", n)
	}
}

func TestManageDuringInFlightDisconnect(t *testing.T) {
	// Arrange: a teardown is under way when the target is managed again.
	ts := newTestService(t)
	spec := specFor(t, nfsA)
	ts.manage("a", spec)
	ts.waitConnected("a")
	gate := ts.be.block(spec.Target, opDisconnect)
	if err := ts.svc.Unmanage("a"); err != nil {
		t.Fatal(err)
	}
	gate.waitEntered(t)

	// Act
	ts.manage("b", spec)

	// Assert: a connection being torn down is not reported usable...
	if st := ts.status("b"); st.Connected {
		t.Errorf("during the teardown Status(b) = %+v; want not connected", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.svc.Wait(ctx, "b"); !errors.Is(err, ErrTimeout) {
		t.Errorf("during the teardown Wait(b) = %v; want ErrTimeout, not success", err)
	}
	// ...and it comes back once the teardown is done.
	ts.be.release(spec.Target, opDisconnect)
	ts.waitConnected("b")
	if n := ts.be.count(spec.Target, opConnect); n != 2 {
		t.Errorf("Connect was called %d times; want 2", n)
	}
	if st := ts.status("b"); st.LastError != "" || st.Preexisting {
		t.Errorf("Status(b) = %+v; want ours, without error", st)
	}
	if f := ts.files("targets"); len(f) != 1 {
		t.Errorf("target records = %v; want one", f)
	}
}

// ---------------------------------------------------------------------------
// Preexisting connections.

func TestPreexistingIsAdoptedAndKept(t *testing.T) {
	tests := []struct {
		name        string
		connected   bool // on the host before it was managed
		wantConnect int
	}{
		{"present and working", true, 0},
		{"present but broken", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, restart := range []bool{false, true} {
				t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
					// Arrange
					ts := newTestService(t)
					spec := specFor(t, iscsiA)
					ts.be.setHost(spec.Target, true, tc.connected)

					// Act
					ts.manage("c1", spec)
					ts.waitConnected("c1")
					if restart {
						ts.be.setHost(spec.Target, true, true)
						ts.restart()
						if st := ts.status("c1"); !st.Preexisting {
							t.Errorf("after a restart, before any look, Status = %+v; want preexisting", st)
						}
						ts.waitConnected("c1")
					}

					// Assert
					if st := ts.status("c1"); !st.Preexisting {
						t.Errorf("Status = %+v; want preexisting", st)
					}
					want := tc.wantConnect
					if restart {
						want = 0
					}
					if n := ts.be.count(spec.Target, opConnect); n != want {
						t.Errorf("Connect was called %d times; want %d", n, want)
					}
					if err := ts.svc.Unmanage("c1"); err != nil {
						t.Fatal(err)
					}
					ts.waitForgotten()
					if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
						t.Errorf("Disconnect was called %d times on a preexisting connection", n)
					}
					if _, connected := ts.be.hostHas(spec.Target); !connected {
						t.Error("the preexisting connection is gone from the host")
					}
					if f := ts.files("targets"); len(f) != 0 {
						t.Errorf("target records left: %v", f)
					}
				})
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Restart and shutdown.

func TestRestartObservesBeforeActing(t *testing.T) {
	tests := []struct {
		name            string
		lostWhileDown   bool
		wantConnectCall int
	}{
		{"still connected", false, 0},
		{"gone while down", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			spec := specFor(t, nfsA)
			ts.manage("c1", spec)
			ts.waitConnected("c1")
			ts.stop()
			if tc.lostWhileDown {
				ts.be.lose(spec.Target, nil)
			}

			// Act
			ts.restart()

			// Assert
			ts.waitConnected("c1")
			ts.waitIdle(spec.Target)
			ops := ts.be.ops(spec.Target)
			if len(ops) == 0 || ops[0] != opObserve {
				t.Errorf("backend calls after the restart = %v; want Observe first", ops)
			}
			if n := ts.be.count(spec.Target, opConnect); n != tc.wantConnectCall {
				t.Errorf("Connect was called %d times after the restart; want %d", n, tc.wantConnectCall)
			}
			if n := ts.be.count(spec.Target, opDisconnect); n != 0 {
				t.Errorf("Disconnect was called %d times", n)
			}
			if st := ts.status("c1"); st.Preexisting {
				t.Errorf("Status = %+v; want storkeep's own connection, not preexisting", st)
			}
		})
	}
}

func TestRestartFinishesPendingDisconnect(t *testing.T) {
	// Arrange: the daemon stops while a disconnect is failing.
	ts := newTestService(t, withBackoff(time.Hour, time.Hour))
	spec := specFor(t, nfsA)
	ts.manage("c1", spec)
	ts.waitConnected("c1")
	ts.be.fail(spec.Target, opDisconnect, NewConnError("Busy", "target is busy"))
	if err := ts.svc.Unmanage("c1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a disconnect failed", func() bool { return ts.be.count(spec.Target, opDisconnect) == 1 })
	ts.waitIdle(spec.Target)
	ts.stop()
	if n := ts.be.count(spec.Target, opDisconnect); n != 1 {
		t.Fatalf("shutting down called Disconnect (%d calls); want the one failed call", n)
	}
	ts.be.fail(spec.Target, opDisconnect, nil)

	// Act
	ts.restart()

	// Assert
	ts.waitForgotten()
	if n := ts.be.count(spec.Target, opDisconnect); n != 1 {
		t.Errorf("after the restart Disconnect was called %d times; want 1", n)
	}
	if present, _ := ts.be.hostHas(spec.Target); present {
		t.Error("the connection is still on the host")
	}
	if f := ts.files("targets"); len(f) != 0 {
		t.Errorf("target records left: %v", f)
	}
}

func TestStartReleasesOrphanTargetRecords(t *testing.T) {
	tests := []struct {
		name           string
		preexisting    bool
		onHost         bool
		wantDisconnect int
	}{
		{"ours and present", false, true, 1},
		{"ours and gone", false, false, 0},
		{"preexisting and present", true, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange: a target record that no CID refers to.
			ts := newTestService(t, notRunning())
			spec := specFor(t, iscsiA)
			if err := ts.opts.Store.PutTarget(spec, tc.preexisting); err != nil {
				t.Fatal(err)
			}
			ts.be.setHost(spec.Target, tc.onHost, tc.onHost)

			// Act
			ts.restart()

			// Assert
			ts.waitForgotten()
			if n := ts.be.count(spec.Target, opDisconnect); n != tc.wantDisconnect {
				t.Errorf("Disconnect was called %d times; want %d", n, tc.wantDisconnect)
			}
			if present, _ := ts.be.hostHas(spec.Target); present != (tc.onHost && tc.preexisting) {
				t.Errorf("on the host: %v; want %v", present, tc.onHost && tc.preexisting)
			}
			if f := ts.files("targets"); len(f) != 0 {
				t.Errorf("target records left: %v", f)
			}
		})
	}
}

func TestNothingHappensBeforeRun(t *testing.T) {
	// Arrange: a persisted CID and an orphan record, and a new service.
	ts := newTestService(t, notRunning())
	spec := specFor(t, nfsA)
	orphan := specFor(t, iscsiA)
	ts.manage("c1", spec)
	if err := ts.opts.Store.PutTarget(orphan, false); err != nil {
		t.Fatal(err)
	}
	ts.be.setHost(orphan.Target, true, true)
	ts.open()

	// Act
	ts.manage("c2", specFor(t, "nfs://files.example/exports/b"))

	// Assert: New and Manage made no backend call.
	for _, k := range []TargetKey{spec.Target, orphan.Target, "nfs://files.example/exports/b"} {
		if ops := ts.be.ops(k); len(ops) != 0 {
			t.Errorf("before Run the backend saw %v for %s", ops, k)
		}
	}
	ts.start()
	ts.waitConnected("c1")
	ts.waitConnected("c2")
}

func TestShutdownNeverDisconnects(t *testing.T) {
	// Arrange: connected targets, one in backoff, one with a Connect in flight.
	ts := newTestService(t)
	nfs, iscsi := specFor(t, nfsA), specFor(t, iscsiA+"/1")
	failing := specFor(t, "nfs://files.example/exports/failing")
	stuck := specFor(t, "nfs://files.example/exports/stuck")
	ts.manage("a", nfs)
	ts.manage("b", nfs)
	ts.manage("c", iscsi)
	ts.be.fail(failing.Target, opConnect, NewConnError("Unreachable", "no route"))
	ts.manage("d", failing)
	gate := ts.be.block(stuck.Target, opConnect)
	ts.manage("e", stuck)
	for _, c := range []CID{"a", "b", "c"} {
		ts.waitConnected(c)
	}
	gate.waitEntered(t)

	// Act
	ts.stop()

	// Assert (stop also checks that Run returned after its runners).
	for _, k := range []TargetKey{nfs.Target, iscsi.Target, failing.Target, stuck.Target} {
		if n := ts.be.count(k, opDisconnect); n != 0 {
			t.Errorf("shutting down called Disconnect %d times on %s", n, k)
		}
	}
	for _, k := range []TargetKey{nfs.Target, iscsi.Target} {
		if _, connected := ts.be.hostHas(k); !connected {
			t.Errorf("%s is gone from the host after shutdown", k)
		}
	}
	if n := len(ts.svc.CIDs()); n != 5 {
		t.Errorf("%d CIDs after shutdown; want 5", n)
	}
}

func TestRunTwice(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 2)

	// Act: two Runs at once; one of them must refuse at once.
	for range 2 {
		go func() { errc <- ts.svc.Run(ctx) }()
	}

	// Assert
	if err := <-errc; err == nil {
		t.Fatal("a Run returned nil before its context was done; want the second one to fail")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("the running Run returned %v on shutdown; want nil", err)
	}
}

// ---------------------------------------------------------------------------
// UnmanagePrefix.

func TestUnmanagePrefix(t *testing.T) {
	// app1-a and app1-b share a target; the others have one each.
	targetOf := func(c CID) TargetKey {
		export, _, _ := strings.Cut(string(c), "-")
		if export != "app1" {
			export = string(c)
		}
		return TargetKey("nfs://files.example/" + export)
	}
	targetsOf := func(cids []CID) []TargetKey {
		var ks []TargetKey
		for _, c := range cids {
			if k := targetOf(c); !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
		return ks
	}
	all := []CID{"app1-a", "app1-b", "app10-x", "app2-a", "other"}
	tests := []struct {
		name    string
		prefix  string
		want    []CID
		wantErr error
	}{
		{"some", "app1-", []CID{"app1-a", "app1-b"}, nil},
		{"wider", "app", []CID{"app1-a", "app1-b", "app10-x", "app2-a"}, nil},
		{"one", "oth", []CID{"other"}, nil},
		{"exact CID", "app1-a", []CID{"app1-a"}, nil},
		{"none", "zzz", nil, nil},
		{"empty", "", nil, ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			ts := newTestService(t)
			for _, c := range all {
				ts.manage(c, specFor(t, string(targetOf(c))))
			}
			for _, c := range all {
				ts.waitConnected(c)
			}

			// Act
			got, err := ts.svc.UnmanagePrefix(tc.prefix)

			// Assert
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("UnmanagePrefix(%q) error = %v; want %v", tc.prefix, err, tc.wantErr)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) {
				t.Fatalf("UnmanagePrefix(%q) = %q; want %q", tc.prefix, got, tc.want)
			}
			var rest []CID
			for _, c := range all {
				if !slices.Contains(tc.want, c) {
					rest = append(rest, c)
				}
			}
			if got := ts.svc.CIDs(); !slices.Equal(got, rest) {
				t.Errorf("CIDs() = %q; want %q", got, rest)
			}
			// A target is torn down once when all of its CIDs went.
			for _, k := range targetsOf(all) {
				gone := true
				for _, c := range all {
					if targetOf(c) == k && !slices.Contains(tc.want, c) {
						gone = false
					}
				}
				if gone {
					eventually(t, "the connection of "+string(k)+" is torn down", func() bool {
						present, _ := ts.be.hostHas(k)
						return !present
					})
				}
				ts.waitIdle(k)
				if n, want := ts.be.count(k, opDisconnect), map[bool]int{true: 1}[gone]; n != want {
					t.Errorf("Disconnect of %s was called %d times; want %d", k, n, want)
				}
			}
			if _, err := os.Stat(filepath.Join(ts.dir, "unmanage.journal")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the journal is left behind (stat: %v)", err)
			}
			ts.restart()
			if got := ts.svc.CIDs(); !slices.Equal(got, rest) {
				t.Errorf("after a restart CIDs() = %q; want %q", got, rest)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Events.

func TestEventsInOrder(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	spec := specFor(t, nfsA)
	sub := ts.svc.Subscribe()
	defer sub.Close()

	// Act and assert: Added, then one Changed for the whole way to connected,
	// then Removed.
	ts.manage("c1", spec)
	ts.manage("c2", specFor(t, iscsiA))
	select {
	case <-sub.Ready():
	default:
		t.Fatal("Ready is not signalled after Manage")
	}
	if ev := sub.Take(); !slices.Equal(ev, []Event{{Type: EventAdded, CID: "c1"}, {Type: EventAdded, CID: "c2"}}) {
		t.Fatalf("after Manage Take = %v; want Added c1, Added c2 (their Changed coalesced into them)", ev)
	}
	if err := ts.svc.Unmanage("c2"); err != nil {
		t.Fatal(err)
	}
	if ev := sub.Take(); !slices.Equal(ev, []Event{{Type: EventRemoved, CID: "c2"}}) {
		t.Fatalf("after Unmanage Take = %v; want Removed c2", ev)
	}
	ts.start()
	ts.waitConnected("c1")
	ts.waitIdle(spec.Target)
	if ev := sub.Take(); !slices.Equal(ev, []Event{{Type: EventChanged, CID: "c1"}}) {
		t.Fatalf("after connecting Take = %v; want one Changed c1", ev)
	}
	if err := ts.svc.Unmanage("c1"); err != nil {
		t.Fatal(err)
	}
	ts.waitForgotten()
	if ev := sub.Take(); !slices.Equal(ev, []Event{{Type: EventRemoved, CID: "c1"}}) {
		t.Fatalf("after Unmanage Take = %v; want Removed c1", ev)
	}
}

func TestEventsCoalesce(t *testing.T) {
	const (
		added   = EventAdded
		changed = EventChanged
		removed = EventRemoved
	)
	tests := []struct {
		name string
		in   []Event
		want []Event
	}{
		{"changes of one CID",
			[]Event{{Type: changed, CID: "a"}, {Type: changed, CID: "a"}, {Type: changed, CID: "a"}},
			[]Event{{Type: changed, CID: "a"}}},
		{"changes after added",
			[]Event{{Type: added, CID: "a"}, {Type: changed, CID: "a"}},
			[]Event{{Type: added, CID: "a"}}},
		{"interleaved CIDs keep first order",
			[]Event{{Type: changed, CID: "a"}, {Type: changed, CID: "b"}, {Type: changed, CID: "a"}, {Type: changed, CID: "b"}},
			[]Event{{Type: changed, CID: "a"}, {Type: changed, CID: "b"}}},
		{"removed is kept",
			[]Event{{Type: changed, CID: "a"}, {Type: removed, CID: "a"}},
			[]Event{{Type: changed, CID: "a"}, {Type: removed, CID: "a"}}},
		{"managed again",
			[]Event{{Type: added, CID: "a"}, {Type: removed, CID: "a"}, {Type: added, CID: "a"}, {Type: changed, CID: "a"}},
			[]Event{{Type: added, CID: "a"}, {Type: removed, CID: "a"}, {Type: added, CID: "a"}}},
		{"changed after removed",
			[]Event{{Type: removed, CID: "a"}, {Type: changed, CID: "a"}},
			[]Event{{Type: removed, CID: "a"}, {Type: changed, CID: "a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t, notRunning())
			sub := ts.svc.Subscribe()
			defer sub.Close()

			for _, e := range tc.in {
				sub.add(e)
			}

			if got := sub.Take(); !slices.Equal(got, tc.want) {
				t.Errorf("Take = %v; want %v", got, tc.want)
			}
			if got := sub.Take(); len(got) != 0 {
				t.Errorf("second Take = %v; want nothing", got)
			}
		})
	}
}

func TestSubscriberThatNeverReads(t *testing.T) {
	// Arrange: a subscriber that never takes and never drains Ready.
	ts := newTestService(t)
	sub := ts.svc.Subscribe()
	defer sub.Close()
	const n = 200
	cids := make([]CID, n)
	for i := range cids {
		cids[i] = CID(fmt.Sprintf("c%03d", i))
	}

	// Act: a lot of activity.
	for i, c := range cids {
		ts.manage(c, specFor(t, fmt.Sprintf("nfs://files.example/e%d", i%50)))
	}
	for _, c := range cids {
		ts.waitConnected(c)
	}
	for _, c := range cids {
		if err := ts.svc.Unmanage(c); err != nil {
			t.Fatal(err)
		}
	}

	// Assert: the service was never held up, and what is queued is one
	// Added and one Removed per CID.
	ts.waitForgotten()
	ev := sub.Take()
	if len(ev) != 2*n {
		t.Errorf("%d events queued; want %d (Added and Removed of each CID, changes coalesced)", len(ev), 2*n)
	}
}

func TestClosedSubscriptionGetsNothing(t *testing.T) {
	ts := newTestService(t, notRunning())
	sub := ts.svc.Subscribe()

	sub.Close()
	sub.Close() // safe twice
	ts.manage("c1", specFor(t, nfsA))

	if ev := sub.Take(); len(ev) != 0 {
		t.Errorf("a closed subscription got %v", ev)
	}
}

// ---------------------------------------------------------------------------
// List.

func TestListHostConnections(t *testing.T) {
	// Arrange
	// One backend lists its kind's connections; the fake serves every kind,
	// so it is the NFS backend only here.
	ts := newTestService(t, withOnlyBackends(KindNFS))
	managed := specFor(t, nfsA)
	ts.manage("c1", managed)
	ts.waitConnected("c1")
	ts.be.mu.Lock()
	ts.be.host = []HostConnection{
		{ID: "nfs/1", Kind: KindNFS, Target: managed.Target, URI: managed.URI, Connected: true},
		{ID: "nfs/2", Kind: KindNFS, Target: "nfs://other/x", URI: "nfs://other/x", Connected: true},
		{ID: "nfs/3", Kind: KindNFS, Target: "nfs://other/z", URI: "nfs://other/z", Connected: false},
		{ID: "no-slash", Kind: KindNFS, Target: "nfs://third/y"},
	}
	ts.be.mu.Unlock()

	// Act
	withHost := ts.svc.List(context.Background(), "", true)
	nfsOnly := ts.svc.List(context.Background(), "nfs/2", true)
	without := ts.list()

	// Assert
	var ids []string
	for _, st := range withHost {
		ids = append(ids, st.ID)
		if st.ID == "nfs/2" && (!st.Preexisting || st.Managed || !st.Connected || st.State != StateConnected) {
			t.Errorf("host entry = %+v; want unmanaged, preexisting, connected", st)
		}
		if st.ID == "nfs/3" && st.State != StateRetrying {
			t.Errorf("host entry = %+v; want state retrying when not connected", st)
		}
	}
	sort.Strings(ids)
	if want := []string{"c1", "nfs/2", "nfs/3"}; !slices.Equal(ids, want) {
		t.Errorf("List(withHost) IDs = %q; want %q (managed targets and IDs without '/' left out)", ids, want)
	}
	if len(nfsOnly) != 1 || nfsOnly[0].ID != "nfs/2" {
		t.Errorf("List(prefix nfs/2) = %+v; want nfs/2 only", nfsOnly)
	}
	if len(without) != 1 || without[0].ID != "c1" {
		t.Errorf("List(without host) = %+v; want c1 only", without)
	}
}

func TestStatusUnknown(t *testing.T) {
	ts := newTestService(t, notRunning())

	_, ok := ts.svc.Status("nope")

	if ok {
		t.Error("Status(unknown) reports it managed")
	}
}

// failedAnHourAgo manages cid for nfsA, whose first attempt fails with the
// next one an hour away (ts's initial backoff is an hour), then lets the
// backend succeed: only something that brings the attempt forward
// connects it in a test's lifetime.
func failedAnHourAgo(t *testing.T, ts *testService, cid CID) Spec {
	t.Helper()
	spec := specFor(t, nfsA)
	ts.be.fail(spec.Target, opConnect, NewConnError("Unreachable", "no route"))
	ts.manage(cid, spec)
	eventually(t, "the first attempt failed", func() bool { return ts.status(cid).State == StateRetrying })
	if st := ts.status(cid); time.Until(st.NextAttempt) < 30*time.Minute {
		t.Fatalf("NextAttempt = %v; want about an hour away", st.NextAttempt)
	}
	ts.be.fail(spec.Target, opConnect, nil)
	return spec
}

// SPDX-License-Identifier: Apache-2.0

package netmon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeKernel is a Kernel whose routes and events the test sets.
type fakeKernel struct {
	mu      sync.Mutex
	paths   map[netip.Addr]Path
	routeN  int // Route calls
	subs    int // Subscribe calls
	events  chan Event
	subErr  error
	routeEr error
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{paths: map[netip.Addr]Path{}}
}

func (k *fakeKernel) Subscribe(done <-chan struct{}, failed func(error)) (<-chan Event, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.subs++
	if k.subErr != nil {
		return nil, k.subErr
	}
	k.events = make(chan Event, 1000)
	return k.events, nil
}

func (k *fakeKernel) Route(a netip.Addr) (Path, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routeN++
	if k.routeEr != nil {
		return Path{}, k.routeEr
	}
	p, ok := k.paths[a]
	if !ok {
		return Path{Why: NoRoute}, nil
	}
	return p, nil
}

func (k *fakeKernel) set(a string, p Path) {
	k.mu.Lock()
	k.paths[netip.MustParseAddr(a)] = p
	k.mu.Unlock()
}

// send delivers an event on the current subscription.
func (k *fakeKernel) send(ev Event) {
	k.mu.Lock()
	ch := k.events
	k.mu.Unlock()
	ch <- ev
}

// overflow ends the current subscription as a receive error would.
func (k *fakeKernel) overflow() {
	k.mu.Lock()
	close(k.events)
	k.events = nil
	k.mu.Unlock()
}

func (k *fakeKernel) counts() (routes, subs int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.routeN, k.subs
}

type report struct {
	host string
	p    Path
}

// start runs m and returns the channel of its reports.
func start(t *testing.T, m *Monitor) <-chan report {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan report, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, func(h string, p Path) { ch <- report{h, p} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan report) report {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no report within 5 s")
		return report{}
	}
}

func quiet(t *testing.T, ch <-chan report, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected report %s: %v", r.host, r.p)
	case <-time.After(d):
	}
}

var up = Path{Link: "veth0", Usable: true}

// watchingUp runs a Monitor watching 10.0.0.1, whose path is up, and
// returns once that has been reported.
func watchingUp(t *testing.T, settle time.Duration) (*fakeKernel, <-chan report) {
	t.Helper()
	k := newFakeKernel()
	k.set("10.0.0.1", up)
	m := &Monitor{Kernel: k, Settle: settle}
	m.Watch("10.0.0.1")
	ch := start(t, m)
	next(t, ch)
	return k, ch
}

func TestReportsFirstPathThenChangesOnly(t *testing.T) {
	k := newFakeKernel()
	k.set("10.0.0.1", up)
	m := &Monitor{Kernel: k, Settle: time.Millisecond}
	m.Watch("10.0.0.1")
	ch := start(t, m)

	r := next(t, ch)
	if r.host != "10.0.0.1" || !r.p.Usable || r.p.Link != "veth0" || r.p.Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("first report = %+v", r)
	}
	// An event that changes nothing reports nothing.
	k.send(Event{Kind: "link", Link: "dummy7"})
	quiet(t, ch, 50*time.Millisecond)

	k.set("10.0.0.1", Path{Link: "veth0", Why: NoCarrier})
	k.send(Event{Kind: "link", Link: "veth0"})
	r = next(t, ch)
	if r.p.Usable || r.p.Why != NoCarrier || r.p.String() != "link veth0 has no carrier" {
		t.Fatalf("after carrier loss: %+v (%s)", r, r.p)
	}
	k.set("10.0.0.1", up)
	k.send(Event{Kind: "link", Link: "veth0", Up: true})
	if r = next(t, ch); !r.p.Usable {
		t.Fatalf("after link up: %+v", r)
	}
}

func TestBurstIsOneCheck(t *testing.T) {
	k, ch := watchingUp(t, 100*time.Millisecond)
	before, _ := k.counts()
	for range 500 {
		k.send(Event{Kind: "link", Link: "veth0"})
	}
	time.Sleep(300 * time.Millisecond)
	after, _ := k.counts()
	// 500 events in well under the settle window: one or two re-checks,
	// not 500.
	if n := after - before; n < 1 || n > 3 {
		t.Fatalf("500 events caused %d route lookups; want 1 to 3", n)
	}
	quiet(t, ch, 10*time.Millisecond)
}

func TestResubscribesAndRechecksAfterOverflow(t *testing.T) {
	k, ch := watchingUp(t, time.Millisecond)

	// The path changes and the event that says so is lost in an overflow.
	k.set("10.0.0.1", Path{Link: "veth0", Why: LinkDown})
	k.overflow()
	if r := next(t, ch); r.p.Why != LinkDown {
		t.Fatalf("after overflow: %+v", r)
	}
	if _, subs := k.counts(); subs != 2 {
		t.Fatalf("subscriptions = %d, want 2", subs)
	}
	// And the new subscription works.
	k.set("10.0.0.1", up)
	k.send(Event{Kind: "link", Link: "veth0", Up: true})
	if r := next(t, ch); !r.p.Usable {
		t.Fatalf("after resubscription: %+v", r)
	}
}

func TestSubscribeFailureStillChecksAndRetries(t *testing.T) {
	k := newFakeKernel()
	k.subErr = errors.New("permission denied")
	k.set("10.0.0.1", up)
	m := &Monitor{Kernel: k, Settle: time.Millisecond}
	m.Watch("10.0.0.1")
	ch := start(t, m)
	if r := next(t, ch); !r.p.Usable {
		t.Fatalf("first report = %+v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, subs := k.counts(); subs >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second subscription attempt")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRouteErrorIsNotReportedAsDown(t *testing.T) {
	k := newFakeKernel()
	k.routeEr = errors.New("netlink: operation not permitted")
	m := &Monitor{Kernel: k, Settle: time.Millisecond}
	m.Watch("10.0.0.1")
	ch := start(t, m)
	quiet(t, ch, 100*time.Millisecond)
}

func TestWatchCountsAndNames(t *testing.T) {
	k := newFakeKernel()
	k.set("10.0.0.1", up)
	k.set("10.0.0.2", Path{Link: "veth1", Why: LinkDown})
	var resolved sync.WaitGroup
	resolved.Add(1)
	m := &Monitor{Kernel: k, Settle: time.Millisecond,
		Resolve: func(ctx context.Context, h string) ([]netip.Addr, error) {
			defer resolved.Done()
			if h != "nas.example" {
				t.Errorf("resolved %q", h)
			}
			// The first address has no usable path; the second has.
			return []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("::ffff:10.0.0.1")}, nil
		}}
	m.Watch("nas.example")
	m.Watch("nas.example")
	ch := start(t, m)
	r := next(t, ch)
	resolved.Wait()
	if r.host != "nas.example" || !r.p.Usable || r.p.Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("report = %+v", r)
	}
	m.Unwatch("nas.example")
	k.set("10.0.0.1", Path{Link: "veth0", Why: LinkDown})
	k.send(Event{Kind: "link", Link: "veth0"})
	if r := next(t, ch); r.p.Usable {
		t.Fatalf("still watched after one of two Unwatch: %+v", r)
	}
	m.Unwatch("nas.example")
	k.set("10.0.0.1", up)
	k.send(Event{Kind: "link", Link: "veth0"})
	quiet(t, ch, 50*time.Millisecond)
}

func TestPathString(t *testing.T) {
	for _, c := range []struct {
		p    Path
		want string
	}{
		{Path{Addr: netip.MustParseAddr("10.0.0.1"), Why: NoRoute}, "no route to 10.0.0.1"},
		{Path{Link: "eth0", Why: LinkDown}, "link eth0 is down"},
		{Path{Addr: netip.MustParseAddr("10.0.0.1"), Link: "eth0", Usable: true}, "10.0.0.1 dev eth0"},
		{Path{Addr: netip.MustParseAddr("10.0.1.1"), Gateway: netip.MustParseAddr("10.0.0.254"), Link: "eth0", Usable: true}, "10.0.1.1 via 10.0.0.254 dev eth0"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
}

func TestUnrelatedEventsCostNothing(t *testing.T) {
	k, _ := watchingUp(t, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	before, _ := k.counts()
	for i := range 300 {
		name := fmt.Sprintf("dummy%d", i)
		k.send(Event{Kind: "link", Link: name, Up: true})
		k.send(Event{Kind: "address", IPv6: true})
		k.send(Event{Kind: "route", IPv6: true, Dst: netip.MustParsePrefix("fe80::/64")})
		k.send(Event{Kind: "route", Dst: netip.MustParsePrefix("192.168.77.0/24")})
	}
	time.Sleep(100 * time.Millisecond)
	if after, _ := k.counts(); after != before {
		t.Fatalf("1200 unrelated events caused %d route lookups; want none", after-before)
	}
	// What can matter does: a route toward the host, a default route, an
	// IPv4 address, the path's own link.
	for _, ev := range []Event{
		{Kind: "route", Dst: netip.MustParsePrefix("10.0.0.0/8")},
		{Kind: "route"},
		{Kind: "address"},
		{Kind: "link", Link: "veth0"},
	} {
		before, _ := k.counts()
		k.send(ev)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if after, _ := k.counts(); after > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%+v caused no re-check", ev)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

// Package netmon follows the kernel's network state (links, addresses and
// routes, through rtnetlink) and tells, for each host it is asked to
// watch, which link the kernel would send packets to it through and
// whether that link can carry them: what `ip monitor` and
// `ip route get ADDR` show an admin.
//
// Kernel events only poke a re-check: after a burst settles, the Monitor
// asks the kernel for the route to every watched address again and
// reports the paths that changed. So a lost or overflowed subscription
// costs nothing but a resubscription and a re-check.
package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Path is the way to one host as the kernel sees it now.
type Path struct {
	// Addr is the address the path leads to (the first usable one of the
	// host's addresses).
	Addr netip.Addr
	// Link is the interface packets leave through; "" when there is no
	// route.
	Link string
	// Gateway is the next hop, invalid for a directly connected host.
	Gateway netip.Addr
	// Usable: a route exists and its link is up with a carrier.
	Usable bool
	// Why says why the path is not usable.
	Why Why
}

// Why says what makes a path unusable.
type Why int

const (
	Fine      Why = iota // the path is usable
	NoRoute              // no route to the address
	LinkDown             // the route's link is administratively down
	NoCarrier            // the route's link is up but has no carrier (cable, peer down)
)

// String describes the path for logs and messages ("10.0.0.1 via eth0",
// "link eth0 is down").
func (p Path) String() string {
	switch p.Why {
	case NoRoute:
		return fmt.Sprintf("no route to %s", p.Addr)
	case LinkDown:
		return fmt.Sprintf("link %s is down", p.Link)
	case NoCarrier:
		return fmt.Sprintf("link %s has no carrier", p.Link)
	}
	if p.Gateway.IsValid() {
		return fmt.Sprintf("%s via %s dev %s", p.Addr, p.Gateway, p.Link)
	}
	return fmt.Sprintf("%s dev %s", p.Addr, p.Link)
}

// Event is one kernel notification: enough to tell whether it can touch a
// watched path, and to show admins what happened.
type Event struct {
	Kind string // "link", "address" or "route"
	Link string // link events: the interface name
	Up   bool   // link events: IFF_UP and a carrier
	// IPv6: address and route events of the IPv6 family.
	IPv6 bool
	// Dst is a route event's destination; invalid for a default route.
	Dst netip.Prefix
}

// Kernel is what a Monitor reads from the kernel. The real one is
// Netlink; tests use a fake.
type Kernel interface {
	// Subscribe sends an Event for every link, address and route change,
	// starting with the existing links (ListExisting), until done is
	// closed or the subscription fails (a receive buffer overflow, say);
	// then it closes the channel. failed receives the reason.
	Subscribe(done <-chan struct{}, failed func(error)) (<-chan Event, error)
	// Route returns the path to addr (`ip route get ADDR` and the state
	// of the link it names). No route is a Path (NoRoute); an error means
	// the kernel could not be asked.
	Route(addr netip.Addr) (Path, error)
}

// Monitor reports changes of the paths to the hosts it watches. Set the
// fields before Run; the zero value of each means something sensible.
type Monitor struct {
	// Kernel is the source of truth; nil means Netlink{}.
	Kernel Kernel
	// Resolve turns a host name into addresses; nil means the system
	// resolver. IP address literals are never resolved.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Settle is how long a burst of kernel events may go on before the
	// paths are checked again (default 30 ms): a burst is one re-check.
	Settle time.Duration
	// Resync is how often the paths are checked without any event, to
	// catch what no event reports (default 60 s). Host names are also
	// resolved again this often.
	Resync time.Duration
	// OnEvent, if set, sees every kernel event (from Run's goroutine).
	OnEvent func(Event)
	// Log receives subscription failures; nil discards them.
	Log *slog.Logger

	mu    sync.Mutex
	hosts map[string]*host
	kick  chan struct{}
	// resolving counts the resolver goroutines, which Run owns: it
	// returns only after they have ended.
	resolving sync.WaitGroup
}

// host is one watched host name or address.
type host struct {
	refs       int
	addrs      []netip.Addr // nil until resolved
	resolvedAt time.Time
	resolving  bool
	last       Path
	reported   bool
}

func (m *Monitor) init() {
	if m.hosts == nil {
		m.hosts = make(map[string]*host)
		m.kick = make(chan struct{}, 1)
	}
}

// Watch starts following the path to h (an IP address or a host name).
// Calls are counted: h is followed until as many Unwatch calls. It never
// blocks; the path is reported once Run has checked it.
func (m *Monitor) Watch(h string) {
	m.mu.Lock()
	m.init()
	st := m.hosts[h]
	if st == nil {
		st = &host{}
		if a, err := netip.ParseAddr(h); err == nil {
			st.addrs = []netip.Addr{a.Unmap()}
		}
		m.hosts[h] = st
	}
	st.refs++
	m.mu.Unlock()
	m.poke()
}

// Unwatch undoes one Watch of h.
func (m *Monitor) Unwatch(h string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.hosts[h]; st != nil {
		if st.refs--; st.refs <= 0 {
			delete(m.hosts, h)
		}
	}
}

// poke asks Run for a re-check without waiting.
func (m *Monitor) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run follows the kernel until ctx ends, calling report (from its own
// goroutine, never concurrently) for every watched host whose path
// changed, and once for each host when its path is first known.
func (m *Monitor) Run(ctx context.Context, report func(host string, p Path)) {
	m.mu.Lock()
	m.init()
	m.mu.Unlock()
	defer m.resolving.Wait() // after ctx ends, which cancels them
	k := m.kernel()
	settle := durOr(m.Settle, 30*time.Millisecond)
	resync := time.NewTicker(durOr(m.Resync, 60*time.Second))
	defer resync.Stop()

	var (
		events  <-chan Event
		stop    chan struct{}
		retry   <-chan time.Time
		pending <-chan time.Time // the settle timer, while a re-check is due
	)
	subscribe := func() {
		stop = make(chan struct{})
		ch, err := k.Subscribe(stop, func(err error) {
			if !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				m.log().Warn("netlink subscription failed; subscribing again", "err", err)
			}
		})
		if err != nil {
			m.log().Warn("netlink subscription failed; retrying in 1 s", "err", err)
			retry = time.After(time.Second)
			return
		}
		events, retry = ch, nil
	}
	defer func() {
		if stop != nil {
			close(stop)
		}
	}()
	subscribe()
	m.check(ctx, k, report) // the first look, before any event

	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				// The subscription ended (overflow, error): events may be
				// lost, so subscribe again and look at everything.
				close(stop)
				stop, events = nil, nil
				subscribe()
			} else {
				if m.OnEvent != nil {
					m.OnEvent(ev)
				}
				if !m.relevant(ev) {
					continue // a storm of unrelated links costs no route lookups
				}
			}
			if pending == nil {
				pending = time.After(settle)
			}
		case <-retry:
			subscribe()
			if pending == nil {
				pending = time.After(settle)
			}
		case <-m.kick:
			if pending == nil {
				pending = time.After(settle)
			}
		case <-resync.C:
			m.expire(ctx, time.Now(), durOr(m.Resync, 60*time.Second))
			m.check(ctx, k, report)
		case <-pending:
			pending = nil
			m.check(ctx, k, report)
		}
	}
}

// relevant reports whether ev can change a watched path: an event on a
// link a path leaves through, a link coming up while a path is down, a
// route toward a watched address (or a
// default route) of its family, an address of its family. Anything else
// (a dummy link coming and going, IPv6 link-local noise for IPv4 targets)
// is left alone.
func (m *Monitor) relevant(ev Event) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.hosts {
		if !st.reported {
			return true // not looked at yet: any event is a reason
		}
		switch ev.Kind {
		case "link":
			// The path's own link; or any link coming up while a path
			// is unusable (it may be the way back).
			if ev.Link == st.last.Link || (ev.Up && !st.last.Usable) {
				return true
			}
		default:
			for _, a := range st.addrs {
				if a.Is6() != ev.IPv6 {
					continue
				}
				if ev.Kind == "address" || !ev.Dst.IsValid() || ev.Dst.Contains(a) {
					return true
				}
			}
		}
	}
	return false
}

// check asks the kernel for the path to every watched host and reports
// the ones that changed.
func (m *Monitor) check(ctx context.Context, k Kernel, report func(string, Path)) {
	type job struct {
		name  string
		addrs []netip.Addr
	}
	var jobs []job
	m.mu.Lock()
	for name, st := range m.hosts {
		if st.addrs == nil {
			m.resolveLocked(ctx, name, st)
			continue
		}
		jobs = append(jobs, job{name, st.addrs})
	}
	m.mu.Unlock()

	for _, j := range jobs {
		p, err := bestPath(k, j.addrs)
		if err != nil {
			// Unknown is not down: say nothing rather than something false.
			m.log().Warn("route lookup failed", "host", j.name, "err", err)
			continue
		}
		m.mu.Lock()
		st := m.hosts[j.name]
		changed := st != nil && (!st.reported || st.last != p)
		if changed {
			st.last, st.reported = p, true
		}
		m.mu.Unlock()
		if changed {
			report(j.name, p)
		}
	}
}

// bestPath is the path to the first address with a usable one, else the
// path to the first address.
func bestPath(k Kernel, addrs []netip.Addr) (Path, error) {
	var first Path
	for i, a := range addrs {
		p, err := k.Route(a)
		if err != nil {
			return Path{}, fmt.Errorf("route to %s: %w", a, err)
		}
		p.Addr = a
		if p.Usable {
			return p, nil
		}
		if i == 0 {
			first = p
		}
	}
	return first, nil
}

// expire drops the addresses of host names resolved longer than maxAge
// ago, so that the next check resolves them again.
func (m *Monitor) expire(ctx context.Context, now time.Time, maxAge time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.hosts {
		if _, err := netip.ParseAddr(name); err != nil && !st.resolving && now.Sub(st.resolvedAt) >= maxAge {
			st.resolvedAt = time.Time{}
			m.startResolveLocked(ctx, name, st)
		}
	}
}

// resolveLocked starts resolving a host name, out of line: a slow
// resolver never holds up the paths of other hosts.
func (m *Monitor) resolveLocked(ctx context.Context, name string, st *host) {
	if st.resolving || time.Since(st.resolvedAt) < 5*time.Second {
		return // under way, or failed a moment ago
	}
	m.startResolveLocked(ctx, name, st)
}

func (m *Monitor) startResolveLocked(ctx context.Context, name string, st *host) {
	st.resolving = true
	m.resolving.Add(1)
	go func() {
		defer m.resolving.Done()
		m.resolve(ctx, name)
	}()
}

func (m *Monitor) resolve(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := m.resolver()(ctx, name)
	m.mu.Lock()
	if st := m.hosts[name]; st != nil {
		st.resolving = false
		st.resolvedAt = time.Now()
		if err == nil && len(addrs) > 0 {
			for i := range addrs {
				addrs[i] = addrs[i].Unmap()
			}
			st.addrs = addrs
		} else if err != nil {
			m.log().Debug("resolving a watched host failed", "host", name, "err", err)
		}
	}
	m.mu.Unlock()
	if err == nil {
		m.poke()
	}
}

func (m *Monitor) kernel() Kernel {
	if m.Kernel != nil {
		return m.Kernel
	}
	return Netlink{}
}

func (m *Monitor) resolver() func(context.Context, string) ([]netip.Addr, error) {
	if m.Resolve != nil {
		return m.Resolve
	}
	return func(ctx context.Context, h string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	}
}

func (m *Monitor) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.New(slog.DiscardHandler)
}

func durOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

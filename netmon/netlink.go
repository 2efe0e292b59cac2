// SPDX-License-Identifier: Apache-2.0

package netmon

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the real Kernel: rtnetlink through vishvananda/netlink.
type Netlink struct{}

// Subscribe follows links, addresses and routes (`ip monitor link address
// route`), starting with a dump of the existing links. The three netlink
// subscriptions feed one channel; when any of them fails, all end and the
// channel is closed, so the caller resubscribes and re-checks everything.
func (Netlink) Subscribe(done <-chan struct{}, failed func(error)) (<-chan Event, error) {
	// Big receive buffers: a storm of link changes should be absorbed,
	// not overflow (an overflow only costs a resubscription).
	const rcvbuf = 1 << 20
	inner := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 256)
	addrs := make(chan netlink.AddrUpdate, 256)
	routes := make(chan netlink.RouteUpdate, 256)
	var closing atomic.Bool
	fail := func(err error) {
		// An interrupted dump is followed by live events anyway; errors
		// after we closed the sockets ourselves are no news.
		if !errors.Is(err, netlink.ErrDumpInterrupted) && !closing.Load() {
			failed(err)
		}
	}
	// stopAll closes the sockets, then drains until netlink's goroutines
	// have ended, so that none stays blocked on a full channel.
	var drains []func()
	stopAll := func() {
		closing.Store(true)
		close(inner)
		for _, d := range drains {
			go d()
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, inner, netlink.LinkSubscribeOptions{
		ListExisting: true, ErrorCallback: fail, ReceiveBufferSize: rcvbuf}); err != nil {
		stopAll()
		return nil, fmt.Errorf("subscribe to links: %w", err)
	}
	drains = append(drains, func() { drain(links) })
	if err := netlink.AddrSubscribeWithOptions(addrs, inner, netlink.AddrSubscribeOptions{
		ErrorCallback: fail, ReceiveBufferSize: rcvbuf}); err != nil {
		stopAll()
		return nil, fmt.Errorf("subscribe to addresses: %w", err)
	}
	drains = append(drains, func() { drain(addrs) })
	if err := netlink.RouteSubscribeWithOptions(routes, inner, netlink.RouteSubscribeOptions{
		ErrorCallback: fail, ReceiveBufferSize: rcvbuf}); err != nil {
		stopAll()
		return nil, fmt.Errorf("subscribe to routes: %w", err)
	}
	drains = append(drains, func() { drain(routes) })
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer stopAll()
		for {
			var ev Event
			select {
			case <-done:
				return
			case u, ok := <-links:
				if !ok {
					return
				}
				a := u.Link.Attrs()
				ev = Event{Kind: "link", Link: a.Name, Up: linkWhy(a) == Fine}
			case u, ok := <-addrs:
				if !ok {
					return
				}
				ev = Event{Kind: "address", IPv6: u.LinkAddress.IP.To4() == nil}
			case u, ok := <-routes:
				if !ok {
					return
				}
				ev = Event{Kind: "route", IPv6: u.Family == unix.AF_INET6}
				if d := u.Dst; d != nil {
					if a, ok := netip.AddrFromSlice(d.IP); ok {
						ones, _ := d.Mask.Size()
						if a.Is4In6() {
							a = a.Unmap()
						}
						ev.Dst = netip.PrefixFrom(a, ones)
					}
				}
			}
			select {
			case out <- ev:
			case <-done:
				return
			}
		}
	}()
	return out, nil
}

// Route is `ip route get ADDR` followed by a look at the link it names.
func (Netlink) Route(addr netip.Addr) (Path, error) {
	routes, err := netlink.RouteGet(addr.AsSlice())
	switch {
	case errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH),
		errors.Is(err, unix.EACCES), errors.Is(err, unix.EINVAL):
		// unreachable, prohibit and blackhole routes, or none at all
		return Path{Addr: addr, Why: NoRoute}, nil
	case err != nil:
		return Path{}, err
	case len(routes) == 0:
		return Path{Addr: addr, Why: NoRoute}, nil
	}
	r := routes[0]
	p := Path{Addr: addr}
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		p.Gateway = gw.Unmap()
	}
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Path{Addr: addr, Why: NoRoute}, nil // gone since
		}
		return Path{}, fmt.Errorf("link %d: %w", r.LinkIndex, err)
	}
	a := link.Attrs()
	p.Link = a.Name
	p.Why = linkWhy(a)
	p.Usable = p.Why == Fine
	return p, nil
}

// linkWhy says whether a link can carry packets: administratively up
// (IFF_UP) and operationally up. Links that don't report an operational
// state (loopback, some virtual ones) count by their lower-layer flag.
func linkWhy(a *netlink.LinkAttrs) Why {
	if a.RawFlags&unix.IFF_UP == 0 {
		return LinkDown
	}
	switch a.OperState {
	case netlink.OperUp:
		return Fine
	case netlink.OperUnknown:
		if a.RawFlags&unix.IFF_LOWER_UP != 0 {
			return Fine
		}
	}
	return NoCarrier
}

func drain[T any](ch <-chan T) {
	for range ch {
	}
}

// SPDX-License-Identifier: Apache-2.0

package netmon

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Resolver is the daemon's one cache of host name answers, shared by the
// path monitor (which refreshes the names it watches every Resync) and the
// backends (which match sessions to portals by address), so that both act
// on the same addresses. IP address literals are never looked up.
//
// Equivalent to: getent ahosts HOST
type Resolver struct {
	// Lookup asks the resolver; nil means the system's.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// TTL is how long an answer is used without asking again (default 60 s).
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	answers map[string]answer
}

type answer struct {
	addrs []netip.Addr
	at    time.Time
}

// lookupTimeout bounds one question to the resolver.
const lookupTimeout = 5 * time.Second

// Addrs returns host's addresses: itself when it is an IP address, else
// the cached answer while it is fresh, else a new one.
func (r *Resolver) Addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	r.mu.Lock()
	ans, ok := r.answers[host]
	fresh := ok && r.now().Sub(ans.at) < r.ttl()
	r.mu.Unlock()
	if fresh {
		return ans.addrs, nil
	}
	return r.Refresh(ctx, host)
}

// Refresh asks the resolver about host now and keeps the answer. A failed
// question keeps the last answer, if any, for Cached.
func (r *Resolver) Refresh(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	lookup := r.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	found, err := lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, len(found))
	for i, a := range found {
		addrs[i] = a.Unmap()
	}
	r.mu.Lock()
	if r.answers == nil {
		r.answers = make(map[string]answer)
	}
	r.answers[host] = answer{addrs: addrs, at: r.now()}
	r.mu.Unlock()
	return addrs, nil
}

// Cached returns what is known of host's addresses without asking.
func (r *Resolver) Cached(host string) []netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers[host].addrs
}

// Forget drops host's answer (no target lives there any more).
func (r *Resolver) Forget(host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.answers, host)
}

func (r *Resolver) ttl() time.Duration {
	if r.TTL <= 0 {
		return 60 * time.Second
	}
	return r.TTL
}

func (r *Resolver) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// SPDX-License-Identifier: Apache-2.0

package netmon

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestResolverCachesForItsTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	answer := netip.MustParseAddr("::ffff:192.0.2.7")
	r := &Resolver{
		Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			calls++
			if host == "bad.example" {
				return nil, errors.New("no such host")
			}
			return []netip.Addr{answer}, nil
		},
		TTL: time.Minute,
		Now: func() time.Time { return now },
	}
	ctx := context.Background()
	for range 3 {
		got, err := r.Addrs(ctx, "san.example")
		if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.7") {
			t.Fatalf("Addrs = %v, %v; want the unmapped answer", got, err)
		}
	}
	if calls != 1 {
		t.Errorf("%d lookups within the TTL; want 1", calls)
	}
	now = now.Add(time.Minute)
	r.Addrs(ctx, "san.example")
	if calls != 2 {
		t.Errorf("%d lookups after the TTL; want 2", calls)
	}
	if got := r.Cached("san.example"); len(got) != 1 {
		t.Errorf("Cached = %v", got)
	}
	r.Forget("san.example")
	if got := r.Cached("san.example"); got != nil {
		t.Errorf("Cached after Forget = %v", got)
	}
	if _, err := r.Addrs(ctx, "bad.example"); err == nil {
		t.Error("a failed lookup returned no error")
	}
	if got, _ := r.Addrs(ctx, "2001:db8::1"); calls != 3 || got[0] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("a literal: %v after %d lookups; want itself, not looked up", got, calls)
	}
}

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"net/netip"
	"testing"

	"github.com/storkeep/storkeep/netmon"
	"github.com/storkeep/storkeep/service"
)

// TestForgetDropsAReleasedTarget: the service forgets a target it leaves
// in place (an adopted session) without a Disconnect; the backend must
// forget it too, and its portal's name once no other target uses it.
// Before, only Disconnect forgot, so `known` kept every released
// pre-existing target for good.
func TestForgetDropsAReleasedTarget(t *testing.T) {
	res := &netmon.Resolver{Lookup: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil
	}}
	b := &Backend{Resolver: res}
	a, err := service.ParseURI("iscsi://san.example/iqn.2004-04.org.example:a")
	if err != nil {
		t.Fatal(err)
	}
	c, err := service.ParseURI("iscsi://san.example/iqn.2004-04.org.example:c")
	if err != nil {
		t.Fatal(err)
	}
	b.remember(a)
	b.remember(c)
	if _, err := b.hostAddrs(context.Background(), "san.example"); err != nil {
		t.Fatal(err)
	}

	b.Forget(a.Target)
	if _, ok := b.known[a.Target]; ok {
		t.Error("a forgotten target is still known")
	}
	if res.Cached("san.example") == nil {
		t.Error("the portal's answer went while another target still uses it")
	}
	b.Forget(c.Target)
	if len(b.known) != 0 || res.Cached("san.example") != nil {
		t.Errorf("after forgetting both: known %v, cached %v", b.known, res.Cached("san.example"))
	}
}

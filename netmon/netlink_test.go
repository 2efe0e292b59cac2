// SPDX-License-Identifier: Apache-2.0

package netmon

import (
	"net/netip"
	"testing"
	"time"
)

// The real kernel, read without privileges: the loopback route and the
// dump of existing links.
func TestNetlinkLoopback(t *testing.T) {
	p, err := Netlink{}.Route(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Skipf("no rtnetlink here: %v", err)
	}
	if !p.Usable || p.Link != "lo" {
		t.Fatalf("path to 127.0.0.1 = %+v, want usable via lo", p)
	}

	done := make(chan struct{})
	defer close(done)
	ch, err := Netlink{}.Subscribe(done, func(err error) { t.Errorf("subscription failed: %v", err) })
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == "link" && ev.Link == "lo" {
				if !ev.Up {
					t.Fatalf("lo reported down: %+v", ev)
				}
				return
			}
		case <-deadline:
			t.Fatal("the dump of existing links did not name lo within 5 s")
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// pagingDaemon serves List as storkeepd does, in ID order with limit,
// after and keys, or, when old, as a daemon from before paging did
// (refusing the options, every key), and records the calls.
type pagingDaemon struct {
	ids []string
	old bool

	mu    sync.Mutex
	calls []map[string]dbus.Variant
}

func (p *pagingDaemon) List(opts map[string]dbus.Variant) (map[string]map[string]dbus.Variant, *dbus.Error) {
	p.mu.Lock()
	p.calls = append(p.calls, opts)
	p.mu.Unlock()
	for k := range opts {
		if p.old && k != skdbus.OptPrefix && k != skdbus.OptHost {
			return nil, fdErr(skdbus.ErrorInvalidArgument, fmt.Sprintf("List: unknown option %q (known: host, prefix)", k))
		}
	}
	after, _ := opts[skdbus.OptAfter].Value().(string)
	limit, paged := opts[skdbus.OptLimit].Value().(uint32)
	keys, named := opts[skdbus.OptKeys].Value().([]string)
	out := map[string]map[string]dbus.Variant{}
	for _, id := range p.ids {
		if id <= after {
			continue
		}
		if paged && len(out) == int(limit) {
			break
		}
		e := map[string]dbus.Variant{skdbus.ListManaged: dbus.MakeVariant(true), skdbus.ListConnected: dbus.MakeVariant(true),
			skdbus.ListState: dbus.MakeVariant("connected"), skdbus.ListURI: dbus.MakeVariant("nfs://srv/" + id)}
		if named && !slices.Contains(keys, skdbus.ListAllKeys) {
			for k := range e {
				if !slices.Contains(keys, k) {
					delete(e, k)
				}
			}
		}
		out[id] = e
	}
	return out, nil
}

// seen returns the options of the calls so far.
func (p *pagingDaemon) seen() []map[string]dbus.Variant {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func startPagingDaemon(t *testing.T, n int, old bool) (*pagingDaemon, string) {
	t.Helper()
	conn, addr := privateBus(t)
	p := &pagingDaemon{old: old}
	for i := range n {
		p.ids = append(p.ids, fmt.Sprintf("vm%03d", i))
	}
	if err := conn.Export(p, skdbus.RootPath, skdbus.ManagerInterface); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(skdbus.BusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v, %v", reply, err)
	}
	return p, addr
}

func TestListFollowsThePages(t *testing.T) {
	// Arrange: pages of 4, and 10 entries.
	old := listPageSize
	listPageSize = 4
	t.Cleanup(func() { listPageSize = old })
	p, addr := startPagingDaemon(t, 10, false)

	// Act
	code, stdout, stderr := runCtl(context.Background(), addr, "", "list", "-o", "json")

	// Assert
	var got map[string]map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil {
		t.Fatalf("list -o json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if len(got) != 10 || got["vm009"]["URI"] != "nfs://srv/vm009" {
		t.Errorf("list -o json shows %d entries (vm009: %v); want all 10, with every key", len(got), got["vm009"])
	}
	var afters []string
	for _, c := range p.seen() {
		a, _ := c[skdbus.OptAfter].Value().(string)
		afters = append(afters, a)
		if k, _ := c[skdbus.OptKeys].Value().([]string); !slices.Equal(k, []string{skdbus.ListAllKeys}) {
			t.Errorf("list -o json asked for keys %q; want *", k)
		}
	}
	if !slices.Equal(afters, []string{"", "vm003", "vm007"}) {
		t.Errorf("the pages began after %q; want \"\", vm003, vm007", afters)
	}
}

func TestListOfAnOlderDaemonIsOneCall(t *testing.T) {
	// Arrange: a daemon from before paging.
	p, addr := startPagingDaemon(t, 7, true)

	// Act
	code, stdout, stderr := runCtl(context.Background(), addr, "", "list", "-o", "wide")

	// Assert
	calls := p.seen()
	if code != 0 || len(calls) != 2 {
		t.Fatalf("list: exit %d after %d calls\n%s%s", code, len(calls), stdout, stderr)
	}
	if _, paged := calls[1][skdbus.OptLimit]; paged {
		t.Errorf("the second call %v still pages", calls[1])
	}
	if !regexp.MustCompile(`(?m)^vm006 .*nfs://srv/vm006`).MatchString(stdout) {
		t.Errorf("list -o wide of an older daemon:\n%s", stdout)
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// indexPage is the page idIndex gives, as IDs.
func indexPage(x *idIndex, cids map[CID]*cidEntry, after, prefix string, limit int) []string {
	sel := pageSelection{limit: limit}
	x.page(cids, after, prefix, &sel)
	var ids []string
	for _, it := range sel.sorted() {
		ids = append(ids, it.id)
	}
	return ids
}

// wantPage is the same page worked out from the map alone.
func wantPage(cids map[CID]*cidEntry, after, prefix string, limit int) []string {
	var ids []string
	for c := range cids {
		if id := string(c); id > after && strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

// TestIDIndexPagesWhileCIDsChange: CIDs managed and unmanaged between the
// pages of a client (a few, then many: past the point where the snapshot
// is taken again; one unmanaged and managed again) never make a page
// differ from the one worked out from the managed CIDs at that moment.
func TestIDIndexPagesWhileCIDsChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cids := map[CID]*cidEntry{}
	var x idIndex
	add := func(id string) {
		if cids[CID(id)] == nil {
			cids[CID(id)] = &cidEntry{cid: CID(id)}
			x.add(id)
		}
	}
	remove := func(id string) {
		if cids[CID(id)] != nil {
			delete(cids, CID(id))
			x.remove(id)
		}
	}
	name := func(i int) string { return fmt.Sprintf("%c-%05d", 'a'+i%3, i) }
	for i := range 1000 {
		add(name(i))
	}
	for round, churn := range []int{0, 1, 5, 50, 400, 2000} {
		for _, prefix := range []string{"", "b-", "b-005", "z"} {
			for _, limit := range []int{0, 3, 50, 400} {
				after := ""
				for pages := 0; ; pages++ {
					if pages > 5000 {
						t.Fatal("pages never ended")
					}
					got := indexPage(&x, cids, after, prefix, limit)
					want := wantPage(cids, after, prefix, limit)
					if !slices.Equal(got, want) {
						t.Fatalf("round %d, prefix %q, limit %d, after %q: page of %d IDs %.3q...; want %d IDs %.3q...",
							round, prefix, limit, after, len(got), got, len(want), want)
					}
					if limit == 0 || len(got) < limit {
						break
					}
					after = got[len(got)-1]
					// Between two pages: some CIDs come and go, on both
					// sides of the client's place, and one comes back.
					for range churn {
						i := rng.IntN(2000)
						if rng.IntN(2) == 0 {
							add(name(i))
						} else {
							remove(name(i))
						}
					}
					remove(after)
					add(after)
				}
			}
		}
	}
}

// TestIDIndexTakesANewSnapshot: after many changes a page sorts the IDs
// again instead of looking at every change on every page.
func TestIDIndexTakesANewSnapshot(t *testing.T) {
	cids := map[CID]*cidEntry{}
	var x idIndex
	for i := range 1000 {
		cids[CID(fmt.Sprintf("c%04d", i))] = &cidEntry{}
	}
	indexPage(&x, cids, "", "", 10)
	for i := 1000; i < 1300; i++ {
		id := fmt.Sprintf("c%04d", i)
		cids[CID(id)] = &cidEntry{}
		x.add(id)
	}
	if len(x.added) != 300 || !x.stale() {
		t.Fatalf("after 300 CIDs added: %d added, stale %v; want 300, stale", len(x.added), x.stale())
	}

	got := indexPage(&x, cids, "c1289", "", 3)

	if !slices.Equal(got, []string{"c1290", "c1291", "c1292"}) {
		t.Errorf("page after c1289: %q", got)
	}
	if len(x.added) != 0 || len(x.sorted) != 1300 {
		t.Errorf("after the page: %d added, snapshot of %d; want 0 and 1300", len(x.added), len(x.sorted))
	}
}

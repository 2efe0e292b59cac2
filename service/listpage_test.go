// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"slices"
	"testing"
)

// pageIDs follows ListPage from the start, limit entries at a time, as a
// client follows List's pages, and returns every ID in the order seen.
func pageIDs(t *testing.T, s *Service, q ListQuery) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("ListPage never ended")
		}
		page := s.ListPage(q)
		for _, st := range page {
			ids = append(ids, st.ID)
		}
		if len(page) < q.Limit {
			return ids
		}
		q.After = page[len(page)-1].ID
	}
}

func TestListPageFollowsEveryEntryOnceInOrder(t *testing.T) {
	// Arrange: managed CIDs, a target being torn down (unmanaged/...) and
	// host connections, all in one order.
	ts := newTestService(t, withOnlyBackends(KindNFS))
	var want []string
	for i := range 23 {
		c := CID(fmt.Sprintf("vm%02d-disk", i))
		ts.manage(c, specFor(t, fmt.Sprintf("nfs://filer/export%d", i%5)))
		want = append(want, string(c))
	}
	host := []HostConnection{
		{ID: "nfs/mount7", Kind: KindNFS, Target: "nfs://other/x", URI: "nfs://other/x", Connected: true},
		{ID: "nfs/mount3", Kind: KindNFS, Target: "nfs://other/y", URI: "nfs://other/y"},
	}
	want = append(want, "nfs/mount3", "nfs/mount7")
	slices.Sort(want)

	for _, limit := range []int{1, 2, 5, 7, 23, 25, 100} {
		// Act
		got := pageIDs(t, ts.svc, ListQuery{Limit: limit, Host: host})

		// Assert
		if !slices.Equal(got, want) {
			t.Errorf("pages of %d: IDs %q; want %q", limit, got, want)
		}
	}
	if all := ts.svc.ListPage(ListQuery{Host: host}); len(all) != len(want) {
		t.Errorf("ListPage with no limit: %d entries; want %d", len(all), len(want))
	}
}

func TestListPageAfterPrefixAndInfo(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	for _, c := range []CID{"a1", "b1", "b2", "b3", "c1"} {
		ts.manage(c, specFor(t, nfsA))
	}

	// Act
	page := ts.svc.ListPage(ListQuery{Prefix: "b", After: "b1", Limit: 10})
	brief := ts.svc.ListPage(ListQuery{Prefix: "b", Limit: 1, NoInfo: true})
	full := ts.svc.ListPage(ListQuery{Prefix: "b", Limit: 1})
	gone := ts.svc.ListPage(ListQuery{After: "b15"})

	// Assert
	var ids []string
	for _, st := range page {
		ids = append(ids, st.ID)
	}
	if !slices.Equal(ids, []string{"b2", "b3"}) {
		t.Errorf("prefix b after b1: %q; want b2, b3", ids)
	}
	if len(brief) != 1 || brief[0].ID != "b1" || brief[0].Info != nil || !brief[0].Managed || brief[0].Target == "" {
		t.Errorf("NoInfo page = %+v; want b1, managed, with its target and no Info", brief)
	}
	if len(full) != 1 || full[0].Info["server"] != "files.example" {
		t.Errorf("page = %+v; want b1 with its connection info", full)
	}
	ids = ids[:0]
	for _, st := range gone {
		ids = append(ids, st.ID)
	}
	if !slices.Equal(ids, []string{"b2", "b3", "c1"}) {
		t.Errorf("after b15 (no such CID): %q; want b2, b3, c1", ids)
	}
}

// TestListPageSeesChangesBetweenPages: a CID managed after the page that
// would have held it is not listed, one managed ahead of the client is,
// and one unmanaged ahead is not, as the pages follow the sorted IDs the
// service keeps between calls.
func TestListPageSeesChangesBetweenPages(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	for _, c := range []CID{"a1", "a3", "a5", "a7", "a9"} {
		ts.manage(c, specFor(t, nfsA))
	}
	first := ts.svc.ListPage(ListQuery{Limit: 2, NoInfo: true})

	// Act
	ts.manage("a2", specFor(t, nfsA))
	ts.manage("a8", specFor(t, nfsA))
	if err := ts.svc.Unmanage("a5"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range first {
		ids = append(ids, st.ID)
	}
	for q := (ListQuery{Limit: 2, After: ids[len(ids)-1], NoInfo: true}); ; {
		page := ts.svc.ListPage(q)
		for _, st := range page {
			ids = append(ids, st.ID)
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}

	// Assert
	if want := []string{"a1", "a3", "a7", "a8", "a9"}; !slices.Equal(ids, want) {
		t.Errorf("pages: %q; want %q", ids, want)
	}
}

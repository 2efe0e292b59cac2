// SPDX-License-Identifier: Apache-2.0

package service

import (
	"slices"
	"sort"
	"strings"
	"sync"
)

// idIndex is the managed CIDs' IDs in List's order, so that a page of
// List costs about its own size and not a scan of every name: a client
// following 100 pages of 100,000 CIDs sorts them once, not 100 times.
//
// It is a sorted snapshot taken when a page needs one, plus what changed
// since: the IDs added (few; a page looks at each) and a count of those
// removed (a page skips them as it meets them, by looking each ID up). A
// page takes a new snapshot when either has grown past a fraction of it.
// Writers (add, remove) hold Service.mu for writing; pages hold it for
// reading and mu, which guards the snapshot's rebuild among them.
type idIndex struct {
	mu      sync.Mutex
	built   bool
	sorted  []string            // the snapshot, sorted; may hold removed IDs
	added   map[string]struct{} // added since the snapshot and not in it
	removed int                 // removals since the snapshot (a bound)
}

// add records that id is managed now (under Service.mu, written).
func (x *idIndex) add(id string) {
	if !x.built {
		return
	}
	if _, found := slices.BinarySearch(x.sorted, id); found {
		return // removed and managed again: the snapshot has it
	}
	if x.added == nil {
		x.added = make(map[string]struct{})
	}
	x.added[id] = struct{}{}
}

// remove records that id is no longer managed (under Service.mu, written).
func (x *idIndex) remove(id string) {
	if !x.built {
		return
	}
	if _, ok := x.added[id]; ok {
		delete(x.added, id)
		return
	}
	x.removed++
}

// stale reports whether what changed since the snapshot costs a page
// more than a new snapshot would, over the pages that follow.
func (x *idIndex) stale() bool {
	return !x.built || len(x.added) > max(256, len(x.sorted)/16) || x.removed > max(256, len(x.sorted)/4)
}

// page offers sel the managed CIDs after after that start with prefix, at
// most sel.limit of them (all when it is 0), in ID order. Under
// Service.mu, read.
func (x *idIndex) page(cids map[CID]*cidEntry, after, prefix string, sel *pageSelection) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.stale() {
		x.sorted = x.sorted[:0]
		for c := range cids {
			x.sorted = append(x.sorted, string(c))
		}
		slices.Sort(x.sorted)
		x.added, x.removed, x.built = nil, 0, true
	}
	for id := range x.added {
		if id > after && strings.HasPrefix(id, prefix) {
			if e := cids[CID(id)]; e != nil {
				sel.offer(pageItem{id: id, cid: e, unmanaged: -1})
			}
		}
	}
	// The IDs with prefix are one run of the sorted snapshot; the page
	// starts at the first one after after.
	from := max(after, prefix)
	i := sort.SearchStrings(x.sorted, from)
	n := 0
	for ; i < len(x.sorted) && (sel.limit <= 0 || n < sel.limit); i++ {
		id := x.sorted[i]
		if id <= after {
			continue
		}
		if !strings.HasPrefix(id, prefix) {
			break
		}
		if e := cids[CID(id)]; e != nil {
			sel.offer(pageItem{id: id, cid: e, unmanaged: -1})
			n++
		}
	}
}

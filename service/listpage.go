// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"slices"
	"strings"
)

// ListQuery selects a page of List's entries for ListPage. Entries come in
// ID order (bytes, as strcmp compares them), so that a client follows the
// pages by passing the last ID it got as After: every entry that exists
// from the first page to the last is seen exactly once, whatever is
// managed or unmanaged meanwhile.
type ListQuery struct {
	Prefix string // only IDs that start with it
	After  string // only IDs greater than it ("" for the first page)
	Limit  int    // at most this many entries; 0 for all
	// Host is the connections on the host (HostConnections) to list where
	// no target is theirs; nil lists none. The caller asks once for all
	// of its pages.
	Host []HostConnection
	// NoInfo leaves Info nil: its map is most of what an entry costs.
	NoInfo bool
}

// HostConnections asks the backends for the connections on the host, as
// List does when it lists them, for ListQuery.Host.
func (s *Service) HostConnections(ctx context.Context) []HostConnection {
	return s.listHost(ctx)
}

// ListPage returns the entries of List that q selects, sorted by ID.
func (s *Service) ListPage(q ListQuery) []Status {
	var out []Status
	s.ListPages(q, 1024, func(page []Status, _ int) bool {
		out = append(out, page...)
		return true
	})
	return out
}

// ListPages calls page with the entries q selects, in ID order, chunk of
// them at a time, and how many it selected in all, until it returns
// false. It picks the entries from the IDs kept in order (idIndex), then
// builds the statuses of one chunk at a time (a chunk under the lock,
// page without it), so that a List of 100,000 holds one chunk of
// statuses at any moment and never makes a writer wait for more than a
// chunk; and it builds statuses only for the entries it returns, so a
// page of 1,000 of 100,000 CIDs costs about 1,000 entries' work, not a
// scan of every name. page must not keep the slice: the next
// chunk reuses it. A CID unmanaged while its chunk waits is listed as it
// last was.
func (s *Service) ListPages(q ListQuery, chunk int, page func(chunk []Status, total int) bool) {
	s.mu.RLock()
	sel := pageSelection{limit: q.Limit}
	if want := len(s.cids); q.Limit <= 0 || q.Limit > want {
		sel.heap = make([]pageItem, 0, want+8)
	} else {
		sel.heap = make([]pageItem, 0, q.Limit)
	}
	s.ids.page(s.cids, q.After, q.Prefix, &sel)
	unmanaged := s.unmanagedLocked(q.Prefix, q.Host)
	for i, st := range unmanaged {
		if st.ID > q.After {
			sel.offer(pageItem{id: st.ID, unmanaged: i})
		}
	}
	s.mu.RUnlock()
	items := sel.sorted()
	total := len(items)
	buf := make([]Status, 0, min(chunk, len(items)))
	for len(items) > 0 {
		n := min(chunk, len(items))
		buf = buf[:0]
		s.mu.RLock()
		for _, it := range items[:n] {
			var st Status
			switch {
			case it.cid == nil:
				st = unmanaged[it.unmanaged]
			case q.NoInfo:
				st = it.cid.target.stateLocked(it.cid.spec)
				st.ID, st.Managed = it.id, true
			default:
				st = it.cid.statusLocked()
			}
			if q.NoInfo {
				st.Info = nil
			}
			buf = append(buf, st)
		}
		s.mu.RUnlock()
		items = items[n:]
		if !page(buf, total) {
			return
		}
	}
}

// pageItem is an entry ListPages may return: a managed CID, whose status
// is built only if it is, or an unmanaged entry (its index). It is small:
// the selection moves items around.
type pageItem struct {
	id        string
	cid       *cidEntry
	unmanaged int
}

// pageSelection keeps the limit smallest IDs offered (every one when limit
// is 0) in a max-heap: the IDs come in the map's random order, so after
// the first few hundred most are refused by one comparison with the top.
type pageSelection struct {
	limit int
	heap  []pageItem
}

func (p *pageSelection) offer(it pageItem) {
	if p.limit <= 0 {
		p.heap = append(p.heap, it)
		return
	}
	if len(p.heap) < p.limit {
		p.heap = append(p.heap, it)
		for i := len(p.heap) - 1; i > 0; {
			parent := (i - 1) / 2
			if p.heap[parent].id >= p.heap[i].id {
				break
			}
			p.heap[parent], p.heap[i] = p.heap[i], p.heap[parent]
			i = parent
		}
		return
	}
	if it.id >= p.heap[0].id {
		return
	}
	p.heap[0] = it
	for i := 0; ; {
		big, l, r := i, 2*i+1, 2*i+2
		if l < len(p.heap) && p.heap[l].id > p.heap[big].id {
			big = l
		}
		if r < len(p.heap) && p.heap[r].id > p.heap[big].id {
			big = r
		}
		if big == i {
			return
		}
		p.heap[i], p.heap[big] = p.heap[big], p.heap[i]
		i = big
	}
}

func (p *pageSelection) sorted() []pageItem {
	slices.SortFunc(p.heap, func(a, b pageItem) int { return strings.Compare(a.id, b.id) })
	return p.heap
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"testing"
)

// BenchmarkListPage10k: the service's share of a List of 10,000 CIDs in
// chunks of 2,048, as the bus layer takes them, without ConnectionInfo.
func BenchmarkListPage10k(b *testing.B) {
	ts := newTestService(&testing.T{}, notRunning())
	for i := range 10000 {
		spec, err := ParseURI(fmt.Sprintf("nfs://127.0.0.1/srv/export%d", i%200))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ts.svc.Manage(CID(fmt.Sprintf("bench-%06d", i)), spec); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		q := ListQuery{Limit: 2048, NoInfo: true}
		for {
			page := ts.svc.ListPage(q)
			if len(page) < q.Limit {
				break
			}
			q.After = page[len(page)-1].ID
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkStoreDurableWrite is the floor under Manage and Unmanage: the
// same durable write and removal on the same disk, without the bus or the
// daemon. Compare its percentiles with BenchmarkManageUnmanage10k's.
func BenchmarkStoreDurableWrite(b *testing.B) {
	st, _, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	spec, err := ParseURI("nfs://127.0.0.1/srv/export")
	if err != nil {
		b.Fatal(err)
	}
	put := make([]time.Duration, 0, b.N)
	del := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		c := CID(fmt.Sprintf("bench-%d", i))
		t0 := time.Now()
		if err := st.PutCID(c, spec); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := st.DeleteCID(c); err != nil {
			b.Fatal(err)
		}
		put = append(put, t1.Sub(t0))
		del = append(del, time.Since(t1))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"put", put}, {"delete", del}} {
		sort.Slice(m.ds, func(i, j int) bool { return m.ds[i] < m.ds[j] })
		b.ReportMetric(float64(m.ds[len(m.ds)/2].Microseconds())/1000, m.name+"-p50-ms")
		b.ReportMetric(float64(m.ds[(len(m.ds)-1)*99/100].Microseconds())/1000, m.name+"-p99-ms")
	}
}

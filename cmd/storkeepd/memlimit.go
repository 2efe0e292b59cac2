// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// memoryFloor is the least soft memory limit the daemon sets itself.
// With 10,000 CIDs the heap holds 20-29 MB: without a limit the runtime
// kept what it freed, and the resident size was 41-50 MB idle and 54-64
// MB at its peak; under this limit 41-43 and 47-51 MB (bench_list_test.go,
// MB/rss-idle, MB/rss-peak, on a loaded 2-core machine).
const memoryFloor = 30 << 20

// tuneMemoryLimit sets a soft memory limit (debug.SetMemoryLimit) after
// every garbage collection: the heap GOGC=50 aims at (1.5 times the live
// heap), what the runtime holds besides the heap (stacks), and 2 MiB, at
// least memoryFloor. A fixed limit would make the
// collector run without pause once the live heap grows past it (100,000
// CIDs hold far more); this one stays ahead of the live heap and makes
// the runtime give back what it no longer uses, which it otherwise
// keeps. GOMEMLIMIT in the environment wins.
func tuneMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	set := func() {
		metrics.Read(sample)
		v := make([]int64, len(sample))
		for i, s := range sample {
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = int64(s.Value.Uint64())
			}
		}
		// What the limit counts besides the heap: goroutine stacks (a
		// thousand Waits hold 10 MB of them) and the runtime's own.
		nonHeap := max(0, v[1]-v[2]-v[3]-v[4]-v[5])
		debug.SetMemoryLimit(max(memoryFloor, v[0]*3/2+nonHeap+2<<20))
	}
	set()
	onEveryGC(set)
}

// onEveryGC calls f after each garbage collection, from the finalizer
// goroutine: an object that is garbage at once, whose finalizer runs f
// and arms the next one.
func onEveryGC(f func()) {
	sentinel := new([64]byte)
	runtime.SetFinalizer(sentinel, func(*[64]byte) {
		f()
		onEveryGC(f)
	})
}

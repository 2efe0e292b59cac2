// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"context"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process and its waited-for children used.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// BenchmarkProbeCPU is the CPU, daemon and helper together, of 1,000
// probes of a directory by a kept helper (its start and exit included,
// once per 200 probes), beside its floor measured in the same run: 1,000
// starts of /bin/true (the least a process per probe would cost).
func BenchmarkProbeCPU(b *testing.B) {
	dir := b.TempDir()
	const n = 200
	var probe, floor time.Duration
	for b.Loop() {
		start := cpuTime()
		var r Runner
		for range n {
			if res := r.Probe(context.Background(), "k", Dir, dir); res.Outcome != OK {
				b.Fatalf("probe: %+v", res)
			}
		}
		// The helper's CPU counts once it has exited and been waited for.
		r.mu.Lock()
		kept := slices.Clone(r.idle)
		r.mu.Unlock()
		r.Close()
		for _, w := range kept {
			<-w.exited
		}
		probe += cpuTime() - start
		start = cpuTime()
		for range n {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
		floor += cpuTime() - start
	}
	per1000 := func(d time.Duration) float64 {
		return float64(d) / float64(time.Millisecond) / float64(b.N*n) * 1000
	}
	b.ReportMetric(per1000(probe), "cpu-ms/1000probes")
	b.ReportMetric(per1000(floor), "cpu-ms/1000probes-floor")
}

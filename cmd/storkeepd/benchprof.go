// SPDX-License-Identifier: Apache-2.0

//go:build storkeep_benchfake

package main

// Profiles of the benchmark build, for finding what a 100,000-CID start
// spends: with STORKEEP_BENCH_PROFILE=DIR each process writes the CPU
// profile of its first STORKEEP_BENCH_PROFILE_SECONDS (default 10) to
// DIR/cpu-PID.pprof, then its heap to DIR/heap-PID.pprof; and it logs its
// memory (heap, stacks, goroutines) every second meanwhile.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

func init() {
	dir := os.Getenv("STORKEEP_BENCH_PROFILE")
	if dir == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("STORKEEP_BENCH_PROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 10
	}
	cpu, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", os.Getpid())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	go func() {
		for range tick.C {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(os.Stderr, "memstats t=%.0fs heap-inuse=%dMB stack-inuse=%dMB sys=%dMB released=%dMB goroutines=%d gc=%d\n",
				time.Since(start).Seconds(), m.HeapInuse>>20, m.StackInuse>>20, m.Sys>>20, m.HeapReleased>>20, runtime.NumGoroutine(), m.NumGC)
		}
	}()
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		tick.Stop()
		pprof.StopCPUProfile()
		cpu.Close()
		runtime.GC()
		heap, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", os.Getpid())))
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer heap.Close()
		if err := pprof.WriteHeapProfile(heap); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
		}
	})
}

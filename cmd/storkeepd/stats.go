// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// notifyStats asks for SIGUSR1 on a channel for logStats. Call it before
// the bus name is owned: until then the signal's default action kills.
func notifyStats() (ch <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	return c, func() { signal.Stop(c) }
}

// logStats logs one line of the daemon's own numbers each time ch gets
// SIGUSR1 (systemctl kill -s USR1 storkeepd), until ctx ends: what an
// admin, or a test, needs to see that nothing piles up in the daemon.
func logStats(ctx context.Context, log *slog.Logger, ch <-chan os.Signal, waits func() int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			log.Info("statistics", "goroutines", runtime.NumGoroutine(), "waits", waits(),
				"heap_alloc", ms.HeapAlloc, "heap_sys", ms.HeapSys, "heap_released", ms.HeapReleased,
				"stack_sys", ms.StackSys, "sys", ms.Sys)
		}
	}
}

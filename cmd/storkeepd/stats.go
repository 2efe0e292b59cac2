package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// logStatsOnSignal logs one line of the daemon's own numbers each time it
// gets SIGUSR1 (systemctl kill -s USR1 storkeepd), until ctx ends: what an
// admin, or a test, needs to see that nothing piles up in the daemon. It
// returns once it has stopped listening.
func logStatsOnSignal(ctx context.Context, log *slog.Logger, waits func() int) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
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

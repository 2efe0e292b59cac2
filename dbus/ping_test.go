// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

// TestPingAnswersOnlyWhileServing: Ping is the watchdog's round trip
// through Serve's loop; no loop, no answer.
func TestPingAnswersOnlyWhileServing(t *testing.T) {
	store, _, err := service.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newBusServer(t, svc)
	ping := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return srv.Ping(ctx)
	}

	if err := ping(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping before Serve = %v; want no answer", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	if err := ping(20 * time.Second); err != nil {
		t.Fatalf("Ping while serving = %v; want an answer", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if err := ping(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping after Serve = %v; want no answer", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// pacedBackend counts the Observes in flight; each takes delay, or
// blocks until its context ends when hang is set.
type pacedBackend struct {
	mu                  sync.Mutex
	inflight, most, all int
	delay               time.Duration
	hang                bool
}

func (b *pacedBackend) Observe(ctx context.Context, spec Spec) (Observation, error) {
	b.mu.Lock()
	b.inflight++
	b.all++
	b.most = max(b.most, b.inflight)
	b.mu.Unlock()
	if b.hang {
		<-ctx.Done()
	} else {
		time.Sleep(b.delay)
	}
	b.mu.Lock()
	b.inflight--
	b.mu.Unlock()
	return Observation{}, ctx.Err()
}

func (b *pacedBackend) Connect(ctx context.Context, spec Spec) (Observation, error) {
	return Observation{Present: true, Connected: true}, nil
}

func (b *pacedBackend) Disconnect(ctx context.Context, spec Spec) error { return nil }

func (b *pacedBackend) counts() (most, all int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most, b.all
}

// startWithTargets starts a service with n CIDs, each on its own target,
// over backend be.
func startWithTargets(t *testing.T, n int, be Backend) *testService {
	t.Helper()
	ts := newTestService(t, notRunning())
	for i := range n {
		if err := ts.opts.Store.PutCID(CID(fmt.Sprintf("c%04d", i)), specFor(t, fmt.Sprintf("nfs://filer/e%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	ts.opts.Backends = map[Kind]Backend{KindNFS: be}
	ts.opts.ObserveTimeout = time.Hour // a hung Observe stays hung
	ts.open()
	ts.start()
	return ts
}

// waitObserved waits until be has seen n Observes.
func waitObserved(t *testing.T, be *pacedBackend, n int) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		if _, all := be.counts(); all >= n {
			return
		}
		if time.Now().After(deadline) {
			_, all := be.counts()
			t.Fatalf("%d targets observed; want %d", all, n)
		}
	}
}

// TestPassesAreBounded: at start every target gets its first pass, no
// more than maxRunners at a time (all at once, 20,000 targets held
// 150 MB of goroutine stacks).
func TestPassesAreBounded(t *testing.T) {
	defer func(w time.Duration) { stallAfter = w }(stallAfter)
	stallAfter = time.Hour // only a pass's end frees a runner
	be := &pacedBackend{delay: 2 * time.Millisecond}

	startWithTargets(t, 400, be)

	waitObserved(t, be, 400)
	if most, _ := be.counts(); most > maxRunners {
		t.Errorf("%d first passes at once; want at most %d", most, maxRunners)
	}
}

// TestHungPassesHoldNoTargetBack: passes that hang (every one, here) do
// not stop the others from starting: each stall starts a batch of
// runners more.
func TestHungPassesHoldNoTargetBack(t *testing.T) {
	defer func(w time.Duration) { stallAfter = w }(stallAfter)
	stallAfter = 200 * time.Millisecond
	be := &pacedBackend{hang: true}

	startWithTargets(t, 4*maxRunners, be)

	waitObserved(t, be, 4*maxRunners)
}

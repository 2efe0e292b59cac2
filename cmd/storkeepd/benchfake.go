// SPDX-License-Identifier: Apache-2.0

//go:build storkeep_benchfake

package main

// A build for benchmarks only (go build -tags storkeep_benchfake): every
// kind's connections are made in memory, at once, so that a benchmark
// measures the daemon with 100,000 CIDs and not a host's storage. The
// package never builds with this tag.

import (
	"context"
	"sync"

	"github.com/storkeep/storkeep/service"
)

func init() {
	fakeBackends = func() map[service.Kind]service.Backend {
		fb := &memBackend{up: make(map[service.TargetKey]bool)}
		return map[service.Kind]service.Backend{service.KindNFS: fb, service.KindISCSI: fb}
	}
}

// memBackend's connections live in a map: one that is up stays up.
type memBackend struct {
	mu sync.Mutex
	up map[service.TargetKey]bool
}

func (m *memBackend) Observe(ctx context.Context, spec service.Spec) (service.Observation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	up := m.up[spec.Target]
	return service.Observation{Present: up, Connected: up}, nil
}

func (m *memBackend) Connect(ctx context.Context, spec service.Spec) (service.Observation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.up[spec.Target] = true
	return service.Observation{Present: true, Connected: true}, nil
}

func (m *memBackend) Disconnect(ctx context.Context, spec service.Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.up, spec.Target)
	return nil
}

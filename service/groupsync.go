// SPDX-License-Identifier: Apache-2.0

package service

import (
	"os"
	"sync"
)

// groupSync makes the renames and removals in one directory durable with
// group commit: one fsync of the directory serves every change made
// before it began, so that changes that arrive while one fsync runs share
// the next. Each caller still returns only after a sync that began after
// its own change has ended; what that sync does not cover (a change made
// while it ran) waits for the next.
type groupSync struct {
	dir string
	// sync makes dir's entries durable (syncDir; tests replace it).
	sync func(dir string) error

	mu   sync.Mutex
	cond *sync.Cond
	// Generations of syncs: started counts those begun, done is the last
	// one ended; failed is the last that failed (0: none), with err.
	running bool
	started uint64
	done    uint64
	failed  uint64
	err     error
}

func newGroupSync(dir string) *groupSync {
	g := &groupSync{dir: dir, sync: syncDir}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait returns once every change the caller made in the directory before
// calling it is durable, or the error of a sync that may not have made it
// so. The first caller to find no sync running runs one for everyone
// waiting.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The first sync to begin from now on: one that runs now began
	// before the caller's change may have reached the directory.
	want := g.started + 1
	for g.done < want {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.sync(g.dir)
		g.mu.Lock()
		g.running = false
		g.done = gen
		if err != nil {
			g.failed, g.err = gen, err
		}
		g.cond.Broadcast()
	}
	// A failure of a later sync fails this caller too: after a failed
	// fsync nothing says what reached the disk.
	if g.failed >= want {
		return g.err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SPDX-License-Identifier: Apache-2.0

// Package service is the heart of storkeep: the connection IDs (CIDs) that
// clients registered (the desired state), the real connections on the host
// they map to (targets, the actual state), and the reconciler that closes
// the gap between the two, one target at a time, retrying forever.
//
// It knows nothing of D-Bus or of how a connection is made: the bus layer
// calls its methods and listens to its events; backends (nfs, iscsi)
// implement Backend.
//
// Who writes what (all under Service.mu):
//
//   - Desired state: Service.cids and target.cids are written by Manage,
//     Unmanage, UnmanagePrefix and the state loader (New, Recheck) only;
//     target.spec by the same, when the CIDs that refer to it change.
//     Service.holds (state files that did not load) by the loader only,
//     and by Manage when its write replaces such a file.
//   - Requests: target.force by Reconnect, by Manage and Unmanage (a
//     teardown cancelled or due) and by the path coming back; the pass
//     takes it.
//   - Actual state (target.actual: presence, usable, origin, state, last
//     error and its time, since, attempts, backoff, next attempt, info,
//     instance, settling, lost-once) by the target's pass only, through the methods
//     of actual (actual.go), each carrying out one outcome decide chose;
//     at start the loader sets origin from the target records.
//   - The path (target.path, pathKnown) by pathChanged, and by the pass
//     when a connection proves the path misjudged.
//   - The queue (target.queue) by pokeLocked, run and the timers (queue.go).
//
// decide (decide.go) is the only place that judges: given the desired
// state, the actual state, the path and the time, it names the next step.
// A failed or timed-out look is uncertain, never absent; nothing is torn
// down unless no CID wants it, no state file that did not load may want
// it, and storkeep made it.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a Service. The zero value of every field but Store
// means something sensible.
type Options struct {
	// Store holds the desired state on disk. Required.
	Store *Store
	// Backends make real connections, by kind. A kind without a backend is
	// still accepted; its connections report LastError NoBackend.
	Backends map[Kind]Backend
	// Logger receives the service's log; nil discards it.
	Logger *slog.Logger
	// Reconnect is the retry policy.
	Reconnect ReconnectPolicy
	// Paths follows the network path to each target's host; nil means
	// the backoff alone decides when to try again.
	Paths PathWatcher
	// MaxCIDs caps the number of CIDs (default 100000).
	MaxCIDs int
	// OpTimeout is the deadline of one Connect or Disconnect (default 3 min).
	OpTimeout time.Duration
	// ObserveTimeout is the deadline of one Observe (default 10 s).
	ObserveTimeout time.Duration
	// HostListTimeout bounds listing host connections in List (default 2 s).
	HostListTimeout time.Duration
	// Clock is the time and the timers the service uses; nil means the
	// wall clock.
	Clock Clock
	// Health says how often and how long connections are probed (for
	// backends that are Probers).
	Health HealthPolicy
}

// ReconnectPolicy is exponential backoff with jitter that never gives up.
type ReconnectPolicy struct {
	Initial time.Duration // first retry delay (default 1 s)
	Max     time.Duration // cap (default 60 s)
	Jitter  float64       // fraction of the delay added or removed at random (default 0.2)
}

// State is what a connection is doing. The set is small and documented in
// the README; clients may switch on it.
type State string

const (
	// StateConnecting: an attempt to connect is under way.
	StateConnecting State = "connecting"
	// StateConnected: the connection is up and usable.
	StateConnected State = "connected"
	// StateRetrying: the connection is down; the next attempt is at NextAttempt.
	StateRetrying State = "retrying"
	// StateDisconnecting: no CID refers to it any more and storkeep is
	// tearing it down (or waiting to retry a failed teardown).
	StateDisconnecting State = "disconnecting"
)

// Service holds the desired and actual state and runs the reconciler.
type Service struct {
	opts  Options
	store *Store
	log   *slog.Logger
	clock Clock

	// writeMu guards pending and orders every change of the desired
	// state with its write to disk, so that the disk and memory agree in
	// order (changes.go).
	writeMu sync.Mutex
	pending map[CID]*change
	// recordMu orders the writes and removals of target records (origin
	// decisions and releases), which never wait behind client calls.
	recordMu sync.Mutex

	mu      sync.RWMutex // guards all following fields
	cids    map[CID]*cidEntry
	ids     idIndex // cids' IDs in order, for List's pages
	targets map[TargetKey]*target
	// hostPaths is the last path reported for each host targets live on,
	// for targets that come later.
	hostPaths map[string]Path
	// holds: the state files that did not load, and what they keep
	// from teardown (see holds.go).
	holds   holds
	subs    map[*Subscription]struct{}
	running bool // Run has started the runners
	runq    runQueue
	// recheckTimer reads the bad state files again (holds.go).
	recheckTimer Timer
	// probeSlots bounds the probes in flight (health.go); reach is the
	// last check of each server that has a target down (reach.go).
	probeSlots chan struct{}
	reach      map[reachKey]*reachState
	reachTimer Timer
	// serverSlots bounds the probes in flight per server (health.go).
	serverSlots map[string]chan struct{}
	ctx         context.Context
	stop        context.CancelFunc

	wg sync.WaitGroup // runners
}

type cidEntry struct {
	cid    CID
	spec   Spec
	target *target
}

// New loads the desired state from opts.Store. Nothing is connected or
// disconnected before Run.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("service: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.MaxCIDs <= 0 {
		opts.MaxCIDs = defaultMaxCIDs
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 3 * time.Minute
	}
	if opts.ObserveTimeout <= 0 {
		opts.ObserveTimeout = 10 * time.Second
	}
	if opts.HostListTimeout <= 0 {
		opts.HostListTimeout = 2 * time.Second
	}
	opts.Reconnect = opts.Reconnect.withDefaults()
	opts.Health = opts.Health.withDefaults()
	s := &Service{
		probeSlots:  make(chan struct{}, opts.Health.MaxConcurrent),
		reach:       make(map[reachKey]*reachState),
		serverSlots: make(map[string]chan struct{}),
		opts:        opts,
		store:       opts.Store,
		log:         opts.Logger,
		clock:       opts.Clock,
		cids:        make(map[CID]*cidEntry),
		targets:     make(map[TargetKey]*target),
		hostPaths:   make(map[string]Path),
		subs:        make(map[*Subscription]struct{}),
		pending:     make(map[CID]*change),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) load() error {
	st, err := s.store.Load()
	if err != nil {
		return fmt.Errorf("load state from %s: %w", s.store.Dir(), err)
	}
	for _, msg := range st.Tightened {
		s.log.Warn("state file was not private; tightened", "what", msg)
	}
	for _, msg := range st.Loose {
		s.log.Error("state file is not private and could not be tightened; its secrets may be readable by others", "err", msg)
	}
	s.holds.set(st.Bad, s.log)
	for _, lc := range st.CIDs {
		s.loadCIDLocked(lc)
	}
	for _, lt := range st.Targets {
		s.loadTargetLocked(lt)
	}
	s.log.Info("state loaded", "cids", len(s.cids), "targets", len(s.targets), "bad_files", len(st.Bad))
	return nil
}

// Run starts reconciling every target and blocks until ctx is done. On
// return every runner has stopped; nothing is disconnected on shutdown.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("service: Run called twice")
	}
	s.running = true
	if s.opts.Paths != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.opts.Paths.Run(s.ctx, s.pathChanged)
		}()
	}
	for _, be := range s.opts.Backends {
		if w, ok := be.(Watcher); ok {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				w.Watch(s.ctx, s.Poke)
			}()
		}
	}
	// Every target's first step observes the host before it acts, and all
	// of the desired state is loaded by now: nothing is torn down blind.
	for _, t := range s.targets {
		s.pokeLocked(t)
	}
	s.mu.Unlock()
	s.recheckLoop()
	s.reachLoop()

	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	s.stop()
	s.mu.Lock()
	for _, t := range s.targets {
		t.queue.stopTimer()
	}
	if s.recheckTimer != nil {
		s.recheckTimer.Stop()
	}
	if s.reachTimer != nil {
		s.reachTimer.Stop()
	}
	s.runq.stopStall()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// defaultMaxCIDs is limits.max_cids when the configuration leaves it out.
const defaultMaxCIDs = 100000

// SetMaxCIDs replaces the cap on managed CIDs (limits.max_cids; 0 means
// the default), for a configuration reload. A cap below the number
// managed refuses new CIDs and drops none.
func (s *Service) SetMaxCIDs(n int) {
	if n <= 0 {
		n = defaultMaxCIDs
	}
	s.mu.Lock()
	s.opts.MaxCIDs = n
	s.mu.Unlock()
}

// Manage registers cid for spec and returns once that is durable on disk.
// It does not wait for the connection. The same cid with an Equal spec is a
// no-op (created is false); with another spec it is ErrCIDInUse. A spec
// whose target is managed by other CIDs with incompatible settings gets a
// *ConflictError. Calls for other CIDs run alongside and share the disk's
// syncs (changes.go).
func (s *Service) Manage(c CID, spec Spec) (created bool, err error) {
	if err := ValidateCID(string(c)); err != nil {
		return false, err
	}
	ch := &change{manage: &spec}
	err = s.reserve(c, ch, func() error {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if e, ok := s.cids[c]; ok {
			if e.spec.Equal(spec) {
				return errNoChange
			}
			return fmt.Errorf("%w: CID %q already manages %s with other settings; unmanage it first or choose another CID", ErrCIDInUse, c, e.spec.URI)
		}
		if len(s.cids)+s.pendingManagesLocked() >= s.opts.MaxCIDs {
			return fmt.Errorf("%w: %d CIDs are managed, the configured maximum (limits.max_cids)", ErrLimit, s.opts.MaxCIDs)
		}
		return s.conflictLocked(spec)
	})
	if errors.Is(err, errNoChange) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := s.store.PutCID(c, spec); err != nil {
		s.land(c, ch, nil)
		return false, err
	}
	s.land(c, ch, func() { s.addLocked(c, spec) })
	return true, nil
}

func conflictReason(spec Spec) string {
	if spec.Kind == KindISCSI {
		return "other CHAP credentials"
	}
	return "other NFS version or mount options"
}

// Unmanage forgets cid, durably before it returns. When no CID refers to
// its target any more, the target is disconnected in the background unless
// it was there before storkeep managed it.
func (s *Service) Unmanage(c CID) error {
	ch := &change{}
	err := s.reserve(c, ch, func() error {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if _, ok := s.cids[c]; !ok {
			return fmt.Errorf("%w: %q is not managed", ErrUnknownCID, c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.store.DeleteCID(c); err != nil {
		s.land(c, ch, nil)
		return err
	}
	s.land(c, ch, func() { s.forgetLocked(c) })
	return nil
}

// UnmanagePrefix forgets every CID that starts with prefix, atomically on
// disk, and returns them sorted. No match is not an error.
func (s *Service) UnmanagePrefix(prefix string) ([]CID, error) {
	if prefix == "" {
		return nil, fmt.Errorf("%w: the prefix must not be empty (it would unmanage every CID)", ErrInvalidArgument)
	}
	s.lockAlone()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	var match []CID
	for c := range s.cids {
		if strings.HasPrefix(string(c), prefix) {
			match = append(match, c)
		}
	}
	s.mu.RUnlock()
	sort.Slice(match, func(i, j int) bool { return match[i] < match[j] })
	if err := s.store.DeleteCIDs(match); err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, c := range match {
		s.forgetLocked(c)
	}
	s.mu.Unlock()
	return match, nil
}

func (s *Service) forgetLocked(c CID) {
	e := s.cids[c]
	delete(s.cids, c)
	s.ids.remove(string(c))
	t := e.target
	delete(t.cids, c)
	if len(t.cids) > 0 && t.spec.Equal(e.spec) {
		// Keep the target's settings from a CID that still refers to it.
		for _, o := range t.cids {
			t.spec = o.spec
			break
		}
	}
	s.publishLocked(Event{Type: EventRemoved, CID: c})
	if len(t.cids) == 0 {
		t.force = true // released: the teardown need not wait for a backoff
		if t.stopProbe != nil {
			t.stopProbe() // nor for a read of a hung server
		}
		s.changedLocked(t)
		s.pokeLocked(t)
	} else {
		// The CIDs left see no change, and the pass has nothing new to
		// do; only a Wait for c must see it go.
		s.wakeLocked(t)
	}
	s.log.Info("unmanaged", "cid", string(c), "target", string(t.key), "last", len(t.cids) == 0)
}

// Reconnect asks for an attempt now, whatever the backoff says.
func (s *Service) Reconnect(c CID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cids[c]
	if !ok {
		return fmt.Errorf("%w: %q is not managed", ErrUnknownCID, c)
	}
	e.target.force = true
	s.pokeLocked(e.target)
	return nil
}

// Poke asks for a re-check of the target with key k: backends call it when
// the host changes (a unit changed state, a session failed, a link came
// up). Unknown keys are ignored. It never blocks.
func (s *Service) Poke(k TargetKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.targets[k]; t != nil {
		t.recheck = true
		t.interruptProbeLocked()
		s.pokeLocked(t)
	}
}

// PokeAll asks for a re-check of every target.
func (s *Service) PokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.targets {
		s.pokeLocked(t)
	}
}

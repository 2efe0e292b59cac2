// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"time"
)

// Backend makes and observes the real connections of one Kind. The service
// calls it from one goroutine per target at a time, so a backend never sees
// two operations on the same target at once; calls for different targets
// run in parallel.
//
// Every method must honour ctx's deadline: the service sets one on each
// call, and a call that passes it makes the target's state uncertain, which
// the next Observe resolves.
type Backend interface {
	// Observe reports what the host shows for spec's target right now. It
	// must not block on a hung server. An error means the state could not
	// be read; the service then treats the target as possibly present.
	Observe(ctx context.Context, spec Spec) (Observation, error)
	// Connect makes the real connection for spec. It is idempotent: a
	// connection that is already there is success. A failure must never
	// tear down a connection that was there before the call.
	Connect(ctx context.Context, spec Spec) (Observation, error)
	// Disconnect tears the real connection down. A connection that is
	// already gone is success.
	Disconnect(ctx context.Context, spec Spec) error
}

// Watcher is implemented by backends that learn of changes on the host
// from events (systemd unit changes, the mount table, sysfs...). The
// service runs Watch in a goroutine of its own from Run until ctx ends.
// The backend only calls poke with the key of a target whose state may
// have changed; it never acts on the event itself: the target's runner
// observes the host and decides. Poking a key no CID refers to is a no-op.
type Watcher interface {
	Watch(ctx context.Context, poke func(TargetKey))
}

// Describer is implemented by backends that know facts about a target
// without looking at the host (the mount point an NFS export gets, say).
// They show in ConnectionInfo from the moment the target is managed.
type Describer interface {
	Describe(spec Spec) map[string]any
}

// Forgetter is implemented by backends that keep something per target
// (what Describe registered, say): the service calls Forget once no CID
// refers to the target any more and it is done with it.
type Forgetter interface {
	Forget(key TargetKey)
}

type cidsKey struct{}

// TargetCIDs returns the CIDs that refer to the target of a Connect call,
// sorted, for backends that name them (in a mount unit's description).
func TargetCIDs(ctx context.Context) []CID {
	c, _ := ctx.Value(cidsKey{}).([]CID)
	return c
}

// Prober is implemented by backends that can prove a connection usable
// with one bounded read through it (an NFS mount's root, the first block of
// each LUN). The service probes every usable target every
// HealthPolicy.Interval, and at once after an event that could change the
// answer; a target is reported connected only after a probe worked.
// Probe must return by ctx's deadline whatever the storage does: the read
// runs where a hang cannot reach the daemon (a helper process).
type Prober interface {
	Probe(ctx context.Context, spec Spec, obs Observation) ProbeResult
}

// ProbeResult is one read through a connection.
type ProbeResult struct {
	// Delay is how long the read took.
	Delay time.Duration
	// Err is nil when the read worked; otherwise named ErrNameIOTimeout,
	// ErrNameStale or ErrNameIOError, with the helper's words.
	Err *ConnError
}

// Healer is implemented by backends that can replace a connection that is
// there but broken in a way only a new one fixes (an NFS mount whose file
// handle went stale). Heal detaches the broken one without blocking on it
// and connects again, as Connect does.
type Healer interface {
	Heal(ctx context.Context, spec Spec, broken *ConnError) (Observation, error)
}

// Reacher is implemented by backends that can ask a target's server,
// cheaply and without touching any connection, whether it answers (an NFS
// NULL call, a TCP connect to an iSCSI portal). While a target is down and
// its path is usable, the service asks every second, once per server, and
// makes an attempt at once when a server that did not answer does.
type Reacher interface {
	// Server names what one check answers for: targets with the same
	// name share it.
	Server(spec Spec) string
	Reach(ctx context.Context, spec Spec) error
}

// HostLister is implemented by backends that can list every connection of
// their kind on the host, managed or not.
type HostLister interface {
	ListHost(ctx context.Context) ([]HostConnection, error)
}

// Observation is the actual state of one target on the host.
type Observation struct {
	// Present: the real connection exists on the host (possibly broken).
	Present bool
	// Connected: it exists and is usable.
	Connected bool
	// Err, when not connected, says why (e.g. a session in recovery).
	Err *ConnError
	// Info adds host facts to ConnectionInfo (mount point, devices...).
	Info map[string]any
	// Instance names the kernel object seen (a session and its block
	// devices, say), so that the service can tell the same one from a
	// new one; "" when the backend cannot tell.
	Instance string
	// Settling: not usable as seen, but only for a detail the host is
	// known to re-create in a moment (udev re-making a by-path link after
	// a session recovered). The service keeps a usable target usable
	// through it for a short grace, if Instance is unchanged.
	Settling bool
}

// HostConnection is a connection found on the host.
type HostConnection struct {
	// ID is transient, unique among the host's connections, and contains
	// '/' so it never collides with a CID (e.g. "iscsi/session3").
	ID        string
	Kind      Kind
	Target    TargetKey
	URI       string
	Connected bool
	Info      map[string]any
}

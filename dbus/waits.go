// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// Where the bus daemon itself lives: it alone sends NameOwnerChanged, and
// the bus sets a message's sender, so that signal cannot be forged.
const (
	busDriverName  = "org.freedesktop.DBus"
	busDriverPath  = godbus.ObjectPath("/org/freedesktop/DBus")
	busDriverIface = "org.freedesktop.DBus"
)

// lookupTimeout bounds the one question a Wait asks the bus about its
// caller.
const lookupTimeout = 10 * time.Second

// waitTable tracks the Waits in flight, by caller, so that they end when
// their caller leaves the bus (a Wait is a blocked goroutine, and the
// reply would go nowhere) and so that one caller cannot hold more than
// the cap. A caller is a uid: a user can open many bus connections but
// not become another user. Unique bus names are never reused while the
// bus runs, so a name that left never comes back.
type waitTable struct {
	mu      sync.Mutex
	senders map[string]*waitSender
	callers map[string]int // admitted Waits per caller key
	active  int            // admitted Waits in all
	peak    int            // most admitted since memory was last returned
	// shrunk gets a token when many Waits have ended since the peak:
	// their stacks are free memory the runtime would return to the OS
	// only slowly, over minutes.
	shrunk chan struct{}
	// lookup asks the bus for a sender's uid; nil until the watcher runs
	// (a Server on a socket pair, in tests, has no bus to ask, and there
	// a caller is its bus name).
	lookup func(ctx context.Context, sender string) (uint32, error)
}

// waitSender is one unique bus name with Waits in flight. Its context
// ends when the name leaves the bus; its Waits run under it.
type waitSender struct {
	ctx    context.Context
	cancel context.CancelFunc
	refs   int
	// known is closed once key or err is set, by the first Wait of the
	// name (identify).
	known chan struct{}
	key   string
	err   error
}

func newWaitTable() *waitTable {
	return &waitTable{senders: make(map[string]*waitSender), callers: make(map[string]int),
		shrunk: make(chan struct{}, 1)}
}

// enter registers one Wait of sender and returns the context it must run
// under; call leave when it ends. It registers before anything asks the
// bus about sender, so that a departure the watcher sees from now on ends
// the Wait, and one that came before shows as a failed lookup. With first
// set, the caller must identify the sender (once per name, not per Wait).
func (t *waitTable) enter(sender string) (ws *waitSender, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws = t.senders[sender]
	if ws == nil {
		ws = &waitSender{known: make(chan struct{})}
		ws.ctx, ws.cancel = context.WithCancel(context.Background())
		t.senders[sender] = ws
		first = true
	}
	ws.refs++
	return ws, first
}

// identify finds out who sender is: its uid, from the bus, which answers
// NameHasNoOwner for a name that has left already, and that ends the
// sender's Waits. Without a bus to ask, the caller is the bus name.
func (t *waitTable) identify(sender string, ws *waitSender) {
	defer close(ws.known)
	t.mu.Lock()
	lookup := t.lookup
	t.mu.Unlock()
	if lookup == nil {
		ws.key = "bus name " + sender
		return
	}
	ctx, cancel := context.WithTimeout(ws.ctx, lookupTimeout)
	defer cancel()
	uid, err := lookup(ctx, sender)
	if err != nil {
		ws.err = fmt.Errorf("could not identify the caller %s: %w", sender, err)
		ws.cancel()
		return
	}
	ws.key = CallerKey(uid)
}

// leave ends one Wait of sender; the last one forgets the name.
func (t *waitTable) leave(sender string, ws *waitSender) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws.refs--
	if ws.refs == 0 {
		ws.cancel()
		if t.senders[sender] == ws {
			delete(t.senders, sender)
		}
	}
}

// admit counts one more Wait for ws's caller, or says why it may not run:
// the caller has limit in flight already. The cap is the caller's to read
// from the limits in force, so that a reload changes it for the next
// Wait; those in flight run on. It returns the caller key to release.
func (t *waitTable) admit(ws *waitSender, limit int) (string, *godbus.Error) {
	<-ws.known
	if ws.err != nil {
		return "", godbus.NewError(ErrorFailed, []any{ws.err.Error()})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.callers[ws.key]; n >= limit {
		return "", godbus.NewError(ErrorLimitExceeded, []any{fmt.Sprintf(
			"%s has %d Waits in flight; the limit is %d (limits.max_waits_per_caller)", ws.key, n, limit)})
	}
	t.callers[ws.key]++
	t.active++
	t.peak = max(t.peak, t.active)
	return ws.key, nil
}

// release ends one admitted Wait of the caller key.
func (t *waitTable) release(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.callers[key]--; t.callers[key] <= 0 {
		delete(t.callers, key)
	}
	if t.peak-t.active >= trimWaits {
		select {
		case t.shrunk <- struct{}{}:
		default:
		}
	}
}

// trimmed notes that the memory of the Waits ended so far went back to
// the OS.
func (t *waitTable) trimmed() {
	t.mu.Lock()
	t.peak = t.active
	t.mu.Unlock()
}

// trimWaits is how many Waits must have ended (about 16 kB of stack each)
// before the memory they held is handed back to the OS at once.
const trimWaits = 1024

// The memory goes back once a burst of ending Waits is over (no Wait ended
// for trimQuiet), or trimMaxDelay after the burst began if it goes on;
// and once more trimFollowUp later, for the Waits of the burst that ended
// after it (fewer than trimWaits would not ask again).
const (
	trimQuiet    = 300 * time.Millisecond
	trimMaxDelay = 2 * time.Second
	trimFollowUp = time.Second
)

// departed ends the Waits of a unique name that left the bus.
func (t *waitTable) departed(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ws := t.senders[name]; ws != nil {
		ws.cancel()
		delete(t.senders, name)
	}
}

// count returns the admitted Waits.
func (t *waitTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

// departuresRule matches the bus's NameOwnerChanged signals for names that
// lost their owner (arg2, the new owner, empty): one rule for every
// caller. Well-known names match too; departed ignores them.
var departuresRule = []godbus.MatchOption{
	godbus.WithMatchSender(busDriverName),
	godbus.WithMatchObjectPath(busDriverPath),
	godbus.WithMatchInterface(busDriverIface),
	godbus.WithMatchMember("NameOwnerChanged"),
	godbus.WithMatchArg(2, ""),
}

// watchDepartures subscribes to the bus's departures and ends the Waits
// of every caller that leaves. The returned stop removes the subscription
// and waits for the watcher to end.
func (s *Server) watchDepartures() (stop func(), err error) {
	ch := make(chan *godbus.Signal, 1024)
	s.conn.Signal(ch)
	if err := s.conn.AddMatchSignal(departuresRule...); err != nil {
		s.conn.RemoveSignal(ch)
		return nil, fmt.Errorf("watch callers leaving the bus (AddMatch NameOwnerChanged): %w", err)
	}
	s.waits.mu.Lock()
	s.waits.lookup = s.askUnixUser
	s.waits.mu.Unlock()
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		trim := time.NewTimer(time.Hour)
		trim.Stop()
		defer trim.Stop()
		// When the pending burst of ended Waits began; zero while the
		// timer is for the trim after a burst's, or not armed.
		var burst time.Time
		for {
			select {
			case <-quit:
				return
			case sig, ok := <-ch:
				if !ok {
					return // the connection is closed
				}
				if name, ok := departure(sig); ok {
					s.waits.departed(name)
				}
			case <-s.waits.shrunk:
				now := time.Now()
				if burst.IsZero() {
					burst = now
				}
				trim.Reset(min(trimQuiet, burst.Add(trimMaxDelay).Sub(now)))
			case <-trim.C:
				// The runtime's scavenger takes many seconds to return
				// the stacks of thousands of ended Waits, and a user
				// can make the daemon hold them at will.
				if !burst.IsZero() {
					burst = time.Time{}
					s.waits.trimmed()
					trim.Reset(trimFollowUp)
				}
				debug.FreeOSMemory()
				s.log.Debug("memory of ended Waits returned to the OS", "waits", s.waits.count())
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		s.conn.RemoveSignal(ch)
		_ = s.conn.RemoveMatchSignal(departuresRule...)
	}, nil
}

// departure returns the unique name a NameOwnerChanged signal from the bus
// says has left. Anyone may send the daemon a signal, so it checks that
// this one comes from the bus itself.
func departure(sig *godbus.Signal) (string, bool) {
	if sig == nil || sig.Sender != busDriverName || sig.Path != busDriverPath ||
		sig.Name != busDriverIface+".NameOwnerChanged" || len(sig.Body) != 3 {
		return "", false
	}
	name, _ := sig.Body[0].(string)
	newOwner, _ := sig.Body[2].(string)
	if !strings.HasPrefix(name, ":") || newOwner != "" {
		return "", false
	}
	return name, true
}

// askUnixUser asks the bus for the uid of a unique name, every time: the
// answer also says that the name is still on the bus.
func (s *Server) askUnixUser(ctx context.Context, sender string) (uint32, error) {
	var uid uint32
	err := s.conn.BusObject().CallWithContext(ctx, busDriverIface+".GetConnectionUnixUser", 0, sender).Store(&uid)
	return uid, err
}

// Waits returns the Connection.Wait calls in flight.
func (s *Server) Waits() int { return s.waits.count() }

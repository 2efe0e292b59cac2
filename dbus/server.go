// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/ratelog"
	"github.com/storkeep/storkeep/service"
)

// Options configure a Server.
type Options struct {
	Service    *service.Service
	Authorizer Authorizer // nil allows every call (tests only)
	Logger     *slog.Logger
	Version    string
	Limits     Limits
	// Refused rate-limits the lines about malformed calls per caller;
	// nil writes each. Share it with the Authorizer's, so that one
	// caller's bad calls and denials count together.
	Refused *ratelog.Limiter
	// CallerUID returns the uid behind a unique bus name (cached), to
	// name the caller of a malformed call; nil names it by its bus name.
	CallerUID func(ctx context.Context, sender string) (uint32, error)
}

// CallerKey names a uid as a caller of the log's rate limit: a user can
// open any number of bus connections, not become another user.
func CallerKey(uid uint32) string { return fmt.Sprintf("uid %d", uid) }

// Conn is a bus connection made by Connect. Big replies on it are
// encoded by storkeep itself rather than by godbus.
type Conn struct {
	*godbus.Conn
	swap   *replySwapper
	filter *busFilter
}

// Server serves API v1 on one bus connection.
type Server struct {
	conn   *godbus.Conn
	swap   *replySwapper
	filter *busFilter
	svc    *service.Service
	auth   Authorizer
	log    *slog.Logger
	ver    string
	// lim is swapped whole by SetLimits (a configuration reload); a
	// call reads it once, through limits, and sees one set.
	lim atomic.Pointer[Limits]

	waits *waitTable // Waits in flight, by caller

	refused   *ratelog.Limiter
	callerUID func(ctx context.Context, sender string) (uint32, error)

	mu      sync.Mutex                 // guards emitted and seenEnc
	emitted map[service.CID]seenObject // what clients were told (seen.go)
	seenEnc wireEncoder                // observe's scratch

	// pings are Ping's round trips through Serve's loop.
	pings chan chan struct{}
}

// NewServer exports the API on conn. It does not request the bus name:
// call Serve, which also sends the change signals.
func NewServer(c *Conn, opts Options) (*Server, error) {
	conn := c.Conn
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Limits = opts.Limits.withDefaults()
	s := &Server{conn: conn, swap: c.swap, filter: c.filter, svc: opts.Service, auth: opts.Authorizer, log: opts.Logger,
		ver: opts.Version, emitted: make(map[service.CID]seenObject),
		waits: newWaitTable(), refused: opts.Refused, callerUID: opts.CallerUID,
		pings: make(chan chan struct{})}
	s.lim.Store(&opts.Limits)
	if s.filter != nil {
		s.filter.setLogger(s.log)
	}
	exports := []struct {
		v       any
		iface   string
		subtree bool
	}{
		{manager{s}, ManagerInterface, false},
		{objectManager{s}, ObjectManagerIface, false},
		{properties{s}, PropertiesIface, true},
		{introspectable{s}, IntrospectableIface, true},
		{connection{s}, ConnInterface, true},
	}
	for _, e := range exports {
		var err error
		if e.subtree {
			err = conn.ExportSubtree(e.v, RootPath, e.iface)
		} else {
			err = conn.Export(e.v, RootPath, e.iface)
		}
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", e.iface, err)
		}
	}
	return s, nil
}

// SetLimits replaces the limits as a whole (zero fields mean their
// defaults, as in Options), for a configuration reload. Calls under way
// keep the limits they started with.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	s.lim.Store(&l)
}

// limits returns the limits in force.
func (s *Server) limits() Limits { return *s.lim.Load() }

// ErrConnectionLost is wrapped by Serve's error when the bus connection
// is gone.
var ErrConnectionLost = errors.New("bus connection lost")

// Serve owns the bus name and emits signals until ctx is done. It returns
// an error at once if the name is owned by someone else, and one wrapping
// ErrConnectionLost, logged at error level, when the bus connection is
// lost: the process must then exit non-zero, so that systemd starts it
// again, rather than live on without its name.
func (s *Server) Serve(ctx context.Context) error {
	sub := s.svc.Subscribe()
	defer sub.Close()
	// Seed what clients have seen before we own the name, so that the
	// first change of each object is a diff, not a repeat. The events
	// so far are in the seed; those that come while it is taken are
	// diffed with it once the name is ours (a CID seeded before its
	// change signals the change, one seeded after it signals nothing).
	// A chunk of statuses at a time: with 10,000 CIDs, all of them at
	// once was a third of the daemon's peak heap at start.
	sub.Take()
	s.mu.Lock()
	s.svc.ListPages(service.ListQuery{}, listChunk, func(page []service.Status, _ int) bool {
		for i := range page {
			if page[i].Managed {
				s.emitted[service.CID(page[i].ID)], _ = observe(nil, &page[i], &s.seenEnc)
			}
		}
		return true
	})
	s.mu.Unlock()

	// Before the name is ours, so that no Wait can outlive its caller.
	stopWatch, err := s.watchDepartures()
	if err != nil {
		return err
	}
	defer stopWatch()

	reply, err := s.conn.RequestName(BusName, godbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request bus name %s: %w", BusName, err)
	}
	if reply != godbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("request bus name %s: already owned by another process", BusName)
	}
	s.log.Info("serving", "name", BusName)
	lost := s.conn.Context().Done()
	for {
		select {
		case <-lost:
			return s.connectionLost()
		case <-ctx.Done():
			// systemd stops a Type=dbus service whose name went away:
			// that SIGTERM must not turn a lost connection into a clean
			// exit, which Restart=on-failure would not restart.
			if s.conn.Context().Err() != nil {
				return s.connectionLost()
			}
			return nil
		case <-sub.Ready():
			s.emit(sub.Take())
		case done := <-s.pings:
			close(done)
		}
	}
}

// connectionLost logs the loss of the bus connection and returns it as an
// error, with the read error that ended it when there was one.
func (s *Server) connectionLost() error {
	var cause error
	if s.filter != nil {
		cause = s.filter.readErr()
	}
	if cause == nil {
		cause = errors.New("closed")
	}
	s.log.Error("bus connection lost; exiting so that the service manager restarts the daemon",
		"name", BusName, "err", cause)
	return fmt.Errorf("%w (%s): %w", ErrConnectionLost, BusName, cause)
}

// emit sends one signal per object for a batch of events.
func (s *Server) emit(events []service.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		path := ConnectionPath(string(ev.CID))
		switch ev.Type {
		case service.EventAdded, service.EventChanged:
			st, ok := s.svc.Status(ev.CID)
			if !ok {
				continue // removed meanwhile; its Removed event follows
			}
			old, seen := s.emitted[ev.CID]
			if !seen {
				s.emitted[ev.CID], _ = observe(nil, &st, &s.seenEnc)
				s.signal(RootPath, ObjectManagerIface+".InterfacesAdded", path, interfacesOf(st))
				continue
			}
			cur, changes := observe(&old, &st, &s.seenEnc)
			s.emitted[ev.CID] = cur
			for _, c := range changes {
				s.signal(path, PropertiesIface+".PropertiesChanged", c.iface, c.changed, []string{})
			}
		case service.EventPath:
			s.emitPath(ev.Path)
		case service.EventRemoved:
			old, seen := s.emitted[ev.CID]
			if !seen {
				continue
			}
			delete(s.emitted, ev.CID)
			s.signal(RootPath, ObjectManagerIface+".InterfacesRemoved", path, interfaceNames(service.Status{Kind: old.kind}))
		}
	}
}

// emitPath tells clients that the network path to a host changed, and
// which CIDs ride on it: Manager.PathChanged(host, usable, link, reason,
// cids). reason is empty for a usable path, else the connection error
// name and its words ("LinkDown: link eth1 is down").
func (s *Server) emitPath(p *service.PathEvent) {
	reason := ""
	if !p.Path.Usable {
		reason = p.Path.Why + ": " + p.Path.Detail
	}
	cids := make([]string, len(p.CIDs))
	for i, c := range p.CIDs {
		cids[i] = string(c)
	}
	s.signal(RootPath, ManagerInterface+".PathChanged", p.Host, p.Path.Usable, p.Path.Link, reason, cids)
}

// signal emits a signal from path; InterfacesAdded and InterfacesRemoved
// come from the ObjectManager at the root.
func (s *Server) signal(path godbus.ObjectPath, name string, args ...any) {
	if err := s.conn.Emit(path, name, args...); err != nil {
		s.log.Warn("signal not sent", "signal", name, "err", err)
	}
}

// replyHeaderRoom is what a swapped reply's header may take of the
// message size: its fixed part, reply serial, destination and signature.
const replyHeaderRoom = 1024

// swapBody arranges for body, of type signature and size bytes in
// pieces, to replace the reply the handler of msg then returns; written,
// if not nil, is called once body is written. It reports false when it
// cannot: the caller wants no reply, or names no sender.
func (s *Server) swapBody(msg godbus.Message, signature string, body [][]byte, size int, written func()) bool {
	if s.swap == nil || msg.Flags&godbus.FlagNoReplyExpected != 0 || size > maxSwappedBodySize {
		return false
	}
	sender, ok := msg.Headers[godbus.FieldSender].Value().(string)
	if !ok {
		return false
	}
	s.swap.register(sender, msg.Serial(), signature, body, size, written)
	return true
}

package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/ratelog"
	"github.com/storkeep/storkeep/service"
)

// Authorizer decides whether the caller of a method may do what it asks.
// It returns nil to allow, or an error (wrapping ErrNotAuthorized and
// naming req.Action) that is sent back to the caller.
type Authorizer interface {
	Authorize(ctx context.Context, req AuthRequest) error
}

// AuthRequest is one question to an Authorizer.
type AuthRequest struct {
	// Sender is the caller's unique bus name (":1.42"), as the bus daemon
	// set it: the only identity of the caller that cannot be forged.
	Sender string
	// Action is the polkit action the method needs (ActionManage...).
	Action string
	// Interactive: the call carries the ALLOW_INTERACTIVE_AUTHORIZATION
	// flag (busctl --allow-interactive-authorization=yes, the default of
	// busctl; gdbus call --interactive), so the caller is willing to wait
	// while polkit asks a person for a password.
	Interactive bool
	// Details describe what the call acts on (AuthDetailCID...), for
	// polkit rules.
	Details map[string]string
}

// Actions a mutating method asks the Authorizer about.
const (
	ActionManage    = "org.storkeep.StorKeep1.manage"
	ActionReconnect = "org.storkeep.StorKeep1.reconnect"
)

// How long one authorization may take: polkit answers a plain question in
// milliseconds, but with interaction allowed it waits for a person.
const (
	authTimeout            = 30 * time.Second
	authTimeoutInteractive = 5 * time.Minute
)

// ErrNotAuthorized is wrapped by Authorizer errors that deny a call.
var ErrNotAuthorized = errors.New("not authorized")

// Limits bound what one call may ask for, so that no client can make the
// daemon do unbounded work or store more than it should. The sizes are
// checked before the call is authorized or anything is written. A zero
// field means its default; the lengths are capped at service's ceilings.
type Limits struct {
	MaxOptions int           // entries in one options dictionary (default 64)
	MaxWait    time.Duration // longest Wait (default 1 h)
	// MaxCIDLength bounds the CID a Manage call registers (default 255).
	MaxCIDLength int
	// MaxURILength bounds a Manage call's URI, as sent and once
	// normalized (default 4096).
	MaxURILength int
	// MaxOptionLength bounds each string option value of a Manage call,
	// the CHAP credentials (default 4096).
	MaxOptionLength int
	// MaxWaitsPerCaller bounds the Waits one caller (uid) may have in
	// flight (default 64). Each Wait reads it as it starts.
	MaxWaitsPerCaller int
}

// maxStringArg bounds every other string argument and option value: the
// CIDs and prefixes of the other calls, List's options. It is fixed, not
// configured, so that lowering a limit never locks out a CID that is
// managed already.
const maxStringArg = 4096

// withDefaults fills in zero fields and caps the lengths at the ceilings
// the service itself enforces.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 || *v > d {
			*v = d
		}
	}
	if l.MaxOptions <= 0 {
		l.MaxOptions = 64
	}
	def(&l.MaxCIDLength, service.MaxCIDLength)
	def(&l.MaxURILength, service.MaxURILength)
	def(&l.MaxOptionLength, service.MaxOptionLength)
	if l.MaxWait <= 0 {
		l.MaxWait = time.Hour
	}
	if l.MaxWaitsPerCaller <= 0 {
		l.MaxWaitsPerCaller = service.DefaultMaxWaitsPerCaller
	}
	return l
}

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

	mu      sync.Mutex // guards emitted
	emitted map[service.CID]service.Status
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
		ver: opts.Version, emitted: make(map[service.CID]service.Status),
		waits: newWaitTable(), refused: opts.Refused, callerUID: opts.CallerUID}
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
	// first change of each object is a diff, not a repeat.
	s.mu.Lock()
	for _, c := range s.svc.CIDs() {
		if st, ok := s.svc.Status(c); ok {
			s.emitted[c] = st
		}
	}
	s.mu.Unlock()
	sub.Take()

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
			s.emitted[ev.CID] = st
			if !seen {
				s.signal(RootPath, ObjectManagerIface+".InterfacesAdded", path, interfacesOf(st))
				continue
			}
			for _, c := range changedIfaces(old, st) {
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
			s.signal(RootPath, ObjectManagerIface+".InterfacesRemoved", path, interfaceNames(old))
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

// swapReply encodes the reply to msg with enc and arranges for it to
// replace the placeholder the handler then returns. It reports false when
// the caller must build the reply the ordinary way.
func (s *Server) swapReply(msg godbus.Message, signature string, enc func(*wireEncoder) error) bool {
	if s.swap == nil || msg.Flags&godbus.FlagNoReplyExpected != 0 {
		return false
	}
	sender, ok := msg.Headers[godbus.FieldSender].Value().(string)
	if !ok {
		return false
	}
	var e wireEncoder
	if err := enc(&e); err != nil || len(e.b) > maxSwappedBodySize {
		s.log.Debug("reply encoded by godbus", "reason", err)
		return false
	}
	s.swap.register(sender, msg.Serial(), signature, e.b)
	return true
}

// authorize asks the Authorizer, which logs its decision. An interactive
// request may wait for a person to type a password, so it gets longer.
func (s *Server) authorize(msg godbus.Message, action string, details map[string]string) *godbus.Error {
	if s.auth == nil {
		return nil
	}
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	req := AuthRequest{Sender: sender, Action: action, Details: details,
		Interactive: msg.Flags&godbus.FlagAllowInteractiveAuthorization != 0}
	timeout := authTimeout
	if req.Interactive {
		timeout = authTimeoutInteractive
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.auth.Authorize(ctx, req); err != nil {
		return toError(err)
	}
	return nil
}

// toError maps a service error to its API v1 error name.
func toError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	var (
		uriErr *service.URIError
		cidErr *service.CIDError
		name   string
	)
	switch {
	case errors.As(err, &uriErr):
		name = ErrorInvalidURI
	case errors.As(err, &cidErr):
		name = ErrorInvalidCID
	case errors.Is(err, service.ErrCIDInUse):
		name = ErrorCIDInUse
	case errors.Is(err, service.ErrConflict):
		name = ErrorConflict
	case errors.Is(err, service.ErrUnknownCID):
		name = ErrorUnknownCID
	case errors.Is(err, service.ErrInvalidArgument), errors.Is(err, service.ErrLimit):
		name = ErrorInvalidArgument
	case errors.Is(err, service.ErrTimeout):
		name = ErrorTimeout
	case errors.Is(err, ErrNotAuthorized):
		name = ErrorNotAuthorized
	default:
		name = ErrorFailed
	}
	return godbus.NewError(name, []any{err.Error()})
}

func invalidArg(format string, args ...any) *godbus.Error {
	return godbus.NewError(ErrorInvalidArgument, []any{fmt.Sprintf(format, args...)})
}

// checkString refuses strings a client should never send.
func checkString(what, v string) *godbus.Error {
	if len(v) > maxStringArg {
		return invalidArg("%s is %d bytes; the limit is %d", what, len(v), maxStringArg)
	}
	return nil
}

// checkOptionLengths refuses a Manage call whose string option values
// (already checked by checkOptions for their keys and types) pass the
// configured limit.
func (s *Server) checkOptionLengths(opts map[string]godbus.Variant) *godbus.Error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	limit := s.limits().MaxOptionLength
	for _, k := range keys {
		if v, ok := opts[k].Value().(string); ok && len(v) > limit {
			return invalidArg("option %s is %d bytes; the limit is %d (limits.max_option_length)", k, len(v), limit)
		}
	}
	return nil
}

// checkNewCID refuses a CID that Manage must not register: too long for
// the configured limit, or against the CID rules.
func (s *Server) checkNewCID(cid string) *godbus.Error {
	if limit := s.limits().MaxCIDLength; len(cid) > limit {
		return godbus.NewError(ErrorInvalidCID, []any{fmt.Sprintf("invalid CID: %s is %d bytes; the limit is %d (limits.max_cid_length)",
			quoteShort(cid), len(cid), limit)})
	}
	return toError(service.ValidateCID(cid))
}

// parseURI parses a Manage call's URI within the configured length limit,
// which it checks before parsing (it bounds the parser's work) and on the
// normalized form (which percent-encoding can make longer).
func (s *Server) parseURI(uri string) (service.Spec, *godbus.Error) {
	limit := s.limits().MaxURILength
	tooLong := func(n int, form string) *godbus.Error {
		return godbus.NewError(ErrorInvalidURI, []any{fmt.Sprintf("invalid URI: URI is %d bytes%s; the limit is %d (limits.max_uri_length)",
			n, form, limit)})
	}
	if len(uri) > limit {
		return service.Spec{}, tooLong(len(uri), "")
	}
	spec, err := service.ParseURI(uri)
	if err != nil {
		return service.Spec{}, toError(err)
	}
	if len(spec.URI) > limit {
		return service.Spec{}, tooLong(len(spec.URI), " once normalized")
	}
	return spec, nil
}

// checkOptions refuses unknown keys, wrong types and oversized dictionaries.
// allowed maps each accepted key to its D-Bus signature.
func (s *Server) checkOptions(method string, opts map[string]godbus.Variant, allowed map[string]string) *godbus.Error {
	if limit := s.limits().MaxOptions; len(opts) > limit {
		return invalidArg("%s: %d options; the limit is %d (limits.max_options)", method, len(opts), limit)
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sig, ok := allowed[k]
		if !ok {
			known := make([]string, 0, len(allowed))
			for a := range allowed {
				known = append(known, a)
			}
			sort.Strings(known)
			if len(known) == 0 {
				return invalidArg("%s: unknown option %.64q (this method takes no options)", method, k)
			}
			return invalidArg("%s: unknown option %.64q (known: %s)", method, k, strings.Join(known, ", "))
		}
		if got := opts[k].Signature().String(); got != sig {
			return invalidArg("%s: option %q must have type %q, not %q", method, k, sig, got)
		}
		if sig == "s" {
			if err := checkString("option "+k, opts[k].Value().(string)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSignature refuses a call whose arguments have other types than the
// method's: godbus would otherwise convert, say, a uint32 into a string.
func checkSignature(msg godbus.Message, want string) *godbus.Error {
	got, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	if got.String() != want {
		return godbus.NewError("org.freedesktop.DBus.Error.InvalidArgs",
			[]any{fmt.Sprintf("arguments of type %q, want %q", got.String(), want)})
	}
	return nil
}

// cidOfPath returns the CID an object path names.
func cidOfPath(msg godbus.Message) (service.CID, *godbus.Error) {
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	c, ok := CIDFromPath(path)
	if !ok {
		return "", godbus.NewError("org.freedesktop.DBus.Error.UnknownObject",
			[]any{fmt.Sprintf("no object at %s", path)})
	}
	return service.CID(c), nil
}

// SPDX-License-Identifier: Apache-2.0

package dbus

// What a method call may ask for, and how its arguments are checked and
// its errors named before and after the service sees it.

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

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
	// MaxMessageSize is the longest message the bus takes (default
	// DefaultMaxMessageSize, at most the protocol's 128 MiB): a longer
	// reply would make the bus drop the daemon's connection, so List and
	// GetManagedObjects fail with ReplyTooLarge instead.
	MaxMessageSize int
}

// DefaultMaxMessageSize is dbus-daemon's max_message_size on the system
// bus (32 MiB; dbus-broker takes 128 MiB).
const DefaultMaxMessageSize = 32 << 20

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
	if l.MaxMessageSize <= 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	l.MaxMessageSize = min(l.MaxMessageSize, maxMessageSize)
	return l
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

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the service API. Callers test them with errors.Is; the
// bus layer maps them to D-Bus error names.
var (
	ErrUnknownCID      = errors.New("unknown CID")
	ErrCIDInUse        = errors.New("CID in use")
	ErrConflict        = errors.New("conflicting target settings")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrTimeout         = errors.New("timed out")
	ErrLimit           = errors.New("limit reached")
)

// ConflictError is returned by Manage when the target is already managed
// under other CIDs with settings that cannot share one real connection.
type ConflictError struct {
	Target TargetKey
	CIDs   []CID // the CIDs it conflicts with, sorted
	Reason string
}

func (e *ConflictError) Error() string {
	names := make([]string, len(e.CIDs))
	for i, c := range e.CIDs {
		names[i] = fmt.Sprintf("%q", string(c))
	}
	return fmt.Sprintf("target %s is managed with other settings by CID %s: %s",
		e.Target, strings.Join(names, ", "), e.Reason)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ConnError is a failure of a real connection, with a short name a client
// can act on (LastError) and a message for people (LastErrorMessage).
// Backends return it; any other error is reported under the name Failed.
type ConnError struct {
	Name string // e.g. Timeout, Unreachable, AuthFailed, NotFound, Lost
	Err  error
}

func (e *ConnError) Error() string { return e.Name + ": " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// NewConnError returns a ConnError with a formatted message.
func NewConnError(name, format string, args ...any) *ConnError {
	return &ConnError{Name: name, Err: fmt.Errorf(format, args...)}
}

// Connection error names the service itself produces. Backends add their own.
const (
	ErrNameFailed    = "Failed"    // a backend error without a name
	ErrNameTimeout   = "Timeout"   // an operation passed its deadline: the outcome is uncertain
	ErrNameNoBackend = "NoBackend" // no backend for this kind is available in this daemon
	ErrNameLost      = "Lost"      // the connection was up and went away
	// ErrNameBadStateFile: a state file did not load; what it may name is
	// held (never disconnected) until it is fixed or removed.
	ErrNameBadStateFile = "BadStateFile"
	// What a failed read through a connection (a probe) says.
	ErrNameIOTimeout = "IOTimeout" // no answer by the probe's deadline
	ErrNameStale     = "Stale"     // ESTALE: the server no longer knows the file handle
	ErrNameIOError   = "IOError"   // any other error of the read
)

// connErrorOf names any error for LastError.
func connErrorOf(err error) *ConnError {
	var ce *ConnError
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &ConnError{Name: ErrNameTimeout, Err: err}
	}
	return &ConnError{Name: ErrNameFailed, Err: err}
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"time"

	godbus "github.com/godbus/dbus/v5"
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

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"errors"

	"github.com/storkeep/storkeep/service"
)

// Error names this backend reports in LastError. A client acts on the
// name; the message is for people.
const (
	// ErrPortalUnreachable: no TCP connection to the portal (refused,
	// no route, or no answer within iscsid's login timeout).
	ErrPortalUnreachable = "PortalUnreachable"
	// ErrTargetNotFound: the portal answered, but has no target of that name.
	ErrTargetNotFound = "TargetNotFound"
	// ErrAuthenticationFailed: the target refused the CHAP credentials, or
	// wants some and none were given (iscsiadm exit code 24).
	ErrAuthenticationFailed = "AuthenticationFailed"
	// ErrNoLUN: logged in, but the requested LUN (or any LUN) has no block
	// device.
	ErrNoLUN = "NoLUN"
	// ErrTimeout: an iscsiadm call or the wait for devices passed its
	// deadline; the outcome is uncertain and the next Observe tells.
	ErrTimeout = service.ErrNameTimeout
	// ErrInitiatorUnavailable: no iscsiadm, no iscsid, or no kernel
	// initiator.
	ErrInitiatorUnavailable = "InitiatorUnavailable"
	// ErrLoginFailed: any other failure to log in or to prepare the login.
	ErrLoginFailed = "LoginFailed"
	// ErrSessionFailed: the session exists, but the kernel does not show
	// it logged in (FAILED while it recovers, or FREE).
	ErrSessionFailed = "SessionFailed"
	// ErrLost: a session that was up vanished.
	ErrLost = service.ErrNameLost
)

// iscsiadm exit codes (open-iscsi include/iscsi_err.h) this backend acts on.
const (
	exitSessionNotFound   = 2  // ISCSI_ERR_SESS_NOT_FOUND
	exitTransport         = 4  // ISCSI_ERR_TRANS: connection failure
	exitLogin             = 5  // ISCSI_ERR_LOGIN: generic login failure
	exitTransportTimeout  = 8  // ISCSI_ERR_TRANS_TIMEOUT
	exitPDUTimeout        = 11 // ISCSI_ERR_PDU_TIMEOUT
	exitTransportNotFound = 12 // ISCSI_ERR_TRANS_NOT_FOUND: no iscsi_tcp
	exitSessionExists     = 15 // ISCSI_ERR_SESS_EXISTS: already logged in
	exitIscsidComm        = 18 // ISCSI_ERR_ISCSID_COMM_ERR
	exitFatalLogin        = 19 // ISCSI_ERR_FATAL_LOGIN: e.g. target not found
	exitIscsidNotConn     = 20 // ISCSI_ERR_ISCSID_NOTCONN: no iscsid
	exitNoObjects         = 21 // ISCSI_ERR_NO_OBJS_FOUND: no such record/session
	exitSysfsLookup       = 22 // ISCSI_ERR_SYSFS_LOOKUP: e.g. logout of a session id that is gone
	exitAuthFailed        = 24 // ISCSI_ERR_LOGIN_AUTH_FAILED
)

// loginErrorName names a failed login by iscsiadm's exit code. Exit code
// 19 (fatal login failure) is refined by the caller: the target may not
// exist, or refuse for another reason.
func loginErrorName(code int) string {
	switch code {
	case exitAuthFailed:
		return ErrAuthenticationFailed
	case exitTransport, exitTransportTimeout, exitPDUTimeout:
		return ErrPortalUnreachable
	case exitTransportNotFound, exitIscsidComm, exitIscsidNotConn:
		return ErrInitiatorUnavailable
	}
	return ErrLoginFailed
}

// connErrorFor names err for LastError: a ConnError keeps its name, a
// passed deadline is a Timeout, a missing helper means no initiator, and
// anything else is named fallback.
func connErrorFor(fallback string, err error) *service.ConnError {
	var ce *service.ConnError
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &service.ConnError{Name: ErrTimeout, Err: err}
	case errors.Is(err, errNotFound):
		return &service.ConnError{Name: ErrInitiatorUnavailable, Err: err}
	}
	return &service.ConnError{Name: fallback, Err: err}
}

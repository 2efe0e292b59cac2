// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"strings"
)

// MaxCHAPLength is open-iscsi's limit on CHAP names and secrets
// (AUTH_STR_MAX_LEN is 256 bytes with the terminating NUL).
const MaxCHAPLength = 255

// CHAP holds iSCSI CHAP credentials. Its String method hides them.
type CHAP struct {
	Username   string
	Password   string
	UsernameIn string // mutual CHAP: the target's name
	PasswordIn string // mutual CHAP: the target's secret
}

// String never shows a secret.
func (c CHAP) String() string {
	if c == (CHAP{}) {
		return "none"
	}
	if c.UsernameIn != "" {
		return "mutual CHAP as " + c.Username
	}
	return "CHAP as " + c.Username
}

// GoString never shows a secret either (%#v).
func (c CHAP) GoString() string { return c.String() }

// Empty reports whether no credentials are set.
func (c CHAP) Empty() bool { return c == (CHAP{}) }

// Check refuses credentials storkeep cannot log in with: a name without
// its secret (or the reverse), mutual CHAP without one-way CHAP, and
// values a node record cannot hold: iscsiadm reads a value up to the end
// of its line, with surrounding white space stripped, and at most
// MaxCHAPLength bytes. Errors name the Manage option at fault, never a
// value. The D-Bus Manage call checks before it stores; the iSCSI backend
// checks again before it writes a record.
func (c CHAP) Check() error {
	if (c.Username == "") != (c.Password == "") {
		return errors.New("CHAP needs both chap-username and chap-password")
	}
	if (c.UsernameIn == "") != (c.PasswordIn == "") {
		return errors.New("mutual CHAP needs both chap-username-in and chap-password-in")
	}
	if c.UsernameIn != "" && c.Username == "" {
		return errors.New("mutual CHAP (chap-username-in) needs one-way CHAP (chap-username) too")
	}
	fields := [...]struct{ option, v string }{
		{"chap-username", c.Username}, {"chap-password", c.Password},
		{"chap-username-in", c.UsernameIn}, {"chap-password-in", c.PasswordIn},
	}
	for _, f := range fields {
		if len(f.v) > MaxCHAPLength {
			return fmt.Errorf("%s is %d bytes; open-iscsi takes at most %d", f.option, len(f.v), MaxCHAPLength)
		}
		if strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%s contains a control character", f.option)
		}
		if strings.TrimSpace(f.v) != f.v {
			return fmt.Errorf("%s starts or ends with white space, which open-iscsi cannot store", f.option)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"strings"
	"testing"
)

// TestCHAPCheck: the one set of CHAP rules that Manage and the iSCSI
// backend apply. Its errors name the option, never a value.
func TestCHAPCheck(t *testing.T) {
	max := strings.Repeat("z", MaxCHAPLength)
	good := []CHAP{
		{},
		{Username: "a", Password: "p w#="},
		{Username: "a", Password: "p", UsernameIn: "b", PasswordIn: "q"},
		{Username: max, Password: max, UsernameIn: max, PasswordIn: max},
		{Username: "ünïcode", Password: "sécret\u00a0x"},
	}
	for _, c := range good {
		if err := c.Check(); err != nil {
			t.Errorf("Check(%q) = %v", c.Password, err)
		}
	}
	bad := []struct {
		c    CHAP
		want string
	}{
		{CHAP{Username: "a"}, "CHAP needs both chap-username and chap-password"},
		{CHAP{Password: "Zq7"}, "CHAP needs both chap-username and chap-password"},
		{CHAP{Username: "a", Password: "Zq7", UsernameIn: "b"}, "mutual CHAP needs both chap-username-in and chap-password-in"},
		{CHAP{UsernameIn: "b", PasswordIn: "Zq7"}, "mutual CHAP (chap-username-in) needs one-way CHAP (chap-username) too"},
		{CHAP{Username: "a", Password: max + "Z"}, "chap-password is 256 bytes; open-iscsi takes at most 255"},
		{CHAP{Username: max + "Z", Password: "Zq7"}, "chap-username is 256 bytes"},
		{CHAP{Username: "a", Password: "p", UsernameIn: "b", PasswordIn: max + "Z"}, "chap-password-in is 256 bytes"},
		{CHAP{Username: "a", Password: "Zq7\n"}, "chap-password contains a control character"},
		{CHAP{Username: "a", Password: "Zq7\x00q"}, "chap-password contains a control character"},
		{CHAP{Username: "a", Password: "Zq7\x7f"}, "chap-password contains a control character"},
		{CHAP{Username: "a\tb", Password: "Zq7"}, "chap-username contains a control character"},
		{CHAP{Username: "a", Password: " Zq7"}, "chap-password starts or ends with white space"},
		{CHAP{Username: "a", Password: "Zq7 "}, "chap-password starts or ends with white space"},
		{CHAP{Username: "a", Password: "p", UsernameIn: "b ", PasswordIn: "Zq7"}, "chap-username-in starts or ends with white space"},
		{CHAP{Username: "a", Password: "Zq7\u0085"}, "chap-password starts or ends with white space"},
	}
	for _, tc := range bad {
		err := tc.c.Check()
		if err == nil || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v; want %q", tc.c.Password, err, tc.want)
			continue
		}
		for _, v := range []string{tc.c.Password, tc.c.PasswordIn} {
			if len(v) > 2 && strings.Contains(err.Error(), v) {
				t.Errorf("error %q shows a secret", err)
			}
		}
	}
}

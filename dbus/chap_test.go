// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// TestManageRefusesCHAPTheBackendRefuses: Manage refuses, with
// InvalidArgument naming the option, every CHAP credential the iSCSI
// backend could not write into a node record (service.CHAP.Check), before
// the authorizer is asked and before anything is stored. Until both used
// service.CHAP.Check, Manage took a 256-byte secret or one with a leading
// space, stored it, and every login then failed with LoginFailed.
func TestManageRefusesCHAPTheBackendRefuses(t *testing.T) {
	p := startPeerServer(t)
	p.allow.Store(true)
	const uri = "iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t/1"
	chap := func(kv ...string) map[string]godbus.Variant {
		m := map[string]godbus.Variant{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = godbus.MakeVariant(kv[i+1])
		}
		return m
	}
	long := strings.Repeat("Zq7", 86) // 258 bytes: under limits.max_option_length, over open-iscsi's 255
	tests := []struct {
		name, secret string
		opts         map[string]godbus.Variant
		wantText     string
	}{
		{"secret over 255 bytes", long, chap(OptCHAPUsername, "alice", OptCHAPPassword, long), "chap-password is 258 bytes"},
		{"user name over 255 bytes", "", chap(OptCHAPUsername, long, OptCHAPPassword, "pw"), "chap-username is 258 bytes"},
		{"secret with a leading space", " Zq7-lead", chap(OptCHAPUsername, "alice", OptCHAPPassword, " Zq7-lead"), "chap-password starts or ends with white space"},
		{"secret with a trailing space", "Zq7-trail ", chap(OptCHAPUsername, "alice", OptCHAPPassword, "Zq7-trail "), "chap-password starts or ends with white space"},
		{"user name with a trailing newline", "", chap(OptCHAPUsername, "alice\n", OptCHAPPassword, "pw"), "chap-username"},
		{"secret with a control character", "Zq7\x01ctl", chap(OptCHAPUsername, "alice", OptCHAPPassword, "Zq7\x01ctl"), "chap-password contains a control character"},
		{"mutual secret with a leading tab", "\tZq7-in", chap(OptCHAPUsername, "alice", OptCHAPPassword, "pw",
			OptCHAPUsernameIn, "tgt", OptCHAPPasswordIn, "\tZq7-in"), "chap-password-in"},
		{"user without secret", "", chap(OptCHAPUsername, "alice"), "CHAP needs both chap-username and chap-password"},
		{"mutual without one-way", "Zq7-in", chap(OptCHAPUsernameIn, "tgt", OptCHAPPasswordIn, "Zq7-in"), "mutual CHAP (chap-username-in) needs one-way CHAP (chap-username) too"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.last.Store(nil)
			files := len(p.cidFiles())
			sig, body := encodeArgs(uri, "c"+string(rune('a'+i)), tc.opts)

			reply, ok := p.call(t, 0, RootPath, ManagerInterface, "Manage", sig, body)

			if !ok {
				t.Fatal("no reply")
			}
			name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
			if reply.Type != godbus.TypeError || name != ErrorInvalidArgument {
				t.Fatalf("Manage: %v; want %s", reply, ErrorInvalidArgument)
			}
			msg, _ := reply.Body[0].(string)
			if !strings.Contains(msg, tc.wantText) {
				t.Errorf("message %q; want %q", msg, tc.wantText)
			}
			if tc.secret != "" && strings.Contains(msg, tc.secret) {
				t.Errorf("message %q shows the secret", msg)
			}
			if req := p.last.Load(); req != nil {
				t.Errorf("the authorizer was asked (%+v) for a refused call", req)
			}
			if n := len(p.cidFiles()); n != files {
				t.Errorf("a refused Manage left %d CID files, had %d", n, files)
			}
		})
	}
}

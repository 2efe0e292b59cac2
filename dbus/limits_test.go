// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

func TestLimitsDefaultsAndCeilings(t *testing.T) {
	tests := []struct {
		name string
		in   Limits
		want Limits
	}{
		{"zero means the defaults", Limits{},
			Limits{MaxOptions: 64, MaxWait: time.Hour, MaxCIDLength: 255, MaxURILength: 4096, MaxOptionLength: 4096, MaxWaitsPerCaller: 64,
				MaxMessageSize: 32 << 20}},
		{"lower limits are kept", Limits{MaxOptions: 8, MaxWait: time.Minute, MaxCIDLength: 32, MaxURILength: 512, MaxOptionLength: 100, MaxWaitsPerCaller: 3,
			MaxMessageSize: 65536},
			Limits{MaxOptions: 8, MaxWait: time.Minute, MaxCIDLength: 32, MaxURILength: 512, MaxOptionLength: 100, MaxWaitsPerCaller: 3,
				MaxMessageSize: 65536}},
		{"lengths above the ceilings are capped", Limits{MaxCIDLength: 1000, MaxURILength: 1 << 20, MaxOptionLength: 1 << 20, MaxMessageSize: 1 << 30},
			Limits{MaxOptions: 64, MaxWait: time.Hour, MaxCIDLength: 255, MaxURILength: 4096, MaxOptionLength: 4096, MaxWaitsPerCaller: 64,
				MaxMessageSize: 128 << 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.withDefaults(); got != tc.want {
				t.Errorf("withDefaults() = %+v; want %+v", got, tc.want)
			}
		})
	}
}

// TestConfiguredLimitsRefuseBeforeAuthorizingOrStoring: each request limit
// answers with its error name and the config key to change, before the
// authorizer is asked and before anything is written.
func TestConfiguredLimitsRefuseBeforeAuthorizingOrStoring(t *testing.T) {
	p := startPeerServerWith(t, Limits{MaxWait: 5 * time.Millisecond, MaxCIDLength: 10, MaxURILength: 48, MaxOptionLength: 16})
	p.allow.Store(true)
	chap := func(password string) map[string]godbus.Variant {
		return map[string]godbus.Variant{
			OptCHAPUsername: godbus.MakeVariant("alice"),
			OptCHAPPassword: godbus.MakeVariant(password),
		}
	}
	none := map[string]godbus.Variant{}
	tests := []struct {
		name      string
		uri, cid  string
		opts      map[string]godbus.Variant
		wantError string // error name; "" for success
		wantText  string
	}{
		{"CID one byte too long", "nfs://h/x", "cid-456789a", none, ErrorInvalidCID,
			`invalid CID: "cid-456789a" is 11 bytes; the limit is 10 (limits.max_cid_length)`},
		{"URI one byte too long", "nfs://h/" + strings.Repeat("x", 41), "cid", none, ErrorInvalidURI,
			"invalid URI: URI is 49 bytes; the limit is 48 (limits.max_uri_length)"},
		// iSCSI URIs gain ";tpgt=1;iface=default".
		{"URI too long once normalized", "iscsi://h/iqn.2026-01.a:bcde", "cid", none, ErrorInvalidURI,
			"invalid URI: URI is 49 bytes once normalized; the limit is 48 (limits.max_uri_length)"},
		{"option value too long", "iscsi://h/iqn.2026-01.a:bcd", "cid", chap(strings.Repeat("s", 17)), ErrorInvalidArgument,
			"option chap-password is 17 bytes; the limit is 16 (limits.max_option_length)"},
		{"everything at its limit", "iscsi://h/iqn.2026-01.a:bcd", "cid-456789", chap(strings.Repeat("s", 16)), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			p.last.Store(nil)
			files := len(p.cidFiles())
			sig, body := encodeArgs(tc.uri, tc.cid, tc.opts)

			// Act
			reply, ok := p.call(t, 0, RootPath, ManagerInterface, "Manage", sig, body)

			// Assert
			if !ok {
				t.Fatal("no reply")
			}
			if tc.wantError == "" {
				if reply.Type != godbus.TypeMethodReply || len(p.cidFiles()) != files+1 {
					t.Fatalf("Manage within the limits: %v; files %d -> %d", reply, files, len(p.cidFiles()))
				}
				return
			}
			name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
			if reply.Type != godbus.TypeError || name != tc.wantError {
				t.Fatalf("Manage: %v; want %s", reply, tc.wantError)
			}
			if msg, _ := reply.Body[0].(string); !strings.Contains(msg, tc.wantText) {
				t.Errorf("message %q; want %q", msg, tc.wantText)
			}
			if req := p.last.Load(); req != nil {
				t.Errorf("the authorizer was asked (%+v) before the limit refused the call", req)
			}
			if n := len(p.cidFiles()); n != files {
				t.Errorf("a refused Manage left %d CID files, had %d", n, files)
			}
		})
	}
}

// TestUnmanageTakesCIDsBeyondTheManageLimit: a CID managed before the limit
// was lowered can still be unmanaged (here: it is unknown, not invalid).
func TestUnmanageTakesCIDsBeyondTheManageLimit(t *testing.T) {
	p := startPeerServerWith(t, Limits{MaxWait: 5 * time.Millisecond, MaxCIDLength: 10})
	p.allow.Store(true)
	sig, body := encodeArgs("a-much-longer-cid", map[string]godbus.Variant{})

	reply, ok := p.call(t, 0, RootPath, ManagerInterface, "Unmanage", sig, body)

	name, _ := reply.Headers[godbus.FieldErrorName].Value().(string)
	if !ok || name != ErrorUnknownCID {
		t.Fatalf("Unmanage of a long CID: %v %v; want UnknownCID", ok, reply)
	}
}

// TestSetLimitsSwapsTheWholeSet: a reload replaces every limit at once
// (zero fields back to their defaults) while calls read them.
func TestSetLimitsSwapsTheWholeSet(t *testing.T) {
	s := &Server{}
	s.SetLimits(Limits{MaxCIDLength: 8, MaxOptions: 2})
	if err := s.checkNewCID("nine-byte"); err == nil || err.Name != ErrorInvalidCID {
		t.Fatalf("checkNewCID(9 bytes) under max_cid_length 8 = %v; want InvalidCID", err)
	}
	three := map[string]godbus.Variant{"a": godbus.MakeVariant(""), "b": godbus.MakeVariant(""), "c": godbus.MakeVariant("")}
	if err := s.checkOptions("List", three, nil); err == nil || !strings.Contains(err.Error(), "limits.max_options") {
		t.Fatalf("checkOptions(3) under max_options 2 = %v; want the limit named", err)
	}

	// Swapped while calls read it: no torn set, no race.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			s.SetLimits(Limits{MaxCIDLength: 8 + i%2})
		}
	}()
	for range 1000 {
		_ = s.checkNewCID("nine-byte")
	}
	<-done

	s.SetLimits(Limits{})
	if got := s.limits(); got.MaxCIDLength != 255 || got.MaxOptions != 64 || got.MaxWait != time.Hour {
		t.Errorf("SetLimits(zero) = %+v; want the defaults", got)
	}
	if err := s.checkNewCID("nine-byte"); err != nil {
		t.Errorf("checkNewCID(9 bytes) under the default = %v", err)
	}
}

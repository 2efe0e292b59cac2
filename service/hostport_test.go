// SPDX-License-Identifier: Apache-2.0

package service

import (
	"strconv"
	"testing"
)

func TestHostPort(t *testing.T) {
	tests := []struct {
		host string
		port uint16
		want string
	}{
		{"server.example", 0, "server.example"},
		{"server.example", 2050, "server.example:2050"},
		{"192.0.2.1", DefaultISCSIPort, "192.0.2.1:3260"},
		{"fd00::1", 0, "[fd00::1]"},
		{"fd00::1", 3261, "[fd00::1]:3261"},
		{"fe80::1%eth0", 65535, "[fe80::1%eth0]:65535"},
	}
	for _, tc := range tests {
		if got := HostPort(tc.host, tc.port); got != tc.want {
			t.Errorf("HostPort(%q, %d) = %q; want %q", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestCutHost(t *testing.T) {
	tests := []struct {
		s, host, rest string
		ok            bool
	}{
		{"server", "server", "", true},
		{"server:2049", "server", ":2049", true},
		{"server:", "server", ":", true},
		{"server:/exports/a:b", "server", ":/exports/a:b", true},
		{"fd00::1", "fd00", "::1", true}, // unbracketed: the caller refuses it
		{"[fd00::1]", "fd00::1", "", true},
		{"[fd00::1]:3260", "fd00::1", ":3260", true},
		{"[fd00::2]:/", "fd00::2", ":/", true},
		{"[fd00::1]x", "fd00::1", "x", true}, // the caller checks rest
		{"[fd00::1", "", "", false},
		{"", "", "", true},
	}
	for _, tc := range tests {
		host, rest, ok := CutHost(tc.s)
		if host != tc.host || rest != tc.rest || ok != tc.ok {
			t.Errorf("CutHost(%q) = %q, %q, %v; want %q, %q, %v", tc.s, host, rest, ok, tc.host, tc.rest, tc.ok)
		}
	}
}

// TestHostPortRoundTrip: CutHost reads back what HostPort writes, for the
// host of every URI that parses.
func TestHostPortRoundTrip(t *testing.T) {
	for _, tc := range parseCases {
		var host string
		var port uint16
		if n := tc.want.NFS; n != nil {
			host, port = n.Server, n.ServerPort()
		} else {
			host, port = tc.want.ISCSI.Host, tc.want.ISCSI.PortalPort()
		}
		for _, p := range []uint16{0, port, 1} {
			s := HostPort(host, p)
			got, rest, ok := CutHost(s)
			wantRest := ""
			if p != 0 {
				wantRest = ":" + strconv.Itoa(int(p))
			}
			if !ok || got != host || rest != wantRest {
				t.Errorf("CutHost(HostPort(%q, %d) = %q) = %q, %q, %v", host, p, s, got, rest, ok)
			}
		}
	}
}

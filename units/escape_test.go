// SPDX-License-Identifier: Apache-2.0

package units

import (
	"os/exec"
	"strings"
	"testing"
)

// The expected names are what systemd-escape --path --suffix=mount prints
// (systemd 252); TestMountUnitNameMatchesSystemdEscape checks them again
// against the systemd-escape on this machine.
var mountUnitNames = []struct{ where, unit string }{
	{"/", "-.mount"},
	{"/run/storkeep", "run-storkeep.mount"},
	{"/run/storkeep/mnt/nfs-server.example-export", `run-storkeep-mnt-nfs\x2dserver.example\x2dexport.mount`},
	{"/run/storkeep//a/", "run-storkeep-a.mount"},
	{"/srv/my export", `srv-my\x20export.mount`},
	{"/srv/.hidden", "srv-.hidden.mount"},
	{"/.hidden", `\x2ehidden.mount`},
	{"/a:b_c.d", "a:b_c.d.mount"},
	{"/é", `\xc3\xa9.mount`},
	{"/a\\b", `a\x5cb.mount`},
	{"/10.0.0.1", "10.0.0.1.mount"},
	{"/a\x01b", `a\x01b.mount`}, // two hex digits, unlike go-systemd
}

func TestMountUnitName(t *testing.T) {
	for _, tt := range mountUnitNames {
		if got := MountUnitName(tt.where); got != tt.unit {
			t.Errorf("MountUnitName(%q) = %q, want %q", tt.where, got, tt.unit)
		}
	}
}

func TestMountUnitNameMatchesSystemdEscape(t *testing.T) {
	if _, err := exec.LookPath("systemd-escape"); err != nil {
		t.Skip("systemd-escape not installed")
	}
	for _, tt := range mountUnitNames {
		out, err := exec.Command("systemd-escape", "--path", "--suffix=mount", tt.where).Output()
		if err != nil {
			t.Fatalf("systemd-escape %q: %v", tt.where, err)
		}
		if want := strings.TrimSpace(string(out)); MountUnitName(tt.where) != want {
			t.Errorf("MountUnitName(%q) = %q, systemd-escape says %q", tt.where, MountUnitName(tt.where), want)
		}
	}
}

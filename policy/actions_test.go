// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"encoding/xml"
	"os"
	"testing"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// TestActionsFile checks that the polkit actions the package installs are
// the ones the daemon asks about, admin-only by default.
func TestActionsFile(t *testing.T) {
	const file = "../packaging/org.storkeep.StorKeep1.policy"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		Actions []struct {
			ID          string `xml:"id,attr"`
			Description string `xml:"description"`
			Message     string `xml:"message"`
			Defaults    struct {
				Any      string `xml:"allow_any"`
				Inactive string `xml:"allow_inactive"`
				Active   string `xml:"allow_active"`
			} `xml:"defaults"`
		} `xml:"action"`
	}
	if err := xml.Unmarshal(b, &pc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	seen := map[string]bool{}
	for _, a := range pc.Actions {
		seen[a.ID] = true
		if a.Description == "" || a.Message == "" {
			t.Errorf("%s: action %s lacks a description or a message", file, a.ID)
		}
		if d := a.Defaults; d.Any != "no" || d.Inactive != "no" || d.Active != "auth_admin_keep" {
			t.Errorf("%s: action %s defaults to %+v, want no, no, auth_admin_keep", file, a.ID, d)
		}
	}
	for _, id := range []string{skdbus.ActionManage, skdbus.ActionReconnect} {
		if !seen[id] {
			t.Errorf("%s lacks action %s", file, id)
		}
	}
	if len(pc.Actions) != 2 {
		t.Errorf("%s has %d actions, want 2", file, len(pc.Actions))
	}
}

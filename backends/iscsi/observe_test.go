// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"os"
	"path/filepath"
	"testing"
)

// TestObservationSettling: a session whose LUN has its block device but
// not yet its by-path link (udev re-creating it after a recovery) is
// settling, with the same Instance it had when connected; the service's
// decide rides it out. Anything else is not settling, or another instance.
func TestObservationSettling(t *testing.T) {
	dev := t.TempDir()
	byPath := filepath.Join(dev, "disk", "by-path")
	if err := os.MkdirAll(byPath, 0o755); err != nil {
		t.Fatal(err)
	}
	s := session{ID: 3, State: stateLoggedIn, Address: "10.0.0.1", Port: 3260, Target: "iqn.x",
		LUNs: []lun{{LUN: 1, Type: 0, Block: "sdb"}}}
	link := filepath.Join(byPath, byPathName(s.Address, s.Port, s.Target, 1))
	if err := os.Symlink("../../sdb", link); err != nil {
		t.Fatal(err)
	}
	good, _ := observation(dev, s, 1)
	if !good.Connected || good.Settling || good.Instance == "" {
		t.Fatalf("with its link: %+v; want connected with an instance", good)
	}

	// The link gone for a moment.
	os.Remove(link)
	pending, _ := observation(dev, s, 1)
	if pending.Connected || !pending.Settling || pending.Instance != good.Instance {
		t.Errorf("link missing: %+v; want settling, instance %q", pending, good.Instance)
	}

	for name, c := range map[string]session{
		"new session":    {ID: 4, State: stateLoggedIn, Address: s.Address, Port: s.Port, Target: s.Target, LUNs: s.LUNs},
		"device renamed": {ID: 3, State: stateLoggedIn, Address: s.Address, Port: s.Port, Target: s.Target, LUNs: []lun{{LUN: 1, Type: 0, Block: "sdc"}}},
	} {
		if o, _ := observation(dev, c, 1); o.Instance == good.Instance {
			t.Errorf("%s: same instance %q", name, o.Instance)
		}
	}
	for name, c := range map[string]session{
		"device gone":    {ID: 3, State: stateLoggedIn, Address: s.Address, Port: s.Port, Target: s.Target, LUNs: []lun{{LUN: 1, Type: 0}}},
		"session failed": {ID: 3, State: "FAILED", Address: s.Address, Port: s.Port, Target: s.Target, LUNs: s.LUNs},
		"LUN missing":    {ID: 3, State: stateLoggedIn, Address: s.Address, Port: s.Port, Target: s.Target},
	} {
		if o, _ := observation(dev, c, 1); o.Settling {
			t.Errorf("%s: settling", name)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// cidFile is where storkeepd keeps cid's state (service.Store's layout).
func cidFile(cid string) string {
	sum := sha256.Sum256([]byte(cid))
	return "/var/lib/storkeep/cids/" + hex.EncodeToString(sum[:16]) + ".toml"
}

// TestUnreadableStateFileHoldsConnections is issue 13's scenario: an NFS
// export and an iSCSI LUN managed, the daemon stopped, each CID's file
// damaged (an unknown key, as a downgrade after an upgrade that added one
// leaves; then torn to 7 bytes), the daemon started. Before, both were torn
// down. Now: the mount and the session stay (same mount ID, same session),
// List shows the holds; fixing the files (and a reload) manages the CIDs
// again with nothing reconnected; removing them is an admin's Unmanage.
func TestUnreadableStateFileHoldsConnections(t *testing.T) {
	nfsServers(t)
	f := newISCSIFixture(t)
	c := f.conn
	nfsCID, lunCID := "e2e-hold-nfs", isCIDPrefix+"hold"
	if err := manage(c, "nfs://"+nfsSrvIP+"/a?vers=4.2", nfsCID, nil); err != nil {
		t.Fatal(err)
	}
	f.manage(lunCID, isURIPlain+"/1")
	waitConnected(t, c, nfsCID, true, 60*time.Second)
	f.waitFor(lunCID, "connected", 60*time.Second, connected)
	where, _ := nfsMountPoint(t, c, nfsCID)
	mountID, _, _, _ := mountAt(t, where)
	sessions := sessionsTo(isIQNPlain)
	if len(sessions) != 1 {
		t.Fatalf("sessions: %v", sessions)
	}
	// Whatever happens below, leave no CID, file or connection behind for
	// the tests that follow (they use the same export and target): with
	// the daemon stopped, the CID files go; at its start the targets it
	// made are released and torn down.
	t.Cleanup(func() {
		try(t, "systemctl", "stop", "storkeepd.service")
		os.Remove(cidFile(nfsCID))
		os.Remove(cidFile(lunCID))
		try(t, "systemctl", "start", "storkeepd.service")
		waitForName(t, c)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if _, _, _, mounted := mountAt(t, where); !mounted && len(sessionsTo(isIQNPlain)) == 0 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cleanup: %s still mounted or a session to %s left", where, isIQNPlain)
	})
	good := map[string][]byte{}
	for _, cid := range []string{nfsCID, lunCID} {
		b, err := os.ReadFile(cidFile(cid))
		if err != nil {
			t.Fatal(err)
		}
		good[cid] = b
	}
	unchanged := func(when string) {
		t.Helper()
		if id, _, _, ok := mountAt(t, where); !ok || id != mountID {
			t.Errorf("%s: the mount at %s changed (mounted %v, id %s -> %s)", when, where, ok, mountID, id)
		}
		if s := sessionsTo(isIQNPlain); len(s) != 1 || s[0].id != sessions[0].id || s[0].state != "LOGGED_IN" {
			t.Errorf("%s: sessions %v; want session %d untouched", when, s, sessions[0].id)
		}
	}

	damages := []struct {
		name string
		do   func(path string) error
	}{
		{"unknown key", func(path string) error {
			fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer fh.Close()
			_, err = fh.WriteString("\nfuture_key = true\n")
			return err
		}},
		{"torn", func(path string) error { return os.Truncate(path, 7) }},
	}
	for i, d := range damages {
		must(t, "systemctl", "stop", "storkeepd.service")
		for cid := range good {
			if err := d.do(cidFile(cid)); err != nil {
				t.Fatal(err)
			}
		}
		must(t, "systemctl", "start", "storkeepd.service")
		waitForName(t, c)
		held := func() (bool, string) {
			n, seen := 0, []string{}
			for id, st := range list(t, c) {
				seen = append(seen, id+"="+st["lastError"].Value().(string))
				if strings.HasPrefix(id, "unmanaged/") && st["lastError"].Value() == "BadStateFile" && st["connected"].Value() == true {
					n++
				}
			}
			return n == 2, strings.Join(seen, " ")
		}
		waitFor(t, 30*time.Second, d.name+": both targets listed as held", held)
		time.Sleep(3 * time.Second) // a teardown, if one were coming, would have started
		unchanged(d.name + ": after a start over damaged files")
		if ok, why := held(); !ok {
			t.Errorf("%s: no longer held: %s", d.name, why)
		}
		t.Logf("%s: held; List: %v", d.name, list(t, c))
		if out, _ := sh(t, "journalctl", "-u", "storkeepd", "-p", "err", "--since", "-1min", "-o", "cat"); !strings.Contains(out, "did not load") {
			t.Errorf("%s: no error-level line about the hold in the journal:\n%s", d.name, out)
		}

		if i == len(damages)-1 {
			break
		}
		// The admin puts the files back and reloads: managed again, nothing reconnected.
		for cid, b := range good {
			if err := os.WriteFile(cidFile(cid), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		must(t, "systemctl", "reload", "storkeepd.service")
		// systemctl returns once SIGHUP is sent; the daemon reads the
		// files when it handles it.
		waitFor(t, 30*time.Second, d.name+": both CIDs managed again after the fix", func() (bool, string) {
			l := list(t, c)
			_, a := l[nfsCID]
			_, b := l[lunCID]
			return a && b, fmt.Sprintf("listed: %v", slices.Collect(maps.Keys(l)))
		})
		waitConnected(t, c, nfsCID, true, 30*time.Second)
		f.waitFor(lunCID, "connected after the fix", 30*time.Second, connected)
		unchanged(d.name + ": after the fix")
	}

	// Removing the torn files is the admin's Unmanage: both torn down.
	for cid := range good {
		if err := os.Remove(cidFile(cid)); err != nil {
			t.Fatal(err)
		}
	}
	must(t, "systemctl", "reload", "storkeepd.service")
	waitFor(t, 60*time.Second, "unmounted and logged out after the files were removed", func() (bool, string) {
		_, _, _, mounted := mountAt(t, where)
		s := sessionsTo(isIQNPlain)
		return !mounted && len(s) == 0, "still there"
	})
}

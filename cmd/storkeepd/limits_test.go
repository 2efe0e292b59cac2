// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// restartWithConfig stops d, replaces its configuration with config and
// starts it again.
func (d *daemon) restartWithConfig(config string) {
	d.t.Helper()
	d.stop()
	if err := os.WriteFile(filepath.Join(d.bus.Dir, "storkeep.toml"), []byte(config), 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.start()
}

// TestConfiguredLimitsReachTheBus: the [limits] lengths of the config file
// are the ones Manage enforces, and lowering them keeps what is managed.
func TestConfiguredLimitsReachTheBus(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	long := "a-cid-of-twenty-bytes"
	if _, err := manage(conn, nfsURI, long, nil); err != nil {
		t.Fatal(err)
	}

	d.restartWithConfig("[limits]\nmax_cid_length = 16\nmax_uri_length = 80\nmax_option_length = 8\n")
	conn2 := d.client()
	defer conn2.Close()

	if _, ok := list(t, conn2, nil)[long]; !ok {
		t.Fatalf("%s is no longer managed after max_cid_length was lowered", long)
	}
	tests := []struct {
		name, uri, cid string
		opts           map[string]godbus.Variant
		want, key      string
	}{
		{"CID", nfsURI, "seventeen-bytes-x", nil, skdbus.ErrorInvalidCID, "limits.max_cid_length"},
		{"URI", "nfs://127.0.0.1/" + strings.Repeat("x", 65), "a", nil, skdbus.ErrorInvalidURI, "limits.max_uri_length"},
		{"option", iscsiURI, "a", chap("alice", "nine-byte"), skdbus.ErrorInvalidArgument, "limits.max_option_length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := manage(conn2, tc.uri, tc.cid, tc.opts)
			if errName(err) != tc.want || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("Manage: %v; want %s naming %s", err, tc.want, tc.key)
			}
		})
	}
	if _, err := manage(conn2, iscsiURI, "sixteen-bytes-xx", chap("alice", "8-bytes!")); err != nil {
		t.Errorf("Manage at every limit: %v", err)
	}
	if err := unmanage(conn2, long); err != nil {
		t.Errorf("Unmanage of a CID longer than max_cid_length: %v", err)
	}
}

// TestLoosePermissionsAreTightenedAndLogged: a state directory and a CID
// file found readable by others at start are made private, and the log
// says what each was and what it is now.
func TestLoosePermissionsAreTightenedAndLogged(t *testing.T) {
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	if _, err := manage(conn, iscsiURI, "loose", chap("alice", secret)); err != nil {
		t.Fatal(err)
	}
	d.stop()
	files, _ := filepath.Glob(filepath.Join(d.stateDir, "cids", "*.toml"))
	if len(files) != 1 {
		t.Fatalf("CID files %v; want one", files)
	}
	for p, mode := range map[string]os.FileMode{d.stateDir: 0o755, files[0]: 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}

	d.start()

	for p, want := range map[string]string{
		d.stateDir: "mode was 0755, now 0700",
		files[0]:   "mode was 0644, now 0600",
	} {
		if !strings.Contains(d.log.String(), p+": "+want) {
			t.Errorf("the log does not say %q for %s:\n%s", want, p, d.log.String())
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v; want private", p, fi, err)
		}
	}
	if strings.Contains(d.log.String(), secret) {
		t.Error("the log holds the CHAP secret")
	}
	conn2 := d.client()
	defer conn2.Close()
	if _, ok := list(t, conn2, nil)["loose"]; !ok {
		t.Error("the CID of the tightened file is not managed")
	}
}

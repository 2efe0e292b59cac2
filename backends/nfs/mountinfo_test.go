// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"os"
	"strings"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	f, err := os.Open("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := ParseMountInfo(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 {
		t.Fatalf("%d mounts, want 6", len(ms))
	}
	tests := []struct {
		i                       int
		mountPoint, fstype, src string
		server, export          string
		nfs                     bool
	}{
		{2, "/run/storkeep/mnt/127.0.0.1-srv-export", "nfs", "127.0.0.1:/srv/export", "127.0.0.1", "/srv/export", true},
		{3, "/mnt/my export", "nfs4", "10.250.0.2:/e1", "10.250.0.2", "/e1", true},
		{4, "/mnt/v6", "nfs4", "[fd00::2]:/", "fd00::2", "/", true},
		{5, "/mnt/back\\slash", "tmpfs", "tmpfs", "", "", false},
	}
	for _, tt := range tests {
		m := ms[tt.i]
		if m.MountPoint != tt.mountPoint || m.FSType != tt.fstype || m.Source != tt.src || m.IsNFS() != tt.nfs {
			t.Errorf("line %d = %+v", tt.i+1, m)
		}
		server, export, ok := m.ServerExport()
		if ok != tt.nfs || server != tt.server || export != tt.export {
			t.Errorf("line %d ServerExport = %q %q %v", tt.i+1, server, export, ok)
		}
	}
	if !strings.Contains(ms[2].SuperOpts, "vers=3") || ms[5].Root != "/sub" {
		t.Errorf("super options or root lost: %+v %+v", ms[2], ms[5])
	}
}

func TestParseMountInfoRefusesGarbage(t *testing.T) {
	for _, in := range []string{"x\n", "1 2 3 4 5 6 7\n", "a b 0:1 / /x rw - nfs h:/e rw\n"} {
		if _, err := ParseMountInfo(strings.NewReader(in)); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

func FuzzParseMountInfo(f *testing.F) {
	data, err := os.ReadFile("testdata/mountinfo")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add(`1 2 0:1 / /a\040b\ rw - nfs h:/e\134 rw` + "\n")
	f.Fuzz(func(t *testing.T, in string) {
		ms, _ := ParseMountInfo(strings.NewReader(in))
		for _, m := range ms {
			m.ServerExport() // must not panic
		}
	})
}

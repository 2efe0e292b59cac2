// SPDX-License-Identifier: Apache-2.0

package service

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzLoad writes fuzzed bytes as one CID file and one target record and
// loads the store: Load must never panic and never fail on bad content.
// Every file is either used or reported in Bad, and what is used is valid.
//
// Files are named after the CID or target their content claims (when it
// decodes at all), so the fuzzer gets past the file-name check and reaches
// the URI and credential checks.
func FuzzLoad(f *testing.F) {
	seeds := []struct{ cid, target string }{
		{"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\n",
			"version = 1\ntarget = '" + nfsA + "'\nuri = '" + nfsA + "'\npreexisting = true\n"},
		{"version = 1\ncid = 'c1'\nuri = '" + iscsiA + "/1'\n[chap]\nusername = 'u'\npassword = 'p'\nusername_in = 'ui'\npassword_in = 'pi'\n",
			"version = 1\ntarget = '" + iscsiA + ";tpgt=1;iface=default'\nuri = '" + iscsiA + "/1'\npreexisting = false\n"},
		{"version = 1\ncid = 'c1'\nuri = 'nfs://[fd00::1]:2050/x?vers=4.1&soft&timeo=10'\n",
			"version = 1\ntarget = 'nfs://[fd00::1]:2050/x'\nuri = 'nfs://[fd00::1]:2050/x?vers=4.1'\n"},
		{"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\n[chap]\nusername = 'u'\n", "version = 2\n"},
		{"version = 1\ncid = 'a/b'\nuri = 'x'\n", "target = 1\n"},
		{"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\nextra = 1\n", "[[x]]\n"},
		{"version = 1\ncid = 'c1", "version = 1\ntarget = \"\\u0000\"\n"},
		{"", ""},
		{"\xff\xfe", "version = 9999999999999999999999\n"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.cid), []byte(s.target))
	}
	f.Fuzz(func(t *testing.T, cidData, targetData []byte) {
		// Arrange
		st, _, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var cf cidFile
		_ = toml.NewDecoder(bytes.NewReader(cidData)).Decode(&cf)
		var tf targetFile
		_ = toml.NewDecoder(bytes.NewReader(targetData)).Decode(&tf)
		cidPath := st.cidPath(CID(cf.CID))
		targetPath := st.targetPath(TargetKey(tf.Target))
		for path, data := range map[string][]byte{cidPath: cidData, targetPath: targetData} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}

		// Act
		l, err := st.Load()

		// Assert
		if err != nil {
			t.Fatalf("Load = %v; want bad content reported in Bad, not an error", err)
		}
		for _, c := range []struct {
			path   string
			loaded int
		}{{cidPath, len(l.CIDs)}, {targetPath, len(l.Targets)}} {
			bad := 0
			for _, b := range l.Bad {
				if b.Path == c.path {
					bad++
					if b.Err == nil || b.Err.Error() == "" {
						t.Errorf("Bad entry for %s without a reason", b.Path)
					}
				}
			}
			if c.loaded+bad != 1 {
				t.Errorf("%s: loaded %d times and reported %d times; want exactly one of the two", filepath.Base(c.path), c.loaded, bad)
			}
			if _, err := os.Stat(c.path); err != nil {
				t.Errorf("Load removed %s: %v", c.path, err)
			}
		}
		for _, lc := range l.CIDs {
			if err := ValidateCID(string(lc.CID)); err != nil {
				t.Errorf("loaded an invalid CID: %v", err)
			}
			if lc.Spec.Kind == "" || lc.Spec.Target == "" || !strings.HasPrefix(lc.Spec.URI, string(lc.Spec.Kind)+"://") {
				t.Errorf("loaded CID %q with an incomplete spec %+v", lc.CID, lc.Spec)
			}
			if lc.Spec.NFS != nil && lc.Spec.ISCSI != nil {
				t.Errorf("loaded CID %q is both NFS and iSCSI", lc.CID)
			}
		}
		for _, lt := range l.Targets {
			if lt.Spec.Target == "" || filepath.Base(targetPath) != hashName(string(lt.Spec.Target)) {
				t.Errorf("loaded target record %q from a file not named after it", lt.Spec.Target)
			}
		}
	})
}

// FuzzQuickCIDFile: what the decoder's shortcut accepts, the decoder
// accepts too, with the same content.
func FuzzQuickCIDFile(f *testing.F) {
	f.Add([]byte("version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\n"))
	f.Add([]byte("version = 1\ncid = 'c1'\nuri = ''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := quickCIDFile(data)
		if !ok {
			return
		}
		var want cidFile
		if err := decodeStrict(data, &want); err != nil || got != want {
			t.Errorf("quickCIDFile(%q) = %+v; the decoder gives %+v, %v", data, got, want, err)
		}
	})
}

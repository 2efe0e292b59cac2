// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func loadedCIDs(l Loaded) []CID {
	var out []CID
	for _, c := range l.CIDs {
		out = append(out, c.CID)
	}
	return out
}

func TestOpenStoreTightensPermissions(t *testing.T) {
	tests := []struct {
		name      string
		modes     map[string]fs.FileMode // sub directory ("" for the root) to its mode before
		wantFixed int
	}{
		{"new directory", nil, 0},
		{"already private", map[string]fs.FileMode{"": 0o700, "cids": 0o700, "targets": 0o700}, 0},
		{"root 0755", map[string]fs.FileMode{"": 0o755}, 1},
		{"root 0777 and cids 0755", map[string]fs.FileMode{"": 0o777, "cids": 0o755}, 2},
		{"targets 0750", map[string]fs.FileMode{"targets": 0o750}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			dir := filepath.Join(t.TempDir(), "state")
			for sub, mode := range tc.modes {
				p := filepath.Join(dir, sub)
				if err := os.MkdirAll(p, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}

			// Act
			st, fixed, err := OpenStore(dir)

			// Assert
			if err != nil {
				t.Fatalf("OpenStore: %v", err)
			}
			if st.Dir() != dir {
				t.Errorf("Dir() = %s; want %s", st.Dir(), dir)
			}
			for _, sub := range []string{"", "cids", "targets"} {
				if m := fileMode(t, filepath.Join(dir, sub)); m != 0o700 {
					t.Errorf("%s/%s is %#o; want 0700", dir, sub, m)
				}
			}
			if len(fixed) != tc.wantFixed {
				t.Fatalf("fixed = %q; want %d reports", fixed, tc.wantFixed)
			}
			for _, msg := range fixed {
				if !strings.Contains(msg, dir) || !strings.Contains(msg, "now 0700") {
					t.Errorf("report %q; want the path and the new mode", msg)
				}
			}
			if _, again, _ := OpenStore(dir); len(again) != 0 {
				t.Errorf("a second OpenStore reported %q; want nothing left to fix", again)
			}
		})
	}
}

func TestStoreFilesArePrivate(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	spec := specCHAP(specFor(t, iscsiA), CHAP{Username: "u", Password: "p"})

	// Act
	errs := []error{
		st.PutCID("a", spec),
		st.PutCID("b", specFor(t, nfsA)),
		st.PutTarget(spec, false),
		st.DeleteCIDs([]CID{"x", "y"}),
	}

	// Assert
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{st.cidPath("a"), st.cidPath("b"), st.targetPath(spec.Target)} {
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s is %#o; want 0600", p, m)
		}
	}
	for _, sub := range []string{".", "cids", "targets"} {
		for _, name := range ts.files(sub) {
			if strings.HasPrefix(name, ".tmp-") || name == "unmanage.journal" {
				t.Errorf("%s/%s left behind by a completed write", sub, name)
			}
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	specs := map[CID]Spec{
		"nfs":        specFor(t, nfsA+"?vers=4.1&retrans=3&noatime&rsize=1048576"),
		"iscsi":      specFor(t, "iscsi://[fd00::1]:3261/"+testIQN+"/7;tpgt=2;iface=eth1"),
		"chap":       specCHAP(specFor(t, iscsiA), CHAP{Username: "u", Password: "p w=\"'\\"}),
		"mutual":     specCHAP(specFor(t, iscsiA+"/1"), CHAP{Username: "u", Password: "p", UsernameIn: "ui", PasswordIn: "pi"}),
		"unicode ✓ ": specFor(t, "nfs://files.example/exports/%C3%A9t%C3%A9"),
	}
	for c, spec := range specs {
		if err := st.PutCID(c, spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutTarget(specs["nfs"], true); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTarget(specs["iscsi"], false); err != nil {
		t.Fatal(err)
	}

	// Act
	l, err := st.Load()

	// Assert
	if err != nil || len(l.Bad) != 0 {
		t.Fatalf("Load = %v, bad %v", err, l.Bad)
	}
	if len(l.CIDs) != len(specs) || !slices.IsSortedFunc(l.CIDs, func(a, b LoadedCID) int { return strings.Compare(string(a.CID), string(b.CID)) }) {
		t.Fatalf("loaded CIDs %q; want all %d, sorted", loadedCIDs(l), len(specs))
	}
	for _, lc := range l.CIDs {
		if !lc.Spec.Equal(specs[lc.CID]) {
			t.Errorf("CID %q read back as %s; want the Equal spec %s", lc.CID, lc.Spec.URI, specs[lc.CID].URI)
		}
	}
	got := map[TargetKey]bool{}
	for _, lt := range l.Targets {
		got[lt.Spec.Target] = lt.Preexisting
	}
	want := map[TargetKey]bool{specs["nfs"].Target: true, specs["iscsi"].Target: false}
	if len(got) != len(want) || got[specs["nfs"].Target] != true || got[specs["iscsi"].Target] != false {
		t.Errorf("target records read back as %v; want %v", got, want)
	}
}

func TestSecretsStayInCIDFiles(t *testing.T) {
	// Arrange
	ts := newTestService(t)
	chap := CHAP{Username: "user-XYZ", Password: "pass-XYZ", UsernameIn: "uin-XYZ", PasswordIn: "pin-XYZ"}
	spec := specCHAP(specFor(t, iscsiA), chap)

	// Act
	ts.manage("c1", spec)
	ts.waitConnected("c1")

	// Assert
	secrets := []string{chap.Username, chap.Password, chap.UsernameIn, chap.PasswordIn}
	records := ts.files("targets")
	if len(records) != 1 {
		t.Fatalf("target records = %v; want one", records)
	}
	data, err := os.ReadFile(filepath.Join(ts.dir, "targets", records[0]))
	if err != nil {
		t.Fatal(err)
	}
	cidData, err := os.ReadFile(ts.opts.Store.cidPath("c1"))
	if err != nil {
		t.Fatal(err)
	}
	shown := fmt.Sprintf("%+v %#v %v", ts.list(), ts.status("c1"), spec)
	for _, s := range secrets {
		if strings.Contains(string(data), s) {
			t.Errorf("the target record holds %q:\n%s", s, data)
		}
		if !strings.Contains(string(cidData), s) {
			t.Errorf("the CID file lacks %q: the credentials must survive a restart", s)
		}
		if strings.Contains(shown, s) {
			t.Errorf("status or a formatted spec shows %q", s)
		}
	}
}

// badFileCases make one unusable state file each and return its path.
var badFileCases = []struct {
	name  string
	write func(t *testing.T, st *Store) string
	want  string // in the reported error
}{
	{"torn cid file", func(t *testing.T, st *Store) string {
		if err := st.PutCID("torn", specFor(t, nfsA+"?soft")); err != nil {
			t.Fatal(err)
		}
		p := st.cidPath("torn")
		data, _ := os.ReadFile(p)
		writeFile(t, p, string(data[:len(data)-8]))
		return p
	}, "line "},
	{"torn target file", func(t *testing.T, st *Store) string {
		spec := specFor(t, iscsiA)
		if err := st.PutTarget(spec, false); err != nil {
			t.Fatal(err)
		}
		p := st.targetPath(spec.Target)
		data, _ := os.ReadFile(p)
		writeFile(t, p, string(data[:len(data)/2]))
		return p
	}, "line "},
	{"foreign cid file", func(t *testing.T, st *Store) string {
		if err := st.PutCID("a", specFor(t, nfsA)); err != nil {
			t.Fatal(err)
		}
		p := st.cidPath("b")
		if err := os.Rename(st.cidPath("a"), p); err != nil {
			t.Fatal(err)
		}
		return p
	}, "foreign file"},
	{"foreign target file", func(t *testing.T, st *Store) string {
		spec := specFor(t, iscsiA)
		if err := st.PutTarget(spec, false); err != nil {
			t.Fatal(err)
		}
		p := st.targetPath("nfs://elsewhere/x")
		if err := os.Rename(st.targetPath(spec.Target), p); err != nil {
			t.Fatal(err)
		}
		return p
	}, "foreign file"},
	{"target not matching its uri", func(t *testing.T, st *Store) string {
		p := st.targetPath("nfs://files.example/exports/other")
		writeFile(t, p, "version = 1\ntarget = 'nfs://files.example/exports/other'\nuri = '"+nfsA+"'\npreexisting = false\n")
		return p
	}, "foreign file"},
	{"unknown key", func(t *testing.T, st *Store) string {
		p := st.cidPath("k")
		writeFile(t, p, "version = 1\ncid = 'k'\nuri = '"+nfsA+"'\ncolour = 'blue'\n")
		return p
	}, `line 4 column 1: unknown key "colour"`},
	{"unknown key in target file", func(t *testing.T, st *Store) string {
		p := st.targetPath(TargetKey(nfsA))
		writeFile(t, p, "version = 1\ntarget = '"+nfsA+"'\nuri = '"+nfsA+"'\n[extra]\nx = 1\n")
		return p
	}, `unknown key "extra`},
	{"newer version", func(t *testing.T, st *Store) string {
		p := st.cidPath("v")
		writeFile(t, p, "version = 2\ncid = 'v'\nuri = '"+nfsA+"'\n")
		return p
	}, "unsupported version 2"},
	{"newer target version", func(t *testing.T, st *Store) string {
		p := st.targetPath(TargetKey(nfsA))
		writeFile(t, p, "version = 2\ntarget = '"+nfsA+"'\nuri = '"+nfsA+"'\n")
		return p
	}, "unsupported version 2"},
	{"empty file", func(t *testing.T, st *Store) string {
		p := st.cidPath("e")
		writeFile(t, p, "")
		return p
	}, "unsupported version 0"},
	{"not a toml file", func(t *testing.T, st *Store) string {
		p := filepath.Join(st.Dir(), "cids", "notes.txt")
		writeFile(t, p, "remember the milk\n")
		return p
	}, "not a state file"},
	{"directory", func(t *testing.T, st *Store) string {
		p := filepath.Join(st.Dir(), "targets", "sub.toml")
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}, "not a state file"},
	{"invalid cid", func(t *testing.T, st *Store) string {
		p := st.cidPath("a/b")
		writeFile(t, p, "version = 1\ncid = 'a/b'\nuri = '"+nfsA+"'\n")
		return p
	}, "contains '/'"},
	{"bad uri", func(t *testing.T, st *Store) string {
		p := st.cidPath("u")
		writeFile(t, p, "version = 1\ncid = 'u'\nuri = 'ftp://files.example/x'\n")
		return p
	}, "invalid URI"},
	{"chap on an nfs uri", func(t *testing.T, st *Store) string {
		p := st.cidPath("n")
		writeFile(t, p, "version = 1\ncid = 'n'\nuri = '"+nfsA+"'\n[chap]\nusername = 'u'\npassword = 'p'\n")
		return p
	}, "CHAP credentials on a nfs URI"},
}

func TestLoadSkipsBadFiles(t *testing.T) {
	for _, tc := range badFileCases {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange: a good CID, a good target record and one bad file.
			ts := newTestService(t, notRunning())
			st := ts.opts.Store
			good := specFor(t, "nfs://files.example/good")
			record := specFor(t, "iscsi://san.example/"+testIQN+":rec")
			if err := st.PutCID("good", good); err != nil {
				t.Fatal(err)
			}
			if err := st.PutTarget(record, true); err != nil {
				t.Fatal(err)
			}
			bad := tc.write(t, st)
			before, _ := os.ReadFile(bad)

			// Act
			l, err := st.Load()

			// Assert
			if err != nil {
				t.Fatalf("Load = %v; want bad files reported, not an error", err)
			}
			if len(l.Bad) != 1 || l.Bad[0].Path != bad || !strings.Contains(l.Bad[0].Err.Error(), tc.want) {
				t.Fatalf("Bad = %v; want one entry for %s saying %q", l.Bad, bad, tc.want)
			}
			if got := loadedCIDs(l); !slices.Equal(got, []CID{"good"}) {
				t.Errorf("loaded CIDs %q; want [good]", got)
			}
			if len(l.Targets) != 1 || l.Targets[0].Spec.Target != record.Target {
				t.Errorf("loaded targets %v; want the good record", l.Targets)
			}
			if fi, err := os.Stat(bad); err != nil {
				t.Errorf("the bad file is gone: %v", err)
			} else if after, _ := os.ReadFile(bad); fi.Mode().IsRegular() && string(after) != string(before) {
				t.Errorf("the bad file was changed")
			}

			// The service starts anyway and shows the file in List.
			ts.be.setHost(record.Target, true, true)
			ts.restart()
			ts.waitConnected("good")
			var entry *Status
			for _, s := range ts.svc.List(t.Context(), "statefile/", false) {
				if entry != nil {
					t.Errorf("List(statefile/) has more than one entry: %+v", s)
				}
				entry = &s
			}
			if entry == nil || entry.ID != "statefile/"+filepath.Base(bad) || entry.Managed ||
				entry.LastError != "BadStateFile" || !strings.Contains(entry.LastErrorMessage, tc.want) ||
				entry.Info["path"] != bad {
				t.Errorf("List(statefile/) entry = %+v; want statefile/%s, BadStateFile", entry, filepath.Base(bad))
			}
		})
	}
}

func TestLoadTightensLooseFiles(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	spec := specCHAP(specFor(t, iscsiA), CHAP{Username: "u", Password: "p"})
	if err := st.PutCID("loose", spec); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTarget(spec, false); err != nil {
		t.Fatal(err)
	}
	paths := []string{st.cidPath("loose"), st.targetPath(spec.Target)}
	for _, p := range paths {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Act
	l, err := st.Load()

	// Assert: tightened and reported, and (its content being sound) still
	// used: the connection stays managed.
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s is %#o; want tightened to 0600", p, m)
		}
		if !slices.ContainsFunc(l.Tightened, func(msg string) bool {
			return strings.Contains(msg, p) && strings.Contains(msg, "mode was 0644, now 0600")
		}) {
			t.Errorf("Tightened = %v; want %s reported", l.Tightened, p)
		}
	}
	if len(l.Bad) != 0 {
		t.Errorf("Bad = %v; a sound file with loose permissions is fixed, not bad", l.Bad)
	}
	if got := loadedCIDs(l); !slices.Equal(got, []CID{"loose"}) || !l.CIDs[0].Spec.Equal(spec) {
		t.Errorf("loaded CIDs %q; want the loose one, read back whole", got)
	}
	if len(l.Targets) != 1 {
		t.Errorf("loaded targets %v; want the loose record", l.Targets)
	}
	if l, _ := st.Load(); len(l.Bad) != 0 || len(l.Tightened) != 0 || len(l.Loose) != 0 {
		t.Errorf("a second Load reported %v, %v, %v; want nothing left to fix", l.Bad, l.Tightened, l.Loose)
	}
}

// foreignUID owns the files of the ownership tests: no one's.
const foreignUID = 4242

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
}

func TestOpenStoreTakesOverAForeignDirectory(t *testing.T) {
	skipUnlessRoot(t)
	// Arrange: a state directory that another user owns (and could read,
	// mode 0700 or not).
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(dir, "cids"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "cids"), foreignUID, -1); err != nil {
		t.Fatal(err)
	}

	// Act
	_, fixed, err := OpenStore(dir)

	// Assert
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s: owner was uid %d, now uid 0", filepath.Join(dir, "cids"), foreignUID)
	if !slices.Equal(fixed, []string{want}) {
		t.Errorf("fixed = %q; want [%q]", fixed, want)
	}
	if uid := ownerUID(t, filepath.Join(dir, "cids")); uid != 0 {
		t.Errorf("cids is owned by uid %d; want 0", uid)
	}
}

func TestLoadTakesOverForeignLooseFiles(t *testing.T) {
	skipUnlessRoot(t)
	// Arrange: a CID file that another user owns and everyone may read.
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	spec := specCHAP(specFor(t, iscsiA), CHAP{Username: "u", Password: "p"})
	if err := st.PutCID("foreign", spec); err != nil {
		t.Fatal(err)
	}
	p := st.cidPath("foreign")
	if err := os.Chown(p, foreignUID, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}

	// Act
	l, err := st.Load()

	// Assert: both fixed, both reported, owner first; the CID still loads.
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("%s: owner was uid %d, now uid 0", p, foreignUID),
		p + ": mode was 0644, now 0600",
	}
	if !slices.Equal(l.Tightened, want) || len(l.Loose) != 0 {
		t.Errorf("Tightened = %q, Loose = %q; want %q and nothing loose", l.Tightened, l.Loose, want)
	}
	if uid, m := ownerUID(t, p), fileMode(t, p); uid != 0 || m != 0o600 {
		t.Errorf("%s is uid %d mode %#o; want uid 0 mode 0600", p, uid, m)
	}
	if got := loadedCIDs(l); !slices.Equal(got, []CID{"foreign"}) {
		t.Errorf("loaded %q; want the fixed file's CID", got)
	}
}

func TestMakePrivateReportsWhatItCannotFix(t *testing.T) {
	// Arrange: a loose file that is gone by the time it is fixed.
	p := filepath.Join(t.TempDir(), "gone.toml")
	writeFile(t, p, "")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}

	// Act
	changes, err := makePrivate(p, fi, privateFileMode)

	// Assert
	if err == nil || len(changes) != 0 {
		t.Fatalf("makePrivate = %q, %v; want an error and no change", changes, err)
	}
	if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, "mode 0644") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q; want the path, its mode and the cause", msg)
	}
}

func TestMakePrivateLeavesStricterFilesAlone(t *testing.T) {
	p := filepath.Join(t.TempDir(), "strict.toml")
	writeFile(t, p, "")
	if err := os.Chmod(p, 0o400); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if changes, err := makePrivate(p, fi, privateFileMode); err != nil || len(changes) != 0 {
		t.Errorf("makePrivate of a 0400 file = %q, %v; want no change", changes, err)
	}
	if m := fileMode(t, p); m != 0o400 {
		t.Errorf("mode %#o; want 0400 kept", m)
	}
}

func ownerUID(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestLoadRemovesTempFiles(t *testing.T) {
	// Arrange: writes cut short, in every directory the store writes to
	// (the root holds the journal's temporary file).
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	if err := st.PutCID("good", specFor(t, nfsA)); err != nil {
		t.Fatal(err)
	}
	tmps := []string{
		filepath.Join(ts.dir, "cids", ".tmp-123"),
		filepath.Join(ts.dir, "targets", ".tmp-456"),
		filepath.Join(ts.dir, ".tmp-789"),
	}
	for _, p := range tmps {
		writeFile(t, p, "version = 1\ncid = 'ha")
	}

	// Act
	l, err := st.Load()

	// Assert
	if err != nil || len(l.Bad) != 0 {
		t.Fatalf("Load = %v, bad %v; want temporary files dropped silently", err, l.Bad)
	}
	for _, p := range tmps {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left (stat: %v)", p, err)
		}
	}
	if got := loadedCIDs(l); !slices.Equal(got, []CID{"good"}) {
		t.Errorf("loaded CIDs %q; want [good]", got)
	}
}

func TestLoadFinishesInterruptedUnmanage(t *testing.T) {
	tests := []struct {
		name     string
		journal  []string
		gone     []CID // deleted before the crash
		viaNew   bool  // load through a new Service rather than Store.Load
		wantCIDs []CID
	}{
		{"crash before any deletion", []string{"a1", "a2"}, nil, false, []CID{"b"}},
		{"crash halfway", []string{"a1", "a2"}, []CID{"a1"}, false, []CID{"b"}},
		{"crash after every deletion", []string{"a1", "a2"}, []CID{"a1", "a2"}, false, []CID{"b"}},
		{"journal names unknown CIDs", []string{"a1", "zz"}, nil, false, []CID{"a2", "b"}},
		{"through a new service", []string{"a1", "a2"}, nil, true, []CID{"b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange: the journal written as DeleteCIDs writes it, and the
			// crash before the CID files went.
			ts := newTestService(t, notRunning())
			st := ts.opts.Store
			for _, c := range []CID{"a1", "a2", "b"} {
				ts.manage(c, specFor(t, nfsA))
			}
			jpath := filepath.Join(ts.dir, "unmanage.journal")
			if err := writeTOML(jpath, journalFile{Version: stateVersion, CIDs: tc.journal}, (*os.File).Sync); err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.gone {
				if err := os.Remove(st.cidPath(c)); err != nil {
					t.Fatal(err)
				}
			}

			// Act
			var got []CID
			if tc.viaNew {
				ts.open()
				got = ts.svc.CIDs()
			} else {
				l, err := st.Load()
				if err != nil || len(l.Bad) != 0 {
					t.Fatalf("Load = %v, bad %v", err, l.Bad)
				}
				got = loadedCIDs(l)
			}

			// Assert
			if !slices.Equal(got, tc.wantCIDs) {
				t.Errorf("loaded CIDs %q; want %q", got, tc.wantCIDs)
			}
			for _, c := range tc.journal {
				if _, err := os.Stat(st.cidPath(CID(c))); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the file of %q is left (stat: %v)", c, err)
				}
			}
			if _, err := os.Stat(jpath); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the journal is left (stat: %v)", err)
			}
			if l, err := st.Load(); err != nil || !slices.Equal(loadedCIDs(l), tc.wantCIDs) {
				t.Errorf("a second Load = %q, %v; want the same CIDs", loadedCIDs(l), err)
			}
		})
	}
}

func TestLoadReportsTornJournal(t *testing.T) {
	// Arrange
	ts := newTestService(t, notRunning())
	st := ts.opts.Store
	ts.manage("a", specFor(t, nfsA))
	jpath := filepath.Join(ts.dir, "unmanage.journal")
	writeFile(t, jpath, "version = 1\ncids = ['a', ")

	// Act
	l, err := st.Load()

	// Assert: nothing is deleted on a journal that can't be read.
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if len(l.Bad) != 1 || l.Bad[0].Path != jpath {
		t.Errorf("Bad = %v; want the journal", l.Bad)
	}
	if got := loadedCIDs(l); !slices.Equal(got, []CID{"a"}) {
		t.Errorf("loaded CIDs %q; want [a]", got)
	}
	if _, err := os.Stat(jpath); err != nil {
		t.Errorf("the journal was removed: %v", err)
	}
}

func TestDeleteCIDs(t *testing.T) {
	tests := []struct {
		name   string
		delete []CID
		want   []CID
	}{
		{"none", nil, []CID{"a", "b", "c"}},
		{"one", []CID{"b"}, []CID{"a", "c"}},
		{"several", []CID{"a", "c"}, []CID{"b"}},
		{"unknown too", []CID{"a", "zz"}, []CID{"b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t, notRunning())
			st := ts.opts.Store
			for _, c := range []CID{"a", "b", "c"} {
				if err := st.PutCID(c, specFor(t, nfsA)); err != nil {
					t.Fatal(err)
				}
			}

			err := st.DeleteCIDs(tc.delete)

			if err != nil {
				t.Fatal(err)
			}
			l, err := st.Load()
			if err != nil || len(l.Bad) != 0 || !slices.Equal(loadedCIDs(l), tc.want) {
				t.Errorf("Load = %q, %v, bad %v; want %q", loadedCIDs(l), err, l.Bad, tc.want)
			}
			if _, err := os.Stat(filepath.Join(ts.dir, "unmanage.journal")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the journal is left (stat: %v)", err)
			}
		})
	}
}

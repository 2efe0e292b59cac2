// SPDX-License-Identifier: Apache-2.0

package service

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestLoadManyFilesInOrder: the files read side by side come back as if
// read one by one: every CID, the bad files and the permissions fixed in
// the directory's order.
func TestLoadManyFilesInOrder(t *testing.T) {
	// Arrange
	st, _, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var want []CID
	for i := range 300 {
		c := CID(fmt.Sprintf("vm%03d", i))
		if err := st.PutCID(c, specFor(t, fmt.Sprintf("nfs://filer/export%d", i%7))); err != nil {
			t.Fatal(err)
		}
		want = append(want, c)
		if i%50 == 0 {
			if err := os.Chmod(st.cidPath(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cids := filepath.Join(st.Dir(), "cids")
	var wantBad []string
	for i := range 5 {
		p := filepath.Join(cids, fmt.Sprintf("%x.toml", i*50))
		if err := os.WriteFile(p, []byte("version = 1\nnot toml"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantBad = append(wantBad, p)
	}
	slices.Sort(wantBad)

	// Act
	l, err := st.Load()

	// Assert
	if err != nil {
		t.Fatal(err)
	}
	if got := loadedCIDs(l); !slices.Equal(got, want) {
		t.Errorf("loaded %d CIDs; want %d", len(got), len(want))
	}
	var gotBad []string
	for _, b := range l.Bad {
		gotBad = append(gotBad, b.Path)
	}
	if !slices.Equal(gotBad, wantBad) {
		t.Errorf("bad files %q; want %q, in name order", gotBad, wantBad)
	}
	if len(l.Tightened) != 6 || !slices.IsSorted(l.Tightened) {
		t.Errorf("tightened %q; want 6 lines in the directory's order", l.Tightened)
	}
	for _, c := range []CID{"vm000", "vm050"} {
		if fi, err := os.Stat(st.cidPath(c)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", c, fi.Mode(), err)
		}
	}
}

// TestReadAtReadsWholeFiles: readAt gives a file's exact content whatever
// its size, and its owner and mode.
func TestReadAtReadsWholeFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, n := range []int{0, 1, 100, 4096, 70000} {
		want := bytes.Repeat([]byte("x"), n)
		name := fmt.Sprintf("f%d", n)
		if err := os.WriteFile(filepath.Join(dir, name), want, 0o640); err != nil {
			t.Fatal(err)
		}

		got, st, err := readAt(int(d.Fd()), name)

		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("readAt(%s) = %d bytes, %v; want %d bytes", name, len(got), err, n)
		}
		if st.Mode&0o777 != 0o640 || int(st.Uid) != os.Geteuid() {
			t.Errorf("readAt(%s): mode %o, uid %d; want 0640, %d", name, st.Mode&0o777, st.Uid, os.Geteuid())
		}
	}
}

// regularEntry is a directory entry that says it is a regular file.
type regularEntry struct{ name string }

func (e regularEntry) Name() string               { return e.name }
func (e regularEntry) IsDir() bool                { return false }
func (e regularEntry) Type() fs.FileMode          { return 0 }
func (e regularEntry) Info() (fs.FileInfo, error) { return nil, fs.ErrInvalid }

// TestLoadFileReplacedByAFIFO: a state file replaced by a FIFO after the
// directory was read is not a state file; reading it does not wait for a
// writer that never comes.
func TestLoadFileReplacedByAFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "x.toml"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	decode := func(string, []byte) (int, error) { return 1, nil }

	f := loadFile(int(d.Fd()), dir, regularEntry{"x.toml"}, os.Geteuid(), decode)

	if f.bad == nil || !strings.Contains(f.bad.Err.Error(), "not a state file") {
		t.Errorf("a FIFO loaded as %+v; want not a state file", f)
	}
}

// TestQuickCIDFileAgreesWithTheDecoder: the decoder's shortcut reads what
// PutCID writes as the decoder does, and leaves every other form to it.
func TestQuickCIDFileAgreesWithTheDecoder(t *testing.T) {
	st, _, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{nfsA, "nfs://[fd00::1]:2050/x?vers=4.1&soft&timeo=10", iscsiA + "/1"} {
		if err := st.PutCID("vm-1.disk_0", specFor(t, uri)); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(st.cidPath("vm-1.disk_0"))
		if err != nil {
			t.Fatal(err)
		}
		var want cidFile
		if err := decodeStrict(data, &want); err != nil {
			t.Fatal(err)
		}
		if got, ok := quickCIDFile(data); !ok || got != want {
			t.Errorf("quickCIDFile(%q) = %+v, %v; want %+v", data, got, ok, want)
		}
	}
	for _, data := range []string{
		"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\n[chap]\nusername = 'u'\n",
		"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\nextra = 1\n",
		"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'",
		"version = 1\ncid = 'c1'\nuri = '" + nfsA + "' # note\n",
		"version = 1\ncid = 'c\x01'\nuri = '" + nfsA + "'\n",
		"version = 1\ncid = 'c\xc3\xa9'\nuri = '" + nfsA + "'\n",
		"version = 1\ncid = 'c1'\nuri = '" + nfsA + "'\ncid = 'c2'\n",
		"version = 2\ncid = 'c1'\nuri = '" + nfsA + "'\n",
		"version = 1\r\ncid = 'c1'\nuri = '" + nfsA + "'\n",
		"version = 1\ncid = 'c1''\nuri = '" + nfsA + "'\n",
	} {
		if f, ok := quickCIDFile([]byte(data)); ok {
			t.Errorf("quickCIDFile(%q) = %+v; want it left to the decoder", data, f)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/pelletier/go-toml/v2"
)

// Store keeps the desired state on disk: one small TOML file per CID (so one
// change costs one small write at any scale) and one per target whose origin
// is known. Every change is durable when the method returns: the file is
// written to a temporary name, synced, renamed into place, and the directory
// synced. Concurrent changes share the directory's sync (group commit,
// groupsync.go): each still returns only once its own change is durable.
//
// Layout under the state directory (0700, files 0600, the daemon's user
// alone; OpenStore and Load fix looser permissions they find):
//
//	cids/<h>.toml      one per CID; h = sha256(CID); holds the URI and secrets
//	targets/<h>.toml   one per target: whether it was there before storkeep
//	unmanage.journal   a prefix unmanage in progress (redo log)
//	lock               held (flock) by the one daemon using the directory; see LockStateDir
//
// Changes of different CIDs may run concurrently; the service orders the
// changes of one CID, and UnmanagePrefix's journal runs alone.
type Store struct {
	dir string
	// cids makes the changes in cids/ durable, in groups.
	cids *groupSync
	// syncFile makes a file's data durable before its rename ((*os.File).Sync;
	// tests replace it).
	syncFile func(f *os.File) error
}

// The on-disk formats. Version lets a later daemon read older files.
const stateVersion = 1

type cidFile struct {
	Version int       `toml:"version"`
	CID     string    `toml:"cid"`
	URI     string    `toml:"uri"`
	CHAP    *chapFile `toml:"chap,omitempty"`
}

type chapFile struct {
	Username   string `toml:"username,omitempty"`
	Password   string `toml:"password,omitempty"`
	UsernameIn string `toml:"username_in,omitempty"`
	PasswordIn string `toml:"password_in,omitempty"`
}

type targetFile struct {
	Version     int    `toml:"version"`
	Target      string `toml:"target"`
	URI         string `toml:"uri"` // enough to disconnect; never secrets
	Preexisting bool   `toml:"preexisting"`
}

type journalFile struct {
	Version int      `toml:"version"`
	CIDs    []string `toml:"cids"`
}

// OpenStore creates the state directory if needed, makes it and its
// sub-directories private, and returns a Store. A directory found with
// looser permissions (any access for group or others, or another owner
// than the daemon's user) is fixed; what was fixed comes back in fixed,
// one line per change for the log. A directory that cannot be made private
// is an error: the CHAP secrets inside would not be.
func OpenStore(dir string) (st *Store, fixed []string, err error) {
	for _, d := range []string{dir, filepath.Join(dir, "cids"), filepath.Join(dir, "targets")} {
		if err := os.MkdirAll(d, privateDirMode); err != nil {
			return nil, nil, fmt.Errorf("state directory: %w", err)
		}
		fi, err := os.Stat(d)
		if err != nil {
			return nil, nil, fmt.Errorf("state directory: %w", err)
		}
		changes, err := makePrivate(d, fi, privateDirMode)
		if err != nil {
			return nil, nil, fmt.Errorf("state directory: %w", err)
		}
		fixed = append(fixed, changes...)
	}
	return newStore(dir), fixed, nil
}

func newStore(dir string) *Store {
	return &Store{dir: dir, cids: newGroupSync(filepath.Join(dir, "cids")),
		syncFile: (*os.File).Sync}
}

// What "private" means for the state: the daemon's user alone may read,
// write or enter; group and others have no access at all.
const (
	privateDirMode  fs.FileMode = 0o700
	privateFileMode fs.FileMode = 0o600
)

// makePrivate gives path (whose current state is fi) to the daemon's own
// user and takes every access away from group and others (setting mode
// want), where that is not so already. It changes the owner first, so
// that the new mode is the new owner's. It returns one line per change,
// saying what it was and what it is now ("PATH: mode was 0644, now
// 0600"), and nothing when the path was private already. A directory must
// have exactly mode want (the daemon needs to enter and write it); a file
// may be stricter than want.
func makePrivate(path string, fi fs.FileInfo, want fs.FileMode) ([]string, error) {
	var changes []string
	euid := os.Geteuid()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != euid {
		if err := os.Chown(path, euid, -1); err != nil {
			return changes, fmt.Errorf("%s is owned by uid %d, not the daemon's uid %d, and could not be taken over: %w", path, st.Uid, euid, err)
		}
		changes = append(changes, fmt.Sprintf("%s: owner was uid %d, now uid %d", path, st.Uid, euid))
	}
	perm := fi.Mode().Perm()
	loose := perm&0o077 != 0
	if fi.IsDir() {
		loose = perm != want
	}
	if loose {
		if err := os.Chmod(path, want); err != nil {
			return changes, fmt.Errorf("%s has mode %#o and could not be set to %#o: %w", path, perm, want, err)
		}
		changes = append(changes, fmt.Sprintf("%s: mode was %#o, now %#o", path, perm, want))
	}
	return changes, nil
}

// Dir returns the state directory.
func (st *Store) Dir() string { return st.dir }

func hashName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16]) + ".toml"
}

func (st *Store) cidPath(c CID) string {
	return filepath.Join(st.dir, "cids", hashName(string(c)))
}

func (st *Store) targetPath(k TargetKey) string {
	return filepath.Join(st.dir, "targets", hashName(string(k)))
}

// PutCID durably records that cid asks for spec, secrets included.
func (st *Store) PutCID(c CID, spec Spec) error {
	f := cidFile{Version: stateVersion, CID: string(c), URI: spec.URI}
	if spec.ISCSI != nil && !spec.ISCSI.CHAP.Empty() {
		ch := spec.ISCSI.CHAP
		f.CHAP = &chapFile{Username: ch.Username, Password: ch.Password,
			UsernameIn: ch.UsernameIn, PasswordIn: ch.PasswordIn}
	}
	err := writeTOML(st.cidPath(c), f, st.syncFile)
	if err == nil {
		err = st.cids.wait()
	}
	if err != nil {
		return fmt.Errorf("save CID %q: %w", c, err)
	}
	return nil
}

// DeleteCID durably forgets cid. Forgetting an unknown CID is not an error.
func (st *Store) DeleteCID(c CID) error {
	err := os.Remove(st.cidPath(c))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = st.cids.wait()
	}
	if err != nil {
		return fmt.Errorf("forget CID %q: %w", c, err)
	}
	return nil
}

// DeleteCIDs durably forgets all of cids at once: after a crash at any
// instant either all of them are gone at the next Load, or none is.
func (st *Store) DeleteCIDs(cids []CID) error {
	if len(cids) == 0 {
		return nil
	}
	if len(cids) == 1 {
		return st.DeleteCID(cids[0])
	}
	j := journalFile{Version: stateVersion, CIDs: make([]string, len(cids))}
	for i, c := range cids {
		j.CIDs[i] = string(c)
	}
	jpath := filepath.Join(st.dir, "unmanage.journal")
	err := writeTOML(jpath, j, st.syncFile)
	if err == nil {
		err = syncDir(st.dir)
	}
	if err != nil {
		return fmt.Errorf("forget %d CIDs: journal: %w", len(cids), err)
	}
	// From here on the deletion is decided; replay finishes it after a crash.
	if err := st.replayJournal(jpath, j); err != nil {
		return fmt.Errorf("forget %d CIDs: %w", len(cids), err)
	}
	return nil
}

func (st *Store) replayJournal(jpath string, j journalFile) error {
	for _, c := range j.CIDs {
		if err := os.Remove(st.cidPath(CID(c))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := st.cids.wait(); err != nil {
		return err
	}
	return removeDurably(jpath)
}

// PutTarget records what storkeep knows of a target's origin. Unlike CID
// files, target records are written without syncing: each one is fail-safe
// when lost or torn. A target with CIDs and no record is observed afresh at
// the next start, and what is found there counts as pre-existing, so it is
// never torn down; a lost record of a pending disconnect leaves the
// connection up, listed as a host connection. Either way nothing is torn
// down that should not be, and Manage and Unmanage don't wait behind these
// writes on the disk.
func (st *Store) PutTarget(spec Spec, preexisting bool) error {
	f := targetFile{Version: stateVersion, Target: string(spec.Target), URI: spec.URI, Preexisting: preexisting}
	if err := writeTOML(st.targetPath(spec.Target), f, nil); err != nil {
		return fmt.Errorf("save target %s: %w", spec.Target, err)
	}
	return nil
}

// DeleteTarget forgets a target record (without syncing: a record that
// comes back after a crash is released again, which is a no-op).
func (st *Store) DeleteTarget(k TargetKey) error {
	if err := os.Remove(st.targetPath(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget target %s: %w", k, err)
	}
	return nil
}

// LoadedCID is one CID read back from disk.
type LoadedCID struct {
	CID  CID
	Spec Spec
}

// LoadedTarget is one target record read back from disk.
type LoadedTarget struct {
	Spec        Spec
	Preexisting bool
}

// BadFile is a state file that could not be used. It is left in place.
type BadFile struct {
	Path string
	Err  error
	// Target is the target the file names, as far as it can still be
	// read; "" when it is too damaged to tell (then it may name any).
	Target TargetKey
	// Record: the file is a target record (targets/), not a CID's.
	Record bool
}

// Loaded is everything Load read.
type Loaded struct {
	CIDs    []LoadedCID
	Targets []LoadedTarget
	Bad     []BadFile
	// Tightened lists the files whose looser permissions (or other owner)
	// Load fixed: what each was and what it is now.
	Tightened []string
	// Loose lists the files Load found readable by others (or owned by
	// another user) and could not fix. They are loaded all the same.
	Loose []string
}

// Load reads the state back. It first finishes an interrupted prefix
// unmanage and removes temporary files of writes that never completed (they
// were never acknowledged). A torn, foreign or unreadable file is reported
// in State.Bad and skipped; it is never fatal and never deleted.
func (st *Store) Load() (Loaded, error) {
	var s Loaded
	// A journal write cut short leaves its temporary file in the root.
	if ents, err := os.ReadDir(st.dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				_ = os.Remove(filepath.Join(st.dir, e.Name()))
			}
		}
	}
	jpath := filepath.Join(st.dir, "unmanage.journal")
	if data, err := os.ReadFile(jpath); err == nil {
		var j journalFile
		if err := decodeStrict(data, &j); err != nil {
			s.Bad = append(s.Bad, BadFile{Path: jpath, Err: fmt.Errorf("unmanage journal: %w", err)})
		} else if err := st.replayJournal(jpath, j); err != nil {
			return s, fmt.Errorf("finish interrupted unmanage: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("read %s: %w", jpath, err)
	}

	var err error
	s.CIDs, err = eachFile(filepath.Join(st.dir, "cids"), &s, st.decodeCID)
	if err != nil {
		return s, err
	}
	s.Targets, err = eachFile(filepath.Join(st.dir, "targets"), &s, st.decodeTarget)
	st.nameBad(&s)
	sort.Slice(s.CIDs, func(i, j int) bool { return s.CIDs[i].CID < s.CIDs[j].CID })
	return s, err
}

func decodeStrict(data []byte, v any) error {
	d := toml.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		// StrictMissingError unwraps to DecodeErrors: test for it first.
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) && len(sme.Errors) > 0 {
			var msgs []string
			for _, e := range sme.Errors {
				row, col := e.Position()
				msgs = append(msgs, fmt.Sprintf("line %d column %d: unknown key %q", row, col, strings.Join(e.Key(), ".")))
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		return err
	}
	return nil
}

// writeTOML writes v to path atomically: to a temporary file, synced
// with syncFile first unless that is nil, then renamed into place. The
// rename is durable once the directory is synced, which is the caller's
// to do.
func writeTOML(path string, v any, syncFile func(*os.File) error) error {
	data, err := toml.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if syncFile != nil {
		if err := syncFile(f); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func removeDurably(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

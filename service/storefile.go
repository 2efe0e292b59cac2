// SPDX-License-Identifier: Apache-2.0

package service

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"
)

// decodeCID reads one CID file, strictly: a key this daemon does not know
// makes the whole file unusable (it may be what a later version needs).
func (st *Store) decodeCID(path string, data []byte) (LoadedCID, error) {
	f, ok := quickCIDFile(data)
	if !ok {
		if err := decodeStrict(data, &f); err != nil {
			return LoadedCID{}, err
		}
	}
	if f.Version != stateVersion {
		return LoadedCID{}, fmt.Errorf("unsupported version %d", f.Version)
	}
	if err := ValidateCID(f.CID); err != nil {
		return LoadedCID{}, err
	}
	if filepath.Base(path) != hashName(f.CID) {
		return LoadedCID{}, fmt.Errorf("file name does not match CID %q: foreign file", f.CID)
	}
	spec, err := ParseURI(f.URI)
	if err != nil {
		return LoadedCID{}, err
	}
	if f.CHAP != nil {
		if spec.ISCSI == nil {
			return LoadedCID{}, fmt.Errorf("CHAP credentials on a %s URI", spec.Kind)
		}
		spec.ISCSI.CHAP = CHAP{Username: f.CHAP.Username, Password: f.CHAP.Password,
			UsernameIn: f.CHAP.UsernameIn, PasswordIn: f.CHAP.PasswordIn}
	}
	return LoadedCID{CID: CID(f.CID), Spec: spec}, nil
}

// quickCIDFile reads a CID file without credentials written as PutCID
// writes it, byte for byte, without the TOML decoder (a third of a
// 100,000-CID start's decoding). Any other form, ok false, is for the
// decoder: this never accepts what it would refuse.
func quickCIDFile(data []byte) (f cidFile, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte("version = 1\ncid = '"))
	if !ok {
		return f, false
	}
	cid, rest, ok := quickLiteral(rest)
	if !ok {
		return f, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("uri = '")); !ok {
		return f, false
	}
	uri, rest, ok := quickLiteral(rest)
	if !ok || len(rest) != 0 {
		return f, false
	}
	return cidFile{Version: 1, CID: cid, URI: uri}, true
}

// quickLiteral reads a TOML literal string's content up to its closing
// quote and the line's end, when it is plain printable ASCII.
func quickLiteral(data []byte) (string, []byte, bool) {
	for i, c := range data {
		switch {
		case c == '\'':
			if i+1 < len(data) && data[i+1] == '\n' {
				return string(data[:i]), data[i+2:], true
			}
			return "", nil, false
		case c < 0x20 || c >= 0x7f:
			return "", nil, false
		}
	}
	return "", nil, false
}

// decodeTarget reads one target record, strictly.
func (st *Store) decodeTarget(path string, data []byte) (LoadedTarget, error) {
	var f targetFile
	if err := decodeStrict(data, &f); err != nil {
		return LoadedTarget{}, err
	}
	if f.Version != stateVersion {
		return LoadedTarget{}, fmt.Errorf("unsupported version %d", f.Version)
	}
	spec, err := ParseURI(f.URI)
	if err != nil {
		return LoadedTarget{}, err
	}
	if string(spec.Target) != f.Target || filepath.Base(path) != hashName(f.Target) {
		return LoadedTarget{}, fmt.Errorf("target %q does not match its URI or file name: foreign file", f.Target)
	}
	return LoadedTarget{Spec: spec, Preexisting: f.Preexisting}, nil
}

// nameBad finds, for each file that did not load, the target it names if
// enough of it can still be read: its uri key read leniently, or, for a
// target record, a file name that is the hash of a target the good files
// name. Holding that one target (and not all) depends on it.
func (st *Store) nameBad(s *Loaded) {
	known := make(map[string]TargetKey)
	for _, c := range s.CIDs {
		known[hashName(string(c.Spec.Target))] = c.Spec.Target
	}
	for _, t := range s.Targets {
		known[hashName(string(t.Spec.Target))] = t.Spec.Target
	}
	for i := range s.Bad {
		b := &s.Bad[i]
		b.Record = filepath.Base(filepath.Dir(b.Path)) == "targets"
		b.Target = st.nameOf(b.Path, known)
	}
}

func (st *Store) nameOf(path string, known map[string]TargetKey) TargetKey {
	if filepath.Base(path) == "unmanage.journal" {
		return "" // names CIDs, not targets
	}
	if data, err := os.ReadFile(path); err == nil {
		var f struct {
			URI string `toml:"uri"`
		}
		if toml.NewDecoder(bytes.NewReader(data)).Decode(&f) == nil && f.URI != "" {
			if spec, err := ParseURI(f.URI); err == nil {
				return spec.Target
			}
		}
	}
	if filepath.Base(filepath.Dir(path)) == "targets" {
		return known[filepath.Base(path)]
	}
	return ""
}

// Reread reads one state file again (one that did not load before): a CID
// or a target record, or fs.ErrNotExist if it is gone. A file that still
// does not load comes back as a BadFile error.
func (st *Store) Reread(path string, known func(hash string) TargetKey) (*LoadedCID, *LoadedTarget, *BadFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, err
		}
		return nil, nil, st.badFile(path, err, known), nil
	}
	switch filepath.Base(filepath.Dir(path)) {
	case "cids":
		c, err := st.decodeCID(path, data)
		if err != nil {
			return nil, nil, st.badFile(path, err, known), nil
		}
		return &c, nil, nil, nil
	case "targets":
		t, err := st.decodeTarget(path, data)
		if err != nil {
			return nil, nil, st.badFile(path, err, known), nil
		}
		return nil, &t, nil, nil
	}
	// The journal is replayed only at start, where nothing else runs.
	return nil, nil, &BadFile{Path: path, Err: errors.New("unmanage journal: replayed at the next start")}, nil
}

func (st *Store) badFile(path string, err error, known func(hash string) TargetKey) *BadFile {
	m := map[string]TargetKey{}
	if k := known(filepath.Base(path)); k != "" {
		m[filepath.Base(path)] = k
	}
	return &BadFile{Path: path, Err: err, Record: filepath.Base(filepath.Dir(path)) == "targets", Target: st.nameOf(path, m)}
}

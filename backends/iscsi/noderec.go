// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/storkeep/storkeep/service"
)

// recordMarker is the comment line storkeep adds to the node records it
// creates. It is how a later Disconnect, maybe from another run of the
// daemon, knows that the record is storkeep's to delete: a record without
// it (made by hand, by discovery, or rewritten by `iscsiadm -o update`,
// which drops comments) is never deleted. iscsiadm skips comment lines.
const recordMarker = "# storkeep: created by storkeepd, which deletes it on logout"

// nodeRecord names one record of open-iscsi's node database: the file
// NODES/IQN/ADDR,PORT,TPGT/IFACE that iscsiadm reads when it logs in.
type nodeRecord struct {
	IQN   string
	Addr  string // an IP address, as iscsiadm writes it (IPv6 without brackets)
	Port  uint16
	TPGT  int
	Iface string
}

// path returns the record's file under nodesDir.
func (r nodeRecord) path(nodesDir string) string {
	return filepath.Join(nodesDir, r.IQN,
		r.Addr+","+strconv.Itoa(int(r.Port))+","+strconv.Itoa(r.TPGT), r.Iface)
}

// portalArg is the -p argument that names the record: ADDR:PORT,TPGT.
func (r nodeRecord) portalArg() string {
	return service.HostPort(r.Addr, r.Port) + "," + strconv.Itoa(r.TPGT)
}

func (r nodeRecord) String() string {
	return r.IQN + " at " + r.portalArg() + " (iface " + r.Iface + ")"
}

// setting is one "key = value" line of a node record; an empty value
// removes the key (iscsiadm writes no line for an empty value).
type setting struct{ key, value string }

// recordSettings returns the lines storkeep sets in a record: CHAP
// always when the record is its own, only when credentials are given
// otherwise (an administrator's record keeps its own authentication
// unless the client asked for some); and node.startup=manual in its own
// records, so that iscsid never logs in at boot on its own.
func recordSettings(chap service.CHAP, ours bool) []setting {
	var out []setting
	if ours {
		out = append(out, setting{"node.startup", "manual"}, setting{"node.conn[0].startup", "manual"})
	}
	if !ours && chap.Empty() {
		return out
	}
	method := "None"
	if chap.Username != "" || chap.Password != "" {
		method = "CHAP"
	}
	return append(out,
		setting{"node.session.auth.authmethod", method},
		setting{"node.session.auth.username", chap.Username},
		setting{"node.session.auth.password", chap.Password},
		setting{"node.session.auth.username_in", chap.UsernameIn},
		setting{"node.session.auth.password_in", chap.PasswordIn},
	)
}

// editRecord returns content with every key of settings set (or removed
// when its value is empty) and, when mark is set, with storkeep's marker.
// Other lines stay as they are. New lines go before "# END RECORD".
func editRecord(content []byte, settings []setting, mark bool) []byte {
	owned := make(map[string]bool, len(settings))
	for _, s := range settings {
		owned[s.key] = true
	}
	lines := strings.SplitAfter(string(content), "\n")
	var b bytes.Buffer
	b.Grow(len(content) + 512)
	var tail []string // "# END RECORD" and what follows it
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" && i == len(lines)-1 {
			continue
		}
		if strings.HasPrefix(trimmed, "# END RECORD") {
			tail = lines[i:]
			break
		}
		if trimmed == recordMarker {
			continue
		}
		if key, ok := recordKey(trimmed); ok && owned[key] {
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	for _, s := range settings {
		if s.value != "" {
			b.WriteString(s.key + " = " + s.value + "\n")
		}
	}
	if mark {
		b.WriteString(recordMarker + "\n")
	}
	if tail == nil {
		tail = []string{"# END RECORD\n"}
	}
	for _, line := range tail {
		b.WriteString(line)
	}
	if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// recordKey returns the key of a "key = value" line as iscsiadm parses it
// (up to white space or '='), or false for comments and blank lines.
func recordKey(line string) (string, bool) {
	if line == "" || line[0] == '#' {
		return "", false
	}
	end := strings.IndexFunc(line, func(r rune) bool { return r == '=' || r == ' ' || r == '\t' })
	if end <= 0 {
		return "", false
	}
	return line[:end], true
}

// hasMarker reports whether a record's content carries storkeep's marker.
func hasMarker(content []byte) bool {
	for line := range strings.SplitSeq(string(content), "\n") {
		if strings.TrimSpace(line) == recordMarker {
			return true
		}
	}
	return false
}

// writeRecord replaces the record file at path with content, atomically
// and readable by root only (it may hold CHAP secrets). Like iscsiadm, it
// does not fsync: after a crash the record is the old one or the new one,
// and the next Connect writes it again. The temporary
// file lives in tmpDir, outside the node tree, so that iscsiadm never
// mistakes it for a record.
func writeRecord(path, tmpDir string, content []byte) error {
	f, err := os.CreateTemp(tmpDir, ".storkeep-node-*")
	if err != nil {
		return fmt.Errorf("write node record %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write node record %s: %w", path, err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return fmt.Errorf("write node record %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write node record %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write node record %s: %w", path, err)
	}
	return nil
}

// idbmLockWait is how long iscsiadm itself waits for the node database
// lock before it goes ahead anyway (3000 x 10 ms).
const idbmLockWait = 30 * time.Second

// idbmLock takes open-iscsi's node database lock, the way iscsiadm does
// (a hard link from LOCKDIR/lock to LOCKDIR/lock.write), so that a record
// is never rewritten under an iscsiadm that reads it. Like iscsiadm, it
// goes ahead without the lock when a stale lock.write outlives the wait;
// unlock then leaves that file alone.
func idbmLock(ctx context.Context, lockDir string) (unlock func(), err error) {
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("node database lock: %w", err)
	}
	lock := filepath.Join(lockDir, "lock")
	write := filepath.Join(lockDir, "lock.write")
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node database lock: %w", err)
	}
	f.Close()
	deadline := time.Now().Add(idbmLockWait)
	for {
		err := os.Link(lock, write)
		if err == nil {
			return func() { os.Remove(write) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("node database lock: %w", err)
		}
		if time.Now().After(deadline) {
			return func() {}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node database lock %s: %w", write, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

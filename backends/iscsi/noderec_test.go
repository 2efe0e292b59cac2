// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

func TestEditRecord(t *testing.T) {
	orig, err := os.ReadFile("testdata/node-record")
	if err != nil {
		t.Fatal(err)
	}
	chap := service.CHAP{Username: "alice", Password: "s3cret = #x", UsernameIn: "tgt", PasswordIn: "other-s3cret"}
	ours := editRecord(orig, recordSettings(chap, true), true)
	for _, line := range []string{
		"node.startup = manual", "node.conn[0].startup = manual", "node.session.auth.authmethod = CHAP",
		"node.session.auth.username = alice", "node.session.auth.password = s3cret = #x",
		"node.session.auth.username_in = tgt", "node.session.auth.password_in = other-s3cret", recordMarker,
	} {
		if strings.Count(string(ours), "\n"+line+"\n") != 1 {
			t.Errorf("edited record lacks %q once:\n%s", line, ours)
		}
	}
	if strings.Count(string(ours), "node.session.auth.authmethod") != 1 || !bytes.HasSuffix(ours, []byte("# END RECORD\n")) ||
		!bytes.HasPrefix(ours, []byte("# BEGIN RECORD 2.1.8\n")) || !hasMarker(ours) {
		t.Errorf("edited record:\n%s", ours)
	}
	// Every line storkeep does not own is kept.
	for _, line := range strings.Split(string(orig), "\n") {
		key, ok := recordKey(line)
		if ok && !strings.HasPrefix(key, "node.session.auth.") && !strings.HasSuffix(key, "startup") && !bytes.Contains(ours, []byte(line+"\n")) {
			t.Errorf("lost line %q", line)
		}
	}
	// Editing again is stable; dropping CHAP removes every credential.
	if again := editRecord(ours, recordSettings(chap, true), true); !bytes.Equal(again, ours) {
		t.Errorf("a second edit changed the record:\n%s", again)
	}
	plain := editRecord(ours, recordSettings(service.CHAP{}, true), true)
	if bytes.Contains(plain, []byte("s3cret")) || bytes.Contains(plain, []byte("username")) ||
		!bytes.Contains(plain, []byte("\nnode.session.auth.authmethod = None\n")) {
		t.Errorf("without CHAP:\n%s", plain)
	}
	// Someone else's record: CHAP only when asked for, no marker, startup left.
	foreign := editRecord(orig, recordSettings(service.CHAP{}, false), false)
	if !bytes.Equal(foreign, orig) {
		t.Errorf("a foreign record was changed without credentials:\n%s", foreign)
	}
	foreign = editRecord(orig, recordSettings(chap, false), false)
	if hasMarker(foreign) || !bytes.Contains(foreign, []byte("node.session.auth.password = s3cret = #x\n")) {
		t.Errorf("foreign record with CHAP:\n%s", foreign)
	}
}

func TestWriteRecordMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nodes", "rec")
	writeFile(t, path, "old\n")
	os.Chmod(path, 0o644)
	if err := writeRecord(path, dir, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestIdbmLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lock")
	unlock, err := idbmLock(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lock.write")); err != nil {
		t.Fatalf("lock.write: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := idbmLock(ctx, dir); err == nil {
		t.Fatal("took the lock twice")
	}
	unlock()
	unlock2, err := idbmLock(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

// FuzzEditRecord: whatever the record holds, the edit sets each owned key
// exactly once, keeps the lines it does not own, and is stable.
func FuzzEditRecord(f *testing.F) {
	orig, _ := os.ReadFile("testdata/node-record")
	f.Add(string(orig), "alice", "s3cret", true)
	f.Add("", "", "", false)
	f.Add("node.session.auth.password=x\nnode.startup\t= automatic\n# END RECORD", "a", "b", true)
	f.Fuzz(func(t *testing.T, content, user, password string, ours bool) {
		chap := service.CHAP{Username: user, Password: password}
		if chap.Check() != nil || strings.ContainsAny(content, "\r") {
			return
		}
		settings := recordSettings(chap, ours)
		out := editRecord([]byte(content), settings, ours)
		if again := editRecord(out, settings, ours); !bytes.Equal(again, out) {
			t.Fatalf("not stable:\n%q\n%q", out, again)
		}
		counts := map[string]int{}
		for _, line := range strings.Split(string(out), "\n") {
			if key, ok := recordKey(strings.TrimSpace(line)); ok {
				counts[key]++
			}
		}
		for _, s := range settings {
			want := 0
			if s.value != "" {
				want = 1
			}
			if counts[s.key] != want {
				t.Fatalf("%s appears %d times in:\n%s", s.key, counts[s.key], out)
			}
		}
		if hasMarker(out) != ours {
			t.Fatalf("marker %t, want %t", hasMarker(out), ours)
		}
	})
}

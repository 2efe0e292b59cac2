// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func TestPropertyKey(t *testing.T) {
	// Every key of List is spelled as the Connection property with the
	// same value.
	for _, k := range []string{skdbus.ListManaged, skdbus.ListConnected, skdbus.ListState, skdbus.ListKind,
		skdbus.ListURI, skdbus.ListTarget, skdbus.ListLastError, skdbus.ListLastErrorMessage, skdbus.ListConnectionInfo} {
		p := propertyKey(k)
		found := false
		for _, n := range connPropertyOrder {
			found = found || n == p
		}
		if !found {
			t.Errorf("List key %q becomes %q, which is no Connection property", k, p)
		}
	}
	if got := propertyKey("futureKey"); got != "FutureKey" {
		t.Errorf("propertyKey(futureKey) = %q", got)
	}
}

// A typical iSCSI row: at 80 columns, the old fixed widths cut its target.
var iscsiRow = []string{"vm1-lun", "iscsi", "retrying", "no",
	"iscsi://192.168.122.10:3260/iqn.2026-01.com.example.storage:vm1-lun7/1;tpgt=1;iface=default", "AuthenticationFailed"}

func TestFitTableNeverCutsCIDOrTarget(t *testing.T) {
	rows := [][]string{iscsiRow, {"db", "nfs", "connected", "yes", "nfs://filer/exports/db", "-"}}
	for _, width := range []int{0, 200, 140, 120, 110, 100, 80, 40, 10} {
		header, out := fitTable(listColumns, rows, width)
		var buf bytes.Buffer
		if err := writeTable(&buf, header, out, nil); err != nil {
			t.Fatal(err)
		}
		text := buf.String()
		if !strings.Contains(text, iscsiRow[4]) || !strings.Contains(text, "vm1-lun ") {
			t.Errorf("width %d: the CID or target was cut:\n%s", width, text)
		}
		if header[0] != "CID" || !contains(header, "TARGET") {
			t.Errorf("width %d: header %q lost CID or TARGET", width, header)
		}
		least := len("vm1-lun") + 2 + len(iscsiRow[4])
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if n := utf8.RuneCountInString(l); width > 0 && n > max(width, least) {
				t.Errorf("width %d: line of %d runes: %q", width, n, l)
			}
		}
	}
}

func TestFitTableShrinksThenDrops(t *testing.T) {
	rows := [][]string{iscsiRow}
	full := 7 + 2 + 5 + 2 + 8 + 2 + 9 + 2 + len(iscsiRow[4]) + 2 + 20
	tests := []struct {
		width  int
		header string
	}{
		{0, "CID KIND STATE CONNECTED TARGET LAST ERROR"},
		{full, "CID KIND STATE CONNECTED TARGET LAST ERROR"},
		// Shrinking LAST ERROR (to its header) is enough.
		{full - 10, "CID KIND STATE CONNECTED TARGET LAST ERROR"},
		// Then CONNECTED goes first, LAST ERROR next, KIND, STATE.
		{full - 16, "CID KIND STATE TARGET LAST ERROR"},
		{full - 37, "CID KIND STATE TARGET"},
		{full - 38, "CID STATE TARGET"},
		{full - 43, "CID STATE TARGET"},
		{full - 44, "CID TARGET"},
		{1, "CID TARGET"},
	}
	for _, tt := range tests {
		header, out := fitTable(listColumns, rows, tt.width)
		if got := strings.Join(header, " "); got != tt.header {
			t.Errorf("width %d: columns %q, want %q", tt.width, got, tt.header)
		}
		if tt.width == full-10 {
			if got := out[0][5]; got != "Authentic…" {
				t.Errorf("width %d: LAST ERROR cell %q, want it cut to its header's width", tt.width, got)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestTerminalWidthOfAPipe(t *testing.T) {
	if w := terminalWidth(&bytes.Buffer{}); w != 0 {
		t.Errorf("a buffer has width %d; want 0 (no limit)", w)
	}
}

func TestSuggestCommand(t *testing.T) {
	tests := map[string]string{
		"lsit": "list", "lst": "list", "List": "list", "shwo": "show", "sho": "show",
		"mange": "manage", "unmange": "unmanage", "wiat": "wait", "reconect": "reconnect",
		"moniter": "monitor", "mon": "monitor", "stat": "status", "hlep": "help",
		"frobnicate": "", "x": "", "delete": "",
	}
	for in, want := range tests {
		if got := suggestCommand(in); got != want {
			t.Errorf("suggestCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"list", "list", 0}, {"lsit", "list", 1}, {"lst", "list", 1},
		{"show", "shows", 1}, {"kitten", "sitting", 3}, {"ä", "a", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestLooksLikeURI(t *testing.T) {
	for s, want := range map[string]bool{
		"nfs://h/x": true, "iscsi://san/iqn.x": true, "vm1-disk": false, "a:b": false,
		"://x": false, "host/nfs/srv:/x": false, "weird cid://x": false,
	} {
		if got := looksLikeURI(s); got != want {
			t.Errorf("looksLikeURI(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestDrawProgress(t *testing.T) {
	var buf bytes.Buffer
	path := skdbus.ConnectionPath("vm1-disk")
	drawProgress(&buf, path, map[string]dbus.Variant{
		"CID": dbus.MakeVariant("vm1-disk"), "State": dbus.MakeVariant("retrying"),
		"LastError": dbus.MakeVariant("Timeout"), "Attempts": dbus.MakeVariant(uint32(3)),
	}, 12*time.Second, 30*time.Second)
	if want := "\rwaiting for vm1-disk: retrying, last error Timeout, 3 attempts (12 s of 30 s)\x1b[K"; buf.String() != want {
		t.Errorf("got %q\nwant %q", buf.String(), want)
	}
	// No properties (the read failed): the CID from the path, and the time.
	buf.Reset()
	drawProgress(&buf, path, nil, time.Second, time.Minute)
	if want := "\rwaiting for vm1-disk (1 s of 1 min)\x1b[K"; buf.String() != want {
		t.Errorf("got %q\nwant %q", buf.String(), want)
	}
}

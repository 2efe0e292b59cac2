// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func TestEscapeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"with space", "with space"},
		{"ünïcode-✓", "ünïcode-✓"},
		{`back\slash`, `back\slash`},
		// A newline would start a new table row.
		{"a\nb", `"a\nb"`},
		// ANSI escape: clear the screen, colour the text.
		{"evil\x1b[2J\x1b[31m", `"evil\x1b[2J\x1b[31m"`},
		// Carriage return would overwrite the start of the line.
		{"x\rCID", `"x\rCID"`},
		{"tab\there", `"tab\there"`},
		// C1 control (CSI) and a right-to-left override.
		{"a\u009bb", `"a\u009bb"`},
		{"a\u202eb", `"a\u202eb"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		// Starts with a quote: quoted, so it can't pass for an escaped CID.
		{`"a\nb"`, `"\"a\\nb\""`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := escapeText(tt.in); got != tt.want {
			t.Errorf("escapeText(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestEscapeWord(t *testing.T) {
	tests := []struct{ in, want string }{
		{"connected", "connected"},
		{"", `""`},
		{"mount failed", `"mount failed"`},
		{"a=b", `"a=b"`},
		{"a\nb", `"a\nb"`},
	}
	for _, tt := range tests {
		if got := escapeWord(tt.in); got != tt.want {
			t.Errorf("escapeWord(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestEscapeMessage(t *testing.T) {
	if got := escapeMessage(`mount "x" failed`); got != `mount "x" failed` {
		t.Errorf("printable message changed: %s", got)
	}
	if got := escapeMessage("bad\x1b[31m\nthing"); got != `bad\x1b[31m\nthing` {
		t.Errorf("escapeMessage = %s", got)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"this is too long", 10, "this is t…"},
		{"ääääääääääää", 5, "ääää…"},
		{"abc", 1, "…"},
		{"abc", 0, "abc"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.max); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func status(managed, connected bool, kind, state, target, lastErr string) map[string]dbus.Variant {
	return map[string]dbus.Variant{
		skdbus.ListManaged:          dbus.MakeVariant(managed),
		skdbus.ListConnected:        dbus.MakeVariant(connected),
		skdbus.ListKind:             dbus.MakeVariant(kind),
		skdbus.ListState:            dbus.MakeVariant(state),
		skdbus.ListURI:              dbus.MakeVariant("nfs://" + target),
		skdbus.ListTarget:           dbus.MakeVariant(target),
		skdbus.ListLastError:        dbus.MakeVariant(lastErr),
		skdbus.ListLastErrorMessage: dbus.MakeVariant(""),
		skdbus.ListConnectionInfo:   dbus.MakeVariant(map[string]dbus.Variant{}),
	}
}

func TestListTableHostileCIDs(t *testing.T) {
	conns := map[string]map[string]dbus.Variant{
		"zeta":                     status(true, true, "nfs", "connected", "srv:/z", ""),
		"alpha":                    status(true, false, "iscsi", "retrying", "iqn.2001-04.com.example:t", "LoginFailed"),
		"nl\ninjected  row":        status(true, false, "nfs", "connecting", "srv:/n", ""),
		"ansi\x1b[2J\x1b[31mred":   status(true, false, "nfs", "connecting", "srv:/a", ""),
		"host/nfs/srv:/x":          status(false, true, "nfs", "connected", "srv:/x", ""),
		"a/early-but-unmanaged":    status(false, true, "nfs", "connected", "srv:/y", ""),
		strings.Repeat("long", 20): status(true, true, "nfs", "connected", strings.Repeat("t", 80), ""),
	}
	var buf bytes.Buffer
	header, rows := fitTable(listColumns, listRows(conns), 100)
	if err := writeTable(&buf, header, rows, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\r") {
		t.Errorf("table contains raw control characters:\n%s", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(conns)+1 {
		t.Fatalf("got %d lines, want %d (one per CID plus header):\n%s", len(lines), len(conns)+1, out)
	}
	// Managed first, then unmanaged, each sorted by the CID itself (not by
	// its escaped form).
	wantFirst := []string{"CID", "alpha", `"ansi\x1b[2J\x1b[31mred"`, "longlong", `"nl\ninjected  row"`, "zeta", "a/early-but-unmanaged", "host/nfs/srv:/x"}
	for i, w := range wantFirst {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	// Every column starts at the same offset on every line.
	col := len([]rune(lines[0])) - len("TARGET")
	for i, l := range lines {
		if r := []rune(l); len(r) < col || r[col-1] != ' ' || r[col] == ' ' {
			t.Errorf("line %d: TARGET column misaligned: %q", i, l)
		}
	}
	// The CID and the target are never cut, however long: the other
	// columns went to make room.
	if strings.Contains(out, "…") || !strings.Contains(out, strings.Repeat("long", 20)) || !strings.Contains(out, strings.Repeat("t", 80)) {
		t.Errorf("a CID or target was cut:\n%s", out)
	}
	if !strings.HasPrefix(lines[1], "alpha ") || !strings.HasSuffix(lines[1], " iqn.2001-04.com.example:t") {
		t.Errorf("alpha row = %q", lines[1])
	}
}

func TestListTableEmptyCells(t *testing.T) {
	conns := map[string]map[string]dbus.Variant{"bare": {}}
	var buf bytes.Buffer
	header, rows := fitTable(listColumns, listRows(conns), 0)
	if err := writeTable(&buf, header, rows, nil); err != nil {
		t.Fatal(err)
	}
	want := "CID   KIND  STATE  CONNECTED  TARGET  LAST ERROR\n" +
		"bare  -     -      no         -       -\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestJSONValue(t *testing.T) {
	in := map[string]dbus.Variant{
		"s":     dbus.MakeVariant("x\ny"),
		"b":     dbus.MakeVariant(true),
		"u":     dbus.MakeVariant(uint32(7)),
		"t":     dbus.MakeVariant(uint64(1 << 60)),
		"n":     dbus.MakeVariant(int16(-3)),
		"y":     dbus.MakeVariant(byte(255)),
		"d":     dbus.MakeVariant(1.5),
		"nan":   dbus.MakeVariant(math.NaN()),
		"o":     dbus.MakeVariant(dbus.ObjectPath("/a/b")),
		"g":     dbus.MakeVariant(dbus.ParseSignatureMust("a{sv}")),
		"as":    dbus.MakeVariant([]string{"/dev/sdb", "/dev/sdc"}),
		"ay":    dbus.MakeVariant([]byte("hi")),
		"vv":    dbus.MakeVariant(dbus.MakeVariant("nested")),
		"a{sv}": dbus.MakeVariant(map[string]dbus.Variant{"portal": dbus.MakeVariant("10.0.0.1:3260"), "sid": dbus.MakeVariant(uint32(3))}),
		"a{us}": dbus.MakeVariant(map[uint32]string{1: "one"}),
		"(si)":  dbus.MakeVariant([]any{"a", int32(1)}),
		"aas":   dbus.MakeVariant([][]string{{"a"}, {}}),
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, jsonProperties(in), false); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"s":     "x\ny",
		"b":     true,
		"u":     json.Number("7"),
		"t":     json.Number("1152921504606846976"),
		"n":     json.Number("-3"),
		"y":     json.Number("255"),
		"d":     json.Number("1.5"),
		"nan":   "NaN",
		"o":     "/a/b",
		"g":     "a{sv}",
		"as":    []any{"/dev/sdb", "/dev/sdc"},
		"ay":    []any{json.Number("104"), json.Number("105")},
		"vv":    "nested",
		"a{sv}": map[string]any{"portal": "10.0.0.1:3260", "sid": json.Number("3")},
		"a{us}": map[string]any{"1": "one"},
		"(si)":  []any{"a", json.Number("1")},
		"aas":   []any{[]any{"a"}, []any{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestWriteJSONKeepsHTMLCharacters(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, map[string]any{"a<b>&": "x"}, false); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "{\"a<b>&\":\"x\"}\n" {
		t.Errorf("got %q", got)
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{"connected", "connected"},
		{"", "-"},
		{"a\nb", `"a\nb"`},
		{true, "true"},
		{uint32(4), "4"},
		{[]string{"/dev/sdb", "x\x1by"}, `["/dev/sdb", "x\x1by"]`},
		{map[string]dbus.Variant{"b": dbus.MakeVariant(uint32(1)), "a": dbus.MakeVariant("v")}, `{"a": "v", "b": 1}`},
		{map[string]dbus.Variant{}, "{}"},
		{dbus.ObjectPath("/x"), "/x"},
	}
	for _, tt := range tests {
		if got := formatValue(dbus.MakeVariant(tt.in)); got != tt.want {
			t.Errorf("formatValue(%#v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestFormatTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	past := now.Add(-42 * time.Second)
	if got, want := formatTime(uint64(past.UnixMicro()), "never", now), past.Format(time.RFC3339)+" (42 s ago)"; got != want {
		t.Errorf("past: got %q, want %q", got, want)
	}
	future := now.Add(90 * time.Second)
	if got, want := formatTime(uint64(future.UnixMicro()), "-", now), future.Format(time.RFC3339)+" (in 1 min 30 s)"; got != want {
		t.Errorf("future: got %q, want %q", got, want)
	}
	if got := formatTime(0, "never", now); got != "never" {
		t.Errorf("zero: got %q", got)
	}
	if got := formatTime(math.MaxUint64, "-", now); !strings.Contains(got, "(in ") {
		t.Errorf("huge: got %q", got)
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0 s"},
		{1400 * time.Millisecond, "1 s"},
		{59 * time.Second, "59 s"},
		{5 * time.Minute, "5 min"},
		{5*time.Minute + 3*time.Second, "5 min 3 s"},
		{3*time.Hour + 12*time.Minute, "3 h 12 min"},
		{52 * time.Hour, "2 d 4 h"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestWriteProperties(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)
	since := now.Add(-10 * time.Second)
	ifaces := map[string]map[string]dbus.Variant{
		skdbus.ConnInterface: {
			"CID":            dbus.MakeVariant("db\x1b]0;pwned\x07"),
			"URI":            dbus.MakeVariant("iscsi://10.0.0.1/iqn.2001-04.com.example:t/0"),
			"Managed":        dbus.MakeVariant(true),
			"Connected":      dbus.MakeVariant(true),
			"State":          dbus.MakeVariant("connected"),
			"LastError":      dbus.MakeVariant(""),
			"LastErrorTime":  dbus.MakeVariant(uint64(0)),
			"ConnectedSince": dbus.MakeVariant(uint64(since.UnixMicro())),
			"NextAttempt":    dbus.MakeVariant(uint64(0)),
			"Attempts":       dbus.MakeVariant(uint32(2)),
			"ConnectionInfo": dbus.MakeVariant(map[string]dbus.Variant{"sid": dbus.MakeVariant("3")}),
			"FutureProperty": dbus.MakeVariant(int32(-1)),
		},
		skdbus.ISCSIInterface: {
			"Devices":   dbus.MakeVariant([]string{"/dev/sdb"}),
			"SessionID": dbus.MakeVariant("3"),
			"State":     dbus.MakeVariant("LOGGED_IN"),
		},
		skdbus.PropertiesIface: {},
	}
	var buf bytes.Buffer
	if err := writeProperties(&buf, ifaces, now); err != nil {
		t.Fatal(err)
	}
	want := `CID: "db\x1b]0;pwned\a"
URI: iscsi://10.0.0.1/iqn.2001-04.com.example:t/0
Managed: true
Connected: true
State: connected
LastError: -
LastErrorTime: never
ConnectedSince: ` + since.Format(time.RFC3339) + ` (10 s ago)
Attempts: 2
NextAttempt: -
ConnectionInfo: {"sid": "3"}
FutureProperty: -1
Devices: ["/dev/sdb"]
SessionID: 3
ISCSI.State: LOGGED_IN
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func entry(managed, connected bool, state, lastErr string, info map[string]any) map[string]dbus.Variant {
	vi := map[string]dbus.Variant{}
	for k, v := range info {
		vi[k] = dbus.MakeVariant(v)
	}
	return map[string]dbus.Variant{
		skdbus.ListManaged: dbus.MakeVariant(managed), skdbus.ListConnected: dbus.MakeVariant(connected),
		skdbus.ListState: dbus.MakeVariant(state), skdbus.ListLastError: dbus.MakeVariant(lastErr),
		skdbus.ListTarget: dbus.MakeVariant("t"), skdbus.ListConnectionInfo: dbus.MakeVariant(vi),
	}
}

func TestSummarize(t *testing.T) {
	conns := map[string]map[string]dbus.Variant{
		"vm1-disk":    entry(true, false, "retrying", "LinkDown", map[string]any{"server": "10.251.0.1"}),
		"vm2-disk":    entry(true, false, "retrying", "NoRoute", map[string]any{"server": "10.251.0.1"}),
		"vm1-lun":     entry(true, false, "retrying", "LinkDown", map[string]any{"host": "san"}),
		"db":          entry(true, true, "connected", "", nil),
		"new":         entry(true, false, "connecting", "", nil),
		"broken":      entry(true, false, "retrying", "LoginFailed", nil),
		"unmanaged/h": entry(false, true, "connected", "BadStateFile", nil),
		"statefile/x": entry(false, false, "retrying", "BadStateFile", nil),
		"unmanaged/t": entry(false, false, "disconnecting", "", nil),
		"nfs/mount7":  entry(false, true, "connected", "", nil),
	}
	got := summarize(conns)
	want := daemonStatus{
		Managed: 6, Connected: 1, Connecting: 1, Retrying: 4,
		PathsDown:     []pathDown{{"10.251.0.1", []string{"vm1-disk", "vm2-disk"}}, {"san", []string{"vm1-lun"}}},
		Held:          []string{"unmanaged/h"},
		BadStateFiles: []string{"statefile/x"},
		Disconnecting: 1, HostConnections: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("summarize:\n got %+v\nwant %+v", got, want)
	}
	got.Version = "1.0"
	var b bytes.Buffer
	for _, r := range got.rows() {
		b.WriteString(r[0] + " " + r[1] + "\n")
	}
	wantText := "Version: 1.0\nManaged: 6 (1 connected, 1 connecting, 4 retrying)\n" +
		"Paths down: 2: 10.251.0.1 (vm1-disk, vm2-disk); san (vm1-lun)\nHeld: 1: unmanaged/h\n" +
		"Bad state files: 1: statefile/x\nDisconnecting: 1\nOn the host: 1 not managed by storkeep\n"
	if b.String() != wantText {
		t.Errorf("text\n%s\nwant\n%s", b.String(), wantText)
	}
	// JSON: the same names, and empty lists as [], never null.
	b.Reset()
	if err := writeJSON(&b, summarize(map[string]map[string]dbus.Variant{}), false); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Version", "Managed", "Connected", "Connecting", "Retrying", "PathsDown", "Held", "HoldsAll", "BadStateFiles", "Disconnecting", "HostConnections"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s: %s", k, b.String())
		}
	}
	if strings.Contains(b.String(), "null") {
		t.Errorf("JSON has null: %s", b.String())
	}
}

func TestSummarizeHoldsAll(t *testing.T) {
	conns := map[string]map[string]dbus.Variant{
		"statefile/torn": entry(false, false, "retrying", "BadStateFile", map[string]any{"held": "all", "path": "/x"}),
	}
	st := summarize(conns)
	if !st.HoldsAll || len(st.BadStateFiles) != 1 {
		t.Fatalf("summarize = %+v; want HoldsAll and one bad file", st)
	}
	if r := st.rows()[3]; r[1] != "every disconnect (a state file that did not load names no target)" {
		t.Errorf("Held row %q", r)
	}
}

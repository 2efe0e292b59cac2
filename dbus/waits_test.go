// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestDeparture(t *testing.T) {
	nameLost := func(sender, name, old, new string) *godbus.Signal {
		return &godbus.Signal{Sender: sender, Path: busDriverPath, Name: busDriverIface + ".NameOwnerChanged",
			Body: []any{name, old, new}}
	}
	tests := []struct {
		name string
		sig  *godbus.Signal
		want string // "" for not a departure
	}{
		{"unique name left", nameLost(busDriverName, ":1.42", ":1.42", ""), ":1.42"},
		{"forged by a client", nameLost(":1.7", ":1.42", ":1.42", ""), ""},
		{"well-known name released", nameLost(busDriverName, "org.example.X", ":1.42", ""), ""},
		{"name acquired", nameLost(busDriverName, ":1.42", "", ":1.42"), ""},
		{"wrong body", &godbus.Signal{Sender: busDriverName, Path: busDriverPath,
			Name: busDriverIface + ".NameOwnerChanged", Body: []any{":1.42"}}, ""},
		{"other signal", &godbus.Signal{Sender: busDriverName, Path: busDriverPath,
			Name: busDriverIface + ".NameLost", Body: []any{":1.42", ":1.42", ""}}, ""},
		{"nil", nil, ""},
	}
	for _, tc := range tests {
		got, ok := departure(tc.sig)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: departure = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

// TestWaitTable: the cap counts per uid across bus names, a name that
// leaves ends its Waits, and one the bus no longer knows fails at once.
func TestWaitTable(t *testing.T) {
	wt := newWaitTable()
	limit := 2
	wt.lookup = func(_ context.Context, sender string) (uint32, error) {
		if sender == ":1.gone" {
			return 0, errors.New("org.freedesktop.DBus.Error.NameHasNoOwner")
		}
		return 65534, nil
	}
	enter := func(sender string) (*waitSender, string, *godbus.Error) {
		ws, first := wt.enter(sender)
		if first {
			wt.identify(sender, ws)
		}
		key, err := wt.admit(ws, limit)
		return ws, key, err
	}
	a, keyA, err := enter(":1.1")
	if err != nil || keyA != "uid 65534" {
		t.Fatalf("first Wait: %q %v", keyA, err)
	}
	b, keyB, err := enter(":1.2")
	if err != nil {
		t.Fatalf("second Wait, another name of the same uid: %v", err)
	}
	c, _, err := enter(":1.3")
	if err == nil || err.Name != ErrorLimitExceeded {
		t.Fatalf("third Wait of the uid: %v, want %s", err, ErrorLimitExceeded)
	}
	wt.leave(":1.3", c)

	wt.departed(":1.1")
	select {
	case <-a.ctx.Done():
	default:
		t.Fatal("the Wait of a name that left goes on")
	}
	if b.ctx.Err() != nil {
		t.Fatal("the Wait of another name ended too")
	}
	wt.release(keyA)
	wt.leave(":1.1", a)
	if _, _, err := enter(":1.4"); err != nil {
		t.Fatalf("a Wait once one ended: %v", err)
	}

	g, _, err := enter(":1.gone")
	if err == nil || err.Name != ErrorFailed || g.ctx.Err() == nil {
		t.Fatalf("a Wait of a name that left before it was seen: %v", err)
	}
	wt.leave(":1.gone", g)

	limit = 1 // lowered by a reload
	if n := wt.count(); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
	if _, _, err := enter(":1.5"); err == nil {
		t.Fatal("a lowered cap is not applied")
	}
	wt.release(keyB)
	wt.leave(":1.2", b)
	if len(wt.senders) != 2 { // :1.4 and :1.5 have not left
		t.Errorf("names tracked: %v", wt.senders)
	}
}

// TestWaitTableAsksForATrim: once a thousand Waits have ended since the
// peak, the watcher is asked to hand their memory back, and not before.
func TestWaitTableAsksForATrim(t *testing.T) {
	wt := newWaitTable() // no bus: callers are bus names
	var keys []string
	for i := range trimWaits + 10 {
		ws, first := wt.enter(fmt.Sprintf(":1.%d", i))
		if first {
			wt.identify(fmt.Sprintf(":1.%d", i), ws)
		}
		key, err := wt.admit(ws, 1)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	for i, k := range keys {
		wt.release(k)
		asked := len(wt.shrunk) == 1
		if want := i+1 >= trimWaits; asked != want {
			t.Fatalf("after %d Waits ended: asked for a trim %v, want %v", i+1, asked, want)
		}
	}
	<-wt.shrunk
	wt.trimmed()
	if wt.peak != 0 {
		t.Errorf("peak %d after the trim, want 0", wt.peak)
	}
}

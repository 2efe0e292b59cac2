// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func propsChanged(path dbus.ObjectPath, iface string, changed map[string]dbus.Variant, invalidated ...string) *dbus.Signal {
	if invalidated == nil {
		invalidated = []string{}
	}
	return &dbus.Signal{Path: path, Name: skdbus.PropertiesIface + ".PropertiesChanged",
		Body: []any{iface, changed, invalidated}}
}

func ifacesAdded(path dbus.ObjectPath, ifaces map[string]map[string]dbus.Variant) *dbus.Signal {
	return &dbus.Signal{Path: skdbus.RootPath, Name: skdbus.ObjectManagerIface + ".InterfacesAdded",
		Body: []any{path, ifaces}}
}

func ifacesRemoved(path dbus.ObjectPath, ifaces ...string) *dbus.Signal {
	return &dbus.Signal{Path: skdbus.RootPath, Name: skdbus.ObjectManagerIface + ".InterfacesRemoved",
		Body: []any{path, ifaces}}
}

func TestMonitorText(t *testing.T) {
	now := time.Date(2026, 3, 1, 15, 4, 5, 6_000_000, time.Local)
	var buf bytes.Buffer
	m := &monitor{w: &buf, cids: map[dbus.ObjectPath]string{}}
	// An object whose path does not encode its CID the way we'd guess:
	// the learned CID wins.
	m.learn("/org/storkeep/StorKeep1/connection/seeded", map[string]map[string]dbus.Variant{
		skdbus.ConnInterface: {"CID": dbus.MakeVariant("Seeded-CID")},
	})
	hostile := "x\x1b[2Jy"
	hostilePath := dbus.ObjectPath(skdbus.ConnPrefix + "x_1b_5b2Jy")

	signals := []*dbus.Signal{
		ifacesAdded(hostilePath, map[string]map[string]dbus.Variant{
			skdbus.ConnInterface:   {"CID": dbus.MakeVariant(hostile), "URI": dbus.MakeVariant("nfs://srv/export")},
			skdbus.PropertiesIface: {},
		}),
		propsChanged(hostilePath, skdbus.ConnInterface, map[string]dbus.Variant{
			"Connected": dbus.MakeVariant(true),
			"State":     dbus.MakeVariant("connected"),
			"LastError": dbus.MakeVariant(""),
			"Attempts":  dbus.MakeVariant(uint32(1)),
		}),
		propsChanged("/org/storkeep/StorKeep1/connection/seeded", skdbus.ConnInterface, map[string]dbus.Variant{
			"LastErrorMessage": dbus.MakeVariant("mount: connection refused"),
			"NextAttempt":      dbus.MakeVariant(uint64(0)),
		}, "ConnectionInfo"),
		// Never seen: the CID comes from unescaping the path ("db-1").
		propsChanged(skdbus.ConnPrefix+"db_2d1", skdbus.ConnInterface, map[string]dbus.Variant{
			"State": dbus.MakeVariant("retrying"),
		}),
		ifacesAdded(hostilePath, map[string]map[string]dbus.Variant{
			skdbus.NFSInterface: {"MountPoint": dbus.MakeVariant("/run/storkeep/mnt/x")},
		}),
		ifacesRemoved(hostilePath, skdbus.NFSInterface),
		ifacesRemoved(hostilePath, skdbus.ConnInterface, skdbus.PropertiesIface),
		propsChanged(skdbus.RootPath, skdbus.ManagerInterface, map[string]dbus.Variant{"Version": dbus.MakeVariant("1.1")}),
		// Malformed: ignored.
		{Path: skdbus.RootPath, Name: skdbus.ObjectManagerIface + ".InterfacesAdded", Body: []any{"oops"}},
	}
	for _, sig := range signals {
		if err := m.handle(now, sig); err != nil {
			t.Fatal(err)
		}
	}
	want := `15:04:05.006 "x\x1b[2Jy" added (nfs://srv/export)
15:04:05.006 "x\x1b[2Jy" changed: Connected=true State=connected LastError="" Attempts=1
15:04:05.006 Seeded-CID changed: LastErrorMessage="mount: connection refused" NextAttempt=- ConnectionInfo=<invalidated>
15:04:05.006 db-1 changed: State=retrying
15:04:05.006 "x\x1b[2Jy" added interface org.storkeep.StorKeep1.Connection.NFS: MountPoint=/run/storkeep/mnt/x
15:04:05.006 "x\x1b[2Jy" removed interface org.storkeep.StorKeep1.Connection.NFS
15:04:05.006 "x\x1b[2Jy" removed
15:04:05.006 (manager) changed: Version=1.1
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	if _, ok := m.cids[hostilePath]; ok {
		t.Errorf("removed object still in the CID map")
	}
}

func TestMonitorJSON(t *testing.T) {
	now := time.Date(2026, 3, 1, 15, 4, 5, 0, time.UTC)
	var buf bytes.Buffer
	m := &monitor{w: &buf, json: true, cids: map[dbus.ObjectPath]string{}}
	path := dbus.ObjectPath(skdbus.ConnPrefix + "db1")
	for _, sig := range []*dbus.Signal{
		ifacesAdded(path, map[string]map[string]dbus.Variant{
			skdbus.ConnInterface:   {"CID": dbus.MakeVariant("db1"), "ConnectionInfo": dbus.MakeVariant(map[string]dbus.Variant{"port": dbus.MakeVariant(uint16(2049))})},
			skdbus.PropertiesIface: {},
		}),
		propsChanged(path, skdbus.ConnInterface, map[string]dbus.Variant{"State": dbus.MakeVariant("connected")}),
		ifacesRemoved(path, skdbus.ConnInterface),
	} {
		if err := m.handle(now, sig); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.daemon(now, "stopped"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"Time":"2026-03-01T15:04:05Z","Event":"added","CID":"db1","Path":"/org/storkeep/StorKeep1/connection/db1","Interfaces":{"org.storkeep.StorKeep1.Connection":{"CID":"db1","ConnectionInfo":{"port":2049}}}}`,
		`{"Time":"2026-03-01T15:04:05Z","Event":"changed","CID":"db1","Path":"/org/storkeep/StorKeep1/connection/db1","Interface":"org.storkeep.StorKeep1.Connection","Changed":{"State":"connected"}}`,
		`{"Time":"2026-03-01T15:04:05Z","Event":"removed","CID":"db1","Path":"/org/storkeep/StorKeep1/connection/db1","RemovedInterfaces":["org.storkeep.StorKeep1.Connection"]}`,
		`{"Time":"2026-03-01T15:04:05Z","Event":"daemon-stopped"}`,
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
		if !json.Valid([]byte(got[i])) {
			t.Errorf("line %d is not JSON", i)
		}
	}
}

func pathChanged(host string, usable bool, link, reason string, cids ...string) *dbus.Signal {
	return &dbus.Signal{Path: skdbus.RootPath, Name: skdbus.ManagerInterface + ".PathChanged",
		Body: []any{host, usable, link, reason, cids}}
}

func TestMonitorPathChanged(t *testing.T) {
	now := time.Date(2026, 3, 1, 15, 4, 5, 6_000_000, time.Local)
	var buf bytes.Buffer
	m := &monitor{w: &buf, cids: map[dbus.ObjectPath]string{}}
	for _, sig := range []*dbus.Signal{
		pathChanged("10.0.0.1", false, "eth1", "LinkDown: link eth1 is down", "vm1-disk", "vm2\x1b"),
		pathChanged("10.0.0.1", true, "eth1", "", "vm1-disk"),
	} {
		if err := m.handle(now, sig); err != nil {
			t.Fatal(err)
		}
	}
	want := "15:04:05.006 path to 10.0.0.1 down: LinkDown: link eth1 is down (vm1-disk, \"vm2\\x1b\")\n" +
		"15:04:05.006 path to 10.0.0.1 usable via eth1 (vm1-disk)\n"
	if buf.String() != want {
		t.Fatalf("monitor printed\n%s\nwant\n%s", buf.String(), want)
	}

	buf.Reset()
	m.json = true
	if err := m.handle(now, pathChanged("san", false, "", "NoRoute: no route to 10.0.0.9", "lun1")); err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
		t.Fatalf("not JSON: %q: %v", buf.String(), err)
	}
	if ev["Event"] != "path" || ev["Host"] != "san" || ev["Usable"] != false || ev["Reason"] != "NoRoute: no route to 10.0.0.9" ||
		!reflect.DeepEqual(ev["CIDs"], []any{"lun1"}) {
		t.Fatalf("JSON event = %v", ev)
	}
}

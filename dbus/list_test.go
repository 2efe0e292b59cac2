// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/service"
)

// listService is a service (not running) with n managed CIDs, each on
// an export of its own.
func listService(t testing.TB, n int) *service.Service {
	t.Helper()
	// In memory: fsync costs nothing there, and n may be 10,000.
	dir, err := os.MkdirTemp("/dev/shm", "storkeep-list-test-")
	if err != nil {
		dir = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	store, _, err := service.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Options{Store: store, MaxCIDs: n + 10,
		Reconnect: service.ReconnectPolicy{Initial: time.Hour, Max: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		spec, err := service.ParseURI(fmt.Sprintf("nfs://filer%d.example/exports/vm-images/with/a/long/path/%d", i%7, i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Manage(service.CID(fmt.Sprintf("vm%04d-disk", i)), spec); err != nil {
			t.Fatal(err)
		}
	}
	return svc
}

// listBus is a Server with n managed CIDs on a private bus that takes
// messages of up to busMax bytes, serving under lim, and a client on it.
func listBus(t testing.TB, n, busMax int, lim Limits) *godbus.Conn {
	t.Helper()
	svc := listService(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	bus := dbustest.StartLimited(t, busMax)
	c, err := Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(c, Options{Service: svc, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	ran := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(ran) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v (the daemon lost its bus connection)", err)
		}
		<-ran
		c.Close()
	})
	client, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		var has bool
		if err := client.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err == nil && has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not own its name")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return client
}

func callList(client *godbus.Conn, opts map[string]godbus.Variant) (map[string]map[string]godbus.Variant, error) {
	var out map[string]map[string]godbus.Variant
	err := client.Object(BusName, RootPath).Call(ManagerInterface+".List", 0, opts).Store(&out)
	return out, err
}

// followPages lists everything limit entries at a time, as the man page
// tells a client to, and returns the entries and the pages' sizes.
func followPages(t *testing.T, client *godbus.Conn, limit uint32, opts map[string]godbus.Variant) (map[string]map[string]godbus.Variant, []int) {
	t.Helper()
	all := map[string]map[string]godbus.Variant{}
	var sizes []int
	after := ""
	for {
		o := maps.Clone(opts)
		o[OptLimit] = godbus.MakeVariant(limit)
		if after != "" {
			o[OptAfter] = godbus.MakeVariant(after)
		}
		page, err := callList(client, o)
		if err != nil {
			t.Fatalf("List(%v): %v", o, err)
		}
		sizes = append(sizes, len(page))
		for id, e := range page {
			if _, seen := all[id]; seen {
				t.Fatalf("%s came twice", id)
			}
			if id <= after {
				t.Fatalf("%s came after %s", id, after)
			}
			all[id] = e
		}
		if len(page) < int(limit) {
			return all, sizes
		}
		after = slices.Max(slices.Collect(maps.Keys(page)))
	}
}

func keysOf(e map[string]godbus.Variant) []string { return slices.Sorted(maps.Keys(e)) }

// v1Keys are every key a List entry had before paging, and the two that
// reads through the connection added (readDelay, lastProbe), sorted.
var v1Keys = []string{ListConnected, ListConnectionInfo, ListKind, ListLastError, ListLastErrorMessage,
	ListLastProbe, ListManaged, ListReadDelay, ListState, ListTarget, ListURI}

func TestListPagesFollowEveryEntryOnceWithBriefKeys(t *testing.T) {
	// Arrange
	client := listBus(t, 57, 128<<20, Limits{})

	// Act
	all, sizes := followPages(t, client, 10, map[string]godbus.Variant{OptHost: godbus.MakeVariant(false)})

	// Assert
	if len(all) != 57 || !slices.Equal(sizes, []int{10, 10, 10, 10, 10, 7}) {
		t.Fatalf("pages of 10: %d entries in pages of %v; want 57 in 10,10,10,10,10,7", len(all), sizes)
	}
	want := []string{ListConnected, ListKind, ListLastError, ListLastProbe, ListManaged, ListReadDelay, ListState, ListTarget}
	for id, e := range all {
		if got := keysOf(e); !slices.Equal(got, want) {
			t.Fatalf("%s: keys %q; want the brief keys %q", id, got, want)
		}
	}
}

func TestListKeysOption(t *testing.T) {
	// Arrange
	client := listBus(t, 5, 128<<20, Limits{})
	keys := func(k ...string) map[string]godbus.Variant {
		return map[string]godbus.Variant{OptKeys: godbus.MakeVariant(k)}
	}

	// Act
	some, errSome := callList(client, keys(ListURI, ListConnectionInfo))
	every, errEvery := callList(client, keys(ListAllKeys))
	pagedEvery, errPaged := callList(client, map[string]godbus.Variant{OptKeys: godbus.MakeVariant([]string{ListAllKeys}),
		OptLimit: godbus.MakeVariant(uint32(2))})
	_, errUnknown := callList(client, keys("uri", "sizeOfDisk"))

	// Assert
	if errSome != nil || len(some) != 5 || !slices.Equal(keysOf(some["vm0003-disk"]), []string{ListConnectionInfo, ListURI}) {
		t.Errorf("keys uri, connectionInfo: %v %v", some, errSome)
	}
	if info, _ := some["vm0003-disk"][ListConnectionInfo].Value().(map[string]godbus.Variant); info["server"].Value() != "filer3.example" {
		t.Errorf("connectionInfo = %v; want the server", some["vm0003-disk"][ListConnectionInfo])
	}
	if errEvery != nil || !slices.Equal(keysOf(every["vm0001-disk"]), v1Keys) {
		t.Errorf("keys *: %v %v; want every key", every["vm0001-disk"], errEvery)
	}
	if errPaged != nil || len(pagedEvery) != 2 || !slices.Equal(keysOf(pagedEvery["vm0001-disk"]), v1Keys) {
		t.Errorf("limit 2, keys *: %v %v; want vm0000 and vm0001 with every key", pagedEvery, errPaged)
	}
	var dbe godbus.Error
	if !errors.As(errUnknown, &dbe) || dbe.Name != ErrorInvalidArgument || !strings.Contains(errUnknown.Error(), "sizeOfDisk") ||
		!strings.Contains(errUnknown.Error(), "lastErrorMessage") {
		t.Errorf("unknown key: %v; want InvalidArgument naming it and the known keys", errUnknown)
	}
}

func TestListWithoutOptionsKeepsEveryEntryAndEveryV1Key(t *testing.T) {
	// Arrange: what a client written before paging does.
	client := listBus(t, 300, 128<<20, Limits{})

	// Act
	all, err := callList(client, map[string]godbus.Variant{})
	some, errPrefix := callList(client, map[string]godbus.Variant{OptPrefix: godbus.MakeVariant("vm001")})

	// Assert
	if err != nil || len(all) != 300 {
		t.Fatalf("List(): %d entries, %v; want 300", len(all), err)
	}
	for id, e := range all {
		if got := keysOf(e); !slices.Equal(got, v1Keys) {
			t.Fatalf("%s: keys %q; want every key of v1 %q", id, got, v1Keys)
		}
	}
	if errPrefix != nil || len(some) != 10 || !slices.Equal(keysOf(some["vm0012-disk"]), v1Keys) {
		t.Errorf("List(prefix vm001): %d entries, %v; want 10 with every v1 key", len(some), errPrefix)
	}
}

func TestListTooLargeForOneMessageIsANamedError(t *testing.T) {
	// Arrange: a bus that takes messages of 64 KiB, and a daemon told so;
	// 300 entries with every key take about 200 KiB.
	const max = 64 << 10
	client := listBus(t, 300, max, Limits{MaxMessageSize: max})

	// Act
	_, errAll := callList(client, map[string]godbus.Variant{})
	_, errPage := callList(client, map[string]godbus.Variant{OptLimit: godbus.MakeVariant(uint32(250)),
		OptKeys: godbus.MakeVariant([]string{ListAllKeys})})
	var objs map[godbus.ObjectPath]map[string]map[string]godbus.Variant
	errObjs := client.Object(BusName, RootPath).Call(ObjectManagerIface+".GetManagedObjects", 0).Store(&objs)
	all, sizes := followPages(t, client, 100, map[string]godbus.Variant{})

	// Assert
	var dbe godbus.Error
	if !errors.As(errAll, &dbe) || dbe.Name != ErrorReplyTooLarge {
		t.Fatalf("List() of 300 on a 64 KiB bus: %v; want %s", errAll, ErrorReplyTooLarge)
	}
	for _, w := range []string{"limit", "after", "last ID", fmt.Sprint(max)} {
		if !strings.Contains(errAll.Error(), w) {
			t.Errorf("the error %q does not say %q", errAll, w)
		}
	}
	if !errors.As(errPage, &dbe) || dbe.Name != ErrorReplyTooLarge || !strings.Contains(errPage.Error(), "smaller limit") {
		t.Errorf("a page of 250 with every key: %v; want %s asking for a smaller limit", errPage, ErrorReplyTooLarge)
	}
	if !errors.As(errObjs, &dbe) || dbe.Name != ErrorReplyTooLarge {
		t.Errorf("GetManagedObjects: %v; want %s", errObjs, ErrorReplyTooLarge)
	}
	if len(all) != 300 || len(sizes) != 4 {
		t.Errorf("paged by 100: %d entries in pages of %v; want 300 in 4 pages", len(all), sizes)
	}
}

// TestBriefEntrySize: a paged List's entry for a typical NFS or iSCSI CID
// takes at most 350 bytes, readDelay and lastProbe included.
func TestBriefEntrySize(t *testing.T) {
	q, derr := parseListOptions(map[string]godbus.Variant{OptLimit: godbus.MakeVariant(uint32(10))})
	if derr != nil {
		t.Fatal(derr)
	}
	for _, tc := range []struct{ cid, uri string }{
		{"vm1-disk", "nfs://filer.example.com/exports/vm-images"},
		{"vm1-lun", "iscsi://san.example.com/iqn.2026-01.com.example:storage.lun7/1"},
	} {
		spec, err := service.ParseURI(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		st := service.Status{ID: tc.cid, Managed: true, Kind: spec.Kind, URI: spec.URI, Target: spec.Target,
			Connected: true, State: service.StateConnected}
		var e wireEncoder
		if err := encodeListEntries(&e, []service.Status{st}, q.keys); err != nil {
			t.Fatal(err)
		}
		if budget := 350; len(e.b) > budget {
			t.Errorf("%s (%s): a brief entry of %d bytes; want at most %d", tc.cid, tc.uri, len(e.b), budget)
		}
		t.Logf("%s: %d bytes", tc.uri, len(e.b))
	}
}

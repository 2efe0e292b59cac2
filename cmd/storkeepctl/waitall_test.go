package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// listFake serves Manager.List from a table it can change, emitting the
// signals storkeepd would, and tells when it has been listed.
type listFake struct {
	conn   *dbus.Conn
	listed chan struct{} // gets a token per List call

	mu        sync.Mutex
	connected map[string]bool // managed CID -> connected
}

func (f *listFake) List(opts map[string]dbus.Variant) (map[string]map[string]dbus.Variant, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix, _ := opts[skdbus.OptPrefix].Value().(string)
	withHost, ok := opts["host"].Value().(bool)
	out := map[string]map[string]dbus.Variant{}
	entry := func(managed, connected bool) map[string]dbus.Variant {
		state, lastErr := "connected", ""
		if !connected {
			state, lastErr = "retrying", "ServerUnreachable"
		}
		return map[string]dbus.Variant{skdbus.ListManaged: dbus.MakeVariant(managed),
			skdbus.ListConnected: dbus.MakeVariant(connected), skdbus.ListState: dbus.MakeVariant(state),
			skdbus.ListLastError: dbus.MakeVariant(lastErr), skdbus.ListLastErrorMessage: dbus.MakeVariant("no answer")}
	}
	for cid, up := range f.connected {
		if strings.HasPrefix(cid, prefix) {
			out[cid] = entry(true, up)
		}
	}
	if !ok || withHost {
		out["nfs/mount42"] = entry(false, false) // never waited for
	}
	select {
	case f.listed <- struct{}{}:
	default:
	}
	return out, nil
}

func (f *listFake) set(cid string, up bool) {
	f.mu.Lock()
	f.connected[cid] = up
	f.mu.Unlock()
	f.conn.Emit(skdbus.ConnectionPath(cid), skdbus.PropertiesIface+".PropertiesChanged", skdbus.ConnInterface,
		map[string]dbus.Variant{"Connected": dbus.MakeVariant(up)}, []string{})
}

func (f *listFake) unmanage(cid string) {
	f.mu.Lock()
	delete(f.connected, cid)
	f.mu.Unlock()
	f.conn.Emit(skdbus.RootPath, skdbus.ObjectManagerIface+".InterfacesRemoved", skdbus.ConnectionPath(cid),
		[]string{skdbus.ConnInterface})
}

func startListFake(t *testing.T, connected map[string]bool) (*listFake, string) {
	t.Helper()
	conn, addr := privateBus(t)
	f := &listFake{conn: conn, listed: make(chan struct{}, 1), connected: connected}
	if err := conn.Export(f, skdbus.RootPath, skdbus.ManagerInterface); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(skdbus.BusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v, %v", reply, err)
	}
	return f, addr
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

// runCtlAsync runs storkeepctl in the background.
func runCtlAsync(addr string, args ...string) <-chan ctlResult {
	done := make(chan ctlResult, 1)
	go func() {
		code, out, errOut := runCtl(context.Background(), addr, "", args...)
		done <- ctlResult{code, out, errOut}
	}()
	return done
}

func awaitListed(t *testing.T, f *listFake) {
	t.Helper()
	select {
	case <-f.listed:
	case <-time.After(10 * time.Second):
		t.Fatal("storkeepctl did not call List")
	}
}

func awaitResult(t *testing.T, done <-chan ctlResult) ctlResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("storkeepctl wait did not return")
		return ctlResult{}
	}
}

func TestWaitAllUntilConnected(t *testing.T) {
	f, addr := startListFake(t, map[string]bool{"vm1-disk": true, "vm1-lun": false, "vm2-disk": false})
	done := runCtlAsync(addr, "wait", "--all", "--timeout", "20s")
	awaitListed(t, f)
	f.set("vm1-lun", true)
	select {
	case r := <-done:
		t.Fatalf("wait --all returned with vm2-disk down: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	f.set("vm2-disk", false) // still down: no change
	f.set("vm2-disk", true)
	r := awaitResult(t, done)
	if r.code != 0 || r.stdout != "managed CIDs: all 3 connected\n" || r.stderr != "" {
		t.Fatalf("wait --all: %+v", r)
	}
}

func TestWaitAllUnmanagedMeanwhile(t *testing.T) {
	f, addr := startListFake(t, map[string]bool{"vm1-disk": false})
	done := runCtlAsync(addr, "wait", "--all", "--timeout", "20s")
	awaitListed(t, f)
	f.unmanage("vm1-disk")
	if r := awaitResult(t, done); r.code != 0 {
		t.Fatalf("wait --all after the only CID was unmanaged: %+v", r)
	}
}

func TestWaitPrefixTimesOut(t *testing.T) {
	_, addr := startListFake(t, map[string]bool{"a-1": true, "a-2": false, "b-1": false})
	r := awaitResult(t, runCtlAsync(addr, "wait", "--prefix", "a-", "--timeout", "300ms"))
	want := "storkeepctl: wait: a-2: not connected: retrying, ServerUnreachable: no answer\n" +
		"storkeepctl: wait: managed CIDs starting with a-: 1 of 2 not connected within 300ms (Timeout)\n"
	if r.code != exitTimeout || r.stdout != "" || r.stderr != want {
		t.Fatalf("wait --prefix a- with a-2 down: %+v\nwant stderr:\n%s", r, want)
	}
}

func TestWaitAllNothingManaged(t *testing.T) {
	_, addr := startListFake(t, map[string]bool{})
	r := awaitResult(t, runCtlAsync(addr, "wait", "--all"))
	if r.code != 0 || r.stdout != "no managed CIDs: nothing to wait for\n" {
		t.Fatalf("wait --all with nothing managed (a host connection listed): %+v", r)
	}
}

func TestWaitManyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"wait", "--all", "vm1"},
		{"wait", "--all", "--prefix", "vm"},
		{"wait", "--prefix", ""},
		{"wait", "--all", "--timeout", "0"},
	} {
		if code, _, stderr := runNoBus(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (usage)\n%s", args, code, exitUsage, stderr)
		}
	}
}

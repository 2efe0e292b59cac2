package dbus

import (
	"maps"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// TestAuthorizerGetsDetails checks what each changing call tells the
// Authorizer about its object, for polkit rules to decide on
// (action.lookup("cid") and so on): taken from the parsed URI or the
// managed CID, never from the caller's own words about it.
func TestAuthorizerGetsDetails(t *testing.T) {
	p := startPeerServer(t)
	p.allow.Store(true)
	none := map[string]godbus.Variant{}
	call := func(path string, iface, member string, args ...any) {
		t.Helper()
		sig, body := encodeArgs(args...)
		reply, ok := p.call(t, 0, path, iface, member, sig, body)
		if !ok || reply.Type != godbus.TypeMethodReply {
			t.Fatalf("%s: %v %v", member, ok, reply)
		}
	}
	want := func(what string, details map[string]string) {
		t.Helper()
		req := p.last.Load()
		if req == nil || !maps.Equal(req.Details, details) {
			t.Errorf("%s: the authorizer got %+v, want details %v", what, req, details)
		}
	}

	call(RootPath, ManagerInterface, "Manage", "nfs://Filer.Example/srv/vm", "tenant1-disk", none)
	want("Manage nfs", map[string]string{"cid": "tenant1-disk", "kind": "nfs", "host": "filer.example"})
	call(RootPath, ManagerInterface, "Manage", "iscsi://[FD00::1]/iqn.2026-01.com.example:lun7/1", "tenant1-lun", none)
	want("Manage iscsi", map[string]string{"cid": "tenant1-lun", "kind": "iscsi", "host": "fd00::1"})
	call(string(ConnectionPath("tenant1-lun")), ConnInterface, "Reconnect", none)
	want("Reconnect", map[string]string{"cid": "tenant1-lun", "kind": "iscsi", "host": "fd00::1"})
	call(RootPath, ManagerInterface, "Unmanage", "tenant1-disk", none)
	want("Unmanage", map[string]string{"cid": "tenant1-disk", "kind": "nfs", "host": "filer.example"})
	call(RootPath, ManagerInterface, "UnmanagePrefix", "tenant1-", none)
	want("UnmanagePrefix", map[string]string{"prefix": "tenant1-"})

	// An unknown CID has only its name to show; the call then fails.
	sig, body := encodeArgs("nobody", none)
	if reply, ok := p.call(t, 0, RootPath, ManagerInterface, "Unmanage", sig, body); !ok || reply.Type != godbus.TypeError {
		t.Fatalf("Unmanage of an unknown CID: %v %v", ok, reply)
	}
	want("Unmanage of an unknown CID", map[string]string{"cid": "nobody"})
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// TestHandlersOverSocketPair checks the fuzz harness itself, and that the
// handlers pass the caller's ALLOW_INTERACTIVE_AUTHORIZATION flag to the
// Authorizer.
func TestHandlersOverSocketPair(t *testing.T) {
	p := startPeerServer(t)
	none := map[string]godbus.Variant{}
	errName := func(m *godbus.Message) string {
		if m.Type != godbus.TypeError {
			return ""
		}
		name, _ := m.Headers[godbus.FieldErrorName].Value().(string)
		return name
	}

	sig, body := encodeArgs("nfs://127.0.0.1/srv/x", "peer", none)
	p.allow.Store(false)
	reply, ok := p.call(t, byte(godbus.FlagAllowInteractiveAuthorization), RootPath, ManagerInterface, "Manage", sig, body)
	if !ok || errName(reply) != ErrorNotAuthorized || !strings.Contains(reply.Body[0].(string), "not authorized for "+ActionManage) {
		t.Fatalf("denied Manage: %v %v, want NotAuthorized naming %s", ok, reply, ActionManage)
	}
	if req := p.last.Load(); req == nil || !req.Interactive || req.Action != ActionManage || req.Sender != ":1.42" {
		t.Fatalf("the authorizer got %+v, want an interactive %s from :1.42", req, ActionManage)
	}
	if n := len(p.cidFiles()); n != 0 {
		t.Fatalf("a denied Manage wrote %d files", n)
	}

	p.allow.Store(true)
	reply, ok = p.call(t, 0, RootPath, ManagerInterface, "Manage", sig, body)
	if !ok || reply.Type != godbus.TypeMethodReply || reply.Body[0] != ConnectionPath("peer") {
		t.Fatalf("allowed Manage: %v %v", ok, reply)
	}
	if req := p.last.Load(); req.Interactive {
		t.Fatalf("a call without the flag was passed on as interactive: %+v", req)
	}
	if n := len(p.cidFiles()); n != 1 {
		t.Fatalf("an allowed Manage left %d files, want 1", n)
	}

	sig, body = encodeArgs(uint32(7), none)
	reply, ok = p.call(t, 0, RootPath, ManagerInterface, "Unmanage", sig, body)
	if !ok || errName(reply) != "org.freedesktop.DBus.Error.InvalidArgs" {
		t.Fatalf("Unmanage(u): %v %v, want InvalidArgs", ok, reply)
	}

	// A body that does not match its signature never leaves the fuzzer.
	if _, ok := p.call(t, 0, RootPath, ManagerInterface, "Unmanage", "sa{sv}", []byte{1}); ok {
		t.Fatal("a truncated body was sent")
	}
	sig, body = encodeArgs(map[string]godbus.Variant{})
	reply, ok = p.call(t, 0, RootPath, ManagerInterface, "List", sig, body)
	if !ok || reply.Type != godbus.TypeMethodReply {
		t.Fatalf("List after all that: %v %v", ok, reply)
	}
}

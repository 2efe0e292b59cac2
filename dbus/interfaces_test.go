// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/xml"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// introspected is the part of an introspection document the interface
// files are compared on: each interface's name and its inner XML.
type introspected struct {
	Interfaces []struct {
		Name  string `xml:"name,attr"`
		Inner string `xml:",innerxml"`
	} `xml:"interface"`
}

func parseIntrospection(t *testing.T, doc string) map[string]string {
	t.Helper()
	var n introspected
	if err := xml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatalf("parse introspection data: %v\n%s", err, doc)
	}
	m := map[string]string{}
	for _, i := range n.Interfaces {
		m[i.Name] = i.Inner
	}
	return m
}

// TestInterfaceXMLIsWhatTheDaemonServes checks that the files shipped in
// /usr/share/dbus-1/interfaces/ (InterfaceXML) hold exactly the interfaces
// that Introspect serves on the root object and on NFS and iSCSI
// connections, and that every storkeep interface served has its file.
func TestInterfaceXMLIsWhatTheDaemonServes(t *testing.T) {
	p := startPeerServer(t)
	p.allow.Store(true)
	none := map[string]godbus.Variant{}
	for _, m := range [][2]string{{"nfs://127.0.0.1/srv/x", "nfs-cid"}, {"iscsi://127.0.0.1/iqn.2026-01.org.storkeep:t/1", "iscsi-cid"}} {
		sig, body := encodeArgs(m[0], m[1], none)
		if reply, ok := p.call(t, 0, RootPath, ManagerInterface, "Manage", sig, body); !ok || reply.Type != godbus.TypeMethodReply {
			t.Fatalf("Manage %s: %v %v", m[0], ok, reply)
		}
	}
	served := map[string]string{}
	for _, path := range []string{RootPath, string(ConnectionPath("nfs-cid")), string(ConnectionPath("iscsi-cid"))} {
		reply, ok := p.call(t, 0, path, IntrospectableIface, "Introspect", "", nil)
		if !ok || reply.Type != godbus.TypeMethodReply {
			t.Fatalf("Introspect %s: %v %v", path, ok, reply)
		}
		for name, inner := range parseIntrospection(t, reply.Body[0].(string)) {
			if strings.HasPrefix(name, BusName+".") {
				served[name] = inner
			}
		}
	}

	files := InterfaceXML()
	for name, doc := range files {
		ifaces := parseIntrospection(t, doc)
		if len(ifaces) != 1 {
			t.Errorf("%s.xml holds %d interfaces, want 1", name, len(ifaces))
		}
		inner, ok := ifaces[name]
		if !ok {
			t.Errorf("%s.xml does not hold interface %s", name, name)
			continue
		}
		if want, ok := served[name]; !ok {
			t.Errorf("%s.xml: the daemon serves no interface %s", name, name)
		} else if inner != want {
			t.Errorf("%s.xml differs from what the daemon serves:\nfile:\n%s\nserved:\n%s", name, inner, want)
		}
	}
	for name := range served {
		if _, ok := files[name]; !ok {
			t.Errorf("the daemon serves %s, which has no interface file", name)
		}
	}
	if len(served) != 4 {
		t.Errorf("served storkeep interfaces: %d, want Manager, Connection, Connection.NFS, Connection.ISCSI", len(served))
	}
}

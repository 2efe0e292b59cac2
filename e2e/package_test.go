// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// TestPackageShipsDocsCompletionAndInterfaces checks what the .deb puts
// beside the programs: the man pages (found by man when the guest has
// it), the unit's Documentation=, the copyright file, the completion
// scripts, and one interface XML file per interface that holds exactly
// what the running daemon serves.
func TestPackageShipsDocsCompletionAndInterfaces(t *testing.T) {
	for _, f := range []string{
		"/usr/share/man/man8/storkeepd.8.gz",
		"/usr/share/man/man1/storkeepctl.1.gz",
		"/usr/share/man/man5/storkeep.toml.5.gz",
		"/usr/share/man/man5/org.storkeep.StorKeep1.5.gz",
		"/usr/share/bash-completion/completions/storkeepctl",
		"/usr/share/zsh/vendor-completions/_storkeepctl",
		"/usr/share/doc/storkeep/copyright",
		"/usr/share/doc/storkeep/changelog.gz",
	} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v (size %v)", f, err, fi)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		for _, p := range []string{"storkeepd", "storkeepctl", "storkeep.toml", "org.storkeep.StorKeep1"} {
			if out, err := sh(t, "man", "-w", p); err != nil || !strings.Contains(out, "/usr/share/man/") {
				t.Errorf("man -w %s: %v %s", p, err, out)
			}
		}
	} else {
		t.Log("no man in the guest: checked the files only")
	}
	out, err := sh(t, "systemctl", "show", "-p", "Documentation", "--value", "storkeepd.service")
	if err != nil || !strings.Contains(out, "man:storkeepd(8)") {
		t.Errorf("storkeepd.service Documentation=%q (%v), want man:storkeepd(8)", out, err)
	}
	cp, err := os.ReadFile("/usr/share/doc/storkeep/copyright")
	if err != nil || !strings.Contains(string(cp), "License: Apache-2.0") || !strings.Contains(string(cp), "CoreOS") {
		t.Errorf("copyright lacks the license or go-systemd's NOTICE: %v", err)
	}

	// The interface files against the daemon's own introspection data.
	conn := systemBus(t)
	waitForName(t, conn)
	served := map[string]string{}
	introspect := func(path godbus.ObjectPath) {
		t.Helper()
		var doc string
		if err := conn.Object(skdbus.BusName, path).Call(skdbus.IntrospectableIface+".Introspect", 0).Store(&doc); err != nil {
			t.Fatalf("Introspect %s: %v", path, err)
		}
		for name, inner := range interfacesIn(t, doc) {
			served[name] = inner
		}
	}
	introspect(skdbus.RootPath)
	cid := "e2e-pkg-compl"
	if err := manage(conn, "nfs://127.0.0.1/srv/e2e-pkg-compl", cid, nil); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	t.Cleanup(func() {
		root(conn).Call(skdbus.ManagerInterface+".Unmanage", 0, cid, map[string]godbus.Variant{})
	})
	introspect(skdbus.ConnectionPath(cid))
	files, err := filepath.Glob("/usr/share/dbus-1/interfaces/org.storkeep.StorKeep1.*.xml")
	if err != nil || len(files) != 4 {
		t.Fatalf("interface files: %v %v, want 4", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		got := interfacesIn(t, string(b))
		if len(got) != 1 || got[name] == "" {
			t.Errorf("%s holds %d interfaces, want only %s", f, len(got), name)
			continue
		}
		if want, ok := served[name]; ok && got[name] != want {
			t.Errorf("%s differs from what the daemon serves", f)
		} else if !ok && name != skdbus.ISCSIInterface {
			t.Errorf("%s: the daemon serves no %s", f, name)
		}
	}

	// bash completion of a CID, from the running daemon through the
	// installed storkeepctl (no bash-completion package needed).
	prog := `source /usr/share/bash-completion/completions/storkeepctl
COMP_WORDS=(storkeepctl show e2e-pkg-c); COMP_CWORD=2; _storkeepctl
printf '%s\n' "${COMPREPLY[@]}"`
	out, err = sh(t, "bash", "--norc", "-c", prog)
	if err != nil || strings.TrimSpace(out) != cid {
		t.Errorf("bash completion of \"storkeepctl show e2e-pkg-c\": %q (%v), want %s", out, err, cid)
	}
}

// interfacesIn returns the interfaces of an introspection document, by
// name, with their inner XML.
func interfacesIn(t *testing.T, doc string) map[string]string {
	t.Helper()
	var n struct {
		Interfaces []struct {
			Name  string `xml:"name,attr"`
			Inner string `xml:",innerxml"`
		} `xml:"interface"`
	}
	if err := xml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatalf("introspection data: %v\n%s", err, doc)
	}
	m := map[string]string{}
	for _, i := range n.Interfaces {
		m[i.Name] = i.Inner
	}
	return m
}

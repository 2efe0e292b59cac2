// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"encoding/xml"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestManPageDescribesTheWholeAPI checks man/org.storkeep.StorKeep1.5
// against the introspection data and the error names: each method with
// its arguments, each signal with its arguments, each property and each
// error must be on the page, each as a described item (.TP).
func TestManPageDescribesTheWholeAPI(t *testing.T) {
	b, err := os.ReadFile("../man/org.storkeep.StorKeep1.5")
	if err != nil {
		t.Fatal(err)
	}
	page := strings.ReplaceAll(string(b), `\-`, "-")
	item := func(what, name string) {
		t.Helper()
		if !regexp.MustCompile(`(?m)^\.TP\n\.B ` + regexp.QuoteMeta(name) + `$`).MatchString(page) {
			t.Errorf("the page describes no %s %s (a .TP item \".B %s\")", what, name, name)
		}
	}
	type arg struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	}
	type member struct {
		Name string `xml:"name,attr"`
		Args []arg  `xml:"arg"`
	}
	var n int
	for iface, doc := range InterfaceXML() {
		var node struct {
			Interface struct {
				Methods    []member `xml:"method"`
				Signals    []member `xml:"signal"`
				Properties []arg    `xml:"property"`
			} `xml:"interface"`
		}
		if err := xml.Unmarshal([]byte(doc), &node); err != nil {
			t.Fatalf("%s: %v", iface, err)
		}
		if !strings.Contains(page, "interface "+iface+" {") {
			t.Errorf("the page has no interface %s block", iface)
		}
		for _, m := range append(node.Interface.Methods, node.Interface.Signals...) {
			n++
			item("method or signal", m.Name+"()")
			for _, a := range m.Args {
				if !regexp.MustCompile(regexp.QuoteMeta(a.Type) + ` ` + a.Name + `[,);]`).MatchString(page) {
					t.Errorf("the page's %s lacks argument %s %s", m.Name, a.Type, a.Name)
				}
			}
		}
		for _, p := range node.Interface.Properties {
			n++
			item("property", p.Name)
			if !strings.Contains(page, "readonly "+p.Type+" "+p.Name+" = ") {
				t.Errorf("the page's %s block lacks property %s %s", iface, p.Type, p.Name)
			}
		}
	}
	// Every error name api.go declares.
	api, err := os.ReadFile("api.go")
	if err != nil {
		t.Fatal(err)
	}
	errs := regexp.MustCompile(`ErrorPrefix \+ "(\w+)"`).FindAllStringSubmatch(string(api), -1)
	if len(errs) < 10 {
		t.Fatalf("found %d error names in api.go", len(errs))
	}
	for _, e := range errs {
		item("error", ErrorPrefix+e[1])
	}
	for _, o := range []string{OptCHAPUsername, OptCHAPPassword, OptCHAPUsernameIn, OptCHAPPasswordIn} {
		if !strings.Contains(page, ".B "+o+"\n") {
			t.Errorf("the page does not name Manage's option %s", o)
		}
	}
	for k := range listOptions {
		if !strings.Contains(page, ".B "+k+"\n") {
			t.Errorf("the page does not name List's option %s", k)
		}
	}
	for _, a := range []string{ActionManage, ActionReconnect} {
		if !strings.Contains(page, a) {
			t.Errorf("the page does not name the polkit action %s", a)
		}
	}
	if n < 25 {
		t.Fatalf("only %d members found in the introspection data", n)
	}
}

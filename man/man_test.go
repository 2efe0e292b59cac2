// SPDX-License-Identifier: Apache-2.0

// Package man holds the manual pages (roff, no build step). Its tests keep
// them true to the code: every flag of storkeepd and every configuration
// key must be described, and each page must pass mandoc's lint.
// dbus/man_test.go and cmd/storkeepctl/complete_test.go check the D-Bus
// API's page and storkeepctl's.
package man

import (
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/storkeep/storkeep/service"
)

var pages = []string{"storkeepd.8", "storkeepctl.1", "storkeep.toml.5", "org.storkeep.StorKeep1.5"}

// text returns a page with roff's escaped hyphens as plain ones.
func text(t *testing.T, page string) string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), `\-`, "-")
}

func TestPagesPassMandocLint(t *testing.T) {
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Skip("mandoc not installed")
	}
	for _, p := range pages {
		out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", p).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("mandoc -T lint %s: %v\n%s", p, err, out)
		}
	}
}

// TestStorkeepdPageHasEveryFlag reads storkeepd's flags from its source
// (they are declared in parseFlags) and looks for each on the page.
func TestStorkeepdPageHasEveryFlag(t *testing.T) {
	src, err := os.ReadFile("../cmd/storkeepd/main.go")
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`fs\.\w+Var\(&f\.\w+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(flags) < 5 {
		t.Fatalf("found %d flags in cmd/storkeepd/main.go; has their declaration changed?", len(flags))
	}
	page := text(t, "storkeepd.8")
	for _, f := range flags {
		if !strings.Contains(page, ".BI --"+f[1]) && !strings.Contains(page, ".B --"+f[1]) && !strings.Contains(page, ".BR --"+f[1]) {
			t.Errorf("storkeepd.8 does not describe --%s under OPTIONS", f[1])
		}
	}
}

// TestConfigPageHasEveryKey walks service.Config's TOML keys.
func TestConfigPageHasEveryKey(t *testing.T) {
	page := text(t, "storkeep.toml.5")
	n := 0
	cfg := reflect.TypeOf(service.Config{})
	for i := range cfg.NumField() {
		table := cfg.Field(i)
		name := table.Tag.Get("toml")
		if !strings.Contains(page, ".SH ["+name+"]") {
			t.Errorf("storkeep.toml.5 has no section [%s]", name)
		}
		for j := range table.Type.NumField() {
			key := table.Type.Field(j).Tag.Get("toml")
			n++
			if !regexp.MustCompile(`(?m)^\.BR ` + regexp.QuoteMeta(key) + ` `).MatchString(page) {
				t.Errorf("storkeep.toml.5 does not describe %s.%s", name, key)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d keys in service.Config", n)
	}
}

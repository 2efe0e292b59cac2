// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"testing"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func TestWriteOneFilePerInterface(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "interfaces")
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	want := skdbus.InterfaceXML()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d files, want %d", len(entries), len(want))
	}
	for name, doc := range want {
		got, err := os.ReadFile(filepath.Join(dir, name+".xml"))
		if err != nil || string(got) != doc {
			t.Errorf("%s.xml: %v\n%s", name, err, got)
		}
	}
}

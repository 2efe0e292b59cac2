// SPDX-License-Identifier: Apache-2.0

// Command storkeep-busxml writes the introspection data of each interface
// of storkeep's D-Bus API into DIR as "<interface>.xml", the form
// /usr/share/dbus-1/interfaces/ holds. The package build runs it, so the
// shipped files are what the daemon serves.
//
// Usage: go run ./dbus/cmd/storkeep-busxml DIR
package main

import (
	"fmt"
	"os"
	"path/filepath"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: storkeep-busxml DIR")
		os.Exit(2)
	}
	if err := write(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "storkeep-busxml: %v\n", err)
		os.Exit(1)
	}
}

// write puts one file per interface into dir.
func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, doc := range skdbus.InterfaceXML() {
		p := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

var listHeader = []string{"CID", "KIND", "STATE", "CONNECTED", "TARGET", "LAST ERROR"}

// listWidths caps the columns of list on a terminal (without --full).
var listWidths = []int{40, 8, 14, 9, 50, 32}

func setupList(fs *flag.FlagSet) runFunc {
	var (
		prefix optionalString
		asJSON bool
		full   bool
	)
	fs.Var(&prefix, "prefix", "list only CIDs that start with `prefix`")
	fs.BoolVar(&asJSON, "json", false, "print a JSON object: CID -> status, with the keys of the API")
	fs.BoolVar(&full, "full", false, "do not truncate long cells on a terminal")
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantArgs(args); err != nil {
			return err
		}
		conns, err := c.list(ctx, prefix)
		if err != nil {
			return err
		}
		if asJSON {
			out := make(map[string]any, len(conns))
			for cid, status := range conns {
				out[cid] = jsonProperties(status)
			}
			return writeJSON(c.stdout, out, true)
		}
		var widths []int
		if !full && isTerminal(c.stdout) {
			widths = listWidths
		}
		return writeTable(c.stdout, listHeader, listRows(conns), widths)
	}
}

func (c *cli) list(ctx context.Context, prefix optionalString) (map[string]map[string]dbus.Variant, error) {
	opts := noOptions()
	if prefix.set {
		opts[skdbus.OptPrefix] = dbus.MakeVariant(prefix.value)
	}
	var conns map[string]map[string]dbus.Variant
	err := c.manager(ctx, "List", []any{opts}, &conns)
	return conns, err
}

// listRows turns List's reply into escaped table rows: managed CIDs first,
// then the unmanaged ones, each sorted by CID.
func listRows(conns map[string]map[string]dbus.Variant) [][]string {
	cids := make([]string, 0, len(conns))
	for cid := range conns {
		cids = append(cids, cid)
	}
	sort.Slice(cids, func(i, j int) bool {
		mi, mj := boolKey(conns[cids[i]], skdbus.ListManaged), boolKey(conns[cids[j]], skdbus.ListManaged)
		if mi != mj {
			return mi
		}
		return cids[i] < cids[j]
	})
	rows := make([][]string, 0, len(cids))
	for _, cid := range cids {
		st := conns[cid]
		connected := "no"
		if boolKey(st, skdbus.ListConnected) {
			connected = "yes"
		}
		rows = append(rows, []string{
			cell(cid),
			cell(stringKey(st, skdbus.ListKind)),
			cell(stringKey(st, skdbus.ListState)),
			connected,
			cell(stringKey(st, skdbus.ListTarget)),
			cell(stringKey(st, skdbus.ListLastError)),
		})
	}
	return rows
}

// cell escapes a table cell; empty cells show as "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return escapeText(s)
}

func stringKey(m map[string]dbus.Variant, key string) string {
	s, _ := unwrapVariant(m[key]).(string)
	return s
}

func boolKey(m map[string]dbus.Variant, key string) bool {
	b, _ := unwrapVariant(m[key]).(bool)
	return b
}

func sortCIDs(cids []string) []string {
	sort.Strings(cids)
	return cids
}

func setupShow(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantArgs(args, "CID"); err != nil {
			return err
		}
		cid := args[0]
		path, err := c.connectionPath(ctx, cid)
		if err != nil {
			if e, ok := dbusError(err); ok && e.Name == skdbus.ErrorUnknownCID && strings.Contains(cid, "/") {
				// Unmanaged host connections have no object; List
				// still reports them.
				return c.showListed(ctx, cid, err)
			}
			return err
		}
		var objects map[dbus.ObjectPath]map[string]map[string]dbus.Variant
		if err := c.call(ctx, 0, skdbus.RootPath, skdbus.ObjectManagerIface+".GetManagedObjects", nil, &objects); err != nil {
			return err
		}
		ifaces, ok := objects[path]
		if !ok {
			return dbus.Error{Name: skdbus.ErrorUnknownCID, Body: []any{fmt.Sprintf("%s is no longer managed", escapeText(cid))}}
		}
		return writeProperties(c.stdout, ifaces, time.Now())
	}
}

// showListed shows an unmanaged host connection from List's status.
func (c *cli) showListed(ctx context.Context, cid string, notFound error) error {
	conns, err := c.list(ctx, optionalString{value: cid, set: true})
	if err != nil {
		return err
	}
	st, ok := conns[cid]
	if !ok {
		return notFound
	}
	names := make([]string, 0, len(st))
	for k := range st {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(c.stdout, "cid: %s\n", escapeText(cid))
	for _, n := range names {
		fmt.Fprintf(c.stdout, "%s: %s\n", n, formatValue(st[n]))
	}
	return nil
}

// writeProperties prints every property of every interface of a
// connection object, "Name: value" per line: the Connection interface
// first, then the others by name. A name that an earlier interface already
// printed is prefixed with the interface's last element ("NFS.State").
func writeProperties(w io.Writer, ifaces map[string]map[string]dbus.Variant, now time.Time) error {
	names := make([]string, 0, len(ifaces))
	for iface := range ifaces {
		if iface != skdbus.ConnInterface && !strings.HasPrefix(iface, "org.freedesktop.DBus.") {
			names = append(names, iface)
		}
	}
	sort.Strings(names)
	if _, ok := ifaces[skdbus.ConnInterface]; ok {
		names = append([]string{skdbus.ConnInterface}, names...)
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, iface := range names {
		props := ifaces[iface]
		for _, name := range sortedPropertyNames(iface, props) {
			label := name
			if seen[name] {
				label = iface[strings.LastIndexByte(iface, '.')+1:] + "." + name
			}
			seen[name] = true
			fmt.Fprintf(&b, "%s: %s\n", label, showValue(name, props[name], now))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func showValue(name string, v dbus.Variant, now time.Time) string {
	if zero, ok := timeZero(name, v); ok {
		return formatTime(unwrapVariant(v).(uint64), zero, now)
	}
	return formatValue(v)
}

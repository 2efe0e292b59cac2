// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"sort"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// listColumns are list's table columns. The CID and the target identify
// a row and are never cut; the others shrink, then go, to fit the
// terminal: CONNECTED first (STATE says it too), then LAST ERROR, KIND
// and STATE.
var listColumns = []column{
	{header: "CID", keep: true},
	{header: "KIND", drop: 3},
	{header: "STATE", drop: 4},
	{header: "CONNECTED", drop: 1},
	{header: "TARGET", keep: true},
	{header: "LAST ERROR", drop: 2},
}

// listWideHeader is list -o wide: every key of List but ConnectionInfo.
var listWideHeader = []string{"CID", "MANAGED", "KIND", "STATE", "CONNECTED", "TARGET", "URI", "LAST ERROR", "MESSAGE"}

func setupList(fs *flag.FlagSet) runFunc {
	var (
		prefix optionalString
		out    outputFormat
		full   bool
	)
	fs.Var(&prefix, "prefix", "list only CIDs that start with `prefix`")
	declareOutput(fs, &out)
	fs.BoolVar(&full, "full", false, "do not cut cells to fit the terminal")
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantArgs(args); err != nil {
			return err
		}
		keys := []string(nil) // the brief keys: the table's
		switch out {
		case outputJSON:
			keys = listKeysAll
		case outputWide:
			keys = listKeysWide
		}
		conns, err := c.list(ctx, prefix, keys)
		if err != nil {
			return err
		}
		switch out {
		case outputJSON:
			res := make(map[string]any, len(conns))
			for cid, status := range conns {
				res[cid] = jsonStatus(cid, status)
			}
			return writeJSON(c.stdout, res, true)
		case outputWide:
			return writeTable(c.stdout, listWideHeader, listWideRows(conns), nil)
		}
		width := terminalWidth(c.stdout)
		if full {
			width = 0
		}
		header, rows := fitTable(listColumns, listRows(conns), width)
		return writeTable(c.stdout, header, rows, nil)
	}
}

// jsonStatus is one entry of List as JSON: its CID and its status, with
// the keys spelled as the Connection properties are.
func jsonStatus(cid string, status map[string]dbus.Variant) map[string]any {
	out := make(map[string]any, len(status)+1)
	for k, v := range status {
		out[propertyKey(k)] = jsonValue(v)
	}
	out["CID"] = cid
	return out
}

// list lists every entry (with the prefix), each with keys (listPages).
func (c *cli) list(ctx context.Context, prefix optionalString, keys []string) (map[string]map[string]dbus.Variant, error) {
	opts := noOptions()
	if prefix.set {
		opts[skdbus.OptPrefix] = dbus.MakeVariant(prefix.value)
	}
	return c.listPages(ctx, opts, keys)
}

// listRows turns List's reply into escaped table rows: managed CIDs first,
// then the unmanaged ones, each sorted by CID. They are the wide rows
// without MANAGED, URI and MESSAGE.
func listRows(conns map[string]map[string]dbus.Variant) [][]string {
	rows := listWideRows(conns)
	for i, r := range rows {
		rows[i] = []string{r[0], r[2], r[3], r[4], r[5], r[7]}
	}
	return rows
}

// listWideRows are the rows of list -o wide: CID, MANAGED, KIND, STATE,
// CONNECTED, TARGET, URI, LAST ERROR, MESSAGE.
func listWideRows(conns map[string]map[string]dbus.Variant) [][]string {
	cids := listOrder(conns)
	rows := make([][]string, 0, len(cids))
	for _, cid := range cids {
		st := conns[cid]
		rows = append(rows, []string{
			cell(cid),
			yesNo(boolKey(st, skdbus.ListManaged)),
			cell(stringKey(st, skdbus.ListKind)),
			cell(stringKey(st, skdbus.ListState)),
			yesNo(boolKey(st, skdbus.ListConnected)),
			cell(stringKey(st, skdbus.ListTarget)),
			cell(stringKey(st, skdbus.ListURI)),
			cell(stringKey(st, skdbus.ListLastError)),
			cell(escapeMessage(stringKey(st, skdbus.ListLastErrorMessage))),
		})
	}
	return rows
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// listOrder returns the IDs of conns: managed CIDs first, then the
// unmanaged entries, each sorted.
func listOrder(conns map[string]map[string]dbus.Variant) []string {
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
	return cids
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

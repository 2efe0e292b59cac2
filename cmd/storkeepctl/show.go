// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// propertyList is -p: property names, repeated or comma-separated.
type propertyList []string

func (p *propertyList) String() string { return strings.Join(*p, ",") }

func (p *propertyList) Set(s string) error {
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			*p = append(*p, n)
		}
	}
	return nil
}

func setupShow(fs *flag.FlagSet) runFunc {
	var (
		out   outputFormat
		props propertyList
		value bool
	)
	declareOutput(fs, &out)
	fs.Var(&props, "p", "show only property `name` (repeat it, or separate names with commas)")
	fs.Var(&props, "property", "show only property `name` (as -p)")
	fs.BoolVar(&value, "value", false, "print only the values, one per line (with -p)")
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantCIDArgs("show", args, "CID"); err != nil {
			return err
		}
		if value && out == outputJSON {
			return usagef("--value and -o json do not go together")
		}
		cid := args[0]
		list, err := c.showProperties(ctx, cid)
		if err != nil {
			return err
		}
		if len(props) > 0 {
			if list, err = list.only(cid, props); err != nil {
				return err
			}
		}
		switch {
		case out == outputJSON:
			obj := make(map[string]any, len(list))
			for _, p := range list {
				obj[p.label] = jsonValue(p.value)
			}
			return writeJSON(c.stdout, obj, true)
		case value:
			return list.writeValues(c.stdout, time.Now())
		}
		return list.write(c.stdout, time.Now())
	}
}

// showProperty is one line of show.
type showProperty struct {
	// label is the property's name, or "NFS.State" for a name that an
	// earlier interface already showed.
	label string
	name  string
	value dbus.Variant
}

type showList []showProperty

// showProperties reads every property of cid's object: the Connection
// interface first, then the others by name. An unmanaged entry (its ID
// has a '/') has no object: its List status stands in, keys spelled as
// the properties are.
func (c *cli) showProperties(ctx context.Context, cid string) (showList, error) {
	path, err := c.connectionPath(ctx, cid)
	if err != nil {
		if e, ok := dbusError(err); ok && e.Name == skdbus.ErrorUnknownCID && strings.Contains(cid, "/") {
			return c.listedProperties(ctx, cid, err)
		}
		return nil, err
	}
	var objects map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := c.call(ctx, 0, skdbus.RootPath, skdbus.ObjectManagerIface+".GetManagedObjects", nil, &objects); err != nil {
		return nil, err
	}
	ifaces, ok := objects[path]
	if !ok {
		return nil, dbus.Error{Name: skdbus.ErrorUnknownCID, Body: []any{fmt.Sprintf("%s is no longer managed", escapeText(cid))}}
	}
	return objectProperties(ifaces), nil
}

// listedProperties is an unmanaged host connection's status from List.
func (c *cli) listedProperties(ctx context.Context, cid string, notFound error) (showList, error) {
	conns, err := c.list(ctx, optionalString{value: cid, set: true}, listKeysAll)
	if err != nil {
		return nil, err
	}
	st, ok := conns[cid]
	if !ok {
		return nil, notFound
	}
	props := map[string]dbus.Variant{"CID": dbus.MakeVariant(cid)}
	for k, v := range st {
		props[propertyKey(k)] = v
	}
	var list showList
	for _, n := range sortedPropertyNames(skdbus.ConnInterface, props) {
		list = append(list, showProperty{label: n, name: n, value: props[n]})
	}
	return list, nil
}

// objectProperties flattens an object's interfaces into show's lines.
func objectProperties(ifaces map[string]map[string]dbus.Variant) showList {
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
	var list showList
	seen := map[string]bool{}
	for _, iface := range names {
		props := ifaces[iface]
		for _, name := range sortedPropertyNames(iface, props) {
			label := name
			if seen[name] {
				label = iface[strings.LastIndexByte(iface, '.')+1:] + "." + name
			}
			seen[name] = true
			list = append(list, showProperty{label: label, name: name, value: props[name]})
		}
	}
	return list
}

// only keeps the properties named, in the order named. A name matches a
// label exactly, or else case-insensitively; one that matches nothing is
// an error that lists what there is.
func (l showList) only(cid string, names []string) (showList, error) {
	var out showList
	for _, n := range names {
		found := false
		for _, p := range l {
			if p.label == n {
				out, found = append(out, p), true
				break
			}
		}
		for _, p := range l {
			if !found && strings.EqualFold(p.label, n) {
				out, found = append(out, p), true
			}
		}
		if !found {
			labels := make([]string, len(l))
			for i, p := range l {
				labels[i] = p.label
			}
			return nil, fmt.Errorf("%s has no property %s (it has %s)", escapeText(cid), escapeText(n), strings.Join(labels, ", "))
		}
	}
	return out, nil
}

// write prints "Name: value" per property.
func (l showList) write(w io.Writer, now time.Time) error {
	var b strings.Builder
	for _, p := range l {
		fmt.Fprintf(&b, "%s: %s\n", p.label, showValue(p.name, p.value, now))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeValues prints each value alone on its line, for scripts: strings
// as they are (escaped only if unprintable; empty as an empty line), times
// as RFC 3339 (empty when none), the rest as in show.
func (l showList) writeValues(w io.Writer, now time.Time) error {
	var b strings.Builder
	for _, p := range l {
		v := unwrapVariant(p.value)
		switch x := v.(type) {
		case string:
			b.WriteString(escapeText(x))
		default:
			if _, ok := timeZero(p.name, p.value); ok {
				if usec := x.(uint64); usec != 0 {
					b.WriteString(time.UnixMicro(int64(min(usec, 1<<63-1))).Local().Format(time.RFC3339))
				}
				break
			}
			b.WriteString(formatValue(p.value))
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeProperties prints every property of every interface of a
// connection object, "Name: value" per line: the Connection interface
// first, then the others by name. A name that an earlier interface already
// printed is prefixed with the interface's last element ("NFS.State").
func writeProperties(w io.Writer, ifaces map[string]map[string]dbus.Variant, now time.Time) error {
	return objectProperties(ifaces).write(w, now)
}

func showValue(name string, v dbus.Variant, now time.Time) string {
	if zero, ok := timeZero(name, v); ok {
		return formatTime(unwrapVariant(v).(uint64), zero, now)
	}
	if us, ok := unwrapVariant(v).(uint32); ok && name == "ReadDelay" {
		return formatReadDelay(us)
	}
	return formatValue(v)
}

// formatReadDelay renders ReadDelay's µs: "0.84 ms", "-" before any read.
func formatReadDelay(us uint32) string {
	if us == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) + " ms"
}

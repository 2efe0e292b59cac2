// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"maps"
	"strings"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// listPageSize is how many entries storkeepctl asks List for at a time:
// 1,000 entries with every key are well under 1 MB, and 100,000 CIDs take
// 100 calls.
var listPageSize uint32 = 1000

// List keys storkeepctl asks for: what each command shows. nil is the
// daemon's brief keys (managed, connected, state, kind, target,
// lastError), which list's table shows.
var (
	listKeysAll    = []string{skdbus.ListAllKeys}
	listKeysWide   = []string{skdbus.ListManaged, skdbus.ListConnected, skdbus.ListState, skdbus.ListKind, skdbus.ListTarget, skdbus.ListLastError, skdbus.ListURI, skdbus.ListLastErrorMessage}
	listKeysStatus = []string{skdbus.ListManaged, skdbus.ListConnected, skdbus.ListState, skdbus.ListTarget, skdbus.ListLastError, skdbus.ListConnectionInfo}
	// wait: who is connected, and for a timeout, why the others are not.
	listKeysWait = []string{skdbus.ListManaged, skdbus.ListConnected, skdbus.ListState, skdbus.ListLastError, skdbus.ListLastErrorMessage}
)

// listPages calls List with opts a page at a time (options limit and
// after), each entry with keys, and returns every entry: a daemon with
// 100,000 CIDs has more than one D-Bus message holds. A daemon from
// before paging, which refuses the option limit, gets one call with opts
// alone and answers with every key.
func (c *cli) listPages(ctx context.Context, opts map[string]dbus.Variant, keys []string) (map[string]map[string]dbus.Variant, error) {
	all := map[string]map[string]dbus.Variant{}
	after := ""
	for {
		o := maps.Clone(opts)
		o[skdbus.OptLimit] = dbus.MakeVariant(listPageSize)
		if keys != nil {
			o[skdbus.OptKeys] = dbus.MakeVariant(keys)
		}
		if after != "" {
			o[skdbus.OptAfter] = dbus.MakeVariant(after)
		}
		var page map[string]map[string]dbus.Variant
		if err := c.manager(ctx, "List", []any{o}, &page); err != nil {
			if after == "" && refusesPaging(err) {
				var whole map[string]map[string]dbus.Variant
				err = c.manager(ctx, "List", []any{opts}, &whole)
				return whole, err
			}
			return nil, err
		}
		last := ""
		for id, e := range page {
			all[id] = e
			last = max(last, id)
		}
		if len(page) < int(listPageSize) {
			return all, nil
		}
		after = last
	}
}

// refusesPaging tells an older daemon's answer to List's paging options.
func refusesPaging(err error) bool {
	var e dbus.Error
	if !errors.As(err, &e) || e.Name != skdbus.ErrorInvalidArgument || len(e.Body) == 0 {
		return false
	}
	msg, _ := e.Body[0].(string)
	return strings.Contains(msg, "unknown option")
}

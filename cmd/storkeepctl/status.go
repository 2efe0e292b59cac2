// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// Error names and ID prefixes status sorts List's entries by.
const (
	errLinkDown     = "LinkDown"
	errNoRoute      = "NoRoute"
	errBadStateFile = "BadStateFile"
	stateFilePrefix = "statefile/"
	unmanagedPrefix = "unmanaged/"
)

// daemonStatus is what status reports; its JSON keys are spelled as the
// D-Bus names are.
type daemonStatus struct {
	Version    string
	Managed    int
	Connected  int
	Connecting int
	Retrying   int
	// PathsDown: the hosts whose network path is down (LastError
	// LinkDown or NoRoute), with the CIDs on them.
	PathsDown []pathDown
	// Held: entries kept, never torn down, because a state file that may
	// name them did not load (LastError BadStateFile).
	Held []string
	// HoldsAll: a state file that names no target holds every
	// disconnect (its ConnectionInfo "held" is "all").
	HoldsAll bool
	// BadStateFiles: the state files that did not load (statefile/...).
	BadStateFiles []string
	// Disconnecting: real connections no CID refers to any more, being
	// torn down (unmanaged/...).
	Disconnecting int
	// HostConnections: connections on the host that storkeep does not
	// manage.
	HostConnections int
}

type pathDown struct {
	Host string
	CIDs []string
}

func setupStatus(fs *flag.FlagSet) runFunc {
	var out outputFormat
	declareOutput(fs, &out)
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantArgs(args); err != nil {
			return err
		}
		var ver dbus.Variant
		if err := c.call(ctx, 0, skdbus.RootPath, skdbus.PropertiesIface+".Get",
			[]any{skdbus.ManagerInterface, "Version"}, &ver); err != nil {
			return err
		}
		conns, err := c.list(ctx, optionalString{}, listKeysStatus)
		if err != nil {
			return err
		}
		st := summarize(conns)
		st.Version, _ = unwrapVariant(ver).(string)
		if out == outputJSON {
			return writeJSON(c.stdout, st, true)
		}
		var b strings.Builder
		for _, r := range st.rows() {
			fmt.Fprintf(&b, "%-17s %s\n", r[0], r[1])
		}
		_, err = fmt.Fprint(c.stdout, b.String())
		return err
	}
}

// summarize counts List's entries.
func summarize(conns map[string]map[string]dbus.Variant) daemonStatus {
	st := daemonStatus{PathsDown: []pathDown{}, Held: []string{}, BadStateFiles: []string{}}
	down := map[string][]string{}
	for _, id := range listOrder(conns) {
		e := conns[id]
		lastErr := stringKey(e, skdbus.ListLastError)
		managed := boolKey(e, skdbus.ListManaged)
		switch {
		case strings.HasPrefix(id, stateFilePrefix):
			st.BadStateFiles = append(st.BadStateFiles, id)
			info, _ := unwrapVariant(e[skdbus.ListConnectionInfo]).(map[string]dbus.Variant)
			st.HoldsAll = st.HoldsAll || unwrapVariant(info["held"]) == "all"
			continue
		case lastErr == errBadStateFile:
			st.Held = append(st.Held, id)
			if !managed {
				continue
			}
		case !managed && strings.HasPrefix(id, unmanagedPrefix):
			st.Disconnecting++
			continue
		case !managed:
			st.HostConnections++
			continue
		}
		st.Managed++
		switch {
		case boolKey(e, skdbus.ListConnected):
			st.Connected++
		case stringKey(e, skdbus.ListState) == "connecting":
			st.Connecting++
		default:
			st.Retrying++
		}
		if lastErr == errLinkDown || lastErr == errNoRoute {
			h := entryHost(e)
			down[h] = append(down[h], id)
		}
	}
	for h, cids := range down {
		st.PathsDown = append(st.PathsDown, pathDown{Host: h, CIDs: cids})
	}
	sort.Slice(st.PathsDown, func(i, j int) bool { return st.PathsDown[i].Host < st.PathsDown[j].Host })
	return st
}

// entryHost is the storage host of a List entry: ConnectionInfo's server
// (NFS) or host (iSCSI), else its target.
func entryHost(e map[string]dbus.Variant) string {
	info, _ := unwrapVariant(e[skdbus.ListConnectionInfo]).(map[string]dbus.Variant)
	for _, k := range []string{"server", "host"} {
		if h, ok := unwrapVariant(info[k]).(string); ok && h != "" {
			return h
		}
	}
	return stringKey(e, skdbus.ListTarget)
}

// rows are status's text lines, "Label:" and its value.
func (st daemonStatus) rows() [][]string {
	managed := fmt.Sprintf("%d (%d connected", st.Managed, st.Connected)
	if st.Connecting > 0 {
		managed += fmt.Sprintf(", %d connecting", st.Connecting)
	}
	managed += fmt.Sprintf(", %d retrying)", st.Retrying)
	paths := "none"
	if len(st.PathsDown) > 0 {
		parts := make([]string, len(st.PathsDown))
		for i, p := range st.PathsDown {
			parts[i] = fmt.Sprintf("%s (%s)", escapeText(p.Host), joinEscaped(p.CIDs))
		}
		paths = fmt.Sprintf("%d: %s", len(st.PathsDown), strings.Join(parts, "; "))
	}
	held := countedList(st.Held)
	if st.HoldsAll {
		held = "every disconnect (a state file that did not load names no target)"
	}
	return [][]string{
		{"Version:", cell(st.Version)},
		{"Managed:", managed},
		{"Paths down:", paths},
		{"Held:", held},
		{"Bad state files:", countedList(st.BadStateFiles)},
		{"Disconnecting:", fmt.Sprint(st.Disconnecting)},
		{"On the host:", fmt.Sprintf("%d not managed by storkeep", st.HostConnections)},
	}
}

func countedList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(ids), joinEscaped(ids))
}

func joinEscaped(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = escapeText(id)
	}
	return strings.Join(out, ", ")
}

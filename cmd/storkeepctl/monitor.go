// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

const (
	fdoBusName   = "org.freedesktop.DBus"
	fdoInterface = "org.freedesktop.DBus"
)

func setupMonitor(fs *flag.FlagSet) runFunc {
	var out outputFormat
	declareOutput(fs, &out)
	return func(ctx context.Context, c *cli, args []string) error {
		if err := wantArgs(args); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return c.monitor(ctx, &monitor{w: c.stdout, json: out == outputJSON, cids: map[dbus.ObjectPath]string{}})
	}
}

// monitorMatches are the match rules of monitor: changes of any object
// under the root, objects coming and going, network paths to targets
// changing, and storkeepd itself coming and going.
func monitorMatches() [][]dbus.MatchOption {
	return [][]dbus.MatchOption{
		{
			dbus.WithMatchSender(skdbus.BusName),
			dbus.WithMatchInterface(skdbus.PropertiesIface),
			dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(skdbus.RootPath),
		},
		rootSignal(skdbus.ObjectManagerIface, "InterfacesAdded"),
		rootSignal(skdbus.ObjectManagerIface, "InterfacesRemoved"),
		rootSignal(skdbus.ManagerInterface, "PathChanged"),
		daemonComesAndGoes(),
	}
}

// rootSignal matches storkeepd's signal member of iface on its root object.
func rootSignal(iface, member string) []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(skdbus.BusName),
		dbus.WithMatchInterface(iface),
		dbus.WithMatchMember(member),
		dbus.WithMatchObjectPath(skdbus.RootPath),
	}
}

// daemonComesAndGoes matches the bus's NameOwnerChanged for storkeepd's name.
func daemonComesAndGoes() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(fdoBusName),
		dbus.WithMatchInterface(fdoInterface),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, skdbus.BusName),
	}
}

// monitor subscribes first and reads the objects second, so that no change
// falls between the two; it then prints events until ctx is done.
func (c *cli) monitor(ctx context.Context, m *monitor) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	for _, match := range monitorMatches() {
		callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
		err := conn.AddMatchSignalContext(callCtx, match...)
		cancel()
		if err != nil {
			return fmt.Errorf("subscribing to signals: %w", err)
		}
	}
	if err := c.seedMonitor(ctx, m); err != nil {
		if e, ok := dbusError(err); !ok || exitCodeForName(e.Name) != exitUnavailable {
			return err
		}
		fmt.Fprintf(c.stderr, "storkeepctl: monitor: %s is not running; waiting for it\n", skdbus.BusName)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return unavailableError{errors.New("lost the connection to the bus")}
			}
			if sig.Name == fdoInterface+".NameOwnerChanged" {
				if err := c.ownerChanged(ctx, m, sig); err != nil {
					return err
				}
				continue
			}
			if err := m.handle(time.Now(), sig); err != nil {
				return err
			}
		}
	}
}

// seedMonitor fills the path -> CID map from GetManagedObjects.
func (c *cli) seedMonitor(ctx context.Context, m *monitor) error {
	var objects map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := c.call(ctx, 0, skdbus.RootPath, skdbus.ObjectManagerIface+".GetManagedObjects", nil, &objects); err != nil {
		return err
	}
	for path, ifaces := range objects {
		m.learn(path, ifaces)
	}
	return nil
}

// ownerChanged reports storkeepd starting or stopping and re-reads the
// objects of a new instance.
func (c *cli) ownerChanged(ctx context.Context, m *monitor, sig *dbus.Signal) error {
	var name, oldOwner, newOwner string
	if err := dbus.Store(sig.Body, &name, &oldOwner, &newOwner); err != nil || name != skdbus.BusName {
		return nil
	}
	now := time.Now()
	if newOwner == "" {
		return m.daemon(now, "stopped")
	}
	if err := m.daemon(now, "started"); err != nil {
		return err
	}
	if err := c.seedMonitor(ctx, m); err != nil {
		fmt.Fprintf(c.stderr, "storkeepctl: monitor: %s\n", errorText(err))
	}
	return nil
}

// monitor turns signals into output lines. It keeps the CID of each known
// object path, since PropertiesChanged names only the path.
type monitor struct {
	w    io.Writer
	json bool
	cids map[dbus.ObjectPath]string
}

// learn records the CID of path from its Connection properties.
func (m *monitor) learn(path dbus.ObjectPath, ifaces map[string]map[string]dbus.Variant) {
	if cid, ok := unwrapVariant(ifaces[skdbus.ConnInterface]["CID"]).(string); ok {
		m.cids[path] = cid
	}
}

// cid returns the CID of path: the one learned, else the one its last
// element encodes, else a label for the path itself.
func (m *monitor) cid(path dbus.ObjectPath) (cid string, label string) {
	if cid, ok := m.cids[path]; ok {
		return cid, escapeText(cid)
	}
	if path == skdbus.RootPath {
		return "", "(manager)"
	}
	if cid, ok := skdbus.CIDFromPath(path); ok {
		return cid, escapeText(cid)
	}
	return "", escapeText(string(path))
}

// monitorEvent is one line of monitor -o json. Its keys are spelled as
// the D-Bus API spells names (CID, as the property; Changed holds
// property names), like list's and show's.
type monitorEvent struct {
	Time        string                    `json:"Time"`
	Event       string                    `json:"Event"`
	CID         *string                   `json:"CID,omitempty"`
	Path        string                    `json:"Path,omitempty"`
	Interface   string                    `json:"Interface,omitempty"`
	Changed     map[string]any            `json:"Changed,omitempty"`
	Invalidated []string                  `json:"Invalidated,omitempty"`
	Interfaces  map[string]map[string]any `json:"Interfaces,omitempty"`
	Removed     []string                  `json:"RemovedInterfaces,omitempty"`
	// path events
	Host   string   `json:"Host,omitempty"`
	Usable *bool    `json:"Usable,omitempty"`
	Link   string   `json:"Link,omitempty"`
	Reason string   `json:"Reason,omitempty"`
	CIDs   []string `json:"CIDs,omitempty"`
}

func (m *monitor) handle(now time.Time, sig *dbus.Signal) error {
	switch sig.Name {
	case skdbus.PropertiesIface + ".PropertiesChanged":
		var (
			iface       string
			changed     map[string]dbus.Variant
			invalidated []string
		)
		if err := dbus.Store(sig.Body, &iface, &changed, &invalidated); err != nil {
			return nil // not the standard signature; ignore
		}
		return m.changed(now, sig.Path, iface, changed, invalidated)
	case skdbus.ObjectManagerIface + ".InterfacesAdded":
		var (
			path   dbus.ObjectPath
			ifaces map[string]map[string]dbus.Variant
		)
		if err := dbus.Store(sig.Body, &path, &ifaces); err != nil {
			return nil
		}
		return m.added(now, path, ifaces)
	case skdbus.ManagerInterface + ".PathChanged":
		var (
			host, link, reason string
			usable             bool
			cids               []string
		)
		if err := dbus.Store(sig.Body, &host, &usable, &link, &reason, &cids); err != nil {
			return nil
		}
		return m.path(now, host, usable, link, reason, cids)
	case skdbus.ObjectManagerIface + ".InterfacesRemoved":
		var (
			path   dbus.ObjectPath
			ifaces []string
		)
		if err := dbus.Store(sig.Body, &path, &ifaces); err != nil {
			return nil
		}
		return m.removed(now, path, ifaces)
	}
	return nil
}

func (m *monitor) changed(now time.Time, path dbus.ObjectPath, iface string, changed map[string]dbus.Variant, invalidated []string) error {
	if cid, ok := unwrapVariant(changed["CID"]).(string); ok && iface == skdbus.ConnInterface {
		m.cids[path] = cid
	}
	cid, label := m.cid(path)
	if m.json {
		ev := m.event(now, "changed", cid, path)
		ev.Interface = iface
		ev.Changed = jsonProperties(changed)
		ev.Invalidated = invalidated
		return writeJSON(m.w, ev, false)
	}
	var parts []string
	for _, name := range sortedPropertyNames(iface, changed) {
		parts = append(parts, name+"="+inlineValue(name, changed[name]))
	}
	inv := append([]string(nil), invalidated...)
	sort.Strings(inv)
	for _, name := range inv {
		parts = append(parts, name+"=<invalidated>")
	}
	return m.line(now, "%s changed: %s", label, strings.Join(parts, " "))
}

func (m *monitor) added(now time.Time, path dbus.ObjectPath, ifaces map[string]map[string]dbus.Variant) error {
	m.learn(path, ifaces)
	cid, label := m.cid(path)
	props, isNew := ifaces[skdbus.ConnInterface]
	if m.json {
		event := "interfaces-added"
		if isNew {
			event = "added"
		}
		ev := m.event(now, event, cid, path)
		ev.Interfaces = make(map[string]map[string]any, len(ifaces))
		for iface, p := range ifaces {
			if !strings.HasPrefix(iface, fdoInterface+".") {
				ev.Interfaces[iface] = jsonProperties(p)
			}
		}
		return writeJSON(m.w, ev, false)
	}
	if isNew {
		uri, _ := unwrapVariant(props["URI"]).(string)
		return m.line(now, "%s added (%s)", label, escapeText(uri))
	}
	for _, iface := range sortedInterfaces(ifaces) {
		var parts []string
		for _, name := range sortedPropertyNames(iface, ifaces[iface]) {
			parts = append(parts, name+"="+inlineValue(name, ifaces[iface][name]))
		}
		if err := m.line(now, "%s added interface %s: %s", label, iface, strings.Join(parts, " ")); err != nil {
			return err
		}
	}
	return nil
}

func (m *monitor) removed(now time.Time, path dbus.ObjectPath, ifaces []string) error {
	cid, label := m.cid(path)
	gone := false
	var others []string
	for _, iface := range ifaces {
		switch {
		case iface == skdbus.ConnInterface:
			gone = true
		case !strings.HasPrefix(iface, fdoInterface+"."):
			others = append(others, iface)
		}
	}
	if gone {
		delete(m.cids, path)
	}
	if m.json {
		event := "interfaces-removed"
		if gone {
			event = "removed"
		}
		ev := m.event(now, event, cid, path)
		ev.Removed = ifaces
		return writeJSON(m.w, ev, false)
	}
	if gone {
		return m.line(now, "%s removed", label)
	}
	sort.Strings(others)
	for _, iface := range others {
		if err := m.line(now, "%s removed interface %s", label, iface); err != nil {
			return err
		}
	}
	return nil
}

// path reports a change of the network path to a host that managed
// connections use: a link going down, coming up, a route appearing.
func (m *monitor) path(now time.Time, host string, usable bool, link, reason string, cids []string) error {
	if m.json {
		ev := monitorEvent{Time: now.Format(time.RFC3339Nano), Event: "path", Host: host,
			Usable: &usable, Link: link, Reason: reason, CIDs: cids}
		return writeJSON(m.w, ev, false)
	}
	names := make([]string, len(cids))
	for i, c := range cids {
		names[i] = escapeText(c)
	}
	what := "usable via " + escapeText(link)
	if !usable {
		what = "down: " + escapeMessage(reason)
	}
	return m.line(now, "path to %s %s (%s)", escapeText(host), what, strings.Join(names, ", "))
}

// daemon reports storkeepd starting or stopping.
func (m *monitor) daemon(now time.Time, what string) error {
	if m.json {
		return writeJSON(m.w, monitorEvent{Time: now.Format(time.RFC3339Nano), Event: "daemon-" + what}, false)
	}
	return m.line(now, "%s %s", skdbus.BusName, what)
}

func (m *monitor) event(now time.Time, event, cid string, path dbus.ObjectPath) monitorEvent {
	ev := monitorEvent{Time: now.Format(time.RFC3339Nano), Event: event, Path: string(path)}
	if path != skdbus.RootPath {
		ev.CID = &cid
	}
	return ev
}

func (m *monitor) line(now time.Time, format string, args ...any) error {
	_, err := fmt.Fprintf(m.w, "%s %s\n", now.Format("15:04:05.000"), fmt.Sprintf(format, args...))
	return err
}

// sortedInterfaces returns the storkeep interfaces of ifaces, sorted.
func sortedInterfaces(ifaces map[string]map[string]dbus.Variant) []string {
	var names []string
	for iface := range ifaces {
		if !strings.HasPrefix(iface, fdoInterface+".") {
			names = append(names, iface)
		}
	}
	sort.Strings(names)
	return names
}

// inlineValue renders a value for "Name=value" in monitor lines: strings
// quoted when needed to keep the line unambiguous, times as RFC 3339.
func inlineValue(name string, v dbus.Variant) string {
	if zero, ok := timeZero(name, v); ok {
		usec := unwrapVariant(v).(uint64)
		if usec == 0 {
			return zero
		}
		return time.UnixMicro(int64(min(usec, 1<<63-1))).Local().Format(time.RFC3339)
	}
	switch x := unwrapVariant(v).(type) {
	case string:
		return escapeWord(x)
	case dbus.ObjectPath:
		return escapeWord(string(x))
	}
	return formatNested(v)
}

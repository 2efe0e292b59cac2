package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// waitManyFlags are wait's --all and --prefix: wait for a set of CIDs
// rather than one (storkeep-wait-online.service runs "wait --all").
type waitManyFlags struct {
	all    bool
	prefix optionalString
}

func (f *waitManyFlags) declare(fs *flag.FlagSet) {
	fs.BoolVar(&f.all, "all", false, "wait for every managed CID")
	fs.Var(&f.prefix, "prefix", "wait for every managed CID that starts with `prefix`")
}

// set reports whether the wait is for a set of CIDs.
func (f *waitManyFlags) set() bool { return f.all || f.prefix.set }

// maxNamedWaiting bounds the CIDs a failed wait names one by one.
const maxNamedWaiting = 20

// waitMany waits until every CID managed when it starts (or every one
// with the prefix) has been connected since, or until timeout. It asks
// for no Wait: a Wait per CID would hold up to one per CID at once, and
// storkeepd caps them per caller (limits.max_waits_per_caller). Instead
// it follows PropertiesChanged, subscribed before it lists the CIDs, so
// that no change falls between the two. A CID unmanaged meanwhile is no
// longer waited for; one managed meanwhile is not waited for.
//
// Equivalent to: busctl call org.storkeep.StorKeep1 /org/storkeep/StorKeep1
// org.storkeep.StorKeep1.Manager List 'a{sv}' 1 host b false, then
// following PropertiesChanged until each says Connected true.
func (c *cli) waitMany(ctx context.Context, f *waitManyFlags, args []string, timeout time.Duration) error {
	switch {
	case len(args) > 0:
		return usagef("give a CID, --all or --prefix, not more than one")
	case f.all && f.prefix.set:
		return usagef("give --all or --prefix, not both")
	case f.prefix.set && f.prefix.value == "":
		return usagef("--prefix must not be empty (--all waits for every CID)")
	case timeout <= 0:
		return usagef("--timeout must be positive")
	}
	// Dialed with the caller's context: godbus closes a connection when
	// the context it was dialed with ends, and the timeout's report
	// below still needs it.
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	for _, match := range waitManyMatches() {
		if err := conn.AddMatchSignalContext(ctx, match...); err != nil {
			return fmt.Errorf("subscribing to signals: %w", err)
		}
	}
	w := &waitSet{prefix: f.prefix.value}
	if err := c.waitList(ctx, w, true); err != nil {
		return err
	}
	for len(w.pending) > 0 {
		select {
		case <-ctx.Done():
			return c.waitTimedOut(w, timeout)
		case sig, ok := <-ch:
			if !ok {
				return unavailableError{errors.New("lost the connection to the bus")}
			}
			if sig.Name == fdoInterface+".NameOwnerChanged" {
				// A new storkeepd: what it sends from now on is what
				// counts; read where each CID stands once more.
				var name, oldOwner, newOwner string
				if dbus.Store(sig.Body, &name, &oldOwner, &newOwner) == nil && newOwner != "" {
					if err := c.waitList(ctx, w, false); err != nil && ctx.Err() == nil {
						fmt.Fprintf(c.stderr, "storkeepctl: wait: %s\n", errorText(err))
					}
				}
				continue
			}
			w.handle(sig)
		}
	}
	fmt.Fprintln(c.stdout, w.done())
	return nil
}

// waitManyMatches are the signals waitMany follows: changes of connection
// objects, objects going away, and storkeepd coming and going.
func waitManyMatches() [][]dbus.MatchOption {
	return [][]dbus.MatchOption{
		{
			dbus.WithMatchSender(skdbus.BusName),
			dbus.WithMatchInterface(skdbus.PropertiesIface),
			dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(dbus.ObjectPath(strings.TrimSuffix(skdbus.ConnPrefix, "/"))),
		},
		rootSignal(skdbus.ObjectManagerIface, "InterfacesRemoved"),
		daemonComesAndGoes(),
	}
}

// waitSet is the state of waitMany: the CIDs it waits for, by object path.
type waitSet struct {
	prefix  string
	total   int                        // CIDs waited for, connected or not
	pending map[dbus.ObjectPath]string // not yet seen connected: path -> CID
}

// listManaged lists the managed CIDs (with the prefix): CID -> status.
func (c *cli) listManaged(ctx context.Context, prefix string) (map[string]map[string]dbus.Variant, error) {
	opts := map[string]dbus.Variant{"host": dbus.MakeVariant(false)}
	if prefix != "" {
		opts[skdbus.OptPrefix] = dbus.MakeVariant(prefix)
	}
	entries, err := c.listPages(ctx, opts, listKeysWait)
	if err != nil {
		return nil, err
	}
	for cid, st := range entries {
		if !boolKey(st, skdbus.ListManaged) {
			delete(entries, cid)
		}
	}
	return entries, nil
}

// waitList reads where the CIDs stand. The first time it decides which
// CIDs are waited for; after that it only marks those now connected (or
// gone) as done.
func (c *cli) waitList(ctx context.Context, w *waitSet, first bool) error {
	entries, err := c.listManaged(ctx, w.prefix)
	if err != nil {
		return err
	}
	if first {
		w.total = len(entries)
		w.pending = make(map[dbus.ObjectPath]string)
		for cid, st := range entries {
			if !boolKey(st, skdbus.ListConnected) {
				w.pending[skdbus.ConnectionPath(cid)] = cid
			}
		}
		return nil
	}
	for path, cid := range w.pending {
		if st, ok := entries[cid]; !ok || boolKey(st, skdbus.ListConnected) {
			delete(w.pending, path)
		}
	}
	return nil
}

// handle takes one signal: a CID that says it is connected, or whose
// object went away (unmanaged), is done.
func (w *waitSet) handle(sig *dbus.Signal) {
	switch sig.Name {
	case skdbus.PropertiesIface + ".PropertiesChanged":
		var (
			iface       string
			changed     map[string]dbus.Variant
			invalidated []string
		)
		if dbus.Store(sig.Body, &iface, &changed, &invalidated) != nil || iface != skdbus.ConnInterface {
			return
		}
		if up, ok := changed["Connected"].Value().(bool); ok && up {
			delete(w.pending, sig.Path)
		}
	case skdbus.ObjectManagerIface + ".InterfacesRemoved":
		var (
			path   dbus.ObjectPath
			ifaces []string
		)
		if dbus.Store(sig.Body, &path, &ifaces) == nil {
			delete(w.pending, path)
		}
	}
}

// what names the set for messages.
func (w *waitSet) what() string {
	if w.prefix != "" {
		return fmt.Sprintf("managed CIDs starting with %s", escapeText(w.prefix))
	}
	return "managed CIDs"
}

func (w *waitSet) done() string {
	if w.total == 0 {
		return "no " + w.what() + ": nothing to wait for"
	}
	return fmt.Sprintf("%s: all %d connected", w.what(), w.total)
}

// waitTimedOut names the CIDs still not connected, each with where it
// stands now (one line each on stderr, for the journal of
// storkeep-wait-online.service), and returns the Timeout error (exit 4).
func (c *cli) waitTimedOut(w *waitSet, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.callTimeout)
	defer cancel()
	entries, _ := c.listManaged(ctx, w.prefix) // nil: name them without their state
	cids := make([]string, 0, len(w.pending))
	for _, cid := range w.pending {
		cids = append(cids, cid)
	}
	sort.Strings(cids)
	for i, cid := range cids {
		if i == maxNamedWaiting {
			fmt.Fprintf(c.stderr, "storkeepctl: wait: and %d more\n", len(cids)-i)
			break
		}
		fmt.Fprintf(c.stderr, "storkeepctl: wait: %s: not connected%s\n", escapeText(cid), waitingWhy(entries[cid]))
	}
	return dbus.Error{Name: skdbus.ErrorTimeout, Body: []any{fmt.Sprintf("%s: %d of %d not connected within %v",
		w.what(), len(cids), w.total, timeout)}}
}

// waitingWhy is ": STATE, LASTERROR: MESSAGE" for a CID's status, or "".
func waitingWhy(st map[string]dbus.Variant) string {
	if st == nil {
		return ""
	}
	s := ": " + escapeText(stringKey(st, skdbus.ListState))
	if e := stringKey(st, skdbus.ListLastError); e != "" {
		s += ", " + escapeText(e)
		if m := stringKey(st, skdbus.ListLastErrorMessage); m != "" {
			s += ": " + escapeMessage(m)
		}
	}
	return s
}

// Command vmstorage shows how a virtualization engine uses storkeep, over
// its D-Bus API alone (with godbus; it imports nothing of storkeep's).
//
// Before a VM starts, the engine asks storkeep to manage each disk's
// storage under a connection ID (CID) and waits until it is connected;
// while the VM runs, it follows the connection's PropertiesChanged signal,
// to pause the VM when its storage is lost; when the VM is gone, it
// unmanages the CID. Every error storkeepd replies with maps to an error
// that errors.Is matches (ErrTimeout, ErrUnknownCID...).
//
//	vmstorage [--bus ADDRESS] attach [--timeout D] [--follow] URI CID
//	vmstorage [--bus ADDRESS] detach CID
//
// attach manages URI as CID, waits up to --timeout (default 30s) for it,
// printing each change of the connection; with --follow it then keeps
// following until the connection is lost. Exit status: 0, or 1 with
// "error: NAME: message" for an error of storkeepd's (2 for usage); after
// a Timeout the CID stays managed and storkeep keeps trying.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Names of storkeep's D-Bus API v1.
const (
	busName     = "org.storkeep.StorKeep1"
	rootPath    = dbus.ObjectPath("/org/storkeep/StorKeep1")
	connPath    = "/org/storkeep/StorKeep1/connection"
	manager     = "org.storkeep.StorKeep1.Manager"
	connection  = "org.storkeep.StorKeep1.Connection"
	properties  = "org.freedesktop.DBus.Properties"
	errorPrefix = "org.storkeep.StorKeep1.Error."
)

// callTimeout bounds a method call beyond what it waits for.
const callTimeout = 25 * time.Second

// The errors storkeepd replies with, by their short names.
var (
	ErrInvalidArgument = errors.New("InvalidArgument") // a malformed option, or a limit passed
	ErrInvalidURI      = errors.New("InvalidURI")      // the URI does not parse, or asks for something refused
	ErrInvalidCID      = errors.New("InvalidCID")      // empty, too long, or with '/' or NUL
	ErrCIDInUse        = errors.New("CIDInUse")        // the CID manages another target already
	ErrUnknownCID      = errors.New("UnknownCID")      // not managed (or unmanaged while waiting)
	ErrConflict        = errors.New("Conflict")        // the target is managed with other settings
	ErrNotAuthorized   = errors.New("NotAuthorized")   // polkit (or the root-only rule) said no
	ErrTimeout         = errors.New("Timeout")         // Wait ended first; the message has the last error
	ErrLimitExceeded   = errors.New("LimitExceeded")   // this user holds as many Waits as one may
	ErrFailed          = errors.New("Failed")          // anything else storkeepd could not do
)

var errorsByName = map[string]error{}

func init() {
	for _, e := range []error{ErrInvalidArgument, ErrInvalidURI, ErrInvalidCID, ErrCIDInUse, ErrUnknownCID,
		ErrConflict, ErrNotAuthorized, ErrTimeout, ErrLimitExceeded, ErrFailed} {
		errorsByName[e.Error()] = e
	}
}

// Error is an error reply from storkeepd: errors.Is(err, ErrTimeout).
type Error struct {
	Name    string // short: "Timeout"
	Message string
}

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// Is matches the sentinel of the error's name.
func (e *Error) Is(target error) bool { return errorsByName[e.Name] == target }

// storkeepError maps the error of a call to an *Error. Errors of the bus
// itself keep their full name.
func storkeepError(err error) error {
	var de dbus.Error
	if pe := (*dbus.Error)(nil); errors.As(err, &pe) && pe != nil {
		de = *pe
	} else if !errors.As(err, &de) {
		return err
	}
	msg := ""
	if len(de.Body) > 0 {
		msg, _ = de.Body[0].(string)
	}
	return &Error{Name: strings.TrimPrefix(de.Name, errorPrefix), Message: msg}
}

// client talks to storkeepd on one bus connection.
type client struct{ conn *dbus.Conn }

func dial(address string) (*client, error) {
	var conn *dbus.Conn
	var err error
	if address == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(address)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return &client{conn: conn}, nil
}

// call calls method on the object at path and stores the reply in ret; it
// waits for the reply callTimeout beyond wait.
func (c *client) call(ctx context.Context, wait time.Duration, path dbus.ObjectPath, method string, args []any,
	ret ...any) error {
	ctx, cancel := context.WithTimeout(ctx, wait+callTimeout)
	defer cancel()
	call := c.conn.Object(busName, path).CallWithContext(ctx, method, 0, args...)
	if call.Err != nil {
		return storkeepError(call.Err)
	}
	return call.Store(ret...)
}

// Manage registers cid for uri (durably) and returns its object path.
func (c *client) Manage(ctx context.Context, uri, cid string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	err := c.call(ctx, 0, rootPath, manager+".Manage", []any{uri, cid, map[string]dbus.Variant{}}, &path)
	return path, err
}

// Unmanage forgets cid; storkeepd disconnects what no CID needs any more.
func (c *client) Unmanage(ctx context.Context, cid string) error {
	return c.call(ctx, 0, rootPath, manager+".Unmanage", []any{cid, map[string]dbus.Variant{}})
}

// Wait returns once the connection at path is up, or ErrTimeout.
func (c *client) Wait(ctx context.Context, path dbus.ObjectPath, timeout time.Duration) error {
	return c.call(ctx, timeout, path, connection+".Wait", []any{uint64(timeout / time.Microsecond), map[string]dbus.Variant{}})
}

// Follow delivers every change of a connection object on ch until stop.
// Subscribe before Manage, so that no change falls in between.
func (c *client) Follow(ch chan *dbus.Signal) (stop func(), err error) {
	match := []dbus.MatchOption{
		dbus.WithMatchSender(busName),
		dbus.WithMatchInterface(properties),
		dbus.WithMatchMember("PropertiesChanged"),
		dbus.WithMatchPathNamespace(connPath),
		dbus.WithMatchArg(0, connection),
	}
	if err := c.conn.AddMatchSignal(match...); err != nil {
		return nil, fmt.Errorf("subscribing to PropertiesChanged: %w", err)
	}
	c.conn.Signal(ch)
	return func() {
		c.conn.RemoveSignal(ch)
		_ = c.conn.RemoveMatchSignal(match...)
	}, nil
}

// change is what a VM engine acts on in one PropertiesChanged.
type change struct {
	path    dbus.ObjectPath
	changed map[string]dbus.Variant
}

func parseChange(sig *dbus.Signal) (change, bool) {
	var (
		iface       string
		changed     map[string]dbus.Variant
		invalidated []string
	)
	if sig.Name != properties+".PropertiesChanged" || dbus.Store(sig.Body, &iface, &changed, &invalidated) != nil ||
		iface != connection {
		return change{}, false
	}
	return change{sig.Path, changed}, true
}

// connected reports the new value of Connected, if it changed.
func (ch change) connected() (up, ok bool) {
	up, ok = ch.changed["Connected"].Value().(bool)
	return up, ok
}

func (ch change) String() string {
	var words []string
	for _, k := range []string{"Connected", "State", "LastError"} {
		v, ok := ch.changed[k]
		if !ok {
			continue
		}
		s := fmt.Sprint(v.Value())
		if s == "" {
			s = `""`
		}
		words = append(words, k+"="+s)
	}
	return strings.Join(words, " ")
}

// attach manages uri as cid, waits for it, and with follow keeps
// following it until it is lost.
func attach(ctx context.Context, c *client, uri, cid string, timeout time.Duration, follow bool) error {
	signals := make(chan *dbus.Signal, 64)
	stop, err := c.Follow(signals)
	if err != nil {
		return err
	}
	defer stop()
	path, err := c.Manage(ctx, uri, cid)
	if err != nil {
		return err
	}
	fmt.Printf("managed %s as %s\n", cid, path)
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(ctx, path, timeout) }()
	connected := false
	for {
		select {
		case err := <-waited:
			if err != nil {
				return err
			}
			connected = true
			fmt.Printf("%s: connected\n", cid)
			if !follow {
				return nil
			}
			waited = nil // a nil channel: this case is done
		case sig := <-signals:
			ch, ok := parseChange(sig)
			if !ok || ch.path != path {
				continue // another connection's
			}
			if s := ch.String(); s != "" {
				fmt.Printf("%s: changed: %s\n", cid, s)
			}
			if up, ok := ch.connected(); follow && connected && ok && !up {
				fmt.Printf("%s: lost; a VM engine would pause the VM now\n", cid)
				return nil
			}
		}
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	global := flag.NewFlagSet("vmstorage", flag.ContinueOnError)
	bus := global.String("bus", "", "a D-Bus `address` (default: the system bus)")
	if err := global.Parse(args); err != nil {
		return 2
	}
	args = global.Args()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: vmstorage [--bus ADDRESS] attach [--timeout D] [--follow] URI CID | detach CID")
		return 2
	}
	cmd := flag.NewFlagSet(args[0], flag.ContinueOnError)
	timeout := cmd.Duration("timeout", 30*time.Second, "how long to wait for the connection")
	follow := cmd.Bool("follow", false, "then follow the connection until it is lost")
	if err := cmd.Parse(args[1:]); err != nil {
		return 2
	}
	pos := cmd.Args()
	ctx := context.Background()
	c, err := dial(*bus)
	if err == nil {
		defer c.conn.Close()
		switch {
		case args[0] == "attach" && len(pos) == 2:
			err = attach(ctx, c, pos[0], pos[1], *timeout, *follow)
		case args[0] == "detach" && len(pos) == 1:
			if err = c.Unmanage(ctx, pos[0]); err == nil {
				fmt.Printf("unmanaged %s\n", pos[0])
			}
		default:
			fmt.Fprintln(os.Stderr, "usage: vmstorage [--bus ADDRESS] attach [--timeout D] [--follow] URI CID | detach CID")
			return 2
		}
	}
	var se *Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrTimeout):
		fmt.Fprintf(os.Stderr, "error: %s (still managed: storkeep keeps trying)\n", err)
	case errors.As(err, &se):
		fmt.Fprintf(os.Stderr, "error: %s: %s\n", se.Name, se.Message)
	default:
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
	return 1
}

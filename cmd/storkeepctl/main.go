// SPDX-License-Identifier: Apache-2.0

// Command storkeepctl talks to storkeepd over D-Bus: it manages and
// unmanages storage connections, lists and shows them, waits for them and
// follows their changes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// Exit codes. They are part of the command's interface: scripts test them.
const (
	exitOK            = 0
	exitFailure       = 1
	exitUsage         = 2
	exitUnknownCID    = 3
	exitTimeout       = 4
	exitNotAuthorized = 5
	exitInvalid       = 6
	exitConflict      = 7
	exitUnavailable   = 69 // EX_UNAVAILABLE from sysexits.h
)

const (
	defaultCallTimeout = 25 * time.Second
	defaultWaitTimeout = 30 * time.Second
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0~dev"

const usageText = `Usage: storkeepctl [--bus system|session|ADDRESS] [--timeout D] COMMAND [ARGS]
       storkeepctl --version

Controls storkeepd, which keeps NFS and iSCSI connections alive.

Commands:
  manage URI CID [--wait D] [--chap-user U --chap-password-file F]
                 [--chap-user-in U --chap-password-in-file F]
                        manage URI under CID and print the object path;
                        --wait D then waits up to D for the connection
  unmanage CID          stop managing CID
  unmanage --prefix P   stop managing every CID starting with P; print them
  list [--prefix P] [-o table|wide|json] [--full]
                        list connections: managed ones, then unmanaged ones
                        found on the host (their IDs contain '/')
  show CID [-o table|json] [-p NAME]... [--value]
                        print the properties of CID's connection (or only
                        those named; --value: only their values)
  status [-o table|json]
                        the daemon's version, CIDs by state, paths down,
                        held targets and state files that did not load
  wait CID [--timeout D]
                        wait up to D (default 30s) for CID to be connected
  wait --all | --prefix P [--timeout D]
                        wait up to D for every managed CID (starting with
                        P) to have been connected since the wait began
  reconnect CID         make storkeepd retry CID now
  monitor [-o table|json]
                        print changes as they happen, until interrupted
  help [COMMAND]        print this help, or the help of COMMAND

Global flags (before or after COMMAND; "wait --timeout" is the wait's own):
  --bus system|session|ADDRESS
                        bus to use (default system); ADDRESS is a D-Bus
                        address such as unix:path=/run/storkeep/bus
  --timeout D           timeout of each method call (default 25s)

Flags may follow the positional arguments. Put "--" before a CID that
starts with "-". Durations are Go durations (500ms, 30s, 2m) or seconds.
CHAP passwords are read from the first line of a file, or of standard
input for "-", never from the command line.

Text output quotes (Go syntax) every CID or value that has characters a
terminal would not print as-is; -o json gives the exact values, under the
D-Bus property names (CID, State, LastError, ...), and --json is the same
as -o json. On a terminal, list cuts or drops columns to fit its width but
never the CID or the target; -o wide (or a pipe) shows them whole.

Exit status:
  0   success
  1   failure, or an error from storkeepd not listed below
  2   usage error
  3   unknown CID (UnknownCID)
  4   the connection did not come up in time (Timeout); with manage --wait
      the CID stays managed and storkeepd keeps trying
  5   not authorized (NotAuthorized, or the bus denied access)
  6   invalid input (InvalidURI, InvalidCID, InvalidArgument)
  7   conflict (Conflict, CIDInUse)
  69  storkeepd or the bus is not reachable, or storkeepd did not reply
`

// command is one storkeepctl subcommand.
type command struct {
	name     string
	synopsis string // arguments after the name, for help
	// setup declares the command's flags on fs and returns the function
	// that runs the command with the positional arguments.
	setup func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, c *cli, args []string) error

func commands() []command {
	return []command{
		{"manage", "URI CID [--wait D] [--chap-user U --chap-password-file F] [--chap-user-in U --chap-password-in-file F]", setupManage},
		{"unmanage", "CID | --prefix P", setupUnmanage},
		{"list", "[--prefix P] [-o table|wide|json] [--full]", setupList},
		{"show", "CID [-o table|json] [-p NAME]... [--value]", setupShow},
		{"status", "[-o table|json]", setupStatus},
		{"wait", "CID | --all | --prefix P [--timeout D]", setupWait},
		{"reconnect", "CID", setupReconnect},
		{"monitor", "[-o table|json]", setupMonitor},
	}
}

func lookupCommand(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

// cli is what a command runs with: its streams, the global options and the
// bus connection, dialed on first use.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// bus is "system", "session" or a D-Bus address.
	bus string
	// callTimeout bounds each method call.
	callTimeout time.Duration
	// dial connects to the bus; tests replace it.
	dial func(ctx context.Context, bus string) (*dbus.Conn, error)
	// terminal reports whether a stream is a terminal (nil: isTerminal);
	// tests replace it.
	terminal func(w io.Writer) bool

	conn *dbus.Conn
}

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, dial: dialBus}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

// run runs the command line args and returns the exit code.
func (c *cli) run(ctx context.Context, args []string) int {
	defer c.close()
	c.bus, c.callTimeout = "system", defaultCallTimeout

	global := flag.NewFlagSet("storkeepctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.Usage = func() {}
	c.addGlobalFlags(global)
	showVersion := global.Bool("version", false, "print the version and exit")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usageText)
			return exitOK
		}
		return c.fail("", usageError{err.Error()})
	}
	args = global.Args()
	if *showVersion {
		fmt.Fprintf(c.stdout, "storkeepctl %s\n", version)
		return exitOK
	}
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return exitUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		return c.help(args)
	}
	if name == completeCIDsCommand {
		return c.completeCIDs(ctx, args)
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		if looksLikeURI(name) {
			return c.fail("", usagef("%s looks like a target URI; a command comes first (storkeepctl manage URI CID)", escapeText(name)))
		}
		return c.fail("", unknownCommand(name))
	}
	fs := newFlagSet(cmd)
	runCmd := cmd.setup(fs)
	c.addGlobalFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(c.stdout, cmd)
			return exitOK
		}
		return c.fail(name, usageError{err.Error()})
	}
	if err := checkBus(c.bus); err != nil {
		return c.fail(name, err)
	}
	if c.callTimeout <= 0 {
		return c.fail(name, usagef("--timeout must be positive"))
	}
	if err := runCmd(ctx, c, pos); err != nil {
		return c.fail(name, err)
	}
	return exitOK
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	}
	cmd, ok := lookupCommand(args[0])
	if !ok && len(args) == 1 {
		return c.fail("help", unknownCommand(args[0]))
	}
	if !ok || len(args) > 1 {
		return c.fail("help", usageError{fmt.Sprintf("unknown command %q", strings.Join(args, " "))})
	}
	printCommandHelp(c.stdout, cmd)
	return exitOK
}

func newFlagSet(cmd command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func printCommandHelp(w io.Writer, cmd command) {
	fs := newFlagSet(cmd)
	cmd.setup(fs)
	(&cli{bus: "system", callTimeout: defaultCallTimeout}).addGlobalFlags(fs)
	fmt.Fprintf(w, "Usage: storkeepctl %s %s\n\nFlags:\n", cmd.name, cmd.synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-" // -o, -p
		}
		fmt.Fprintf(w, "  %s%s%s\n        %s\n", dash, f.Name, arg, usage)
	})
	fmt.Fprint(w, "\nSee \"storkeepctl help\" for the exit status.\n")
}

// addGlobalFlags declares --bus and --timeout on fs unless the command
// already has a flag of that name (wait has its own --timeout).
func (c *cli) addGlobalFlags(fs *flag.FlagSet) {
	if fs.Lookup("bus") == nil {
		fs.StringVar(&c.bus, "bus", c.bus, "`bus` to use: system, session or a D-Bus address")
	}
	if fs.Lookup("timeout") == nil {
		fs.Var((*durationFlag)(&c.callTimeout), "timeout", "wait at most `duration` for each method call")
	}
}

func (c *cli) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// fail prints err as "storkeepctl: verb: message (ShortName)" and returns
// its exit code.
func (c *cli) fail(verb string, err error) int {
	prefix := "storkeepctl: "
	if verb != "" {
		prefix += verb + ": "
	}
	fmt.Fprintf(c.stderr, "%s%s\n", prefix, errorText(err))
	code := exitCode(err)
	if code == exitUsage {
		fmt.Fprintf(c.stderr, "Try 'storkeepctl help%s'.\n", strings.TrimSuffix(" "+verb, " "))
	}
	return code
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// unavailableError means the bus or storkeepd could not be reached, or
// storkeepd did not reply in time (exit 69).
type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }
func (e unavailableError) Unwrap() error { return e.err }

// D-Bus errors of the bus itself that mean "storkeepd is not there".
const (
	fdoErrorPrefix    = "org.freedesktop.DBus.Error."
	errServiceUnknown = fdoErrorPrefix + "ServiceUnknown"
	errNameHasNoOwner = fdoErrorPrefix + "NameHasNoOwner"
	errNoReply        = fdoErrorPrefix + "NoReply"
	errTimedOut       = fdoErrorPrefix + "TimedOut"
	errTimeout        = fdoErrorPrefix + "Timeout"
	errDisconnected   = fdoErrorPrefix + "Disconnected"
	errNoServer       = fdoErrorPrefix + "NoServer"
	errSpawnPrefix    = fdoErrorPrefix + "Spawn."
	errAccessDenied   = fdoErrorPrefix + "AccessDenied"
	errInteractive    = fdoErrorPrefix + "InteractiveAuthorizationRequired"
)

// dbusError returns the D-Bus error inside err, if any.
func dbusError(err error) (dbus.Error, bool) {
	var e dbus.Error
	if errors.As(err, &e) {
		return e, true
	}
	var pe *dbus.Error
	if errors.As(err, &pe) && pe != nil {
		return *pe, true
	}
	return dbus.Error{}, false
}

// exitCode maps an error to the documented exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ne unavailableError
	if errors.As(err, &ne) {
		return exitUnavailable
	}
	if e, ok := dbusError(err); ok {
		return exitCodeForName(e.Name)
	}
	return exitFailure
}

func exitCodeForName(name string) int {
	switch name {
	case skdbus.ErrorUnknownCID:
		return exitUnknownCID
	case skdbus.ErrorTimeout:
		return exitTimeout
	case skdbus.ErrorNotAuthorized, errAccessDenied, errInteractive:
		return exitNotAuthorized
	case skdbus.ErrorInvalidArgument, skdbus.ErrorInvalidURI, skdbus.ErrorInvalidCID:
		return exitInvalid
	case skdbus.ErrorConflict, skdbus.ErrorCIDInUse:
		return exitConflict
	case errServiceUnknown, errNameHasNoOwner, errNoReply, errTimedOut, errTimeout,
		errDisconnected, errNoServer:
		return exitUnavailable
	}
	if strings.HasPrefix(name, errSpawnPrefix) {
		return exitUnavailable
	}
	return exitFailure
}

// errorText renders err as "message (ShortName)" for D-Bus errors and as
// its message otherwise. The message comes from storkeepd or the bus, so it
// is escaped like any other text printed to a terminal.
func errorText(err error) string {
	e, ok := dbusError(err)
	if !ok {
		return escapeMessage(err.Error())
	}
	msg := e.Error()
	if msg == e.Name {
		msg = "failed"
	}
	// Keep context that wrapping added in front of the D-Bus message.
	if full := err.Error(); strings.HasSuffix(full, msg) {
		msg = full
	}
	return fmt.Sprintf("%s (%s)", escapeMessage(msg), shortErrorName(e.Name))
}

// shortErrorName strips the well-known prefixes from a D-Bus error name:
// "org.storkeep.StorKeep1.Error.UnknownCID" becomes "UnknownCID".
func shortErrorName(name string) string {
	for _, p := range []string{skdbus.ErrorPrefix, fdoErrorPrefix} {
		if s, ok := strings.CutPrefix(name, p); ok && s != "" {
			return s
		}
	}
	return name
}

// checkBus rejects a --bus value that is neither a bus name nor an address.
func checkBus(bus string) error {
	switch bus {
	case "system", "session":
		return nil
	}
	if !strings.Contains(bus, ":") {
		return usagef("--bus %q: want system, session or a D-Bus address such as unix:path=/run/x", bus)
	}
	return nil
}

// dialBus connects to the bus named by bus ("system", "session" or an
// address). It never starts a bus: with no session bus address known it
// fails instead of autolaunching one.
func dialBus(ctx context.Context, bus string) (*dbus.Conn, error) {
	var (
		conn *dbus.Conn
		err  error
	)
	switch bus {
	case "system":
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(ctx))
	case "session":
		addr := sessionBusAddress()
		if addr == "" {
			return nil, unavailableError{errors.New("cannot find the session bus: DBUS_SESSION_BUS_ADDRESS is not set")}
		}
		conn, err = dbus.Connect(addr, dbus.WithContext(ctx))
	default:
		conn, err = dbus.Connect(bus, dbus.WithContext(ctx))
	}
	if err != nil {
		return nil, unavailableError{fmt.Errorf("cannot connect to the %s bus: %w", busLabel(bus), err)}
	}
	return conn, nil
}

func busLabel(bus string) string {
	if bus == "system" || bus == "session" {
		return bus
	}
	return fmt.Sprintf("%q", bus)
}

func sessionBusAddress() string {
	if addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); addr != "" && addr != "autolaunch:" {
		return addr
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if _, err := os.Stat(p); err == nil {
			return "unix:path=" + dbus.EscapeBusAddressValue(p)
		}
	}
	return ""
}

// connect returns the bus connection, dialing it on first use.
func (c *cli) connect(ctx context.Context) (*dbus.Conn, error) {
	if c.conn != nil {
		return c.conn, nil
	}
	conn, err := c.dial(ctx, c.bus)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// call calls method ("interface.Member") on storkeepd's object at path,
// waits at most timeout (the call timeout when 0) and stores the reply in
// ret.
func (c *cli) call(ctx context.Context, timeout time.Duration, path dbus.ObjectPath, method string, args []any, ret ...any) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	if timeout == 0 {
		timeout = c.callTimeout
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := conn.Object(skdbus.BusName, path).CallWithContext(callCtx, method, 0, args...)
	if call.Err != nil {
		if errors.Is(call.Err, context.DeadlineExceeded) {
			return unavailableError{fmt.Errorf("%s did not reply to %s within %v", skdbus.BusName, memberName(method), timeout)}
		}
		if e, ok := dbusError(call.Err); ok && (e.Name == errServiceUnknown || e.Name == errNameHasNoOwner) {
			return fmt.Errorf("storkeepd is not running: %w", call.Err)
		}
		return call.Err
	}
	if err := call.Store(ret...); err != nil {
		return fmt.Errorf("unexpected reply to %s: %w", memberName(method), err)
	}
	return nil
}

func memberName(method string) string {
	return method[strings.LastIndexByte(method, '.')+1:]
}

// manager calls a method of the Manager interface on the root object.
func (c *cli) manager(ctx context.Context, member string, args []any, ret ...any) error {
	return c.call(ctx, 0, skdbus.RootPath, skdbus.ManagerInterface+"."+member, args, ret...)
}

// connectionPath asks storkeepd for the object path of cid.
func (c *cli) connectionPath(ctx context.Context, cid string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	err := c.manager(ctx, "GetConnection", []any{cid}, &path)
	return path, err
}

// noOptions is an empty a{sv} for methods whose options are all defaults.
func noOptions() map[string]dbus.Variant { return map[string]dbus.Variant{} }

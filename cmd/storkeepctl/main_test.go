// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func TestExitCode(t *testing.T) {
	dbusErr := func(name string) error { return dbus.Error{Name: name, Body: []any{"msg"}} }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain error", errors.New("boom"), 1},
		{"usage", usagef("missing CID"), 2},
		{"unknown CID", dbusErr(skdbus.ErrorUnknownCID), 3},
		{"unknown CID by pointer", &dbus.Error{Name: skdbus.ErrorUnknownCID}, 3},
		{"wrapped unknown CID", fmt.Errorf("show: %w", dbusErr(skdbus.ErrorUnknownCID)), 3},
		{"timeout", dbusErr(skdbus.ErrorTimeout), 4},
		{"not authorized", dbusErr(skdbus.ErrorNotAuthorized), 5},
		{"bus access denied", dbusErr("org.freedesktop.DBus.Error.AccessDenied"), 5},
		{"invalid argument", dbusErr(skdbus.ErrorInvalidArgument), 6},
		{"invalid URI", dbusErr(skdbus.ErrorInvalidURI), 6},
		{"invalid CID", dbusErr(skdbus.ErrorInvalidCID), 6},
		{"conflict", dbusErr(skdbus.ErrorConflict), 7},
		{"CID in use", dbusErr(skdbus.ErrorCIDInUse), 7},
		{"failed", dbusErr(skdbus.ErrorFailed), 1},
		{"unknown storkeep error", dbusErr(skdbus.ErrorPrefix + "SomethingNew"), 1},
		{"service unknown", dbusErr("org.freedesktop.DBus.Error.ServiceUnknown"), 69},
		{"no reply", dbusErr("org.freedesktop.DBus.Error.NoReply"), 69},
		{"activation failed", dbusErr("org.freedesktop.DBus.Error.Spawn.ChildExited"), 69},
		{"unknown method", dbusErr("org.freedesktop.DBus.Error.UnknownMethod"), 1},
		{"bus unreachable", unavailableError{errors.New("dial")}, 69},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{dbus.Error{Name: skdbus.ErrorUnknownCID, Body: []any{`"db1" is not managed`}}, `"db1" is not managed (UnknownCID)`},
		{dbus.Error{Name: skdbus.ErrorTimeout, Body: []any{"not connected after 30s: mount: connection refused"}},
			"not connected after 30s: mount: connection refused (Timeout)"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Body: []any{"The name is not activatable"}},
			"The name is not activatable (ServiceUnknown)"},
		{dbus.Error{Name: "com.example.Odd"}, "failed (com.example.Odd)"},
		{dbus.Error{Name: skdbus.ErrorFailed, Body: []any{"evil\x1b[2J"}}, `evil\x1b[2J (Failed)`},
		{errors.New("cannot connect"), "cannot connect"},
	}
	for _, tt := range tests {
		if got := errorText(tt.err); got != tt.want {
			t.Errorf("errorText(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// runNoBus runs the command line with a dialer that fails the test if
// called: these command lines must fail before touching the bus.
func runNoBus(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		dial: func(context.Context, string) (*dbus.Conn, error) {
			t.Errorf("%q dialed the bus", args)
			return nil, unavailableError{errors.New("no bus in tests")}
		}}
	code = c.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring
		stderrLine string // first line of stderr, exactly
	}{
		{nil, 2, "", "Usage: storkeepctl [--bus system|session|ADDRESS] [--timeout D] COMMAND [ARGS]"},
		{[]string{"help"}, 0, "Exit status:", ""},
		{[]string{"-h"}, 0, "Exit status:", ""},
		{[]string{"--help"}, 0, "Exit status:", ""},
		{[]string{"help", "manage"}, 0, "--chap-password-file FILE", ""},
		{[]string{"list", "-h"}, 0, "--prefix PREFIX", ""},
		{[]string{"help", "show"}, 0, "  -p NAME\n", ""},
		{[]string{"help", "list"}, 0, "  -o FORMAT\n        output format: table, wide or json (default table)\n  --output FORMAT\n", ""},
		{[]string{"wait", "--help"}, 0, "(default 30s)", ""},
		{[]string{"help", "nope"}, 2, "", `storkeepctl: help: unknown command "nope"`},
		{[]string{"frobnicate"}, 2, "", `storkeepctl: unknown command "frobnicate"`},
		{[]string{"--nope", "list"}, 2, "", "storkeepctl: flag provided but not defined: -nope"},
		{[]string{"manage", "nfs://h/x"}, 2, "", "storkeepctl: manage: missing CID"},
		{[]string{"manage", "nfs://h/x", "c", "--wait", "later"}, 2, "", `storkeepctl: manage: invalid value "later" for flag -wait: "later" is not a duration (such as 30s, 2m or 500ms)`},
		{[]string{"manage", "iscsi://h/iqn.x", "c", "--chap-user", "u"}, 2, "", "storkeepctl: manage: --chap-user and --chap-password-file go together"},
		{[]string{"manage", "iscsi://h/iqn.x", "c", "--chap-password", "secret"}, 2, "", "storkeepctl: manage: flag provided but not defined: -chap-password"},
		{[]string{"unmanage"}, 2, "", "storkeepctl: unmanage: missing CID"},
		{[]string{"unmanage", "c", "--prefix", "p"}, 2, "", "storkeepctl: unmanage: give a CID or --prefix, not both"},
		{[]string{"unmanage", "--prefix", ""}, 2, "", "storkeepctl: unmanage: --prefix must not be empty"},
		{[]string{"list", "extra"}, 2, "", "storkeepctl: list: unexpected argument extra"},
		{[]string{"show"}, 2, "", "storkeepctl: show: missing CID"},
		{[]string{"show", "a", "b\nc"}, 2, "", `storkeepctl: show: unexpected argument "b\nc"`},
		{[]string{"wait", "c", "--timeout", "0"}, 2, "", "storkeepctl: wait: --timeout must be positive"},
		{[]string{"reconnect"}, 2, "", "storkeepctl: reconnect: missing CID"},
		{[]string{"monitor", "x"}, 2, "", "storkeepctl: monitor: unexpected argument x"},
		{[]string{"--timeout", "0", "list"}, 2, "", "storkeepctl: list: --timeout must be positive"},
		{[]string{"lsit"}, 2, "", `storkeepctl: unknown command "lsit"; did you mean "list"?`},
		{[]string{"mange", "nfs://h/x", "c"}, 2, "", `storkeepctl: unknown command "mange"; did you mean "manage"?`},
		{[]string{"stauts"}, 2, "", `storkeepctl: unknown command "stauts"; did you mean "status"?`},
		{[]string{"mon"}, 2, "", `storkeepctl: unknown command "mon"; did you mean "monitor"?`},
		{[]string{"help", "shwo"}, 2, "", `storkeepctl: help: unknown command "shwo"; did you mean "show"?`},
		{[]string{"nfs://h/x", "c"}, 2, "", "storkeepctl: nfs://h/x looks like a target URI; a command comes first (storkeepctl manage URI CID)"},
		{[]string{"wait", "iscsi://san/iqn.x/1"}, 2, "", "storkeepctl: wait: iscsi://san/iqn.x/1 looks like a target URI; wait takes a CID (storkeepctl list shows them)"},
		{[]string{"reconnect", "nfs://h/x"}, 2, "", "storkeepctl: reconnect: nfs://h/x looks like a target URI; reconnect takes a CID (storkeepctl list shows them)"},
		{[]string{"unmanage", "nfs://h/x"}, 2, "", "storkeepctl: unmanage: nfs://h/x looks like a target URI; unmanage takes a CID (storkeepctl list shows them)"},
		{[]string{"manage", "c", "nfs://h/x"}, 2, "", "storkeepctl: manage: nfs://h/x looks like a target URI; manage takes the URI first, then the CID (storkeepctl manage nfs://h/x c)"},
		{[]string{"--version"}, 0, "storkeepctl 0.1.0~dev\n", ""},
		{[]string{"show", "c", "--value", "-o", "json"}, 2, "", "storkeepctl: show: --value and -o json do not go together"},
		{[]string{"monitor", "-o", "xml"}, 2, "", `storkeepctl: monitor: invalid value "xml" for flag -o: "xml" is not an output format (table, wide or json)`},
		{[]string{"status", "x"}, 2, "", "storkeepctl: status: unexpected argument x"},
		{[]string{"--bus", "bogus", "list"}, 2, "", `storkeepctl: list: --bus "bogus": want system, session or a D-Bus address such as unix:path=/run/x`},
		{[]string{"list", "--bus", "bogus"}, 2, "", `storkeepctl: list: --bus "bogus": want system, session or a D-Bus address such as unix:path=/run/x`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runNoBus(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.stdout, stdout)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); first != tt.stderrLine {
				t.Errorf("stderr first line = %q, want %q", first, tt.stderrLine)
			}
		})
	}
}

func TestRunUnreachableBus(t *testing.T) {
	var out, errOut bytes.Buffer
	c := &cli{stdout: &out, stderr: &errOut, dial: dialBus}
	code := c.run(context.Background(), []string{"--bus", "unix:path=/nonexistent/storkeep-test-bus", "list"})
	if code != exitUnavailable {
		t.Errorf("exit code %d, want %d", code, exitUnavailable)
	}
	if want := `storkeepctl: list: cannot connect to the "unix:path=/nonexistent/storkeep-test-bus" bus: `; !strings.HasPrefix(errOut.String(), want) {
		t.Errorf("stderr = %q, want prefix %q", errOut.String(), want)
	}
}

func TestShortErrorName(t *testing.T) {
	for in, want := range map[string]string{
		skdbus.ErrorCIDInUse:                      "CIDInUse",
		"org.freedesktop.DBus.Error.AccessDenied": "AccessDenied",
		"com.example.Error":                       "com.example.Error",
		skdbus.ErrorPrefix:                        skdbus.ErrorPrefix,
	} {
		if got := shortErrorName(in); got != want {
			t.Errorf("shortErrorName(%q) = %q, want %q", in, got, want)
		}
	}
}

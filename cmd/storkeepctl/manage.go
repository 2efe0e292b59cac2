// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// maxPasswordLine bounds what readPassword reads, so that pointing it at a
// large file fails instead of reading it all.
const maxPasswordLine = 4096

// chapFlags are the CHAP options of manage. Passwords come from files so
// that they never appear in argv (and so in ps).
type chapFlags struct {
	user, passwordFile     string
	userIn, passwordInFile string
}

func (f *chapFlags) declare(fs *flag.FlagSet) {
	fs.StringVar(&f.user, "chap-user", "", "CHAP `user` name (iSCSI)")
	fs.StringVar(&f.passwordFile, "chap-password-file", "", "`file` whose first line is the CHAP password; - for stdin")
	fs.StringVar(&f.userIn, "chap-user-in", "", "mutual CHAP: the target's `user` name")
	fs.StringVar(&f.passwordInFile, "chap-password-in-file", "", "mutual CHAP: `file` with the target's password; - for stdin")
}

// options reads the password files and returns the Manage options.
func (f *chapFlags) options(stdin io.Reader) (map[string]dbus.Variant, error) {
	if (f.user == "") != (f.passwordFile == "") {
		return nil, usagef("--chap-user and --chap-password-file go together")
	}
	if (f.userIn == "") != (f.passwordInFile == "") {
		return nil, usagef("--chap-user-in and --chap-password-in-file go together")
	}
	if f.userIn != "" && f.user == "" {
		return nil, usagef("mutual CHAP (--chap-user-in) needs --chap-user too")
	}
	if f.passwordFile == "-" && f.passwordInFile == "-" {
		return nil, usagef("only one password can come from stdin")
	}
	opts := noOptions()
	if f.user == "" {
		return opts, nil
	}
	pw, err := readPassword(f.passwordFile, stdin)
	if err != nil {
		return nil, err
	}
	opts[skdbus.OptCHAPUsername] = dbus.MakeVariant(f.user)
	opts[skdbus.OptCHAPPassword] = dbus.MakeVariant(pw)
	if f.userIn != "" {
		pwIn, err := readPassword(f.passwordInFile, stdin)
		if err != nil {
			return nil, err
		}
		opts[skdbus.OptCHAPUsernameIn] = dbus.MakeVariant(f.userIn)
		opts[skdbus.OptCHAPPasswordIn] = dbus.MakeVariant(pwIn)
	}
	return opts, nil
}

// readPassword returns the first line of the file at path, or of stdin for
// "-", without its line ending ("\n" or "\r\n"). An empty password is an
// error.
func readPassword(path string, stdin io.Reader) (string, error) {
	r := stdin
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", usagef("password file: %v", err)
		}
		defer f.Close()
		r, name = f, fmt.Sprintf("password file %s", path)
	}
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLine+2), maxPasswordLine+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	hadNewline := strings.HasSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\n")
	if hadNewline {
		line = strings.TrimSuffix(line, "\r")
	}
	if len(line) > maxPasswordLine {
		return "", usagef("%s: first line is longer than %d bytes", name, maxPasswordLine)
	}
	if line == "" {
		return "", usagef("%s: password is empty", name)
	}
	if strings.ContainsRune(line, 0) {
		return "", usagef("%s: password contains a NUL byte", name)
	}
	return line, nil
}

func setupManage(fs *flag.FlagSet) runFunc {
	var (
		wait time.Duration
		chap chapFlags
	)
	fs.Var((*durationFlag)(&wait), "wait", "after managing, wait up to `duration` for the connection")
	chap.declare(fs)
	return func(ctx context.Context, c *cli, args []string) error {
		if len(args) == 2 && !looksLikeURI(args[0]) && looksLikeURI(args[1]) {
			return usagef("%s looks like a target URI; manage takes the URI first, then the CID (storkeepctl manage %s %s)",
				escapeText(args[1]), escapeText(args[1]), escapeText(args[0]))
		}
		if err := wantArgs(args, "URI", "CID"); err != nil {
			return err
		}
		uri, cid := args[0], args[1]
		opts, err := chap.options(c.stdin)
		if err != nil {
			return err
		}
		var path dbus.ObjectPath
		if err := c.manager(ctx, "Manage", []any{uri, cid, opts}, &path); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, escapeText(string(path)))
		if wait == 0 {
			return nil
		}
		if err := c.wait(ctx, path, wait); err != nil {
			return err
		}
		// stdout stays just the path, for $(storkeepctl manage ...).
		fmt.Fprintf(c.stderr, "%s: connected\n", escapeText(cid))
		return nil
	}
}

func setupUnmanage(fs *flag.FlagSet) runFunc {
	var prefix optionalString
	fs.Var(&prefix, "prefix", "unmanage every CID that starts with `prefix`")
	return func(ctx context.Context, c *cli, args []string) error {
		if !prefix.set {
			if err := wantCIDArgs("unmanage", args, "CID"); err != nil {
				return err
			}
			return c.manager(ctx, "Unmanage", []any{args[0], noOptions()})
		}
		if len(args) > 0 {
			return usagef("give a CID or --prefix, not both")
		}
		if prefix.value == "" {
			return usagef("--prefix must not be empty")
		}
		var cids []string
		if err := c.manager(ctx, "UnmanagePrefix", []any{prefix.value, noOptions()}, &cids); err != nil {
			return err
		}
		for _, cid := range sortCIDs(cids) {
			fmt.Fprintln(c.stdout, escapeText(cid))
		}
		return nil
	}
}

// optionalString is a string flag that remembers whether it was given, so
// that an empty --prefix is told apart from no --prefix.
type optionalString struct {
	value string
	set   bool
}

func (o *optionalString) String() string { return o.value }

func (o *optionalString) Set(s string) error {
	o.value, o.set = s, true
	return nil
}

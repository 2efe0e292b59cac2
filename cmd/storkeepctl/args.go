// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseArgs parses args with fs and returns the positional arguments.
// Unlike fs.Parse, it accepts flags after positional arguments, as in
// "manage URI CID --wait 30s". "--" ends the flags: a positional argument
// that starts with "-" must come after it. A lone "-" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		if strings.Contains(name, "=") {
			flags = append(flags, a)
			continue
		}
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) || i+1 == len(args) {
			// Unknown flags, bool flags and a missing value are left to
			// fs.Parse, which reports them.
			flags = append(flags, a)
			continue
		}
		// Join the value to its flag so that a value starting with "-"
		// (such as "-" for stdin) is not read as a flag.
		i++
		flags = append(flags, "-"+name+"="+args[i])
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// durationFlag is a flag.Value for a duration that is not negative: a Go
// duration ("500ms", "2m") or a number of seconds ("30").
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationFlag(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if secs, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "eEnNiIxX") {
		if secs > float64(1<<63-1)/float64(time.Second) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (such as 30s, 2m or 500ms)", s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// microseconds converts d to the µs that the D-Bus API's t-typed timeouts
// take.
func microseconds(d time.Duration) uint64 {
	return uint64(d / time.Microsecond)
}

// wantArgs checks the number of positional arguments.
func wantArgs(args []string, names ...string) error {
	if len(args) < len(names) {
		return usagef("missing %s", strings.Join(names[len(args):], " and "))
	}
	if len(args) > len(names) {
		return usagef("unexpected argument %s", escapeText(args[len(names)]))
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Config is the daemon's TOML configuration (/etc/storkeep/storkeep.toml).
// Unknown keys are errors, reported with their line and column.
type Config struct {
	Daemon    DaemonConfig    `toml:"daemon"`
	Limits    LimitsConfig    `toml:"limits"`
	Reconnect ReconnectConfig `toml:"reconnect"`
	Health    HealthConfig    `toml:"health"`
}

// HealthConfig says how connections are proven usable: a read through
// each one (HealthPolicy).
type HealthConfig struct {
	Interval      Duration `toml:"interval"`       // default "5s"
	Timeout       Duration `toml:"timeout"`        // default "5s"
	MaxConcurrent int      `toml:"max_concurrent"` // default 8
}

// Policy is the service's HealthPolicy from [health].
func (h HealthConfig) Policy() HealthPolicy {
	return HealthPolicy{Interval: time.Duration(h.Interval), Timeout: time.Duration(h.Timeout), MaxConcurrent: h.MaxConcurrent}.withDefaults()
}

// DaemonConfig holds process-wide settings.
type DaemonConfig struct {
	LogLevel string `toml:"log_level"` // debug, info, warn, error (default info)
}

// LimitsConfig bounds what clients may ask for. A zero value means the
// default. The three lengths are in bytes; they can lower the built-in
// ceilings (MaxCIDLength, MaxURILength, MaxOptionLength), never raise them.
// They bound what a Manage call stores; the other calls take any CID or
// prefix up to the built-in limits, so that lowering a limit never locks
// out a CID that is managed already.
type LimitsConfig struct {
	MaxCIDs    int `toml:"max_cids"`    // default 100000
	MaxOptions int `toml:"max_options"` // entries in one options dictionary, default 64
	// MaxCIDLength bounds the CID of a Manage call (default 255).
	MaxCIDLength int `toml:"max_cid_length"`
	// MaxURILength bounds the URI of a Manage call, as sent and once
	// normalized (default 4096).
	MaxURILength int `toml:"max_uri_length"`
	// MaxOptionLength bounds each string option value of a Manage call:
	// the CHAP user names and secrets (default 4096).
	MaxOptionLength int `toml:"max_option_length"`
	// MaxWaitsPerCaller bounds the Connection.Wait calls one caller (a
	// uid) may have in flight at once (default 64): each holds memory in
	// the daemon until it ends, and Wait is open to every user.
	MaxWaitsPerCaller int `toml:"max_waits_per_caller"`
	// MaxMessageSize is the longest message the bus takes, in bytes
	// (default 32 MiB, dbus-daemon's max_message_size on the system bus;
	// at most 128 MiB): a List or GetManagedObjects reply that would be
	// longer fails with Error.ReplyTooLarge rather than get the daemon's
	// connection dropped. Raise it only with the bus's own limit.
	MaxMessageSize int `toml:"max_message_size"`
}

// DefaultMaxWaitsPerCaller is the default of limits.max_waits_per_caller.
const DefaultMaxWaitsPerCaller = 64

// Built-in ceilings of the request limits, and their defaults. The CID
// rules and the URI parser enforce the first two whatever the
// configuration says; a longer option value than MaxOptionLength has no
// use (open-iscsi takes CHAP names and secrets of at most 255 bytes).
const (
	MaxCIDLength    = maxCIDLen
	MaxURILength    = maxURILen
	MaxOptionLength = 4096
	// MaxMessageSize is the D-Bus protocol's longest message.
	MaxMessageSize = 128 << 20
)

// check refuses negative limits and lengths above their ceilings. key is
// the offending key, under limits.
func (l LimitsConfig) check() (key string, err error) {
	counts := []struct {
		key string
		v   int
	}{{"max_cids", l.MaxCIDs}, {"max_options", l.MaxOptions}, {"max_waits_per_caller", l.MaxWaitsPerCaller}, {"max_message_size", l.MaxMessageSize}}
	for _, c := range counts {
		if c.v < 0 {
			return c.key, fmt.Errorf("limits.%s = %d: limits must not be negative", c.key, c.v)
		}
	}
	lengths := []struct {
		key     string
		v, ceil int
	}{
		{"max_cid_length", l.MaxCIDLength, MaxCIDLength},
		{"max_uri_length", l.MaxURILength, MaxURILength},
		{"max_option_length", l.MaxOptionLength, MaxOptionLength},
	}
	for _, c := range lengths {
		if c.v < 0 {
			return c.key, fmt.Errorf("limits.%s = %d: limits must not be negative", c.key, c.v)
		}
		if c.v > c.ceil {
			return c.key, fmt.Errorf("limits.%s = %d: at most %d (bytes); a limit can be lowered, not raised", c.key, c.v, c.ceil)
		}
	}
	if l.MaxMessageSize > MaxMessageSize {
		return "max_message_size", fmt.Errorf("limits.max_message_size = %d: at most %d (bytes), the D-Bus protocol's limit",
			l.MaxMessageSize, MaxMessageSize)
	}
	return "", nil
}

// ReconnectConfig is the retry policy.
type ReconnectConfig struct {
	InitialBackoff Duration `toml:"initial_backoff"` // default "1s"
	MaxBackoff     Duration `toml:"max_backoff"`     // default "60s"
	// LinkEvents: follow links, addresses and routes (rtnetlink) to see
	// a target's network path go and come back (default true). Off, only
	// the backoff decides when to try again.
	LinkEvents *bool `toml:"link_events"`
}

// FollowLinks reports whether link events are on (the default).
func (r ReconnectConfig) FollowLinks() bool { return r.LinkEvents == nil || *r.LinkEvents }

// Duration is a time.Duration written as a Go duration string ("1.5s").
type Duration time.Duration

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes a duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// LoadConfig reads the configuration at path. A missing file is the
// default configuration when optional is set, an error otherwise. Every
// error names the file and, when it is about something in the file, its
// line and column ("config /etc/storkeep/storkeep.toml: line 3 column 13:
// daemon.log_level "loud": want debug, info, warn or error"): the daemon
// logs it when a reload fails, and --check-config prints it.
func LoadConfig(path string, optional bool) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return Config{}, nil
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := parseConfig(data)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// parseConfig decodes a configuration document strictly and checks its
// values.
func parseConfig(data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return c, err
	}
	// The document parsed: every key it sets has a place in it.
	at := valuePositions(data)
	// A bare number decodes into a Duration as nanoseconds: refuse it.
	for _, k := range []string{"reconnect.initial_backoff", "reconnect.max_backoff", "health.interval", "health.timeout"} {
		if v, ok := at[strings.ToLower(k)]; ok && v.kind != unstable.String {
			return c, at.errorf(k, "%s = %s: write a duration with its unit, such as \"5s\"", k, v.raw)
		}
	}
	switch c.Daemon.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return c, at.errorf("daemon.log_level", "daemon.log_level %q: want debug, info, warn or error", c.Daemon.LogLevel)
	}
	for k, d := range map[string]Duration{"health.interval": c.Health.Interval, "health.timeout": c.Health.Timeout} {
		if d != 0 && time.Duration(d) < 100*time.Millisecond {
			return c, at.errorf(k, "%s = %q: at least 100ms", k, time.Duration(d))
		}
	}
	if c.Health.MaxConcurrent < 0 {
		return c, at.errorf("health.max_concurrent", "health.max_concurrent = %d: must not be negative", c.Health.MaxConcurrent)
	}
	if key, err := c.Limits.check(); err != nil {
		return c, at.errorf("limits."+key, "%w", err)
	}
	return c, nil
}

// valueAt is where a key's value starts in a document, and what it is.
type valueAt struct {
	line, col int
	kind      unstable.Kind
	raw       string
}

// positions maps dotted keys ("daemon.log_level") to their values. The
// keys are lower case: go-toml matches keys to fields regardless of case,
// so "[Limits] MAX_CIDS" sets limits.max_cids.
type positions map[string]valueAt

// valuePositions finds the value of every key a parsed document sets,
// whether in a [table], as a dotted key or in an inline table, so that a
// value that decodes but is not allowed can be reported at its line and
// column, as decoding errors are.
func valuePositions(data []byte) positions {
	at := positions{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	var record func(prefix []string, kv *unstable.Node)
	record = func(prefix []string, kv *unstable.Node) {
		key := append(append([]string(nil), prefix...), keyParts(kv)...)
		v := kv.Value()
		r := v.Raw
		if r.Length == 0 { // arrays have no range of their own: use the key's
			it := kv.Key()
			if it.Next() {
				r = it.Node().Raw
			}
		}
		sh := p.Shape(r)
		at[strings.ToLower(strings.Join(key, "."))] = valueAt{line: sh.Start.Line, col: sh.Start.Column,
			kind: v.Kind, raw: string(p.Raw(v.Raw))}
		if v.Kind == unstable.InlineTable {
			it := v.Children()
			for it.Next() {
				if it.Node().Kind == unstable.KeyValue {
					record(key, it.Node())
				}
			}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(e)
		case unstable.KeyValue:
			record(table, e)
		}
	}
	return at
}

// keyParts returns the parts of a table header's or key-value's key.
func keyParts(n *unstable.Node) []string {
	var parts []string
	it := n.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// errorf is an error about key's value, prefixed with where it is.
func (at positions) errorf(key, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if v, ok := at[strings.ToLower(key)]; ok {
		return fmt.Errorf("line %d column %d: %w", v.line, v.col, err)
	}
	return err
}

// Changed lists the keys ("daemon.log_level") whose values differ between
// c and o, as written in the files (a key left out and the same key set
// to its default count as different), in the order Config declares them.
func (c Config) Changed(o Config) []string {
	var keys []string
	a, b := reflect.ValueOf(c), reflect.ValueOf(o)
	for i := range a.NumField() {
		section := a.Type().Field(i).Tag.Get("toml")
		sa, sb := a.Field(i), b.Field(i)
		for j := range sa.NumField() {
			if !reflect.DeepEqual(sa.Field(j).Interface(), sb.Field(j).Interface()) {
				keys = append(keys, section+"."+sa.Type().Field(j).Tag.Get("toml"))
			}
		}
	}
	return keys
}

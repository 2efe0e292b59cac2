package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the daemon's TOML configuration (/etc/storkeep/storkeep.toml).
// Unknown keys are errors, reported with their line and column.
type Config struct {
	Daemon    DaemonConfig    `toml:"daemon"`
	Limits    LimitsConfig    `toml:"limits"`
	Reconnect ReconnectConfig `toml:"reconnect"`
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
)

// check refuses negative limits and lengths above their ceilings.
func (l LimitsConfig) check() error {
	counts := []struct {
		key string
		v   int
	}{{"max_cids", l.MaxCIDs}, {"max_options", l.MaxOptions}, {"max_waits_per_caller", l.MaxWaitsPerCaller}}
	for _, c := range counts {
		if c.v < 0 {
			return fmt.Errorf("limits.%s = %d: limits must not be negative", c.key, c.v)
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
			return fmt.Errorf("limits.%s = %d: limits must not be negative", c.key, c.v)
		}
		if c.v > c.ceil {
			return fmt.Errorf("limits.%s = %d: at most %d (bytes); a limit can be lowered, not raised", c.key, c.v, c.ceil)
		}
	}
	return nil
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
// default configuration when optional is set, an error otherwise.
func LoadConfig(path string, optional bool) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := decodeStrict(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	// A bare number decodes into a Duration as nanoseconds: refuse it.
	var raw struct {
		Reconnect map[string]any `toml:"reconnect"`
	}
	_ = toml.Unmarshal(data, &raw)
	for _, k := range []string{"initial_backoff", "max_backoff"} {
		if v, ok := raw.Reconnect[k]; ok {
			if _, isText := v.(string); !isText {
				return c, fmt.Errorf("config %s: reconnect.%s = %v: write a duration with its unit, such as \"5s\"", path, k, v)
			}
		}
	}
	switch c.Daemon.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return c, fmt.Errorf("config %s: daemon.log_level %q: want debug, info, warn or error", path, c.Daemon.LogLevel)
	}
	if err := c.Limits.check(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

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

// LimitsConfig bounds what clients may ask for.
type LimitsConfig struct {
	MaxCIDs    int `toml:"max_cids"`    // default 100000
	MaxOptions int `toml:"max_options"` // entries in one options dictionary, default 64
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
	if c.Limits.MaxCIDs < 0 || c.Limits.MaxOptions < 0 {
		return c, fmt.Errorf("config %s: limits must not be negative", path)
	}
	return c, nil
}

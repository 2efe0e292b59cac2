// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" means no file
		want    Config
		wantErr string // in the error; "" when valid
	}{
		{name: "empty file", content: "\n", want: Config{}},
		{name: "everything", content: `
[daemon]
log_level = "debug"

[limits]
max_cids = 500
max_options = 16
max_cid_length = 64
max_uri_length = 1024
max_option_length = 256
max_waits_per_caller = 8
max_message_size = 65536

[reconnect]
initial_backoff = "250ms"
max_backoff = "1m30s"
`, want: Config{
			Daemon: DaemonConfig{LogLevel: "debug"},
			Limits: LimitsConfig{MaxCIDs: 500, MaxOptions: 16,
				MaxCIDLength: 64, MaxURILength: 1024, MaxOptionLength: 256, MaxWaitsPerCaller: 8,
				MaxMessageSize: 65536},
			Reconnect: ReconnectConfig{InitialBackoff: Duration(250 * time.Millisecond), MaxBackoff: Duration(90 * time.Second)},
		}},
		{name: "link events off", content: "[reconnect]\nlink_events = false\n",
			want: Config{Reconnect: ReconnectConfig{LinkEvents: new(bool)}}},
		{name: "link events as a string", content: "[reconnect]\nlink_events = \"no\"\n",
			wantErr: `link_events`},
		{name: "every log level", content: "[daemon]\nlog_level = 'error'\n", want: Config{Daemon: DaemonConfig{LogLevel: "error"}}},

		// Unknown keys, with line and column.
		{name: "unknown key", content: "[daemon]\nlog_level = \"info\"\ncolour = \"blue\"\n",
			wantErr: `line 3 column 1: unknown key "daemon.colour"`},
		{name: "unknown table", content: "[limits]\nmax_cids = 1\n\n[reconect]\ninitial_backoff = \"1s\"\n",
			wantErr: `line 4 column 2: unknown key "reconect"`},
		{name: "unknown top-level key", content: "  log_level = \"info\"\n",
			wantErr: `line 1 column 3: unknown key "log_level"`},
		{name: "two unknown keys", content: "a = 1\n[daemon]\nb = 2\n",
			wantErr: `line 1 column 1: unknown key "a"; line 3 column 1: unknown key "daemon.b"`},

		// Durations.
		{name: "duration without unit", content: "[reconnect]\ninitial_backoff = \"5\"\n",
			wantErr: `line 2 column 19: toml: time: missing unit in duration "5"`},
		{name: "duration unknown unit", content: "[reconnect]\nmax_backoff = \"5 parsecs\"\n",
			wantErr: `line 2 column 15: toml: time: unknown unit`},
		{name: "negative duration", content: "[reconnect]\ninitial_backoff = \"-1s\"\n",
			wantErr: `line 2 column 19: toml: duration "-1s" is negative`},
		{name: "duration as a bare integer", content: "[reconnect]\ninitial_backoff = 5\n",
			wantErr: `line 2 column 19: reconnect.initial_backoff = 5: write a duration with its unit`},
		{name: "max duration as a bare integer", content: "[reconnect]\ninitial_backoff = '1s'\nmax_backoff = 60\n",
			wantErr: `line 3 column 15: reconnect.max_backoff = 60: write a duration with its unit`},
		{name: "duration as a float", content: "[reconnect]\nmax_backoff = 1.5\n",
			wantErr: "duration"},
		{name: "duration as a bool", content: "[reconnect]\nmax_backoff = true\n",
			wantErr: "invalid duration"},

		// Other values.
		{name: "bad log level", content: "[daemon]\nlog_level = \"loud\"\n",
			wantErr: `line 2 column 13: daemon.log_level "loud": want debug, info, warn or error`},
		{name: "log level case", content: "[daemon]\nlog_level = \"INFO\"\n",
			wantErr: `line 2 column 13: daemon.log_level "INFO"`},
		{name: "negative limit", content: "[limits]\nmax_cids = -1\n",
			wantErr: "line 2 column 12: limits.max_cids = -1: limits must not be negative"},
		{name: "message size over the protocol's", content: "[limits]\nmax_message_size = 200000000\n",
			wantErr: "limits.max_message_size = 200000000: at most 134217728 (bytes), the D-Bus protocol's limit"},
		{name: "negative wait cap", content: "[limits]\nmax_waits_per_caller = -1\n",
			wantErr: "line 2 column 24: limits.max_waits_per_caller = -1: limits must not be negative"},
		{name: "negative length", content: "[limits]\nmax_option_length = -5\n",
			wantErr: "line 2 column 21: limits.max_option_length = -5: limits must not be negative"},
		{name: "lengths at their ceilings", content: "[limits]\nmax_cid_length = 255\nmax_uri_length = 4096\nmax_option_length = 4096\n",
			want: Config{Limits: LimitsConfig{MaxCIDLength: 255, MaxURILength: 4096, MaxOptionLength: 4096}}},
		{name: "CID length above its ceiling", content: "[limits]\nmax_cid_length = 256\n",
			wantErr: "line 2 column 18: limits.max_cid_length = 256: at most 255 (bytes); a limit can be lowered, not raised"},
		{name: "URI length above its ceiling", content: "[limits]\nmax_uri_length = 65536\n",
			wantErr: "line 2 column 18: limits.max_uri_length = 65536: at most 4096"},
		{name: "option length above its ceiling", content: "[limits]\nmax_option_length = 4097\n",
			wantErr: "line 2 column 21: limits.max_option_length = 4097: at most 4096"},
		{name: "limit of the wrong type", content: "[limits]\nmax_options = \"64\"\n",
			wantErr: "line 2 column 15"},
		{name: "torn", content: "[daemon\nlog_level = \"info\"\n",
			wantErr: "line 1 column 8: "},

		// Values that decode but are not allowed, where they are: in a
		// table after comments, as a dotted key, in an inline table.
		{name: "bad value after comments", content: "# storkeep\n\n[daemon]\n# the level\n  log_level = 'loud'  # no\n",
			wantErr: `line 5 column 15: daemon.log_level "loud"`},
		{name: "bad value as a dotted key", content: "daemon.log_level = \"loud\"\n",
			wantErr: `line 1 column 20: daemon.log_level "loud"`},
		{name: "bad value under a key in other case", content: "[Limits]\nMAX_Uri_length = 7000\n",
			wantErr: `line 2 column 18: limits.max_uri_length = 7000: at most 4096`},
		{name: "bad limit in an inline table", content: "limits = { max_options = 64, max_cids = -1 }\n",
			wantErr: `line 1 column 41: limits.max_cids = -1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Arrange
			path := filepath.Join(t.TempDir(), "storkeep.toml")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}

			// Act
			got, err := LoadConfig(path, false)

			// Assert
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig = %v; want nil", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("LoadConfig = %+v; want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig = %+v, nil; want an error saying %q", got, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("LoadConfig error = %q; want the path and %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	tests := []struct {
		name     string
		optional bool
		wantErr  bool
	}{
		{"optional", true, false},
		{"explicit", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.toml")

			got, err := LoadConfig(path, tc.optional)

			if tc.wantErr {
				if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
					t.Errorf("LoadConfig(missing, explicit) = %v; want a not-exist error naming the path", err)
				}
				return
			}
			if err != nil || got != (Config{}) {
				t.Errorf("LoadConfig(missing, optional) = %+v, %v; want the zero Config, nil", got, err)
			}
		})
	}
}

func TestLoadConfigUnreadableOptionalFileIsAnError(t *testing.T) {
	// Only a missing optional file is the default; a directory is not.
	path := t.TempDir()

	_, err := LoadConfig(path, true)

	if err == nil {
		t.Error("LoadConfig(a directory, optional) = nil; want an error")
	}
}

func TestZeroConfigMeansDocumentedDefaults(t *testing.T) {
	// The zero Config leaves every default to Options; these are the
	// defaults the Config fields document.
	var c Config

	p := ReconnectPolicy{
		Initial: time.Duration(c.Reconnect.InitialBackoff),
		Max:     time.Duration(c.Reconnect.MaxBackoff),
	}.withDefaults()
	ts := newTestService(t, notRunning(), withMaxCIDs(c.Limits.MaxCIDs))

	if p.Initial != time.Second || p.Max != 60*time.Second || p.Jitter != 0.2 {
		t.Errorf("default reconnect policy = %+v; want 1s, 60s, jitter 0.2", p)
	}
	if ts.svc.opts.MaxCIDs != 100000 {
		t.Errorf("default MaxCIDs = %d; want 100000", ts.svc.opts.MaxCIDs)
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		text string
		want time.Duration
	}{
		{"0s", 0},
		{"1.5s", 1500 * time.Millisecond},
		{"2h45m", 2*time.Hour + 45*time.Minute},
		{"90s", 90 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			var d Duration
			if err := d.UnmarshalText([]byte(tc.text)); err != nil || time.Duration(d) != tc.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tc.text, time.Duration(d), err, tc.want)
			}
			out, err := d.MarshalText()
			var back Duration
			if err != nil || back.UnmarshalText(out) != nil || back != d {
				t.Errorf("MarshalText = %q, %v; want text that reads back as %v", out, err, tc.want)
			}
		})
	}
}

// TestSampleConfigShowsTheDefaults: packaging/storkeep.toml documents
// every key with its default, commented out. With every such line
// uncommented it must load, and mean what the zero Config means.
func TestSampleConfigShowsTheDefaults(t *testing.T) {
	// Arrange
	data, err := os.ReadFile(filepath.Join("..", "packaging", "storkeep.toml"))
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^# ([a-z_]+ = .*)$`)
	var b strings.Builder
	keys := 0
	for _, line := range strings.Split(string(data), "\n") {
		if m := setting.FindStringSubmatch(line); m != nil {
			line = m[1]
			keys++
		}
		b.WriteString(line + "\n")
	}
	path := filepath.Join(t.TempDir(), "storkeep.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Act
	got, err := LoadConfig(path, false)

	// Assert
	if err != nil {
		t.Fatalf("the sample with its settings uncommented: %v", err)
	}
	want := Config{
		Daemon: DaemonConfig{LogLevel: "info"},
		Limits: LimitsConfig{MaxCIDs: 100000, MaxOptions: 64,
			MaxCIDLength: MaxCIDLength, MaxURILength: MaxURILength, MaxOptionLength: MaxOptionLength,
			MaxWaitsPerCaller: DefaultMaxWaitsPerCaller, MaxMessageSize: 32 << 20},
		Reconnect: ReconnectConfig{InitialBackoff: Duration(time.Second), MaxBackoff: Duration(time.Minute)},
		Health:    HealthConfig{Interval: Duration(5 * time.Second), Timeout: Duration(5 * time.Second), MaxConcurrent: 8},
	}
	on := true
	want.Reconnect.LinkEvents = &on
	if !reflect.DeepEqual(got, want) || keys != 14 || !got.Reconnect.FollowLinks() || got.Health.Policy() != (HealthPolicy{}).withDefaults() {
		t.Errorf("the sample shows %d keys meaning %+v; want 14 meaning %+v", keys, got, want)
	}
}

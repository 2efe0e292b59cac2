// SPDX-License-Identifier: Apache-2.0

package service

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var wherePattern = regexp.MustCompile(`: line [1-9][0-9]* column [1-9][0-9]*: `)

// FuzzLoadConfig checks that LoadConfig never panics on any file, that
// its errors name the file and the line and column, and that what it accepts is within bounds
// (no negative limit or duration, no length above its ceiling, a known
// log level).
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"[daemon]\nlog_level = \"debug\"\n[limits]\nmax_cids = 10\nmax_options = 2\n[reconnect]\ninitial_backoff = \"1s\"\nmax_backoff = \"60s\"\n",
		"[limits]\nmax_cids = -1\n",
		"[limits]\nmax_cid_length = 64\nmax_uri_length = 1024\nmax_option_length = 300\n",
		"[limits]\nmax_uri_length = 4097\n",
		"[reconnect]\ninitial_backoff = 5\n",
		"[reconnect]\nmax_backoff = \"-1s\"\n",
		"[daemon]\nlog_level = \"loud\"\ncolour = 1\n",
		"daemon.log_level = 'loud'\n",
		"limits = { max_cids = -1 }\n",
		"[reconnect]\nmax_backoff = [1]\n",
		"[[limits]]\n",
		"\x00\xff[",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		// A new file each time: rewriting one in place makes ext4 flush
		// it on close (auto_da_alloc), which slows fuzzing a hundredfold.
		file, err := os.CreateTemp(dir, "storkeep-*.toml")
		if err != nil {
			t.Fatal(err)
		}
		path := file.Name()
		defer os.Remove(path)
		_, err = file.Write(data)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path, false)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			// Whatever is wrong with a file's content, it says where.
			if !wherePattern.MatchString(err.Error()) {
				t.Fatalf("error %q does not say where (line and column)", err)
			}
			return
		}
		l := c.Limits
		if l.MaxCIDs < 0 || l.MaxOptions < 0 ||
			l.MaxCIDLength < 0 || l.MaxCIDLength > MaxCIDLength ||
			l.MaxURILength < 0 || l.MaxURILength > MaxURILength ||
			l.MaxOptionLength < 0 || l.MaxOptionLength > MaxOptionLength ||
			time.Duration(c.Reconnect.InitialBackoff) < 0 || time.Duration(c.Reconnect.MaxBackoff) < 0 {
			t.Fatalf("accepted out-of-bounds config %+v from %q", c, data)
		}
		switch c.Daemon.LogLevel {
		case "", "debug", "info", "warn", "error":
		default:
			t.Fatalf("accepted log level %q", c.Daemon.LogLevel)
		}
	})
}

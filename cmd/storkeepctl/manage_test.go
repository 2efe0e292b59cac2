// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	skdbus "github.com/storkeep/storkeep/dbus"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadPassword(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{"newline stripped", "s3cret\n", "s3cret", ""},
		{"no newline", "s3cret", "s3cret", ""},
		{"CRLF stripped", "s3cret\r\n", "s3cret", ""},
		{"only first line", "first\nsecond\n", "first", ""},
		{"spaces kept", " pass word \n", " pass word ", ""},
		{"lone CR kept", "abc\r", "abc\r", ""},
		{"empty", "", "", "password is empty"},
		{"empty first line", "\nsecond\n", "", "password is empty"},
		{"NUL", "a\x00b\n", "", "NUL"},
		{"longest", strings.Repeat("x", maxPasswordLine) + "\r\n", strings.Repeat("x", maxPasswordLine), ""},
		{"too long", strings.Repeat("x", maxPasswordLine+1), "", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, src := range []string{"file", "stdin"} {
				var got string
				var err error
				if src == "file" {
					got, err = readPassword(writeFile(t, tt.content), strings.NewReader("unused"))
				} else {
					got, err = readPassword("-", strings.NewReader(tt.content))
				}
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("%s: error = %v, want %q", src, err, tt.wantErr)
					}
					if exitCode(err) != exitUsage {
						t.Errorf("%s: exit code %d, want %d", src, exitCode(err), exitUsage)
					}
					continue
				}
				if err != nil || got != tt.want {
					t.Errorf("%s: got %q, %v; want %q", src, got, err, tt.want)
				}
			}
		})
	}
}

func TestReadPasswordMissingFile(t *testing.T) {
	_, err := readPassword(filepath.Join(t.TempDir(), "absent"), nil)
	if err == nil || exitCode(err) != exitUsage {
		t.Errorf("error = %v (exit %d), want a usage error", err, exitCode(err))
	}
}

func TestCHAPOptions(t *testing.T) {
	pw := writeFile(t, "outpw\n")
	pwIn := writeFile(t, "inpw\n")

	opts, err := (&chapFlags{}).options(nil)
	if err != nil || len(opts) != 0 {
		t.Errorf("no CHAP: %v, %v", opts, err)
	}

	opts, err = (&chapFlags{user: "u", passwordFile: pw, userIn: "t", passwordInFile: "-"}).options(strings.NewReader("stdinpw\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		skdbus.OptCHAPUsername:   "u",
		skdbus.OptCHAPPassword:   "outpw",
		skdbus.OptCHAPUsernameIn: "t",
		skdbus.OptCHAPPasswordIn: "stdinpw",
	}
	if len(opts) != len(want) {
		t.Errorf("options = %v, want %v", opts, want)
	}
	for k, v := range want {
		if got, _ := opts[k].Value().(string); got != v {
			t.Errorf("option %s = %q, want %q", k, got, v)
		}
	}

	bad := []chapFlags{
		{user: "u"},
		{passwordFile: pw},
		{user: "u", passwordFile: pw, userIn: "t"},
		{userIn: "t", passwordInFile: pwIn},
		{user: "u", passwordFile: "-", userIn: "t", passwordInFile: "-"},
	}
	for _, f := range bad {
		if _, err := f.options(strings.NewReader("x\ny\n")); exitCode(err) != exitUsage {
			t.Errorf("%+v: error %v, want a usage error", f, err)
		}
	}
}

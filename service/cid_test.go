// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateCID(t *testing.T) {
	tests := []struct {
		name   string
		cid    string
		reason string // "" when valid
	}{
		{"one byte", "a", ""},
		{"typical", "vm-42:disk-1", ""},
		{"255 bytes", strings.Repeat("a", 255), ""},
		{"255-byte multibyte", strings.Repeat("é", 127) + "a", ""}, // 127*2+1
		{"254-byte multibyte", strings.Repeat("€", 84) + "ab", ""}, // 84*3+2
		{"newline allowed", "a\nb", ""},
		{"tab and other controls allowed", "a\tb\x01\x7f\u0085", ""},
		{"underscore and spaces", "_ a _", ""},
		{"dot-dot", "..", ""},
		{"empty", "", "CID is empty"},
		{"256 bytes", strings.Repeat("a", 256), `"` + strings.Repeat("a", 32) + `"... is 256 bytes; the limit is 255`},
		{"256-byte multibyte", strings.Repeat("é", 128), "is 256 bytes; the limit is 255"},
		{"slash", "a/b", `"a/b" contains '/'`},
		{"only slash", "/", `"/" contains '/'`},
		{"nul", "a\x00b", `"a\x00b" contains NUL`},
		{"invalid utf-8", "a\xffb", `"a\xffb" is not valid UTF-8`},
		{"truncated utf-8", "\xc3", "is not valid UTF-8"},
		{"surrogate", "\xed\xa0\x80", "is not valid UTF-8"},
		{"long with slash at end", strings.Repeat("x", 100) + "/", `"` + strings.Repeat("x", 32) + `"... contains '/'`},
		{"newline quoted escaped", "a\n/", `"a\n/" contains '/'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateCID(tc.cid)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("ValidateCID(%q) = %v; want nil", tc.cid, err)
				}
				return
			}
			var cerr *CIDError
			if !errors.As(err, &cerr) {
				t.Fatalf("ValidateCID(%q) = %v (%T); want a *CIDError", tc.cid, err, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid CID: ") || !strings.Contains(cerr.Reason, tc.reason) {
				t.Fatalf("ValidateCID(%q) = %q; want it to contain %q", tc.cid, err, tc.reason)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("ValidateCID(%q) error is %d bytes; want a short prefix only", tc.cid, len(err.Error()))
			}
			if strings.ContainsAny(err.Error(), "\x00\n") {
				t.Fatalf("ValidateCID(%q) error %q holds raw control characters", tc.cid, err)
			}
		})
	}
}

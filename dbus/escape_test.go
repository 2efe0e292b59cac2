// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// escapeCases pair strings with their escaped forms. The ones marked
// "systemd" were checked against sd_bus_path_encode of libsystemd 252,
// which uses bus_label_escape.
var escapeCases = []struct{ in, out string }{
	{"", "_"},                        // systemd
	{"abc", "abc"},                   // systemd
	{"a0", "a0"},                     // systemd
	{"A_Z-0", "A_5fZ_2d0"},           // systemd
	{"a/b", "a_2fb"},                 // systemd
	{"0abc", "_30abc"},               // systemd
	{"9", "_39"},                     // systemd
	{"_", "_5f"},                     // systemd
	{"é", "_c3_a9"},                  // systemd
	{"foo.service", "foo_2eservice"}, // systemd
	{"-.mount", "_2d_2emount"},       // systemd
	{"vm 42", "vm_2042"},             // systemd
	{"~x", "_7ex"},                   // systemd
	{"\x00", "_00"},                  // systemd can't pass NUL; CIDs can't either, but the escaping can
	{"\x0f", "_0f"},                  // two digits, unlike go-systemd's PathBusEscape
	{"\xff", "_ff"},                  // invalid UTF-8 still round-trips
	{"a\nb", "a_0ab"},
	{"__", "_5f_5f"},
	{"_5f", "_5f5f"},
}

func TestEscapePathElement(t *testing.T) {
	for _, tc := range escapeCases {
		if got := EscapePathElement(tc.in); got != tc.out {
			t.Errorf("EscapePathElement(%q) = %q; want %q", tc.in, got, tc.out)
		}
		got, err := UnescapePathElement(tc.out)
		if err != nil || got != tc.in {
			t.Errorf("UnescapePathElement(%q) = %q, %v; want %q", tc.out, got, err, tc.in)
		}
	}
}

func TestUnescapePathElementRejects(t *testing.T) {
	for _, e := range []string{
		"",       // Escape never gives the empty string
		"0abc",   // a leading digit is always escaped
		"_5F",    // upper-case hex
		"_5",     // short escape
		"a_",     // '_' at the end
		"__",     // '_' then not hex
		"_zz",    // not hex
		"_61",    // 'a' needs no escape
		"_41bc",  // 'A' neither
		"a_30",   // a digit after the start needs none
		"a-b",    // '-' is not allowed
		"a/b",    // nor '/'
		"a.b",    // nor '.'
		"é",      // nor non-ASCII
		"a b",    // nor space
		"_5f_5",  // good escape, then a short one
		"_2d_2E", // mixed case
	} {
		if got, err := UnescapePathElement(e); err == nil {
			t.Errorf("UnescapePathElement(%q) = %q; want an error", e, got)
		}
	}
}

func TestConnectionPath(t *testing.T) {
	for _, tc := range escapeCases {
		p := ConnectionPath(tc.in)
		if want := godbus.ObjectPath(ConnPrefix + tc.out); p != want {
			t.Errorf("ConnectionPath(%q) = %q; want %q", tc.in, p, want)
		}
		if !p.IsValid() {
			t.Errorf("ConnectionPath(%q) = %q is not a valid object path", tc.in, p)
		}
		if cid, ok := CIDFromPath(p); !ok || cid != tc.in {
			t.Errorf("CIDFromPath(%q) = %q, %v; want %q, true", p, cid, ok, tc.in)
		}
	}
}

func TestCIDFromPathRejects(t *testing.T) {
	for _, p := range []godbus.ObjectPath{
		"/",
		RootPath,
		RootPath + "/connection",
		ConnPrefix, // no element
		ConnPrefix + "a/b",
		ConnPrefix + "a_2fb/c",
		ConnPrefix + "_5F",
		ConnPrefix + "0abc",
		"/org/storkeep/StorKeep2/connection/a",
		"/org/freedesktop/systemd1/unit/dbus_2eservice",
	} {
		if cid, ok := CIDFromPath(p); ok {
			t.Errorf("CIDFromPath(%q) = %q, true; want false", p, cid)
		}
	}
}

// BenchmarkConnectionPath escapes the paths of 10,000 objects, as a
// GetManagedObjects reply does.
func BenchmarkConnectionPath(b *testing.B) {
	cids := make([]string, 10000)
	for i := range cids {
		cids[i] = "vm-" + strings.Repeat("x", i%40) + ".disk_" + string(rune('a'+i%26))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range cids {
			_ = ConnectionPath(c)
		}
	}
}

// FuzzPathEscape checks that escaping is a bijection between all strings
// and the valid escaped elements: every string escapes to a valid element
// that unescapes back, and every element that unescapes escapes back.
func FuzzPathEscape(f *testing.F) {
	for _, tc := range escapeCases {
		f.Add(tc.in)
		f.Add(tc.out)
	}
	f.Add("_5F")
	f.Add("a_30")
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapePathElement(s)
		if e == "" || strings.TrimLeft(e, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("EscapePathElement(%q) = %q; want [A-Za-z0-9_]+", s, e)
		}
		if back, err := UnescapePathElement(e); err != nil || back != s {
			t.Fatalf("UnescapePathElement(EscapePathElement(%q) = %q) = %q, %v", s, e, back, err)
		}
		p := ConnectionPath(s)
		if !p.IsValid() {
			t.Fatalf("ConnectionPath(%q) = %q is not a valid object path", s, p)
		}
		if cid, ok := CIDFromPath(p); !ok || cid != s {
			t.Fatalf("CIDFromPath(%q) = %q, %v; want %q", p, cid, ok, s)
		}
		if u, err := UnescapePathElement(s); err == nil {
			if again := EscapePathElement(u); again != s {
				t.Fatalf("UnescapePathElement(%q) = %q, which escapes to %q", s, u, again)
			}
		}
	})
}

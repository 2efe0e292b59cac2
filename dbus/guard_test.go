// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// godbus v5.2.4 panics, in its own goroutine, storing a map with boolean
// keys (a{bv}, valid D-Bus) into a handler's parameter: one such call
// from any local user took the daemon down (found by FuzzMethodHandlers;
// its input is in testdata/fuzz). busFilter answers such a call with an
// error instead of handing it to godbus.
func TestUnstorableFindsWhatGodbusCannotStore(t *testing.T) {
	boolKeys := map[bool]godbus.Variant{true: godbus.MakeVariant("x")}
	sigKeys := map[godbus.Signature]godbus.Variant{}
	for name, c := range map[string]struct {
		body []any
		bad  bool
	}{
		"a{bv} at the top":       {[]any{byte(1), "s", boolKeys}, true},
		"a{gv} at the top":       {[]any{sigKeys}, true},
		"a{bv} in a variant":     {[]any{"s", "p", godbus.MakeVariantWithSignature(boolKeys, godbus.ParseSignatureMust("a{bv}"))}, true},
		"a{bv} in options":       {[]any{"uri", "cid", map[string]godbus.Variant{"o": godbus.MakeVariantWithSignature(boolKeys, godbus.ParseSignatureMust("a{bv}"))}}, true},
		"a{bv} in an array":      {[]any{[]any{boolKeys}}, true},
		"ordinary Manage":        {[]any{"nfs://h/e", "c", map[string]godbus.Variant{"chap-username": godbus.MakeVariant("u")}}, false},
		"bytes and numbers":      {[]any{[]byte("abc"), uint64(7), map[uint32][]string{1: {"a"}}}, false},
		"no arguments at all":    {nil, false},
		"a nested variant, fine": {[]any{godbus.MakeVariant(godbus.MakeVariant(map[string]int32{"a": 1}))}, false},
	} {
		if why := unstorable(c.body); (why != "") != c.bad {
			t.Errorf("%s: unstorable = %q; want bad = %v", name, why, c.bad)
		}
	}
}

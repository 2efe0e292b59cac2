package dbus

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// godbus v5.2.4 panics, in its own goroutine, storing a map with boolean
// keys (a{bv}, valid D-Bus) into a handler's parameter: one such call
// from any local user took the daemon down (found by FuzzMethodHandlers;
// its input is in testdata/fuzz). guardCall empties such a call's
// arguments so that it fails its argument check instead.
func TestGuardCallEmptiesWhatGodbusCannotStore(t *testing.T) {
	boolKeys := map[bool]godbus.Variant{true: godbus.MakeVariant("x")}
	for name, c := range map[string]struct {
		body []any
		keep bool
	}{
		"a{bv} at the top":       {[]any{byte(1), "s", boolKeys}, false},
		"a{bv} in a variant":     {[]any{"s", "p", godbus.MakeVariantWithSignature(boolKeys, godbus.ParseSignatureMust("a{bv}"))}, false},
		"a{bv} in options":       {[]any{"uri", "cid", map[string]godbus.Variant{"o": godbus.MakeVariantWithSignature(boolKeys, godbus.ParseSignatureMust("a{bv}"))}}, false},
		"a{bv} in an array":      {[]any{[]any{boolKeys}}, false},
		"ordinary Manage":        {[]any{"nfs://h/e", "c", map[string]godbus.Variant{"chap-username": godbus.MakeVariant("u")}}, true},
		"bytes and numbers":      {[]any{[]byte("abc"), uint64(7), map[uint32][]string{1: {"a"}}}, true},
		"no arguments at all":    {nil, true},
		"a nested variant, fine": {[]any{godbus.MakeVariant(godbus.MakeVariant(map[string]int32{"a": 1}))}, true},
	} {
		msg := &godbus.Message{Type: godbus.TypeMethodCall, Body: c.body}
		guardCall(msg)
		if kept := msg.Body != nil || c.body == nil; kept != c.keep {
			t.Errorf("%s: body kept = %v; want %v", name, kept, c.keep)
		}
	}
	// Only calls are touched: replies and signals are ours to decode.
	sig := &godbus.Message{Type: godbus.TypeSignal, Body: []any{boolKeys}}
	if guardCall(sig); sig.Body == nil {
		t.Error("a signal's body was emptied")
	}
}

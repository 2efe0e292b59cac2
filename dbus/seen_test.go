// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// changedByVariants is how change signals were computed before
// fingerprints, from the whole previous status: per interface of cur, the
// signalled properties whose variants print differently (or that old did
// not have: its kind was another; that was a panic then, but a CID keeps
// its kind). observe must find the same.
func changedByVariants(old, cur service.Status) map[string]map[string]godbus.Variant {
	out := map[string]map[string]godbus.Variant{}
	for _, i := range connInterfaces(cur) {
		prev, _ := ifaceProps(old, i.name)
		a := variants(prev)
		changed := map[string]godbus.Variant{}
		for k, v := range variants(i.vals) {
			if pv, ok := a[k]; !notSignalled[k] && (!ok || pv.String() != v.String()) {
				changed[k] = v
			}
		}
		if len(changed) > 0 {
			out[i.name] = changed
		}
	}
	return out
}

func observedChanges(old, cur service.Status) map[string]map[string]godbus.Variant {
	var enc wireEncoder
	seen, _ := observe(nil, &old, &enc)
	_, changes := observe(&seen, &cur, &enc)
	out := map[string]map[string]godbus.Variant{}
	for _, c := range changes {
		if _, dup := out[c.iface]; dup {
			panic("two signals for one interface")
		}
		out[c.iface] = c.changed
	}
	return out
}

// statusEdits change one field of a status each (ConnectionInfo in
// several ways), by the name of the property it shows as.
var statusEdits = map[string]func(*service.Status){
	"URI":                        func(s *service.Status) { s.URI += "x" },
	"Target":                     func(s *service.Status) { s.Target += "x" },
	"Managed":                    func(s *service.Status) { s.Managed = !s.Managed },
	"Connected":                  func(s *service.Status) { s.Connected = !s.Connected },
	"State":                      func(s *service.Status) { s.State = service.StateConnecting },
	"Preexisting":                func(s *service.Status) { s.Preexisting = !s.Preexisting },
	"LastError":                  func(s *service.Status) { s.LastError = "Other" },
	"LastErrorMessage":           func(s *service.Status) { s.LastErrorMessage += "!" },
	"LastErrorTime":              func(s *service.Status) { s.LastErrorTime = s.LastErrorTime.Add(time.Microsecond) },
	"ConnectedSince":             func(s *service.Status) { s.ConnectedSince = time.UnixMicro(1) },
	"Attempts":                   func(s *service.Status) { s.Attempts++ },
	"NextAttempt":                func(s *service.Status) { s.NextAttempt = time.UnixMicro(1 << 50) },
	"ReadDelay":                  func(s *service.Status) { s.ReadDelay += time.Millisecond },
	"LastProbe":                  func(s *service.Status) { s.LastProbe = time.UnixMicro(5) },
	"ConnectionInfo/value":       func(s *service.Status) { setInfo(s, "server", "other") },
	"ConnectionInfo/key added":   func(s *service.Status) { setInfo(s, "zz", uint32(0)) },
	"ConnectionInfo/mount point": func(s *service.Status) { setInfo(s, InfoMountPoint, "/run/storkeep/nfs/elsewhere") },
	"ConnectionInfo/session":     func(s *service.Status) { setInfo(s, InfoSessionID, uint32(9)) },
	"ConnectionInfo/device": func(s *service.Status) {
		devs := map[string]string{"/dev/disk/by-path/c": "/dev/sdd"}
		if d, ok := s.Info[InfoDevices].(map[string]string); ok {
			devs = maps.Clone(d)
			for k := range devs {
				devs[k] += "1"
				break
			}
		}
		setInfo(s, InfoDevices, devs)
	},
	"Kind": func(s *service.Status) {
		if s.Kind == service.KindNFS {
			s.Kind = service.KindISCSI
		} else {
			s.Kind = service.KindNFS
		}
	},
}

// setInfo sets a key of s's ConnectionInfo in a copy of the map.
func setInfo(s *service.Status, k string, v any) {
	info := maps.Clone(s.Info)
	if info == nil {
		info = map[string]any{}
	}
	info[k] = v
	s.Info = info
}

func TestObserveFindsWhatTheWholeStatusDiffFinds(t *testing.T) {
	bases := testStatuses()
	bases = append(bases, service.Status{ID: "empty", Managed: true, Kind: service.KindNFS})
	for _, base := range bases {
		// Each edit alone, then every pair of them.
		names := slices.Sorted(maps.Keys(statusEdits))
		for i, a := range names {
			for _, b := range append([]string{""}, names[i+1:]...) {
				cur := base
				statusEdits[a](&cur)
				if b != "" {
					statusEdits[b](&cur)
				}
				want, got := changedByVariants(base, cur), observedChanges(base, cur)
				if fmt.Sprint(want) != fmt.Sprint(got) {
					t.Errorf("%s: %s %s: observe found %v, the whole-status diff %v", base.ID, a, b, got, want)
				}
			}
		}
		if got := observedChanges(base, base); len(got) != 0 {
			t.Errorf("%s: unchanged, observe found %v", base.ID, got)
		}
	}
}

// TestObserveSignalsEachPropertyAlone: a change of one property is a
// signal with that property alone, but for the ones that change with
// every read (ReadDelay, LastProbe): none.
func TestObserveSignalsEachPropertyAlone(t *testing.T) {
	base := testStatuses()[0]
	for name, edit := range statusEdits {
		if name == "Kind" || (len(name) > 15 && name[:15] == "ConnectionInfo/") {
			continue
		}
		cur := base
		edit(&cur)
		got := observedChanges(base, cur)
		if notSignalled[name] {
			if len(got) != 0 {
				t.Errorf("%s changed: signal %v, want none", name, got)
			}
			continue
		}
		if len(got) != 1 || len(got[ConnInterface]) != 1 || got[ConnInterface][name].Value() == nil {
			t.Errorf("%s changed: signal %v, want %s alone", name, got, name)
		}
	}
}

// TestSeenFieldsAreTheSignalledProperties: the fingerprinted properties
// of each kind are the ones connInterfaces gives, but ReadDelay and
// LastProbe, in its order, and fit seenProps.
func TestSeenFieldsAreTheSignalledProperties(t *testing.T) {
	for _, st := range append(testStatuses(), service.Status{Kind: "other"}) {
		var want, got []string
		for _, i := range connInterfaces(st) {
			for _, p := range i.vals {
				if !notSignalled[p.k] {
					want = append(want, i.name+"."+p.k)
				}
			}
		}
		for _, f := range seenFieldsOf(st.Kind) {
			got = append(got, f.iface+"."+f.name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s (%s): fingerprinted %v, signalled %v", st.ID, st.Kind, got, want)
		}
		if len(got) > seenProps {
			t.Errorf("%s (%s): %d signalled properties, seenProps is %d", st.ID, st.Kind, len(got), seenProps)
		}
	}
}

// TestConnectionInfoFingerprintIsTyped: ConnectionInfo values equal as
// numbers but of other types, or moved to another key, are a change.
func TestConnectionInfoFingerprintIsTyped(t *testing.T) {
	var enc wireEncoder
	a := fpInfo(map[string]any{"lun": uint32(1), "port": uint16(2)}, &enc)
	for _, m := range []map[string]any{
		{"lun": int32(1), "port": uint16(2)},
		{"lun": uint16(2), "port": uint32(1)},
		{"lun": uint32(1)},
		{"lun": uint32(1), "port": uint16(2), "x": ""},
	} {
		if fpInfo(m, &enc) == a {
			t.Errorf("%v has the fingerprint of {lun: uint32 1, port: uint16 2}", m)
		}
	}
	if fpInfo(map[string]any{"port": uint16(2), "lun": uint32(1)}, &enc) != a {
		t.Error("the same map has another fingerprint")
	}
}

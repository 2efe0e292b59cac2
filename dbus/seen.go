// SPDX-License-Identifier: Apache-2.0

package dbus

// What clients were last told of each connection object, for the change
// signals. A copy of every CID's Status (with its ConnectionInfo map) was
// most of the daemon's idle heap at 10,000 CIDs; a signal only needs to
// know which properties differ, so each property is kept as a 64-bit
// fingerprint: the value itself for numbers and booleans, a hash of its
// wire encoding for strings and maps.

import (
	"hash/maphash"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// seenProps is how many signalled properties an object has at most: the
// Connection interface's and those of its kind's interface.
const seenProps = 20

// seenObject is what clients were told of one object: its kind (which
// interface of a kind it has) and a fingerprint of each signalled
// property, in connInterfaces's order.
type seenObject struct {
	kind  service.Kind
	props [seenProps]uint64
}

// seenSeed keys the fingerprints' hash: fixed for the process, so that
// fingerprints compare across calls.
var seenSeed = maphash.MakeSeed()

// fingerprint is a 64-bit digest of a property's value: equal values give
// equal fingerprints, and different ones differ but with a chance of
// 2^-64 for strings and maps. Values compare only with values of the same
// property, so of the same type.
func fingerprint(v any) uint64 {
	switch x := v.(type) {
	case bool:
		if x {
			return 1
		}
		return 0
	case uint16:
		return uint64(x)
	case int32:
		return uint64(x)
	case uint32:
		return uint64(x)
	case int64:
		return uint64(x)
	case uint64:
		return x
	case string:
		return maphash.String(seenSeed, x)
	}
	var e wireEncoder
	if err := e.variant(v); err != nil {
		return maphash.String(seenSeed, godbus.MakeVariant(v).String())
	}
	return maphash.Bytes(seenSeed, e.b)
}

// propsChange is one PropertiesChanged signal: the interface and the
// properties of it that changed, with their new values.
type propsChange struct {
	iface   string
	changed map[string]godbus.Variant
}

// observe returns what st shows of its object, and the properties that
// differ from old, what clients were told before, grouped by interface.
// An interface old did not have (the object's kind changed) counts as
// changed whole. With old nil it only returns the new fingerprints.
func observe(old *seenObject, st service.Status) (seenObject, []propsChange) {
	cur := seenObject{kind: st.Kind}
	var out []propsChange
	slot := 0
	for _, i := range connInterfaces(st) {
		fresh := old != nil && i.name != ConnInterface && old.kind != st.Kind
		var changed map[string]godbus.Variant
		for _, p := range i.vals {
			if notSignalled[p.k] {
				continue
			}
			if slot == seenProps {
				panic("dbus: an object has more signalled properties than seenProps")
			}
			f := fingerprint(p.v)
			cur.props[slot] = f
			if old != nil && (fresh || old.props[slot] != f) {
				if changed == nil {
					changed = make(map[string]godbus.Variant)
				}
				changed[p.k] = variantOf(p.v)
			}
			slot++
		}
		if len(changed) > 0 {
			out = append(out, propsChange{i.name, changed})
		}
	}
	return cur, out
}

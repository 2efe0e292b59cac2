// SPDX-License-Identifier: Apache-2.0

package dbus

// What clients were last told of each connection object, for the change
// signals. A copy of every CID's Status (with its ConnectionInfo map) was
// most of the daemon's idle heap at 10,000 CIDs; a signal only needs to
// know which properties differ, so each property is kept as a 64-bit
// fingerprint: the value itself for numbers, booleans and times, a hash
// of strings and maps, computed from the Status's fields without building
// the properties (seeding 10,000 objects at start took 55 ms that way,
// against 21 ms for copying the statuses).

import (
	"hash/maphash"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// seenProps is how many signalled properties an object has at most: the
// Connection interface's and those of its kind's interface.
const seenProps = 17

// seenObject is what clients were told of one object: its kind (which
// interface of a kind it has) and a fingerprint of each signalled
// property, in seenFieldsOf's order.
type seenObject struct {
	kind  service.Kind
	props [seenProps]uint64
}

// seenSeed keys the fingerprints' hash: fixed for the process, so that
// fingerprints compare across calls.
var seenSeed = maphash.MakeSeed()

// A fingerprint is a 64-bit digest of a property's value: equal values
// give equal fingerprints, and different ones differ, but with a chance
// of 2^-64 for strings and maps. Values compare only with values of the
// same property, so of the same type.

func fpBool(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func fpString(s string) uint64 { return maphash.String(seenSeed, s) }

// fpInfo is the fingerprint of a ConnectionInfo map: the sum of a hash
// of each key with its value's wire encoding (type and value), which does
// not depend on the map's order, so needs no sort. enc is scratch.
func fpInfo(info map[string]any, enc *wireEncoder) uint64 {
	var sum uint64
	for k, v := range info {
		// The key and a NUL (a key has none), then the value: the bytes
		// of one pair are those of no other.
		enc.b = append(append(enc.b[:0], k...), 0)
		if err := enc.variant(v); err != nil {
			enc.b = append(enc.b, godbus.MakeVariant(v).String()...)
		}
		sum += maphash.Bytes(seenSeed, enc.b)
	}
	return sum
}

// fpDevices is fpInfo of the Devices map (by-path link to kernel node).
func fpDevices(devs map[string]string, enc *wireEncoder) uint64 {
	var sum uint64
	for k, v := range devs {
		enc.b = append(append(append(enc.b[:0], k...), 0), v...)
		sum += maphash.Bytes(seenSeed, enc.b)
	}
	return sum
}

// seenField is one signalled property: its interface and name, and its
// fingerprint in st.
type seenField struct {
	iface, name string
	fp          func(st *service.Status, enc *wireEncoder) uint64
}

// seenConn are the Connection interface's signalled properties, in
// connValues's order (a test holds the two together).
var seenConn = []seenField{
	{ConnInterface, "CID", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(st.ID) }},
	{ConnInterface, "URI", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(st.URI) }},
	{ConnInterface, "Kind", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(string(st.Kind)) }},
	{ConnInterface, "Target", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(string(st.Target)) }},
	{ConnInterface, "Managed", func(st *service.Status, _ *wireEncoder) uint64 { return fpBool(st.Managed) }},
	{ConnInterface, "Connected", func(st *service.Status, _ *wireEncoder) uint64 { return fpBool(st.Connected) }},
	{ConnInterface, "State", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(string(st.State)) }},
	{ConnInterface, "Preexisting", func(st *service.Status, _ *wireEncoder) uint64 { return fpBool(st.Preexisting) }},
	{ConnInterface, "LastError", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(st.LastError) }},
	{ConnInterface, "LastErrorMessage", func(st *service.Status, _ *wireEncoder) uint64 { return fpString(st.LastErrorMessage) }},
	{ConnInterface, "LastErrorTime", func(st *service.Status, _ *wireEncoder) uint64 { return usec(st.LastErrorTime) }},
	{ConnInterface, "ConnectedSince", func(st *service.Status, _ *wireEncoder) uint64 { return usec(st.ConnectedSince) }},
	{ConnInterface, "Attempts", func(st *service.Status, _ *wireEncoder) uint64 { return uint64(st.Attempts) }},
	{ConnInterface, "NextAttempt", func(st *service.Status, _ *wireEncoder) uint64 { return usec(st.NextAttempt) }},
	{ConnInterface, "ConnectionInfo", func(st *service.Status, enc *wireEncoder) uint64 { return fpInfo(st.Info, enc) }},
}

// seenNFS and seenISCSI are the signalled properties of the interface
// of each kind, in nfsValues's and iscsiValues's order.
var (
	seenNFS = append(seenConn[:len(seenConn):len(seenConn)],
		seenField{NFSInterface, "MountPoint", func(st *service.Status, _ *wireEncoder) uint64 {
			return fpString(infoString(st.Info, InfoMountPoint))
		}},
		seenField{NFSInterface, "MountUnit", func(st *service.Status, _ *wireEncoder) uint64 {
			return fpString(infoString(st.Info, InfoMountUnit))
		}})
	seenISCSI = append(seenConn[:len(seenConn):len(seenConn)],
		seenField{ISCSIInterface, "SessionID", func(st *service.Status, _ *wireEncoder) uint64 {
			id, _ := st.Info[InfoSessionID].(uint32)
			return uint64(id)
		}},
		seenField{ISCSIInterface, "Devices", func(st *service.Status, enc *wireEncoder) uint64 {
			devs, _ := st.Info[InfoDevices].(map[string]string)
			return fpDevices(devs, enc)
		}})
)

// seenFieldsOf are the signalled properties of an object of kind.
func seenFieldsOf(kind service.Kind) []seenField {
	switch kind {
	case service.KindNFS:
		return seenNFS
	case service.KindISCSI:
		return seenISCSI
	}
	return seenConn
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
// changed whole. With old nil it only returns the new fingerprints. It
// builds the properties' values only for a change. enc is scratch.
func observe(old *seenObject, st *service.Status, enc *wireEncoder) (seenObject, []propsChange) {
	cur := seenObject{kind: st.Kind}
	fields := seenFieldsOf(st.Kind)
	for i, f := range fields {
		cur.props[i] = f.fp(st, enc)
	}
	if old == nil {
		return cur, nil
	}
	var (
		out    []propsChange
		ifaces []ifaceValues
	)
	for i, f := range fields {
		fresh := f.iface != ConnInterface && old.kind != st.Kind
		if !fresh && old.props[i] == cur.props[i] {
			continue
		}
		if ifaces == nil {
			ifaces = connInterfaces(*st)
		}
		if len(out) == 0 || out[len(out)-1].iface != f.iface {
			out = append(out, propsChange{f.iface, map[string]godbus.Variant{}})
		}
		out[len(out)-1].changed[f.name] = variantOf(valueOf(ifaces, f))
	}
	return cur, out
}

// valueOf is the value of property f among ifaces.
func valueOf(ifaces []ifaceValues, f seenField) any {
	for _, i := range ifaces {
		if i.name != f.iface {
			continue
		}
		for _, p := range i.vals {
			if p.k == f.name {
				return p.v
			}
		}
	}
	panic("dbus: signalled property " + f.iface + "." + f.name + " has no value")
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"fmt"
	"net"
	"reflect"

	godbus "github.com/godbus/dbus/v5"
)

// newBusConn makes a godbus connection on a bus socket, with busFilter
// below godbus's decoder and replySwapper below its encoder. It is not
// authenticated yet.
func newBusConn(nc net.Conn) (*godbus.Conn, *replySwapper, *busFilter, error) {
	f := newBusFilter(nc)
	sw := newReplySwapper(f)
	conn, err := godbus.NewConn(sw)
	if err != nil {
		return nil, nil, nil, err
	}
	f.setConn(conn)
	return conn, sw, f, nil
}

// unstorable says why godbus would panic storing a call's arguments into
// a handler's parameters, in its own goroutine, where no recover of ours
// can reach, or returns "". That is a dictionary whose keys are booleans
// or signatures (valid D-Bus; godbus v5.2.4 only builds maps with string
// and number keys) that is empty: a non-empty one fails godbus's decoder
// already. busFilter answers such a call with an error.
func unstorable(body []any) string {
	for _, v := range body {
		if why := storable(reflect.ValueOf(v), 0); why != "" {
			return why
		}
	}
	return ""
}

// keysNotSupported says that dictionaries with keys of type t are not
// supported, naming t's D-Bus type.
func keysNotSupported(t reflect.Type) string {
	name := t.String()
	switch {
	case t.Kind() == reflect.Bool:
		name = `"b"`
	case t == reflect.TypeOf(godbus.Signature{}):
		name = `"g"`
	}
	return fmt.Sprintf("dictionaries with keys of type %s are not supported", name)
}

// storable returns why v holds a map with a key type godbus cannot
// handle, or "". D-Bus nests at most 64 containers; deeper is not
// storable either.
func storable(v reflect.Value, depth int) string {
	if depth > 64 {
		return "containers nested too deep"
	}
	if !v.IsValid() {
		return ""
	}
	if vr, ok := v.Interface().(godbus.Variant); ok {
		return storable(reflect.ValueOf(vr.Value()), depth+1)
	}
	switch v.Kind() {
	case reflect.Map:
		switch v.Type().Key().Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Int16, reflect.Int32, reflect.Int64, reflect.Float64,
			reflect.String, reflect.Uint, reflect.Int:
		default:
			return keysNotSupported(v.Type().Key())
		}
		it := v.MapRange()
		for it.Next() {
			if why := storable(it.Value(), depth+1); why != "" {
				return why
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "" // bytes
		}
		for i := range v.Len() {
			if why := storable(v.Index(i), depth+1); why != "" {
				return why
			}
		}
	case reflect.Interface, reflect.Pointer:
		return storable(v.Elem(), depth+1)
	}
	return ""
}

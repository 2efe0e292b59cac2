package dbus

import (
	"reflect"

	godbus "github.com/godbus/dbus/v5"
)

// connOptions are the options of every connection the server answers on.
func connOptions() []godbus.ConnOption {
	return []godbus.ConnOption{godbus.WithIncomingInterceptor(guardCall)}
}

// guardCall empties the arguments of a method call that godbus would
// panic on while storing them into a handler's parameters, in its own
// goroutine, where no recover of ours can reach: a dictionary whose keys
// are booleans (a{bv} is valid D-Bus; godbus v5.2.4 only builds maps with
// string and number keys). With no arguments the call fails its argument
// check and gets an error reply; the daemon lives on.
func guardCall(msg *godbus.Message) {
	if msg.Type != godbus.TypeMethodCall {
		return
	}
	for _, v := range msg.Body {
		if !storable(reflect.ValueOf(v), 0) {
			msg.Body = nil
			return
		}
	}
}

// storable reports whether v holds no map with a key type godbus cannot
// handle. D-Bus nests at most 64 containers; deeper is not storable either.
func storable(v reflect.Value, depth int) bool {
	if depth > 64 {
		return false
	}
	if !v.IsValid() {
		return true
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
			return false
		}
		it := v.MapRange()
		for it.Next() {
			if !storable(it.Value(), depth+1) {
				return false
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return true // bytes
		}
		for i := range v.Len() {
			if !storable(v.Index(i), depth+1) {
				return false
			}
		}
	case reflect.Interface, reflect.Pointer:
		return storable(v.Elem(), depth+1)
	}
	return true
}

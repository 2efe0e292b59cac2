package dbus

import (
	"context"
	"strconv"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

func quote(s string) string { return strconv.Quote(s) }

// usec converts a time to microseconds since the epoch; zero stays 0.
func usec(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMicro())
}

// kv is one named value of a property set or status dictionary, in a
// fixed order, as plain Go values (the wire encoder writes them directly).
type kv struct {
	k string
	v any
}

// connValues returns the Connection interface properties of st.
func connValues(st service.Status) []kv {
	return []kv{
		{"CID", st.ID},
		{"URI", st.URI},
		{"Kind", string(st.Kind)},
		{"Target", string(st.Target)},
		{"Managed", st.Managed},
		{"Connected", st.Connected},
		{"State", string(st.State)},
		{"Preexisting", st.Preexisting},
		{"LastError", st.LastError},
		{"LastErrorMessage", st.LastErrorMessage},
		{"LastErrorTime", usec(st.LastErrorTime)},
		{"ConnectedSince", usec(st.ConnectedSince)},
		{"Attempts", st.Attempts},
		{"NextAttempt", usec(st.NextAttempt)},
		{"ConnectionInfo", st.Info},
	}
}

// variantOf wraps a value of connValues or listValues for godbus.
func variantOf(v any) godbus.Variant {
	if info, ok := v.(map[string]any); ok {
		return godbus.MakeVariant(infoVariants(info))
	}
	return godbus.MakeVariant(v)
}

// connProps returns the Connection interface properties of st.
func connProps(st service.Status) map[string]godbus.Variant {
	vals := connValues(st)
	out := make(map[string]godbus.Variant, len(vals))
	for _, p := range vals {
		out[p.k] = variantOf(p.v)
	}
	return out
}

// connProp returns one Connection property.
func connProp(st service.Status, name string) (godbus.Variant, bool) {
	for _, p := range connValues(st) {
		if p.k == name {
			return variantOf(p.v), true
		}
	}
	return godbus.Variant{}, false
}

// changedProps returns the Connection properties that differ between two
// statuses of one CID.
func changedProps(old, cur service.Status) map[string]godbus.Variant {
	a, b := connProps(old), connProps(cur)
	out := make(map[string]godbus.Variant)
	for k, v := range b {
		if a[k].String() != v.String() {
			out[k] = v
		}
	}
	return out
}

func infoVariants(info map[string]any) map[string]godbus.Variant {
	out := make(map[string]godbus.Variant, len(info))
	for k, v := range info {
		out[k] = godbus.MakeVariant(v)
	}
	return out
}

// interfacesOf returns what InterfacesAdded and GetManagedObjects show of
// a connection object.
func interfacesOf(st service.Status) map[string]map[string]godbus.Variant {
	return map[string]map[string]godbus.Variant{
		ConnInterface:       connProps(st),
		PropertiesIface:     {},
		IntrospectableIface: {},
		PeerIface:           {},
	}
}

func interfaceNames() []string {
	return []string{ConnInterface, PropertiesIface, IntrospectableIface, PeerIface}
}

// objectManager implements org.freedesktop.DBus.ObjectManager at the root.
type objectManager struct{ s *Server }

// GetManagedObjects returns every connection object with its properties.
func (o objectManager) GetManagedObjects(msg godbus.Message) (map[godbus.ObjectPath]map[string]map[string]godbus.Variant, *godbus.Error) {
	list := o.s.svc.List(context.Background(), "", false)
	if o.s.swapReply(msg, "a{oa{sa{sv}}}", func(e *wireEncoder) error { return encodeManagedObjects(e, list) }) {
		return map[godbus.ObjectPath]map[string]map[string]godbus.Variant{}, nil
	}
	out := make(map[godbus.ObjectPath]map[string]map[string]godbus.Variant, len(list))
	for _, st := range list {
		if st.Managed {
			out[ConnectionPath(st.ID)] = interfacesOf(st)
		}
	}
	return out, nil
}

// properties implements org.freedesktop.DBus.Properties for the root and
// every connection object.
type properties struct{ s *Server }

func (p properties) Get(msg godbus.Message, iface, name string) (godbus.Variant, *godbus.Error) {
	if err := checkSignature(msg, "ss"); err != nil {
		return godbus.Variant{}, err
	}
	if isRoot(msg) {
		if (iface == ManagerInterface || iface == "") && name == "Version" {
			return godbus.MakeVariant(p.s.ver), nil
		}
		return godbus.Variant{}, unknownProperty(iface, name)
	}
	c, derr := cidOfPath(msg)
	if derr != nil {
		return godbus.Variant{}, derr
	}
	st, ok := p.s.svc.Status(c)
	if !ok {
		return godbus.Variant{}, unknownObject(msg)
	}
	if iface != ConnInterface && iface != "" {
		return godbus.Variant{}, unknownProperty(iface, name)
	}
	v, ok := connProp(st, name)
	if !ok {
		return godbus.Variant{}, unknownProperty(iface, name)
	}
	return v, nil
}

func (p properties) GetAll(msg godbus.Message, iface string) (map[string]godbus.Variant, *godbus.Error) {
	if err := checkSignature(msg, "s"); err != nil {
		return nil, err
	}
	if isRoot(msg) {
		if iface == ManagerInterface || iface == "" {
			return map[string]godbus.Variant{"Version": godbus.MakeVariant(p.s.ver)}, nil
		}
		return map[string]godbus.Variant{}, nil
	}
	c, derr := cidOfPath(msg)
	if derr != nil {
		return nil, derr
	}
	st, ok := p.s.svc.Status(c)
	if !ok {
		return nil, unknownObject(msg)
	}
	if iface != ConnInterface && iface != "" {
		return map[string]godbus.Variant{}, nil
	}
	return connProps(st), nil
}

func (p properties) Set(msg godbus.Message, iface, name string, _ godbus.Variant) *godbus.Error {
	return godbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly",
		[]any{"property " + quoteShort(name) + " of " + quoteShort(iface) + " is read-only"})
}

func isRoot(msg godbus.Message) bool {
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	return path == RootPath
}

func unknownProperty(iface, name string) *godbus.Error {
	return godbus.NewError("org.freedesktop.DBus.Error.UnknownProperty",
		[]any{"no property " + quoteShort(name) + " on interface " + quoteShort(iface)})
}

func unknownObject(msg godbus.Message) *godbus.Error {
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	return godbus.NewError("org.freedesktop.DBus.Error.UnknownObject",
		[]any{"no object at " + string(path) + ": the CID is not managed"})
}

// connection implements org.storkeep.StorKeep1.Connection methods.
type connection struct{ s *Server }

var noOptions = map[string]string{}

// Wait returns once the connection is up, or Timeout with the last error.
func (c connection) Wait(msg godbus.Message, timeoutUsec uint64, opts map[string]godbus.Variant) *godbus.Error {
	if err := checkSignature(msg, "ta{sv}"); err != nil {
		return err
	}
	if err := c.s.checkOptions("Wait", opts, noOptions); err != nil {
		return err
	}
	cid, derr := cidOfPath(msg)
	if derr != nil {
		return derr
	}
	d := time.Duration(min(timeoutUsec, uint64(c.s.lim.MaxWait/time.Microsecond))) * time.Microsecond
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return toError(c.s.svc.Wait(ctx, cid))
}

// Reconnect asks for an attempt now.
func (c connection) Reconnect(msg godbus.Message, opts map[string]godbus.Variant) *godbus.Error {
	if err := checkSignature(msg, "a{sv}"); err != nil {
		return err
	}
	if err := c.s.checkOptions("Reconnect", opts, noOptions); err != nil {
		return err
	}
	cid, derr := cidOfPath(msg)
	if derr != nil {
		return derr
	}
	if _, ok := c.s.svc.Status(cid); !ok {
		return toError(service.ErrUnknownCID)
	}
	if err := c.s.authorize(msg, ActionReconnect); err != nil {
		return err
	}
	return toError(c.s.svc.Reconnect(cid))
}

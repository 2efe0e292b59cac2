// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"fmt"
	"math"
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
		{"ReadDelay", readDelay(st.ReadDelay)},
		{"LastProbe", usec(st.LastProbe)},
	}
}

// notSignalled are the properties that change with every probe: clients
// read them (Get, List); a PropertiesChanged for each probe of each CID
// would flood the bus. Introspection says so (EmitsChangedSignal false).
var notSignalled = map[string]bool{"ReadDelay": true, "LastProbe": true}

// readDelay is a probe's delay in µs, as ReadDelay (u) shows it.
func readDelay(d time.Duration) uint32 {
	return uint32(min(max(d.Microseconds(), 0), math.MaxUint32))
}

// nfsValues returns the Connection.NFS interface properties of st: where
// the export is mounted and the systemd mount unit that mounts it.
func nfsValues(st service.Status) []kv {
	return []kv{
		{"MountPoint", infoString(st.Info, InfoMountPoint)},
		{"MountUnit", infoString(st.Info, InfoMountUnit)},
	}
}

// iscsiValues returns the Connection.ISCSI interface properties of st: the
// kernel's session number (0 while there is none) and the block devices,
// by-path link to kernel node.
func iscsiValues(st service.Status) []kv {
	id, _ := st.Info[InfoSessionID].(uint32)
	devs, _ := st.Info[InfoDevices].(map[string]string)
	if devs == nil {
		devs = map[string]string{}
	}
	return []kv{
		{"SessionID", id},
		{"Devices", devs},
	}
}

func infoString(info map[string]any, key string) string {
	s, _ := info[key].(string)
	return s
}

// ifaceValues is one interface of a connection object with its properties.
type ifaceValues struct {
	name string
	vals []kv
}

// connInterfaces returns the interfaces of st's object in a fixed order:
// Connection, the one of its kind, then the standard ones (no properties).
func connInterfaces(st service.Status) []ifaceValues {
	out := make([]ifaceValues, 0, 5)
	out = append(out, ifaceValues{ConnInterface, connValues(st)})
	switch st.Kind {
	case service.KindNFS:
		out = append(out, ifaceValues{NFSInterface, nfsValues(st)})
	case service.KindISCSI:
		out = append(out, ifaceValues{ISCSIInterface, iscsiValues(st)})
	}
	return append(out,
		ifaceValues{PropertiesIface, nil},
		ifaceValues{IntrospectableIface, nil},
		ifaceValues{PeerIface, nil})
}

// ifaceProps returns the properties of interface iface of st's object, or
// false if the object has no such interface. "" means Connection.
func ifaceProps(st service.Status, iface string) ([]kv, bool) {
	if iface == "" {
		iface = ConnInterface
	}
	for _, i := range connInterfaces(st) {
		if i.name == iface {
			return i.vals, true
		}
	}
	return nil, false
}

// variantOf wraps a value of connValues or listValues for godbus.
func variantOf(v any) godbus.Variant {
	if info, ok := v.(map[string]any); ok {
		return godbus.MakeVariant(infoVariants(info))
	}
	return godbus.MakeVariant(v)
}

func variants(vals []kv) map[string]godbus.Variant {
	out := make(map[string]godbus.Variant, len(vals))
	for _, p := range vals {
		out[p.k] = variantOf(p.v)
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
	out := make(map[string]map[string]godbus.Variant, 5)
	for _, i := range connInterfaces(st) {
		out[i.name] = variants(i.vals)
	}
	return out
}

// interfaceNames lists the interfaces of st's object.
func interfaceNames(st service.Status) []string {
	ifs := connInterfaces(st)
	out := make([]string, len(ifs))
	for n, i := range ifs {
		out[n] = i.name
	}
	return out
}

// objectManager implements org.freedesktop.DBus.ObjectManager at the root.
type objectManager struct{ s *Server }

// GetManagedObjects returns every connection object with its properties.
// Its reply is encoded as List's is, a chunk of statuses at a time into
// blocks (with 10,000 CIDs, all statuses at once, then the reply in one
// buffer, took the daemon's resident size past 50 MB).
func (o objectManager) GetManagedObjects(msg godbus.Message) (map[godbus.ObjectPath]map[string]map[string]godbus.Variant, *godbus.Error) {
	s := o.s
	body, _, err := s.encodeEntries(service.ListQuery{}, func(e *wireEncoder, st *service.Status) (bool, error) {
		return st.Managed, encodeObject(e, st)
	})
	switch {
	case err != nil:
		s.log.Debug("reply encoded by godbus", "reason", err)
	case body.size > s.limits().MaxMessageSize-replyHeaderRoom:
		size := body.size
		body.release()
		return nil, godbus.NewError(ErrorReplyTooLarge, []any{fmt.Sprintf(
			"the reply would be more than %d bytes, and one D-Bus message holds at most %d (limits.max_message_size); "+
				"Manager.List pages (options limit and after)", size, s.limits().MaxMessageSize)})
	case s.swapBody(msg, "a{oa{sa{sv}}}", body.blocks, body.size, body.release):
		return map[godbus.ObjectPath]map[string]map[string]godbus.Variant{}, nil
	default:
		body.release()
	}
	list := s.svc.List(context.Background(), "", false)
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

func (p properties) Get(msg godbus.Message, iface, name string) (_ godbus.Variant, refused *godbus.Error) {
	defer p.s.noteRefused(msg, &refused)
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
	if iface == "" {
		// No interface given: the first interface that has the name.
		for _, i := range connInterfaces(st) {
			for _, p := range i.vals {
				if p.k == name {
					return variantOf(p.v), nil
				}
			}
		}
		return godbus.Variant{}, unknownProperty(iface, name)
	}
	vals, _ := ifaceProps(st, iface)
	for _, p := range vals {
		if p.k == name {
			return variantOf(p.v), nil
		}
	}
	return godbus.Variant{}, unknownProperty(iface, name)
}

func (p properties) GetAll(msg godbus.Message, iface string) (_ map[string]godbus.Variant, refused *godbus.Error) {
	defer p.s.noteRefused(msg, &refused)
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
	if iface == "" {
		out := make(map[string]godbus.Variant)
		for _, i := range connInterfaces(st) {
			for k, v := range variants(i.vals) {
				out[k] = v
			}
		}
		return out, nil
	}
	vals, _ := ifaceProps(st, iface)
	return variants(vals), nil
}

func (p properties) Set(msg godbus.Message, iface, name string, _ godbus.Variant) (refused *godbus.Error) {
	defer p.s.noteRefused(msg, &refused)
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
func (c connection) Wait(msg godbus.Message, timeoutUsec uint64, opts map[string]godbus.Variant) (refused *godbus.Error) {
	defer c.s.noteRefused(msg, &refused)
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
	d := time.Duration(min(timeoutUsec, uint64(c.s.limits().MaxWait/time.Microsecond))) * time.Microsecond
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	ws, first := c.s.waits.enter(sender)
	defer c.s.waits.leave(sender, ws)
	if first {
		c.s.waits.identify(sender, ws)
	}
	key, derr := c.s.waits.admit(ws, c.s.limits().MaxWaitsPerCaller)
	if derr != nil {
		return derr
	}
	defer c.s.waits.release(key)
	// The Wait ends at its timeout or when its caller leaves the bus.
	ctx, cancel := context.WithTimeout(ws.ctx, d)
	defer cancel()
	err := c.s.svc.Wait(ctx, cid)
	if err != nil && ws.ctx.Err() != nil {
		return godbus.NewError(ErrorFailed, []any{"the caller " + sender + " left the bus"})
	}
	return toError(err)
}

// Reconnect asks for an attempt now.
func (c connection) Reconnect(msg godbus.Message, opts map[string]godbus.Variant) (refused *godbus.Error) {
	defer c.s.noteRefused(msg, &refused)
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
	if err := c.s.authorize(msg, ActionReconnect, c.s.cidDetails(string(cid))); err != nil {
		return err
	}
	return toError(c.s.svc.Reconnect(cid))
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// manager implements org.storkeep.StorKeep1.Manager at the root object.
type manager struct{ s *Server }

var manageOptions = map[string]string{
	OptCHAPUsername: "s", OptCHAPPassword: "s", OptCHAPUsernameIn: "s", OptCHAPPasswordIn: "s",
}

// Manage registers cid for uri; it replies once that is durable.
func (m manager) Manage(msg godbus.Message, uri, cid string, opts map[string]godbus.Variant) (_ godbus.ObjectPath, refused *godbus.Error) {
	defer m.s.noteRefused(msg, &refused)
	s := m.s
	if err := checkSignature(msg, "ssa{sv}"); err != nil {
		return "", err
	}
	if err := s.checkOptions("Manage", opts, manageOptions); err != nil {
		return "", err
	}
	if err := s.checkOptionLengths(opts); err != nil {
		return "", err
	}
	if err := s.checkNewCID(cid); err != nil {
		return "", err
	}
	spec, err := s.parseURI(uri)
	if err != nil {
		return "", err
	}
	if err := applyCHAP(&spec, opts); err != nil {
		return "", err
	}
	if err := s.authorize(msg, ActionManage, specDetails(cid, spec)); err != nil {
		return "", err
	}
	if _, err := s.svc.Manage(service.CID(cid), spec); err != nil {
		return "", toError(err)
	}
	return ConnectionPath(cid), nil
}

// applyCHAP moves credentials from the options into an iSCSI spec,
// refusing what the backend could not log in with (service.CHAP.Check).
func applyCHAP(spec *service.Spec, opts map[string]godbus.Variant) *godbus.Error {
	str := func(k string) string {
		if v, ok := opts[k]; ok {
			return v.Value().(string)
		}
		return ""
	}
	ch := service.CHAP{
		Username: str(OptCHAPUsername), Password: str(OptCHAPPassword),
		UsernameIn: str(OptCHAPUsernameIn), PasswordIn: str(OptCHAPPasswordIn),
	}
	if ch.Empty() {
		return nil
	}
	if spec.Kind != service.KindISCSI {
		return invalidArg("CHAP options apply only to iscsi:// URIs")
	}
	if err := ch.Check(); err != nil {
		return invalidArg("%v", err)
	}
	spec.ISCSI.CHAP = ch
	return nil
}

// Unmanage forgets cid; it replies once that is durable.
func (m manager) Unmanage(msg godbus.Message, cid string, opts map[string]godbus.Variant) (refused *godbus.Error) {
	defer m.s.noteRefused(msg, &refused)
	s := m.s
	if err := checkSignature(msg, "sa{sv}"); err != nil {
		return err
	}
	if err := s.checkOptions("Unmanage", opts, nil); err != nil {
		return err
	}
	if err := checkString("CID", cid); err != nil {
		return err
	}
	if err := s.authorize(msg, ActionManage, s.cidDetails(cid)); err != nil {
		return err
	}
	return toError(s.svc.Unmanage(service.CID(cid)))
}

// UnmanagePrefix forgets every CID that starts with prefix.
func (m manager) UnmanagePrefix(msg godbus.Message, prefix string, opts map[string]godbus.Variant) (_ []string, refused *godbus.Error) {
	defer m.s.noteRefused(msg, &refused)
	s := m.s
	if err := checkSignature(msg, "sa{sv}"); err != nil {
		return nil, err
	}
	if err := s.checkOptions("UnmanagePrefix", opts, nil); err != nil {
		return nil, err
	}
	if err := checkString("prefix", prefix); err != nil {
		return nil, err
	}
	if err := s.authorize(msg, ActionManage, map[string]string{AuthDetailPrefix: prefix}); err != nil {
		return nil, err
	}
	cids, err := s.svc.UnmanagePrefix(prefix)
	if err != nil {
		return nil, toError(err)
	}
	out := make([]string, len(cids))
	for i, c := range cids {
		out[i] = string(c)
	}
	return out, nil
}

// List returns CID -> status for the connections the options select,
// managed or not, in ID order (list.go).
func (m manager) List(msg godbus.Message, opts map[string]godbus.Variant) (_ map[string]map[string]godbus.Variant, refused *godbus.Error) {
	defer m.s.noteRefused(msg, &refused)
	s := m.s
	if err := checkSignature(msg, "a{sv}"); err != nil {
		return nil, err
	}
	if err := s.checkOptions("List", opts, listOptions); err != nil {
		return nil, err
	}
	q, err := parseListOptions(opts)
	if err != nil {
		return nil, err
	}
	return s.list(msg, q)
}

// listValues returns the List dictionary of st.
func listValues(st service.Status) []kv { return appendListValues(nil, st) }

// appendListValues appends the List dictionary of st to dst.
func appendListValues(dst []kv, st service.Status) []kv {
	return append(dst, []kv{
		{ListManaged, st.Managed},
		{ListConnected, st.Connected},
		{ListState, string(st.State)},
		{ListKind, string(st.Kind)},
		{ListURI, st.URI},
		{ListTarget, string(st.Target)},
		{ListLastError, st.LastError},
		{ListLastErrorMessage, st.LastErrorMessage},
		{ListConnectionInfo, st.Info},
		{ListReadDelay, readDelay(st.ReadDelay)},
		{ListLastProbe, usec(st.LastProbe)},
	}...)
}

func listEntry(st service.Status) map[string]godbus.Variant {
	vals := listValues(st)
	out := make(map[string]godbus.Variant, len(vals))
	for _, p := range vals {
		out[p.k] = variantOf(p.v)
	}
	return out
}

// GetConnection returns the object path of a managed CID.
func (m manager) GetConnection(msg godbus.Message, cid string) (_ godbus.ObjectPath, refused *godbus.Error) {
	defer m.s.noteRefused(msg, &refused)
	if err := checkSignature(msg, "s"); err != nil {
		return "", err
	}
	if err := checkString("CID", cid); err != nil {
		return "", err
	}
	if _, ok := m.s.svc.Status(service.CID(cid)); !ok {
		return "", godbus.NewError(ErrorUnknownCID, []any{"CID " + quoteShort(cid) + " is not managed"})
	}
	return ConnectionPath(cid), nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return strings.TrimSuffix(quote(s[:max]), `"`) + `..."`
	}
	return quote(s)
}

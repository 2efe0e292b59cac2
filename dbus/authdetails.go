package dbus

import "github.com/storkeep/storkeep/service"

// Keys of AuthRequest.Details: what a changing call acts on, passed to
// polkit as CheckAuthorization's details, so that a rule can decide by it
// (action.lookup("cid")), as systemd passes "unit" and "verb". The values
// come from the parsed URI or the managed CID, never from the caller's own
// description of them.
const (
	AuthDetailCID    = "cid"    // Manage, Unmanage, Reconnect
	AuthDetailKind   = "kind"   // "nfs" or "iscsi"; not for an unknown CID
	AuthDetailHost   = "host"   // the server or portal, canonical (lower case, IPv6 without brackets)
	AuthDetailPrefix = "prefix" // UnmanagePrefix
)

// specDetails describes cid managed (or to be managed) with spec.
func specDetails(cid string, spec service.Spec) map[string]string {
	return map[string]string{AuthDetailCID: cid, AuthDetailKind: string(spec.Kind), AuthDetailHost: spec.Host()}
}

// cidDetails describes a managed cid, or names it alone when it is not
// managed (the call will fail with UnknownCID once authorized).
func (s *Server) cidDetails(cid string) map[string]string {
	st, ok := s.svc.Status(service.CID(cid))
	if !ok {
		return map[string]string{AuthDetailCID: cid}
	}
	spec, err := service.ParseURI(st.URI)
	if err != nil {
		// A stored URI always parses; without a host the rule sees less.
		return map[string]string{AuthDetailCID: cid, AuthDetailKind: string(st.Kind)}
	}
	return specDetails(cid, spec)
}

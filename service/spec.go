// SPDX-License-Identifier: Apache-2.0

package service

// Kind names a kind of storage connection.
type Kind string

// Kinds of storage storkeep manages.
const (
	KindNFS   Kind = "nfs"
	KindISCSI Kind = "iscsi"
)

// CID is a connection ID chosen by a client: 1 to 255 bytes of valid UTF-8,
// any character but '/' and NUL.
type CID string

// TargetKey identifies one real connection on the host. CIDs whose specs
// have the same TargetKey share that connection.
type TargetKey string

// Spec is a parsed, canonical request to manage a target: what a CID asks
// for. Two Manage calls ask for the same thing exactly when their Specs are
// equal (Equal), credentials included.
type Spec struct {
	Kind Kind
	// URI is the canonical form of the request, never with credentials.
	// ParseURI(URI) gives back this Spec without its credentials.
	URI string
	// Target is the key of the real connection this spec needs.
	Target TargetKey
	NFS    *NFSSpec   // set when Kind is KindNFS
	ISCSI  *ISCSISpec // set when Kind is KindISCSI
}

// NFSSpec is what an nfs:// URI asks for.
type NFSSpec struct {
	// Server is the canonical host: a lower-case DNS name, an IPv4 address,
	// or an IPv6 address without brackets.
	Server string
	// Port is the server's NFS port; 0 means DefaultNFSPort.
	Port uint16
	// Export is the cleaned absolute export path ("/" for the v4 root).
	Export string
	// Version is "3", "4", "4.0", "4.1", "4.2" or "auto" ("" means auto).
	Version string
	// Timeo is the NFS timeout in deciseconds; 0 means the default.
	Timeo int
	// Retrans is the retry count; 0 means the default.
	Retrans int
	// Options are extra mount options, "name" or "name=value", sorted.
	Options []string
}

// ISCSISpec is what an iscsi:// URI asks for, with the CHAP credentials
// that came in the Manage options.
type ISCSISpec struct {
	// Host is the canonical portal host (as NFSSpec.Server).
	Host string
	// Port is the portal port; 0 means DefaultISCSIPort.
	Port uint16
	// IQN is the target name, lower case.
	IQN string
	// LUN is the requested LUN, or -1 for every LUN of the target.
	LUN int
	// TPGT is the target portal group tag (default 1).
	TPGT int
	// Iface is the iscsiadm interface name (default DefaultIface).
	Iface string
	// CHAP holds the credentials; never shown outside the daemon.
	CHAP CHAP
}

// Equal reports whether two specs ask for exactly the same thing,
// credentials included.
func (s Spec) Equal(o Spec) bool {
	if s.Kind != o.Kind || s.URI != o.URI || s.Target != o.Target {
		return false
	}
	if (s.NFS == nil) != (o.NFS == nil) || (s.ISCSI == nil) != (o.ISCSI == nil) {
		return false
	}
	if s.NFS != nil && !s.NFS.equal(o.NFS) {
		return false
	}
	return s.ISCSI == nil || *s.ISCSI == *o.ISCSI
}

// Compatible reports whether two specs with the same Target can share one
// real connection: for NFS the same Version, Timeo, Retrans and Options
// (one mount has one set of options); for iSCSI the same CHAP credentials
// (one session logs in once; LUNs may differ). Specs with different Kinds
// or Targets are never compatible.
func (s Spec) Compatible(o Spec) bool {
	if s.Kind != o.Kind || s.Target != o.Target {
		return false
	}
	switch {
	case s.Kind == KindNFS && s.NFS != nil && o.NFS != nil:
		return s.NFS.sameSettings(o.NFS)
	case s.Kind == KindISCSI && s.ISCSI != nil && o.ISCSI != nil:
		return s.ISCSI.CHAP == o.ISCSI.CHAP
	}
	return false
}

// Info returns the connection info shown to clients; it never holds
// credentials. Values are string, bool, uint16 or int32, so they map to
// D-Bus basic types.
//
// Identity keys are always present, with the default port filled in so
// clients need not know it. Settings left to their defaults are absent.
//
//	NFS:   server, port, export; version, timeo, retrans, options (comma-joined)
//	iSCSI: portal ("host:port", IPv6 in brackets), host, port, iqn, tpgt,
//	       iface, chap (whether CHAP is used); lun when one LUN was asked for
func (s Spec) Info() map[string]any {
	switch {
	case s.Kind == KindNFS && s.NFS != nil:
		return s.NFS.info()
	case s.Kind == KindISCSI && s.ISCSI != nil:
		return s.ISCSI.info()
	}
	return map[string]any{}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"cmp"
	"strconv"
	"strings"
)

// The well-known ports, used when a URI names none: a Spec's Port is 0
// then, so that both spellings give one Target.
const (
	DefaultNFSPort   = 2049 // RFC 7530 section 3.1
	DefaultISCSIPort = 3260 // RFC 7143 section 13.1
)

// ServerPort returns the port the NFS server listens on: Port, or
// DefaultNFSPort when the URI named none.
func (n *NFSSpec) ServerPort() uint16 { return cmp.Or(n.Port, DefaultNFSPort) }

// PortalPort returns the port of the iSCSI portal: Port, or
// DefaultISCSIPort when the URI named none.
func (i *ISCSISpec) PortalPort() uint16 { return cmp.Or(i.Port, DefaultISCSIPort) }

// HostPort writes "HOST[:PORT]" as URIs, mount sources, iscsiadm and
// net.Dial take it: an IPv6 address in brackets, then ":PORT" unless port
// is 0. host is a canonical host (Spec.NFS.Server, Spec.ISCSI.Host) or an
// IP address; its only ':' are an IPv6 address's.
//
//	"fd00::1", 3261  ->  "[fd00::1]:3261"
//	"server", 0      ->  "server"
func HostPort(host string, port uint16) string {
	var b strings.Builder
	b.Grow(len(host) + len("[]:65535"))
	writeHostPort(&b, host, port)
	return b.String()
}

func writeHostPort(b *strings.Builder, host string, port uint16) {
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(port)))
	}
}

// CutHost cuts the host off the front of s, "HOST[:...]" with an IPv6
// host in brackets, the way HostPort writes it and mount.nfs takes
// "[fd00::1]:/export". It returns the host as written but without the
// brackets, and rest: what follows the ']' of a bracketed host, or from
// the first ':' of another (":2049", ":/export", or ""). ok is false when
// a '[' has no ']'. The caller checks the host and rest.
func CutHost(s string) (host, rest string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false
		}
		return s[1:end], s[end+1:], true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i], s[i:], true
	}
	return s, "", true
}

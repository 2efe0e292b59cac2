// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"strconv"
	"strings"

	"github.com/storkeep/storkeep/service"
)

// ListHost lists every iSCSI session on the host, managed or not, from
// sysfs. Each gets the transient ID "iscsi/sessionN" and the target key
// the service computes for it: that of a target the service asked about
// when one matches (so a managed target with a DNS name is recognised),
// else the canonical key built from the session's own facts.
func (b *Backend) ListHost(ctx context.Context) ([]service.HostConnection, error) {
	sessions, err := readSessions(b.sysRoot())
	if err != nil {
		return nil, err
	}
	out := make([]service.HostConnection, 0, len(sessions))
	for _, s := range sessions {
		key, uri := b.keyOf(s)
		obs, st := observation(b.devRoot(), s, -1)
		out = append(out, service.HostConnection{
			ID:        "iscsi/session" + strconv.FormatUint(uint64(s.ID), 10),
			Kind:      service.KindISCSI,
			Target:    key,
			URI:       uri,
			Connected: s.State == stateLoggedIn && st != lunsPending,
			Info:      obs.Info,
		})
	}
	return out, nil
}

// keyOf returns the target key and URI of session s: those of a known
// target it belongs to, else the canonical ones.
func (b *Backend) keyOf(s session) (service.TargetKey, string) {
	if key, ok := b.knownTarget(s); ok {
		// A target key is the canonical URI of the whole target.
		return key, string(key)
	}
	return canonicalKey(s)
}

// knownTarget finds a target the service asked about that s belongs to.
func (b *Backend) knownTarget(s session) (service.TargetKey, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, is := range b.known {
		if matches(s, is, b.cachedAddrs(is.Host)) {
			return key, true
		}
	}
	return "", false
}

// canonicalKey is the target key the service would compute for an
// iscsi:// URI naming s: service.ParseURI of a URI built from sysfs facts.
// A session whose facts make no valid URI (an odd target name) gets the
// raw URI as its key: it can match no managed target anyway.
func canonicalKey(s session) (service.TargetKey, string) {
	raw := sessionURI(s)
	spec, err := service.ParseURI(raw)
	if err != nil {
		return service.TargetKey(raw), raw
	}
	return spec.Target, spec.URI
}

// sessionURI writes iscsi://ADDR:PORT/IQN;tpgt=N;iface=NAME for s.
func sessionURI(s session) string {
	var b strings.Builder
	b.WriteString("iscsi://")
	b.WriteString(service.HostPort(s.Address, s.Port))
	b.WriteString("/" + s.Target)
	b.WriteString(";tpgt=" + strconv.Itoa(s.TPGT))
	iface := s.Iface
	if iface == "" {
		iface = service.DefaultIface
	}
	b.WriteString(";iface=" + iface)
	return b.String()
}

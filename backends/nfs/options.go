// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"strconv"
	"strings"

	"github.com/storkeep/storkeep/service"
)

// Defaults production learned (vdsm): soft mounts that give up after about
// a minute (timeo is in deciseconds, three tries) instead of hanging for
// twenty, and no shared cache between mounts of one server, so that each
// mount keeps the options it was given.
const (
	defaultTimeo   = 100
	defaultRetrans = 3
)

// mountOptions returns the options storkeep mounts n with: the version
// made explicit, the defaults, then the URI's own options, which win over
// any default they name or conflict with.
//
//	nfs://h/e?vers=4.2  ->  nfsvers=4,minorversion=2,soft,timeo=100,retrans=3,nosharecache,nosuid,nodev,retry=0
//	nfs://h/e?vers=3    ->  nfsvers=3,nolock,soft,timeo=100,retrans=3,...
//
// retry=0: mount.nfs makes one attempt; storkeep retries with backoff.
func mountOptions(n *service.NFSSpec) string {
	has := make(map[string]bool, len(n.Options))
	for _, o := range n.Options {
		name, _, _ := strings.Cut(o, "=")
		has[name] = true
	}
	var opts []string
	add := func(o string) { opts = append(opts, o) }
	switch v := n.Version; {
	case v == "3" || v == "4":
		add("nfsvers=" + v)
	case strings.HasPrefix(v, "4."):
		add("nfsvers=4")
		add("minorversion=" + strings.TrimPrefix(v, "4."))
	}
	// Without lock, v3 would need rpc.statd on this host; a v4 mount
	// ignores the option. "auto" may end up as v3.
	if (n.Version == "3" || n.Version == "") && !has["lock"] && !has["nolock"] && !has["local_lock"] {
		add("nolock")
	}
	if !has["hard"] && !has["soft"] && !has["softerr"] {
		add("soft")
	}
	timeo, retrans := n.Timeo, n.Retrans
	if timeo == 0 {
		timeo = defaultTimeo
	}
	if retrans == 0 {
		retrans = defaultRetrans
	}
	add("timeo=" + strconv.Itoa(timeo))
	add("retrans=" + strconv.Itoa(retrans))
	if !has["sharecache"] && !has["nosharecache"] {
		add("nosharecache")
	}
	// A file server must not hand out privileges on this host (the URI
	// parser refuses suid and dev).
	for _, o := range []string{"nosuid", "nodev"} {
		if !has[o] {
			add(o)
		}
	}
	if !has["retry"] {
		add("retry=0")
	}
	if n.Port != 0 {
		add("port=" + strconv.Itoa(int(n.Port)))
	}
	opts = append(opts, n.Options...)
	return strings.Join(opts, ",")
}

// what returns the mount source for n, as mount.nfs takes it:
// "server:/export", with an IPv6 server in brackets.
func what(n *service.NFSSpec) string {
	return service.HostPort(n.Server, 0) + ":" + n.Export
}

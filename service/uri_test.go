// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func nfsSpec(uri, target string, n NFSSpec) Spec {
	return Spec{Kind: KindNFS, URI: uri, Target: TargetKey(target), NFS: &n}
}

func iscsiSpec(uri, target string, i ISCSISpec) Spec {
	return Spec{Kind: KindISCSI, URI: uri, Target: TargetKey(target), ISCSI: &i}
}

const iqn = "iqn.2003-01.org.example:t1"

// parseCases are URIs that parse, with the Spec they must give. They also
// seed FuzzParseURI.
var parseCases = []struct {
	name string
	raw  string
	want Spec
}{
	// NFS hosts and ports.
	{"nfs plain", "nfs://server.example/exports/a",
		nfsSpec("nfs://server.example/exports/a", "nfs://server.example/exports/a",
			NFSSpec{Server: "server.example", Export: "/exports/a"})},
	{"nfs host case and scheme case", "NFS://Server.EXAMPLE/exports/a",
		nfsSpec("nfs://server.example/exports/a", "nfs://server.example/exports/a",
			NFSSpec{Server: "server.example", Export: "/exports/a"})},
	{"nfs port", "nfs://server:2050/x",
		nfsSpec("nfs://server:2050/x", "nfs://server:2050/x",
			NFSSpec{Server: "server", Port: 2050, Export: "/x"})},
	{"nfs default port dropped", "nfs://server:2049/x",
		nfsSpec("nfs://server/x", "nfs://server/x", NFSSpec{Server: "server", Export: "/x"})},
	{"nfs empty port is default", "nfs://server:/x",
		nfsSpec("nfs://server/x", "nfs://server/x", NFSSpec{Server: "server", Export: "/x"})},
	{"nfs ipv4", "nfs://192.0.2.10/x",
		nfsSpec("nfs://192.0.2.10/x", "nfs://192.0.2.10/x", NFSSpec{Server: "192.0.2.10", Export: "/x"})},
	{"nfs ipv6", "nfs://[FD00:0::1]/x",
		nfsSpec("nfs://[fd00::1]/x", "nfs://[fd00::1]/x", NFSSpec{Server: "fd00::1", Export: "/x"})},
	{"nfs ipv6 port", "nfs://[fd00::1]:2050/x",
		nfsSpec("nfs://[fd00::1]:2050/x", "nfs://[fd00::1]:2050/x",
			NFSSpec{Server: "fd00::1", Port: 2050, Export: "/x"})},
	{"nfs ipv6 empty port", "nfs://[fd00::1]:/x",
		nfsSpec("nfs://[fd00::1]/x", "nfs://[fd00::1]/x", NFSSpec{Server: "fd00::1", Export: "/x"})},
	{"nfs ipv4-mapped ipv6 is ipv4", "nfs://[::ffff:192.0.2.1]/x",
		nfsSpec("nfs://192.0.2.1/x", "nfs://192.0.2.1/x", NFSSpec{Server: "192.0.2.1", Export: "/x"})},
	{"nfs digit-led label", "nfs://1and1.example/x",
		nfsSpec("nfs://1and1.example/x", "nfs://1and1.example/x", NFSSpec{Server: "1and1.example", Export: "/x"})},

	// NFS export paths.
	{"nfs root export", "nfs://h/",
		nfsSpec("nfs://h/", "nfs://h/", NFSSpec{Server: "h", Export: "/"})},
	{"nfs path cleaned", "nfs://h//exports/./a//b/",
		nfsSpec("nfs://h/exports/a/b", "nfs://h/exports/a/b", NFSSpec{Server: "h", Export: "/exports/a/b"})},
	{"nfs only dots is root", "nfs://h/./.",
		nfsSpec("nfs://h/", "nfs://h/", NFSSpec{Server: "h", Export: "/"})},
	{"nfs percent decoded and re-encoded", "nfs://h/a%20b/%3b%3F%23%25/%41",
		nfsSpec("nfs://h/a%20b/%3B%3F%23%25/A", "nfs://h/a%20b/%3B%3F%23%25/A",
			NFSSpec{Server: "h", Export: "/a b/;?#%/A"})},
	{"nfs raw space and utf-8", "nfs://h/a b/é",
		nfsSpec("nfs://h/a%20b/%C3%A9", "nfs://h/a%20b/%C3%A9", NFSSpec{Server: "h", Export: "/a b/é"})},
	{"nfs path keeps @ : & = + $", "nfs://h/a@b:c&d=e+f$g",
		nfsSpec("nfs://h/a@b:c&d=e+f$g", "nfs://h/a@b:c&d=e+f$g", NFSSpec{Server: "h", Export: "/a@b:c&d=e+f$g"})},
	{"nfs encoded slash is a separator", "nfs://h/a%2Fb",
		nfsSpec("nfs://h/a/b", "nfs://h/a/b", NFSSpec{Server: "h", Export: "/a/b"})},
	{"nfs three dots is a name", "nfs://h/.../x",
		nfsSpec("nfs://h/.../x", "nfs://h/.../x", NFSSpec{Server: "h", Export: "/.../x"})},

	// NFS settings and options.
	{"nfs settings in fixed order", "nfs://h/x?retrans=3&timeo=100&vers=4.2",
		nfsSpec("nfs://h/x?vers=4.2&timeo=100&retrans=3", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Version: "4.2", Timeo: 100, Retrans: 3})},
	{"nfs vers 3", "nfs://h/x?vers=3",
		nfsSpec("nfs://h/x?vers=3", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Version: "3"})},
	{"nfs vers 4 kept apart from 4.0", "nfs://h/x?vers=4",
		nfsSpec("nfs://h/x?vers=4", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Version: "4"})},
	{"nfs vers 4.0", "nfs://h/x?vers=4.0",
		nfsSpec("nfs://h/x?vers=4.0", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Version: "4.0"})},
	{"nfs vers 4.1", "nfs://h/x?vers=4.1",
		nfsSpec("nfs://h/x?vers=4.1", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Version: "4.1"})},
	{"nfs vers auto is the default", "nfs://h/x?vers=auto",
		nfsSpec("nfs://h/x", "nfs://h/x", NFSSpec{Server: "h", Export: "/x"})},
	{"nfs timeo and retrans bounds", "nfs://h/x?timeo=6000&retrans=100",
		nfsSpec("nfs://h/x?timeo=6000&retrans=100", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Timeo: 6000, Retrans: 100})},
	{"nfs timeo and retrans minimum", "nfs://h/x?timeo=1&retrans=1",
		nfsSpec("nfs://h/x?timeo=1&retrans=1", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Timeo: 1, Retrans: 1})},
	{"nfs extra options sorted", "nfs://h/x?rsize=65536&noatime",
		nfsSpec("nfs://h/x?noatime&rsize=65536", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Options: []string{"noatime", "rsize=65536"}})},
	{"nfs options after settings", "nfs://h/x?soft&vers=3&nolock&timeo=100",
		nfsSpec("nfs://h/x?vers=3&timeo=100&nolock&soft", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Version: "3", Timeo: 100, Options: []string{"nolock", "soft"}})},
	{"nfs empty query and items ignored", "nfs://h/x?&&soft&",
		nfsSpec("nfs://h/x?soft", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Options: []string{"soft"}})},
	{"nfs empty query", "nfs://h/x?",
		nfsSpec("nfs://h/x", "nfs://h/x", NFSSpec{Server: "h", Export: "/x"})},
	{"nfs option value escaped in URI", "nfs://h/x?sec=krb5:krb5i&fsc=a%26b+c%23",
		nfsSpec("nfs://h/x?fsc=a%26b%2Bc%23&sec=krb5:krb5i", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Options: []string{"fsc=a&b+c#", "sec=krb5:krb5i"}})},
	{"nfs option name chars", "nfs://h/x?a_b.c-d=1",
		nfsSpec("nfs://h/x?a_b.c-d=1", "nfs://h/x", NFSSpec{Server: "h", Export: "/x", Options: []string{"a_b.c-d=1"}})},
	{"nfs safe no-options", "nfs://h/x?nosuid&nodev&noexec",
		nfsSpec("nfs://h/x?nodev&noexec&nosuid", "nfs://h/x",
			NFSSpec{Server: "h", Export: "/x", Options: []string{"nodev", "noexec", "nosuid"}})},

	// iSCSI.
	{"iscsi plain", "iscsi://h/" + iqn,
		iscsiSpec("iscsi://h/"+iqn+";tpgt=1;iface=default", "iscsi://h/"+iqn+";tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: iqn, LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi proposal params", "iscsi://h/" + iqn + ";tpgt=1;iface=default",
		iscsiSpec("iscsi://h/"+iqn+";tpgt=1;iface=default", "iscsi://h/"+iqn+";tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: iqn, LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi lun", "iscsi://h/" + iqn + "/3;tpgt=2",
		iscsiSpec("iscsi://h/"+iqn+"/3;tpgt=2;iface=default", "iscsi://h/"+iqn+";tpgt=2;iface=default",
			ISCSISpec{Host: "h", IQN: iqn, LUN: 3, TPGT: 2, Iface: "default"})},
	{"iscsi query params", "iscsi://h:3261/" + iqn + "/0?iface=eth0.100&tpgt=0",
		iscsiSpec("iscsi://h:3261/"+iqn+"/0;tpgt=0;iface=eth0.100", "iscsi://h:3261/"+iqn+";tpgt=0;iface=eth0.100",
			ISCSISpec{Host: "h", Port: 3261, IQN: iqn, LUN: 0, TPGT: 0, Iface: "eth0.100"})},
	{"iscsi mixed params", "iscsi://h/" + iqn + ";iface=a?tpgt=65535",
		iscsiSpec("iscsi://h/"+iqn+";tpgt=65535;iface=a", "iscsi://h/"+iqn+";tpgt=65535;iface=a",
			ISCSISpec{Host: "h", IQN: iqn, LUN: -1, TPGT: 65535, Iface: "a"})},
	{"iscsi default port and case", "ISCSI://H.Example:3260/IQN.2003-01.ORG.Example:T1/16383/",
		iscsiSpec("iscsi://h.example/"+iqn+"/16383;tpgt=1;iface=default", "iscsi://h.example/"+iqn+";tpgt=1;iface=default",
			ISCSISpec{Host: "h.example", IQN: iqn, LUN: 16383, TPGT: 1, Iface: "default"})},
	{"iscsi ipv6 portal", "iscsi://[fd00::1]:3261/" + iqn,
		iscsiSpec("iscsi://[fd00::1]:3261/"+iqn+";tpgt=1;iface=default", "iscsi://[fd00::1]:3261/"+iqn+";tpgt=1;iface=default",
			ISCSISpec{Host: "fd00::1", Port: 3261, IQN: iqn, LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi iqn without colon", "iscsi://h/iqn.2003-01.org.example",
		iscsiSpec("iscsi://h/iqn.2003-01.org.example;tpgt=1;iface=default", "iscsi://h/iqn.2003-01.org.example;tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: "iqn.2003-01.org.example", LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi eui", "iscsi://h/eui.02004567A425678D",
		iscsiSpec("iscsi://h/eui.02004567a425678d;tpgt=1;iface=default", "iscsi://h/eui.02004567a425678d;tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: "eui.02004567a425678d", LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi naa 16", "iscsi://h/naa.52004567BA64678D",
		iscsiSpec("iscsi://h/naa.52004567ba64678d;tpgt=1;iface=default", "iscsi://h/naa.52004567ba64678d;tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: "naa.52004567ba64678d", LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi naa 32", "iscsi://h/naa.62004567BA64678D0123456789ABCDEF",
		iscsiSpec("iscsi://h/naa.62004567ba64678d0123456789abcdef;tpgt=1;iface=default",
			"iscsi://h/naa.62004567ba64678d0123456789abcdef;tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: "naa.62004567ba64678d0123456789abcdef", LUN: -1, TPGT: 1, Iface: "default"})},
	{"iscsi percent-encoded iqn", "iscsi://h/iqn.2003-01.org.example%3At1",
		iscsiSpec("iscsi://h/"+iqn+";tpgt=1;iface=default", "iscsi://h/"+iqn+";tpgt=1;iface=default",
			ISCSISpec{Host: "h", IQN: iqn, LUN: -1, TPGT: 1, Iface: "default"})},
}

func TestParseURI(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURI(tc.raw)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.raw, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseURI(%q)\n got  %s\n want %s", tc.raw, dumpSpec(got), dumpSpec(tc.want))
			}
			again, err := ParseURI(got.URI)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("ParseURI(%q) (the canonical URI) = %s, %v; want the same spec", got.URI, dumpSpec(again), err)
			}
		})
	}
}

func dumpSpec(s Spec) string {
	out := fmt.Sprintf("%s URI=%s Target=%s", s.Kind, s.URI, s.Target)
	if s.NFS != nil {
		out += fmt.Sprintf(" %+v", *s.NFS)
	}
	if s.ISCSI != nil {
		out += fmt.Sprintf(" %+v", *s.ISCSI)
	}
	return out
}

// rejectCases are URIs ParseURI refuses, with a part of the reason.
var rejectCases = []struct {
	name, raw, reason string
}{
	// Whole-URI checks.
	{"empty", "", "URI is empty"},
	{"too long", "nfs://h/" + strings.Repeat("a", 4089), "URI is 4097 bytes; the limit is 4096"},
	{"too long once encoded", "nfs://h/" + strings.Repeat(" ", 2000), "URI is 6008 bytes once normalized; the limit is 4096"},
	{"invalid utf-8", "nfs://h/\xff", "URI is not valid UTF-8"},
	{"nul", "nfs://h/a\x00", "URI contains control character U+0000"},
	{"newline", "nfs://h/a\n", "URI contains control character U+000A"},
	{"tab", "nfs://h/a\tb", "URI contains control character U+0009"},
	{"del", "nfs://h/a\x7f", "URI contains control character U+007F"},
	{"c1 control", "nfs://h/a\u0085", "URI contains control character U+0085"},
	{"unknown scheme", "http://h/x", `unknown scheme "http" (want nfs or iscsi)`},
	{"unknown scheme kept as given", "HTTP://h/x", `unknown scheme "HTTP" (want nfs or iscsi)`},
	{"missing scheme", "//h/x", "missing scheme"},
	{"host:export form without scheme", "server:/x", `unknown scheme "server"`},
	{"malformed scheme", "n fs://h/x", "malformed scheme"},
	{"no slashes", "nfs:/x", `expected "//" after "nfs:"`},
	{"fragment", "nfs://h/x#frag", "fragments (#...) are not allowed"},
	{"iscsi fragment", "iscsi://h/" + iqn + "#x", "fragments (#...) are not allowed"},

	// Hosts and ports.
	{"missing host", "nfs:///x", "missing host"},
	{"nothing after scheme", "nfs://", "missing host"},
	{"missing host before port", "nfs://:2049/x", "missing host"},
	{"underscore", "nfs://h_x/x", "host contains '_'"},
	{"label starts with hyphen", "nfs://-h/x", `host "-h" has a label that starts or ends with '-'`},
	{"label ends with hyphen", "nfs://h-.example/x", "starts or ends with '-'"},
	{"empty label", "nfs://a..b/x", `host "a..b" has an empty label`},
	{"trailing dot", "nfs://h./x", "has an empty label"},
	{"label too long", "nfs://" + strings.Repeat("a", 64) + ".example/x", "has a label longer than 63 bytes"},
	{"host too long", "nfs://" + strings.Repeat("a.", 127) + "ab/x", "host name is 256 bytes; the limit is 253"},
	{"ipv4 leading zero", "nfs://1.2.3.04/x", `host "1.2.3.04" is not a valid IPv4 address`},
	{"ipv4 out of range", "nfs://256.1.1.1/x", "is not a valid IPv4 address"},
	{"ipv4 short form", "nfs://10.1/x", "is not a valid IPv4 address"},
	{"non-ascii host", "nfs://hé/x", "host contains 'é'"},
	{"percent in host", "nfs://h%41/x", "host contains '%'"},
	{"bare ipv6", "nfs://fd00::1/x", "an IPv6 address must be in brackets"},
	{"unclosed bracket", "nfs://[fd00::1/x", "missing ']'"},
	{"ipv6 zone", "nfs://[fe80::1%25eth0]/x", "IPv6 zone IDs are not supported"},
	{"ipv4 in brackets", "nfs://[192.0.2.1]/x", `"[192.0.2.1]" is not an IPv6 address`},
	{"bad ipv6", "nfs://[fd00:::1]/x", "is not an IPv6 address"},
	{"text in brackets", "nfs://[host]/x", "brackets hold something that is not an IPv6 address"},
	{"text after bracket", "nfs://[fd00::1]x/x", "unexpected text after ']'"},
	{"unspecified ipv4", "nfs://0.0.0.0/x", "host 0.0.0.0 is not a unicast address"},
	{"unspecified ipv6", "nfs://[::]/x", "host :: is not a unicast address"},
	{"multicast ipv6", "iscsi://[ff02::1]/" + iqn, "host ff02::1 is not a unicast address"},
	{"multicast ipv4", "nfs://224.0.0.1/x", "host 224.0.0.1 is not a unicast address"},
	{"port zero", "nfs://h:0/x", "port 0 is out of range 1..65535"},
	{"port too big", "nfs://h:65536/x", "port 65536 is out of range"},
	{"port too long", "nfs://h:123456/x", "port must be a number from 1 to 65535"},
	{"port sign", "nfs://h:+1/x", "port must be a number"},
	{"proposal host:export", "nfs://server:export", "(write nfs://HOST/EXPORT, not HOST:EXPORT)"},
	{"iscsi bad port", "iscsi://h:x/" + iqn, "port must be a number from 1 to 65535"},

	// NFS export paths.
	{"nfs no path", "nfs://h", "missing export path"},
	{"nfs query without path", "nfs://h?vers=4", "missing export path"},
	{"nfs semicolon after host", "nfs://h;vers=4", "missing export path"},
	{"nfs dot-dot", "nfs://h/a/../b", "export path must not contain .."},
	{"nfs dot-dot only", "nfs://h/..", "export path must not contain .."},
	{"nfs encoded dot-dot", "nfs://h/a/%2e%2E/b", "export path must not contain .."},
	{"nfs raw semicolon", "nfs://h/x;vers=4", "';' in an export path must be written %3B"},
	{"nfs bad percent", "nfs://h/a%zz", "export path has a '%' not followed by two hex digits"},
	{"nfs short percent", "nfs://h/a%4", "export path has a '%' not followed by two hex digits"},
	{"nfs decoded nul", "nfs://h/a%00b", "export path contains control character U+0000"},
	{"nfs decoded newline", "nfs://h/a%0a", "export path contains control character U+000A"},
	{"nfs decoded c1", "nfs://h/a%C2%85", "export path contains control character U+0085"},
	{"nfs decoded invalid utf-8", "nfs://h/a%ff", "export path is not valid UTF-8"},
	{"nfs user info", "nfs://user:pw@h/x", "user info is not allowed: credentials never go in the URI"},
	{"nfs user only", "nfs://user@h/x", "chap-username and chap-password"},

	// NFS settings.
	{"vers unknown", "nfs://h/x?vers=5", `vers "5" is not supported (want 3, 4, 4.0, 4.1, 4.2 or auto)`},
	{"vers empty", "nfs://h/x?vers=", `vers "" is not supported`},
	{"vers no value", "nfs://h/x?vers", `vers "" is not supported`},
	{"vers twice", "nfs://h/x?vers=4&vers=4", `parameter "vers" given twice`},
	{"vers auto twice", "nfs://h/x?vers=auto&vers=auto", `parameter "vers" given twice`},
	{"timeo zero", "nfs://h/x?timeo=0", "timeo 0 is out of range 1..6000"},
	{"timeo too big", "nfs://h/x?timeo=6001", "timeo 6001 is out of range 1..6000"},
	{"timeo not a number", "nfs://h/x?timeo=1s", "timeo must be a number from 1 to 6000"},
	{"timeo huge", "nfs://h/x?timeo=99999999999999999999", "timeo must be a number from 1 to 6000"},
	{"timeo no value", "nfs://h/x?timeo", "timeo needs a value"},
	{"timeo twice", "nfs://h/x?timeo=1&timeo=1", `parameter "timeo" given twice`},
	{"retrans zero", "nfs://h/x?retrans=0", "retrans 0 is out of range 1..100"},
	{"retrans too big", "nfs://h/x?retrans=101", "retrans 101 is out of range 1..100"},
	{"retrans twice", "nfs://h/x?retrans=3&retrans=4", `parameter "retrans" given twice`},

	// NFS extra options.
	{"nfsvers", "nfs://h/x?nfsvers=3", `mount option "nfsvers" is not allowed: storkeep sets the version; use vers=`},
	{"minorversion", "nfs://h/x?minorversion=1", `"minorversion" is not allowed`},
	{"port option", "nfs://h/x?port=2050", `"port" is not allowed: give the port in the host part`},
	{"addr option", "nfs://h/x?addr=192.0.2.1", `"addr" is not allowed`},
	{"remount", "nfs://h/x?remount", `"remount" is not allowed: it is a mount operation`},
	{"bind", "nfs://h/x?bind", `"bind" is not allowed`},
	{"rbind", "nfs://h/x?rbind", `"rbind" is not allowed`},
	{"move", "nfs://h/x?move", `"move" is not allowed`},
	{"suid", "nfs://h/x?suid", `"suid" is not allowed: it would let files on the server gain privileges`},
	{"dev", "nfs://h/x?dev", `"dev" is not allowed`},
	{"user", "nfs://h/x?user", `"user" is not allowed: it would let unprivileged users control the mount`},
	{"users", "nfs://h/x?users", `"users" is not allowed`},
	{"owner", "nfs://h/x?owner", `"owner" is not allowed`},
	{"group", "nfs://h/x?group", `"group" is not allowed`},
	{"defaults", "nfs://h/x?defaults", `"defaults" is not allowed: it is an fstab option`},
	{"auto", "nfs://h/x?auto", `"auto" is not allowed`},
	{"noauto", "nfs://h/x?noauto", `"noauto" is not allowed`},
	{"_netdev", "nfs://h/x?_netdev", `"_netdev" is not allowed`},
	{"nofail", "nfs://h/x?nofail", `"nofail" is not allowed`},
	{"bg", "nfs://h/x?bg", `"bg" is not allowed: storkeep must see the mount finish`},
	{"helper", "nfs://h/x?helper=foo", `"helper" is not allowed`},
	{"x- option", "nfs://h/x?x-systemd.automount", `"x-systemd.automount" is not allowed: it is an fstab option`},
	{"comment", "nfs://h/x?comment=systemd.automount", `"comment" is not allowed`},
	{"comment prefix", "nfs://h/x?commentary", `"commentary" is not allowed`},
	{"upper-case name", "nfs://h/x?NoAtime", `mount option name "NoAtime" is malformed`},
	{"digit-led name", "nfs://h/x?1opt", `mount option name "1opt" is malformed`},
	{"name with comma", "nfs://h/x?a%2Cb", `mount option name "a,b" is malformed`},
	{"name with space", "nfs://h/x?a b", `mount option name "a b" is malformed`},
	{"empty name", "nfs://h/x?=1", "parameter with an empty name"},
	{"empty value", "nfs://h/x?rsize=", `mount option "rsize" has an empty value`},
	{"value with comma", "nfs://h/x?sec=sys%2Cro", `value of mount option "sec" must be printable ASCII`},
	{"value with space", "nfs://h/x?sec=a%20b", `value of mount option "sec"`},
	{"value with equals", "nfs://h/x?sec=a=b", `value of mount option "sec"`},
	{"value with double quote", `nfs://h/x?context="a"`, `value of mount option "context"`},
	{"value with quote", "nfs://h/x?context='a'", `value of mount option "context"`},
	{"value with backslash", `nfs://h/x?sec=a\b`, `value of mount option "sec"`},
	{"value non-ascii", "nfs://h/x?sec=é", `value of mount option "sec"`},
	{"value bad percent", "nfs://h/x?sec=%g0", "parameter value has a '%' not followed by two hex digits"},
	{"value decoded nul", "nfs://h/x?sec=%00", "parameter value contains control character U+0000"},
	{"soft and hard", "nfs://h/x?soft&hard", `mount options "hard" and "soft" conflict`},
	{"soft and softerr", "nfs://h/x?softerr&soft", `mount options "soft" and "softerr" conflict`},
	{"lock and nolock", "nfs://h/x?nolock&lock", `mount options "lock" and "nolock" conflict`},
	{"ro and rw", "nfs://h/x?ro&rw", `mount options "ro" and "rw" conflict`},
	{"sync and async", "nfs://h/x?sync&async", `mount options "async" and "sync" conflict`},
	{"atime and noatime", "nfs://h/x?atime&noatime", `mount options "atime" and "noatime" conflict`},
	{"option twice", "nfs://h/x?rsize=1&rsize=2", `mount option "rsize" given twice`},
	{"flag twice", "nfs://h/x?noatime&noatime", `mount option "noatime" given twice`},
	{"flag and value", "nfs://h/x?rsize&rsize.x=1&rsize=1", `mount option "rsize" given twice`},

	// iSCSI.
	{"iscsi user info", "iscsi://user:pw@h/" + iqn, "user info is not allowed"},
	{"iscsi no path", "iscsi://h", "missing target name (want iscsi://HOST/IQN)"},
	{"iscsi root path", "iscsi://h/", "missing target name"},
	{"iscsi params without path", "iscsi://h;tpgt=1", "missing target name"},
	{"iscsi query without path", "iscsi://h?tpgt=1", "missing target name"},
	{"iscsi not a name", "iscsi://h/iqn/3;tpgt=2", `target name "iqn" is not an iSCSI name`},
	{"iscsi unknown type", "iscsi://h/foo.bar", `target name "foo.bar" is not an iSCSI name`},
	{"iqn bad month", "iscsi://h/iqn.2003-13.org.x:t", "is not an iSCSI name"},
	{"iqn month zero", "iscsi://h/iqn.2003-00.org.x:t", "is not an iSCSI name"},
	{"iqn short year", "iscsi://h/iqn.03-01.org.x:t", "is not an iSCSI name"},
	{"iqn no domain", "iscsi://h/iqn.2003-01", "is not an iSCSI name"},
	{"iqn empty domain", "iscsi://h/iqn.2003-01.:t", "is not an iSCSI name"},
	{"iqn empty label", "iscsi://h/iqn.2003-01.org..x:t", "is not an iSCSI name"},
	{"iqn underscore", "iscsi://h/iqn.2003-01.org.x:t_1", "target name contains '_'"},
	{"iqn non-ascii", "iscsi://h/iqn.2003-01.org.x:é", "target name contains 'é'"},
	{"iqn decoded slash", "iscsi://h/iqn.2003-01.org.x%2Ft", "target name contains '/'"},
	{"iqn too long", "iscsi://h/iqn.2003-01.org.x:" + strings.Repeat("a", 224-len("iqn.2003-01.org.x:")), "target name is 224 bytes; the limit is 223"},
	{"eui short", "iscsi://h/eui.02004567A425678", "is not an iSCSI name"},
	{"eui not hex", "iscsi://h/eui.02004567A425678G", "is not an iSCSI name"},
	{"naa 20 hex", "iscsi://h/naa.52004567BA64678D1234", "is not an iSCSI name"},
	{"lun too big", "iscsi://h/" + iqn + "/16384", "LUN 16384 is out of range 0..16383"},
	{"lun negative", "iscsi://h/" + iqn + "/-1", "LUN must be a number from 0 to 16383"},
	{"lun not a number", "iscsi://h/" + iqn + "/x", "LUN must be a number"},
	{"too many elements", "iscsi://h/" + iqn + "/1/2", "too many path elements (want /IQN or /IQN/LUN)"},
	{"tpgt too big", "iscsi://h/" + iqn + ";tpgt=65536", "tpgt 65536 is out of range 0..65535"},
	{"tpgt empty", "iscsi://h/" + iqn + ";tpgt=", "tpgt needs a value"},
	{"tpgt no value", "iscsi://h/" + iqn + ";tpgt", "tpgt needs a value"},
	{"tpgt twice", "iscsi://h/" + iqn + ";tpgt=1?tpgt=1", `parameter "tpgt" given twice`},
	{"iface empty", "iscsi://h/" + iqn + ";iface=", "iface must be 1 to 64 of"},
	{"iface bad char", "iscsi://h/" + iqn + ";iface=a/b", "iface must be 1 to 64 of"},
	{"iface too long", "iscsi://h/" + iqn + ";iface=" + strings.Repeat("a", 65), "iface must be 1 to 64 of"},
	{"iface twice", "iscsi://h/" + iqn + ";iface=a;iface=a", `parameter "iface" given twice`},
	{"proposal portal parameter", "iscsi://host/" + iqn + ";portal=1", `unknown parameter "portal" (want tpgt or iface)`},
	{"lun parameter", "iscsi://host/" + iqn + "?lun=1", `unknown parameter "lun"`},
	{"param empty name", "iscsi://host/" + iqn + ";=1", "parameter with an empty name"},
}

func TestParseURIRejects(t *testing.T) {
	for _, tc := range rejectCases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseURI(tc.raw)
			if err == nil {
				t.Fatalf("ParseURI(%.80q) = %s; want an error", tc.raw, dumpSpec(spec))
			}
			var uerr *URIError
			if !errors.As(err, &uerr) {
				t.Fatalf("ParseURI(%.80q) error %T is not a *URIError", tc.raw, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid URI: ") || !strings.Contains(uerr.Reason, tc.reason) {
				t.Fatalf("ParseURI(%.80q) error %q; want it to contain %q", tc.raw, err, tc.reason)
			}
			if !reflect.DeepEqual(spec, Spec{}) {
				t.Fatalf("ParseURI(%.80q) returned %s with its error; want the zero Spec", tc.raw, dumpSpec(spec))
			}
		})
	}
}

// TestParseURINeverEchoesCredentials plants a password in every place user
// info can be mistaken for something else.
func TestParseURINeverEchoesCredentials(t *testing.T) {
	const pw = "s3cr3t"
	for _, raw := range []string{
		"nfs://user:s3cr3t@h/x",
		"nfs://s3cr3t@h/x",
		"nfs://user:s3cr3t@[fd00::1]:2050/x",
		"nfs://user:s3cr3t@h:bad/x",
		"nfs://user:s3cr3t@/x",
		"nfs://user:s3cr3t@",
		"NFS://user:s3cr3t@h/x#frag",
		"nfs://user:s3cr3t@h/x?vers=9",
		"nfs://[user:s3cr3t@h]/x",
		"nfs://user:s3cr3t/x@h/x",   // password holding '/': port is not quoted
		"nfs://user:s3cr3t%40h/x",   // encoded '@'
		"nfs://user%3As3cr3t%40h/x", // all of it encoded: host is not quoted
		"nfs://user:s3cr3t:x@h/x",   // extra colon
		"nfs://[user:s3cr3t]/x",     // in brackets
		"nfs://user:s3cr3t\n@h/x",   // control character
		"nfs://user:s3cr3t@h/" + strings.Repeat("a", 5000),
		"iscsi://user:s3cr3t@h/" + iqn,
		"iscsi://s3cr3t@h/" + iqn,
		"iscsi://user:s3cr3t/x@h/" + iqn, // '@' after a '/'
		"iscsi://user:s3cr3t@h/",
		"iscsi://user:s3cr3t@h:99999/" + iqn,
		"iscsi://user:s3cr3t/" + iqn,
		"iscsi://h/" + iqn + ";tpgt=1;user:s3cr3t@h",
		"http://user:s3cr3t@h/x",
		"user:s3cr3t@h:/x",
		"user:s3cr3t@h://x",
		"user:s3cr3t@h/x",
	} {
		_, err := ParseURI(raw)
		if err == nil {
			t.Errorf("ParseURI(%.80q) succeeded; want an error", raw)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("ParseURI(%.80q) error %q shows the password", raw, err)
		}
	}
}

// TestParseURIErrorsAreShort checks that quoted fragments are capped.
func TestParseURIErrorsAreShort(t *testing.T) {
	long := strings.Repeat("x", 3000)
	for _, raw := range []string{
		"nfs://h/x?" + "A" + long,
		"nfs://h/x?" + long + "=a b",
		"nfs://h/x?vers=" + long,
		"nfs://" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 64) + "/x",
		"iscsi://h/" + iqn + ";" + long + "=1",
		"iscsi://h/foo." + strings.Repeat("a", 200),
		"iscsi://h/" + strings.Repeat("é", 100),
		strings.Repeat("h", 4000) + "://h/x",
		"nfs://h/x?" + strings.Repeat("é", 1000) + "=1",
		"nfs://[" + strings.Repeat("f", 3000) + "]/x",
	} {
		_, err := ParseURI(raw)
		if err == nil {
			t.Errorf("ParseURI(%.80q...) succeeded; want an error", raw)
			continue
		}
		if len(err.Error()) > 300 {
			t.Errorf("ParseURI(%.80q...) error is %d bytes: %.200q...", raw, len(err.Error()), err)
		}
	}
}

// TestParseURISpellings checks that spellings of one request give one URI
// and one Target.
func TestParseURISpellings(t *testing.T) {
	groups := [][]string{
		{
			"nfs://server.example/exports/a",
			"nfs://Server.Example/exports/a/",
			"NFS://server.example:2049/exports/a",
			"nfs://SERVER.example:/exports//a/.",
			"nfs://server.example/./exports/%61",
		},
		{
			"nfs://[fd00::1]/x?soft&vers=3&timeo=10",
			"nfs://[FD00:0:0::1]:2049/x/?timeo=10&vers=3&soft",
			"nfs://[fd00::1]:/x?vers=3&&soft&timeo=010",
		},
		{
			"nfs://192.0.2.1/x?vers=auto",
			"nfs://[::ffff:192.0.2.1]/x",
			"nfs://192.0.2.1/x",
		},
		{
			"iscsi://h/" + iqn + ";tpgt=2;iface=x",
			"iscsi://H:3260/IQN.2003-01.ORG.EXAMPLE:T1?iface=x&tpgt=2",
			"iscsi://h/" + iqn + "/;iface=x;tpgt=2",
			"iscsi://h:/" + iqn + "?tpgt=2;iface=x",
			"iscsi://h//" + iqn + "?tpgt=02&iface=x",
		},
		{
			"iscsi://h/" + iqn + "/7",
			"iscsi://h/" + iqn + "/07/;tpgt=1;iface=default",
			"iscsi://h:3260/" + iqn + "/7?iface=default",
		},
	}
	for _, g := range groups {
		first, err := ParseURI(g[0])
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", g[0], err)
		}
		for _, raw := range g[1:] {
			got, err := ParseURI(raw)
			if err != nil {
				t.Errorf("ParseURI(%q): %v", raw, err)
				continue
			}
			if !got.Equal(first) || got.URI != first.URI || got.Target != first.Target {
				t.Errorf("ParseURI(%q) = %s\nwant the same as %q: %s", raw, dumpSpec(got), g[0], dumpSpec(first))
			}
		}
	}
}

func TestTargetIgnoresLUNAndSettings(t *testing.T) {
	pairs := [][2]string{
		{"iscsi://h/" + iqn + "/1", "iscsi://h/" + iqn + "/2"},
		{"iscsi://h/" + iqn, "iscsi://h/" + iqn + "/0"},
		{"nfs://h/x?vers=3", "nfs://h/x?soft&timeo=10"},
	}
	for _, p := range pairs {
		a, b := mustParse(t, p[0]), mustParse(t, p[1])
		if a.Target != b.Target || a.URI == b.URI {
			t.Errorf("%q and %q: Targets %q, %q and URIs %q, %q; want one Target, two URIs",
				p[0], p[1], a.Target, b.Target, a.URI, b.URI)
		}
		if target := mustParse(t, string(a.Target)); target.Target != a.Target {
			t.Errorf("ParseURI(%q).Target = %q; want the Target to be its own", a.Target, target.Target)
		}
	}
}

func mustParse(t *testing.T, raw string) Spec {
	t.Helper()
	s, err := ParseURI(raw)
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", raw, err)
	}
	return s
}

func BenchmarkParseURI(b *testing.B) {
	for _, raw := range []string{
		"nfs://server.example/exports/data?vers=4.2&timeo=100&retrans=3&soft&nosharecache",
		"iscsi://192.0.2.10:3260/" + iqn + "/3;tpgt=1;iface=default",
	} {
		b.Run(raw[:strings.Index(raw, ":")], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseURI(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits and defaults of the URI forms. The canonical forms built from them
// are API: clients store URIs and compare Targets.
const (
	// maxURILen bounds the work ParseURI does and the size of what it keeps.
	maxURILen = 4096
	// maxQuoted caps every fragment of the input quoted in an error, so a
	// huge URI can't produce a huge error.
	maxQuoted = 64

	defaultNFSPort   = 2049
	defaultISCSIPort = 3260
	defaultTPGT      = 1
	defaultIface     = "default"

	maxHostLen  = 253 // RFC 1035
	maxLabelLen = 63
	maxIQNLen   = 223 // RFC 3720 3.2.6.1
	maxLUN      = 16383
	maxTimeo    = 6000 // deciseconds: 10 minutes
	maxRetrans  = 100
	maxIfaceLen = 64

	// credentialsReason is given for any user info. It must not echo it.
	credentialsReason = "user info is not allowed: credentials never go in the URI " +
		"(iSCSI CHAP credentials go in the Manage options chap-username and chap-password)"
)

// URIError says what is wrong with a URI. Its message never contains
// credentials, and quotes at most short fragments of the input.
type URIError struct{ Reason string }

func (e *URIError) Error() string { return "invalid URI: " + e.Reason }

func uriErrorf(format string, args ...any) error {
	return &URIError{Reason: fmt.Sprintf(format, args...)}
}

// quoteFragment quotes a fragment of the input for an error message, cut to
// maxQuoted bytes (at a rune boundary) so errors stay small.
func quoteFragment(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// ParseURI parses a storage URI into its canonical Spec (without
// credentials). It accepts:
//
//	nfs://HOST[:PORT]/EXPORT[?vers=V&timeo=N&retrans=N&OPTION[=VALUE]...]
//	iscsi://HOST[:PORT]/IQN[/LUN][;tpgt=N][;iface=NAME]   (or ?tpgt=N&iface=NAME)
//
// HOST is a DNS name, an IPv4 address or a bracketed IPv6 address. User
// info is always refused: credentials travel only in the Manage options.
// Every error is a *URIError. For any URI that parses, ParseURI(spec.URI)
// gives back an equal Spec, and URIs that differ only in spelling (host
// case, default port, trailing slash, parameter style or order) give the
// same URI and Target.
func ParseURI(raw string) (Spec, error) {
	if raw == "" {
		return Spec{}, uriErrorf("URI is empty")
	}
	if len(raw) > maxURILen {
		return Spec{}, uriErrorf("URI is %d bytes; the limit is %d", len(raw), maxURILen)
	}
	if err := checkURIText("URI", raw); err != nil {
		return Spec{}, err
	}
	scheme, rest, err := splitScheme(raw)
	if err != nil {
		return Spec{}, err
	}
	if strings.IndexByte(rest, '#') >= 0 {
		return Spec{}, uriErrorf("fragments (#...) are not allowed; write '#' in a path as %%23")
	}
	var spec Spec
	if scheme == KindNFS {
		spec, err = parseNFS(rest)
	} else {
		spec, err = parseISCSI(rest)
	}
	if err != nil {
		return Spec{}, err
	}
	// Percent-encoding can make the canonical form longer than the input;
	// refuse what could not be parsed back.
	if len(spec.URI) > maxURILen {
		return Spec{}, uriErrorf("URI is %d bytes once normalized; the limit is %d", len(spec.URI), maxURILen)
	}
	return spec, nil
}

// checkURIText rejects invalid UTF-8 and control characters (C0, DEL, C1):
// they have no business in a URI, a mount source or a log line.
func checkURIText(what, s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return uriErrorf("%s contains control character %U", what, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return uriErrorf("%s is not valid UTF-8", what)
		}
		if r <= 0x9f {
			return uriErrorf("%s contains control character %U", what, r)
		}
		i += n
	}
	return nil
}

// splitScheme returns the lower-case scheme as a Kind and what follows "://".
func splitScheme(raw string) (Kind, string, error) {
	i := strings.IndexByte(raw, ':')
	if i <= 0 {
		return "", "", uriErrorf("missing scheme (want nfs:// or iscsi://)")
	}
	// Only quote a well-formed scheme: text before a ':' may be user info
	// ("user:password@host") when the scheme was left out.
	scheme := raw[:i]
	if !validScheme(scheme) {
		return "", "", uriErrorf("missing or malformed scheme (want nfs:// or iscsi://)")
	}
	kind := Kind(strings.ToLower(scheme))
	if kind != KindNFS && kind != KindISCSI {
		return "", "", uriErrorf("unknown scheme %s (want nfs or iscsi)", quoteFragment(scheme))
	}
	rest, ok := strings.CutPrefix(raw[i+1:], "//")
	if !ok {
		return "", "", uriErrorf("expected \"//\" after %q", string(kind)+":")
	}
	return kind, rest, nil
}

// validScheme reports whether s is an RFC 3986 scheme.
func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if asciiAlpha(c) || i > 0 && (asciiDigit(c) || c == '+' || c == '-' || c == '.') {
			continue
		}
		return false
	}
	return true
}

// splitAuthority splits "HOST[:PORT]" from what follows it.
func splitAuthority(rest string) (auth, after string) {
	if i := strings.IndexAny(rest, "/?;"); i >= 0 {
		return rest[:i], rest[i:]
	}
	return rest, ""
}

// parseHostPort parses the authority into a canonical host and a port, 0
// when it is the default. portHint is added to a bad-port error.
func parseHostPort(auth string, defPort uint16, portHint string) (string, uint16, error) {
	if auth == "" {
		return "", 0, uriErrorf("missing host")
	}
	var host, portText string
	var err error
	if auth[0] == '[' {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return "", 0, uriErrorf("missing ']' after IPv6 address")
		}
		if host, err = parseIPv6(auth[1:end]); err != nil {
			return "", 0, err
		}
		after := auth[end+1:]
		if after != "" && after[0] != ':' {
			return "", 0, uriErrorf("unexpected text after ']' (want :PORT or a path)")
		}
		if after != "" {
			portText = after[1:]
		}
	} else {
		name, p, _ := strings.Cut(auth, ":")
		if strings.IndexByte(p, ':') >= 0 {
			return "", 0, uriErrorf("an IPv6 address must be in brackets: [ADDRESS]")
		}
		if host, err = parseHostName(name); err != nil {
			return "", 0, err
		}
		portText = p
	}
	port, err := parsePort(portText, defPort, portHint)
	return host, port, err
}

// parseIPv6 canonicalizes a bracketed address. An IPv4-mapped address
// becomes plain IPv4, so both spellings give one Target.
func parseIPv6(s string) (string, error) {
	if strings.IndexByte(s, '%') >= 0 {
		return "", uriErrorf("IPv6 zone IDs are not supported")
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || !addr.Is6() {
		if allBytes(s, ipv6Char) {
			return "", uriErrorf("%s is not an IPv6 address", quoteFragment("["+s+"]"))
		}
		return "", uriErrorf("brackets hold something that is not an IPv6 address")
	}
	return unicastHost(addr.Unmap())
}

// unicastHost refuses addresses no server can have.
func unicastHost(addr netip.Addr) (string, error) {
	if addr.IsUnspecified() || addr.IsMulticast() {
		return "", uriErrorf("host %s is not a unicast address", addr)
	}
	return addr.String(), nil
}

// parseHostName accepts a DNS name (RFC 1123 labels, lower-cased) or a
// dotted-quad IPv4 address. A name whose last label is numeric must be a
// valid IPv4 address: resolvers read "10.1" or "1.2.3.010" as addresses,
// and two spellings of one address must not give two Targets.
func parseHostName(s string) (string, error) {
	if s == "" {
		return "", uriErrorf("missing host")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if asciiAlpha(c) || asciiDigit(c) || c == '-' || c == '.' {
			continue
		}
		// Name only the offending character: the host may be garbled user
		// info ("user%3Apassword").
		r, _ := utf8.DecodeRuneInString(s[i:])
		if c == '_' {
			return "", uriErrorf("host contains '_', which DNS host names can't")
		}
		return "", uriErrorf("host contains %q; want a DNS name, IPv4 address or [IPv6 address]", r)
	}
	if len(s) > maxHostLen {
		return "", uriErrorf("host name is %d bytes; the limit is %d", len(s), maxHostLen)
	}
	host := strings.ToLower(s)
	last := ""
	for label := range strings.SplitSeq(host, ".") {
		if err := checkHostLabel(host, label); err != nil {
			return "", err
		}
		last = label
	}
	if !allBytes(last, asciiDigit) {
		return host, nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is4() {
		return "", uriErrorf("host %s is not a valid IPv4 address", quoteFragment(host))
	}
	return unicastHost(addr)
}

func checkHostLabel(host, label string) error {
	switch {
	case label == "":
		return uriErrorf("host %s has an empty label", quoteFragment(host))
	case len(label) > maxLabelLen:
		return uriErrorf("host %s has a label longer than %d bytes", quoteFragment(host), maxLabelLen)
	case label[0] == '-' || label[len(label)-1] == '-':
		return uriErrorf("host %s has a label that starts or ends with '-'", quoteFragment(host))
	}
	return nil
}

// parsePort returns 0 for an empty or default port. It never quotes a port
// that is not a number: that text may be a password ("user:password/...").
func parsePort(s string, def uint16, hint string) (uint16, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > 5 || !allBytes(s, asciiDigit) {
		return 0, uriErrorf("port must be a number from 1 to 65535%s", hint)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, uriErrorf("port %d is out of range 1..65535", n)
	}
	if uint16(n) == def {
		return 0, nil
	}
	return uint16(n), nil
}

// percentDecode decodes %XX escapes; what names the part for errors.
func percentDecode(what, s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !hexDigit(s[i+1]) || !hexDigit(s[i+2]) {
			return "", uriErrorf("%s has a '%%' not followed by two hex digits", what)
		}
		b.WriteByte(unhexDigit(s[i+1])<<4 | unhexDigit(s[i+2]))
		i += 2
	}
	d := b.String()
	// Decoding may produce what the raw check rejected.
	if err := checkURIText(what, d); err != nil {
		return "", err
	}
	return d, nil
}

// writeURIHost writes a canonical host, bracketing IPv6, and a non-default port.
func writeURIHost(b *strings.Builder, host string, port uint16) {
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

// writePercentEncoded writes s, percent-encoding (upper-case hex) every byte
// for which safe is false.
func writePercentEncoded(b *strings.Builder, s string, safe func(byte) bool) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
}

// exportPathChar reports bytes left as they are in a canonical export path:
// '/' and what url.PathEscape leaves alone in a path segment.
func exportPathChar(c byte) bool {
	switch c {
	case '/', '-', '.', '_', '~', ':', '@', '&', '=', '+', '$':
		return true
	}
	return asciiAlpha(c) || asciiDigit(c)
}

// optionValueURIChar reports bytes left as they are in a canonical option value;
// '+' and the query delimiters are encoded so no reader misreads them.
func optionValueURIChar(c byte) bool {
	switch c {
	case '-', '.', '_', '~', ':', '/', '@', '!', '$', '(', ')', '*':
		return true
	}
	return asciiAlpha(c) || asciiDigit(c)
}

func asciiAlpha(c byte) bool    { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func asciiDigit(c byte) bool    { return '0' <= c && c <= '9' }
func lowerHexDigit(c byte) bool { return asciiDigit(c) || 'a' <= c && c <= 'f' }
func hexDigit(c byte) bool      { return lowerHexDigit(c) || 'A' <= c && c <= 'F' }
func ipv6Char(c byte) bool      { return hexDigit(c) || c == ':' || c == '.' }

func unhexDigit(c byte) byte {
	switch {
	case asciiDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// parseBoundedInt parses a decimal in [lo, hi]; name is used in errors.
// Only digits are accepted: no sign, no spaces.
func parseBoundedInt(name, s string, lo, hi int) (int, error) {
	if s == "" {
		return 0, uriErrorf("%s needs a value", name)
	}
	if len(s) > 6 || !allBytes(s, asciiDigit) {
		return 0, uriErrorf("%s must be a number from %d to %d", name, lo, hi)
	}
	n, _ := strconv.Atoi(s)
	if n < lo || n > hi {
		return 0, uriErrorf("%s %d is out of range %d..%d", name, n, lo, hi)
	}
	return n, nil
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

func (n *NFSSpec) equal(o *NFSSpec) bool {
	return n.Server == o.Server && n.Port == o.Port && n.Export == o.Export &&
		n.sameSettings(o)
}

// sameSettings compares what a mount of one export may differ in.
func (n *NFSSpec) sameSettings(o *NFSSpec) bool {
	return n.Version == o.Version && n.Timeo == o.Timeo && n.Retrans == o.Retrans &&
		slices.Equal(n.Options, o.Options)
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

func (n *NFSSpec) info() map[string]any {
	m := map[string]any{
		"server": n.Server,
		"port":   portOrDefault(n.Port, defaultNFSPort),
		"export": n.Export,
	}
	if n.Version != "" {
		m["version"] = n.Version
	}
	if n.Timeo != 0 {
		m["timeo"] = int32(n.Timeo)
	}
	if n.Retrans != 0 {
		m["retrans"] = int32(n.Retrans)
	}
	if len(n.Options) > 0 {
		m["options"] = strings.Join(n.Options, ",")
	}
	return m
}

func (i *ISCSISpec) info() map[string]any {
	port := portOrDefault(i.Port, defaultISCSIPort)
	var b strings.Builder
	writeURIHost(&b, i.Host, port)
	m := map[string]any{
		"portal": b.String(),
		"host":   i.Host,
		"port":   port,
		"iqn":    i.IQN,
		"tpgt":   int32(i.TPGT),
		"iface":  i.Iface,
		"chap":   !i.CHAP.Empty(),
	}
	if i.LUN >= 0 {
		m["lun"] = int32(i.LUN)
	}
	return m
}

func portOrDefault(p, def uint16) uint16 {
	if p == 0 {
		return def
	}
	return p
}

// nfsHint is added to a bad-port error: "nfs://server:export" (the 2012
// proposal's spelling) puts the export where the port goes.
const nfsHint = " (write nfs://HOST/EXPORT, not HOST:EXPORT)"

// parseNFS parses what follows "nfs://".
func parseNFS(rest string) (Spec, error) {
	auth, after := splitAuthority(rest)
	if strings.IndexByte(auth, '@') >= 0 {
		return Spec{}, uriErrorf("%s", credentialsReason)
	}
	host, port, err := parseHostPort(auth, defaultNFSPort, nfsHint)
	if err != nil {
		return Spec{}, err
	}
	rawPath, query, _ := strings.Cut(after, "?")
	export, err := cleanExport(rawPath)
	if err != nil {
		return Spec{}, err
	}
	n := &NFSSpec{Server: host, Port: port, Export: export}
	if err := parseNFSQuery(n, query); err != nil {
		return Spec{}, err
	}
	target := nfsTarget(n)
	return Spec{
		Kind:   KindNFS,
		URI:    nfsURI(target, n),
		Target: TargetKey(target),
		NFS:    n,
	}, nil
}

// cleanExport decodes and cleans the export path: "//" and "." elements
// and a trailing "/" go, ".." is refused (the server resolves paths; a
// client-side ".." would make two spellings of one export).
func cleanExport(raw string) (string, error) {
	if raw == "" || raw[0] != '/' {
		return "", uriErrorf("missing export path (want nfs://HOST/EXPORT)")
	}
	// A raw ';' is almost always a misplaced iSCSI-style parameter.
	if strings.IndexByte(raw, ';') >= 0 {
		return "", uriErrorf("';' in an export path must be written %%3B; mount options go after '?'")
	}
	p, err := percentDecode("export path", raw)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(p))
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "", ".":
			continue
		case "..":
			return "", uriErrorf("export path must not contain ..")
		}
		b.WriteByte('/')
		b.WriteString(elem)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// parseNFSQuery fills the settings and extra options of n from the query.
func parseNFSQuery(n *NFSSpec, query string) error {
	var names []string
	var seenVers bool
	for item := range strings.SplitSeq(query, "&") {
		if item == "" {
			continue
		}
		name, value, hasValue, err := splitURIParam(item)
		if err != nil {
			return err
		}
		switch name {
		case "vers":
			if seenVers {
				return uriErrorf("parameter \"vers\" given twice")
			}
			seenVers = true
			if n.Version, err = parseVers(value); err != nil {
				return err
			}
		case "timeo":
			if n.Timeo != 0 {
				return uriErrorf("parameter \"timeo\" given twice")
			}
			if n.Timeo, err = parseBoundedInt("timeo", value, 1, maxTimeo); err != nil {
				return err
			}
		case "retrans":
			if n.Retrans != 0 {
				return uriErrorf("parameter \"retrans\" given twice")
			}
			if n.Retrans, err = parseBoundedInt("retrans", value, 1, maxRetrans); err != nil {
				return err
			}
		default:
			if err := checkOption(name, value, hasValue); err != nil {
				return err
			}
			names = append(names, name)
			if hasValue {
				name += "=" + value
			}
			n.Options = append(n.Options, name)
		}
	}
	if err := checkOptionSet(names); err != nil {
		return err
	}
	slices.Sort(n.Options)
	return nil
}

// splitURIParam splits and decodes "name[=value]".
func splitURIParam(item string) (name, value string, hasValue bool, err error) {
	rawName, rawValue, hasValue := strings.Cut(item, "=")
	if name, err = percentDecode("parameter name", rawName); err != nil {
		return "", "", false, err
	}
	if name == "" {
		return "", "", false, uriErrorf("parameter with an empty name")
	}
	if value, err = percentDecode("parameter value", rawValue); err != nil {
		return "", "", false, err
	}
	return name, value, hasValue, nil
}

// parseVers accepts the versions mount.nfs knows. "auto" is stored as ""
// (the zero value, also meaning auto) so that "?vers=auto" and no vers
// ask for the same thing.
func parseVers(v string) (string, error) {
	switch v {
	case "3", "4", "4.0", "4.1", "4.2":
		return v, nil
	case "auto":
		return "", nil
	}
	return "", uriErrorf("vers %s is not supported (want 3, 4, 4.0, 4.1, 4.2 or auto)", quoteFragment(v))
}

// checkOption validates one extra mount option. Values are restricted so
// that an option can't smuggle in another (',') or be misparsed by the
// mount helper (quotes, backslash, space).
func checkOption(name, value string, hasValue bool) error {
	if why := refusedOption(name); why != "" {
		return uriErrorf("mount option %s is not allowed: %s", quoteFragment(name), why)
	}
	if !asciiAlpha(name[0]) || !allBytes(name, isOptionNameChar) {
		return uriErrorf("mount option name %s is malformed (want a lower-case letter, then a-z, 0-9, '_', '.' or '-')", quoteFragment(name))
	}
	if !hasValue {
		return nil
	}
	if value == "" {
		return uriErrorf("mount option %s has an empty value", quoteFragment(name))
	}
	if !allBytes(value, isOptionValueChar) {
		return uriErrorf("value of mount option %s must be printable ASCII without space, ',', '=', quotes or '\\'", quoteFragment(name))
	}
	return nil
}

// refusedOption says why storkeep refuses a mount option, or "" when it
// doesn't: storkeep owns some options, and others would weaken the host.
func refusedOption(name string) string {
	switch name {
	case "nfsvers", "minorversion":
		return "storkeep sets the version; use vers="
	case "port":
		return "give the port in the host part, nfs://HOST:PORT/EXPORT"
	case "addr":
		return "the server comes from the host part of the URI"
	case "remount", "bind", "rbind", "move":
		return "it is a mount operation, not an NFS option"
	case "suid", "dev":
		return "it would let files on the server gain privileges on this host"
	case "user", "users", "owner", "group":
		return "it would let unprivileged users control the mount"
	case "defaults", "auto", "noauto", "_netdev", "nofail":
		return "it is an fstab option; storkeep manages the mount itself"
	case "bg":
		return "storkeep must see the mount finish"
	case "helper":
		return "storkeep chooses the mount helper"
	}
	if strings.HasPrefix(name, "x-") || strings.HasPrefix(name, "comment") {
		return "it is an fstab option; storkeep manages the mount itself"
	}
	return ""
}

func isOptionNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || asciiDigit(c) || c == '_' || c == '.' || c == '-'
}

func isOptionValueChar(c byte) bool {
	switch c {
	case ',', '=', '"', '\'', '\\':
		return false
	}
	return '!' <= c && c <= '~'
}

// exclusiveGroup numbers the sets of options of which one mount may have
// at most one; 0 means none. Options named X and noX also exclude each other.
func exclusiveGroup(name string) int {
	switch name {
	case "hard", "soft", "softerr":
		return 1
	case "ro", "rw":
		return 2
	case "async", "sync":
		return 3
	}
	return 0
}

// checkOptionSet refuses repeated and conflicting option names. It sorts
// names.
func checkOptionSet(names []string) error {
	slices.Sort(names)
	var firstOfGroup [4]string
	for i, name := range names {
		if i > 0 && names[i-1] == name {
			return uriErrorf("mount option %s given twice", quoteFragment(name))
		}
		if pos, ok := strings.CutPrefix(name, "no"); ok {
			if _, found := slices.BinarySearch(names, pos); found {
				return uriErrorf("mount options %s and %s conflict", quoteFragment(pos), quoteFragment(name))
			}
		}
		if g := exclusiveGroup(name); g != 0 {
			if first := firstOfGroup[g]; first != "" {
				return uriErrorf("mount options %s and %s conflict", quoteFragment(first), quoteFragment(name))
			}
			firstOfGroup[g] = name
		}
	}
	return nil
}

// nfsTarget builds "nfs://HOST[:PORT]EXPORT".
func nfsTarget(n *NFSSpec) string {
	var b strings.Builder
	b.Grow(len("nfs://[]:65535") + len(n.Server) + 3*len(n.Export))
	b.WriteString("nfs://")
	writeURIHost(&b, n.Server, n.Port)
	writePercentEncoded(&b, n.Export, exportPathChar)
	return b.String()
}

// nfsURI appends the settings, in a fixed order, to the target.
func nfsURI(target string, n *NFSSpec) string {
	if n.Version == "" && n.Timeo == 0 && n.Retrans == 0 && len(n.Options) == 0 {
		return target
	}
	size := len(target) + len("?vers=4.2&timeo=6000&retrans=100")
	for _, opt := range n.Options {
		size += 1 + 3*len(opt) // worst case: every byte encoded
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(target)
	sep := byte('?')
	param := func(name, value string) {
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(name)
		if value != "" {
			b.WriteByte('=')
			writePercentEncoded(&b, value, optionValueURIChar)
		}
	}
	if n.Version != "" {
		param("vers", n.Version)
	}
	if n.Timeo != 0 {
		param("timeo", strconv.Itoa(n.Timeo))
	}
	if n.Retrans != 0 {
		param("retrans", strconv.Itoa(n.Retrans))
	}
	for _, opt := range n.Options {
		name, value, _ := strings.Cut(opt, "=")
		param(name, value)
	}
	return b.String()
}

// parseISCSI parses what follows "iscsi://".
func parseISCSI(rest string) (Spec, error) {
	// No part of an iSCSI URI may hold '@', so any '@' is user info, even
	// one after a password that contains '/'.
	if strings.IndexByte(rest, '@') >= 0 {
		return Spec{}, uriErrorf("%s", credentialsReason)
	}
	auth, after := splitAuthority(rest)
	host, port, err := parseHostPort(auth, defaultISCSIPort, "")
	if err != nil {
		return Spec{}, err
	}
	rawPath, params := after, ""
	if i := strings.IndexAny(after, ";?"); i >= 0 {
		rawPath, params = after[:i], after[i:]
	}
	i := &ISCSISpec{Host: host, Port: port, LUN: -1, TPGT: defaultTPGT, Iface: defaultIface}
	if err := parseISCSIPath(i, rawPath); err != nil {
		return Spec{}, err
	}
	if err := parseISCSIParams(i, params); err != nil {
		return Spec{}, err
	}
	target, uri := iscsiForms(i)
	return Spec{Kind: KindISCSI, URI: uri, Target: TargetKey(target), ISCSI: i}, nil
}

// parseISCSIPath parses "/IQN[/LUN]"; empty elements are ignored.
func parseISCSIPath(i *ISCSISpec, raw string) error {
	var elems [2]string
	n := 0
	for elem := range strings.SplitSeq(raw, "/") {
		if elem == "" {
			continue
		}
		if n == len(elems) {
			return uriErrorf("too many path elements (want /IQN or /IQN/LUN)")
		}
		elems[n] = elem
		n++
	}
	if n == 0 {
		return uriErrorf("missing target name (want iscsi://HOST/IQN)")
	}
	name, err := percentDecode("target name", elems[0])
	if err != nil {
		return err
	}
	if i.IQN, err = canonicalISCSIName(name); err != nil {
		return err
	}
	if n == 2 {
		if i.LUN, err = parseBoundedInt("LUN", elems[1], 0, maxLUN); err != nil {
			return err
		}
	}
	return nil
}

// parseISCSIParams parses ";key=value" and "?key=value" parameters,
// separated by ';' or '&', in any order and mix.
func parseISCSIParams(i *ISCSISpec, params string) error {
	var seenTPGT, seenIface bool
	for _, item := range strings.FieldsFunc(params, isISCSIParamSep) {
		key, value, _, err := splitURIParam(item)
		if err != nil {
			return err
		}
		switch key {
		case "tpgt":
			if seenTPGT {
				return uriErrorf("parameter \"tpgt\" given twice")
			}
			seenTPGT = true
			if i.TPGT, err = parseBoundedInt("tpgt", value, 0, 65535); err != nil {
				return err
			}
		case "iface":
			if seenIface {
				return uriErrorf("parameter \"iface\" given twice")
			}
			seenIface = true
			if value == "" || len(value) > maxIfaceLen || !allBytes(value, isIfaceChar) {
				return uriErrorf("iface must be 1 to %d of A-Z, a-z, 0-9, '_', '.', ':', '-'", maxIfaceLen)
			}
			i.Iface = value
		default:
			return uriErrorf("unknown parameter %s (want tpgt or iface)", quoteFragment(key))
		}
	}
	return nil
}

func isISCSIParamSep(r rune) bool { return r == ';' || r == '?' || r == '&' }

func isIfaceChar(c byte) bool {
	return asciiAlpha(c) || asciiDigit(c) || c == '_' || c == '.' || c == ':' || c == '-'
}

// canonicalISCSIName validates an iSCSI name (RFC 3720 3.2.6) and lower-
// cases it as RFC 3722 does. Only the ASCII subset is accepted: that is
// what initiators and sysfs handle everywhere.
func canonicalISCSIName(s string) (string, error) {
	if len(s) > maxIQNLen {
		return "", uriErrorf("target name is %d bytes; the limit is %d", len(s), maxIQNLen)
	}
	for j := 0; j < len(s); j++ {
		if c := s[j]; !asciiAlpha(c) && !asciiDigit(c) && c != '-' && c != '.' && c != ':' {
			r, _ := utf8.DecodeRuneInString(s[j:])
			return "", uriErrorf("target name contains %q (want a-z, 0-9, '-', '.', ':')", r)
		}
	}
	name := strings.ToLower(s)
	var ok bool
	switch {
	case strings.HasPrefix(name, "iqn."):
		ok = validIQN(name[len("iqn."):])
	case strings.HasPrefix(name, "eui."):
		ok = len(name) == len("eui.")+16 && allBytes(name[4:], lowerHexDigit)
	case strings.HasPrefix(name, "naa."):
		hex := name[len("naa."):]
		ok = (len(hex) == 16 || len(hex) == 32) && allBytes(hex, lowerHexDigit)
	}
	if !ok {
		return "", uriErrorf("target name %s is not an iSCSI name "+
			"(want iqn.YYYY-MM.reversed.domain[:name], eui. and 16 hex digits, or naa. and 16 or 32 hex digits)",
			quoteFragment(name))
	}
	return name, nil
}

// validIQN checks what follows "iqn.": "YYYY-MM.reversed.domain[:anything]".
// The characters were checked already.
func validIQN(s string) bool {
	if len(s) < len("YYYY-MM.x") || !allBytes(s[:4], asciiDigit) || s[4] != '-' ||
		!allBytes(s[5:7], asciiDigit) || s[7] != '.' {
		return false
	}
	if month := s[5:7]; month < "01" || month > "12" {
		return false
	}
	domain, _, _ := strings.Cut(s[8:], ":")
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || !allBytes(label, iqnLabelChar) {
			return false
		}
	}
	return true
}

func iqnLabelChar(c byte) bool { return asciiAlpha(c) || asciiDigit(c) || c == '-' }

// iscsiForms builds the Target "iscsi://HOST[:PORT]/IQN;tpgt=N;iface=NAME"
// and the URI, which adds "/LUN" after the IQN when one LUN is asked for.
func iscsiForms(i *ISCSISpec) (target, uri string) {
	target = iscsiForm(i, -1)
	if i.LUN < 0 {
		return target, target
	}
	return target, iscsiForm(i, i.LUN)
}

// iscsiForm writes the canonical form with lun, or without when lun < 0.
func iscsiForm(i *ISCSISpec, lun int) string {
	var b strings.Builder
	b.Grow(len("iscsi://[]:65535//16383;tpgt=65535;iface=") + len(i.Host) + len(i.IQN) + len(i.Iface))
	b.WriteString("iscsi://")
	writeURIHost(&b, i.Host, i.Port)
	b.WriteByte('/')
	b.WriteString(i.IQN)
	if lun >= 0 {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(lun))
	}
	writeISCSIParams(&b, i)
	return b.String()
}

func writeISCSIParams(b *strings.Builder, i *ISCSISpec) {
	b.WriteString(";tpgt=")
	b.WriteString(strconv.Itoa(i.TPGT))
	b.WriteString(";iface=")
	b.WriteString(i.Iface)
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the generic URI rules. The canonical forms built with them
// are API: clients store URIs and compare Targets.
const (
	// maxURILen bounds the work ParseURI does and the size of what it keeps.
	maxURILen = 4096
	// maxQuoted caps every fragment of the input quoted in an error, so a
	// huge URI can't produce a huge error.
	maxQuoted = 64

	maxHostLen  = 253 // RFC 1035
	maxLabelLen = 63

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
	name, rest, ok := CutHost(auth)
	if !ok {
		return "", 0, uriErrorf("missing ']' after IPv6 address")
	}
	portText := strings.TrimPrefix(rest, ":")
	var host string
	var err error
	if auth[0] == '[' {
		if host, err = parseIPv6(name); err != nil {
			return "", 0, err
		}
		if rest != "" && rest[0] != ':' {
			return "", 0, uriErrorf("unexpected text after ']' (want :PORT or a path)")
		}
	} else {
		if strings.IndexByte(portText, ':') >= 0 {
			return "", 0, uriErrorf("an IPv6 address must be in brackets: [ADDRESS]")
		}
		if host, err = parseHostName(name); err != nil {
			return "", 0, err
		}
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

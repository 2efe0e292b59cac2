// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"fmt"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// EscapePathElement escapes s into a valid object path element the way
// systemd's bus_label_escape does (the escaping behind
// /org/freedesktop/systemd1/unit/dbus_2eservice): every byte outside
// [A-Za-z0-9], and a leading digit, becomes '_' and two lower-case hex
// digits; the empty string becomes "_". The mapping is one-to-one, so any
// CID, including one with '_' or invalid UTF-8, gets its own path.
func EscapePathElement(s string) string {
	if s == "" {
		return "_"
	}
	n := labelEscapedLen(s)
	if n == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(n)
	writeLabelEscaped(&b, s)
	return b.String()
}

// labelEscapedLen is the length of the escaped form of a non-empty s.
func labelEscapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if labelNeedsEscape(s[i], i) {
			n += 2
		}
	}
	return n
}

func labelNeedsEscape(c byte, i int) bool {
	return !labelAlpha(c) && (i == 0 || !labelDigit(c))
}

func writeLabelEscaped(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !labelNeedsEscape(c, i) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
}

// UnescapePathElement is the exact inverse of EscapePathElement. It
// refuses every string EscapePathElement can't produce (upper-case or bad
// hex, an escape of a character that needs none, an unescaped leading
// digit, any character outside [A-Za-z0-9_]), so that each CID has one
// path and each path at most one CID.
func UnescapePathElement(e string) (string, error) {
	switch e {
	case "":
		return "", fmt.Errorf("unescape object path element: empty element")
	case "_":
		return "", nil
	}
	if strings.IndexByte(e, '_') < 0 {
		// Nothing escaped: e must need no escaping.
		if labelEscapedLen(e) != len(e) {
			return "", badPathElement(e, "a character outside [A-Za-z] at its start or outside [A-Za-z0-9] elsewhere")
		}
		return e, nil
	}
	var b strings.Builder
	b.Grow(len(e))
	for i := 0; i < len(e); {
		c := e[i]
		if c != '_' {
			if labelNeedsEscape(c, i) {
				return "", badPathElement(e, "a character that should have been escaped")
			}
			b.WriteByte(c)
			i++
			continue
		}
		if i+2 >= len(e) || !labelHexDigit(e[i+1]) || !labelHexDigit(e[i+2]) {
			return "", badPathElement(e, "a '_' not followed by two lower-case hex digits")
		}
		v := labelUnhex(e[i+1])<<4 | labelUnhex(e[i+2])
		if !labelNeedsEscape(v, i) {
			return "", badPathElement(e, "an escape of a character that needs none")
		}
		b.WriteByte(v)
		i += 3
	}
	return b.String(), nil
}

func badPathElement(e, what string) error {
	return fmt.Errorf("unescape object path element %.64q: it has %s", e, what)
}

func labelAlpha(c byte) bool    { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func labelDigit(c byte) bool    { return '0' <= c && c <= '9' }
func labelHexDigit(c byte) bool { return labelDigit(c) || 'a' <= c && c <= 'f' }

func labelUnhex(c byte) byte {
	if labelDigit(c) {
		return c - '0'
	}
	return c - 'a' + 10
}

// ConnectionPath is the object path of the connection object of cid:
// ConnPrefix followed by the escaped CID.
func ConnectionPath(cid string) godbus.ObjectPath {
	var b strings.Builder
	if cid == "" {
		return godbus.ObjectPath(ConnPrefix + "_")
	}
	b.Grow(len(ConnPrefix) + labelEscapedLen(cid))
	b.WriteString(ConnPrefix)
	writeLabelEscaped(&b, cid)
	return godbus.ObjectPath(b.String())
}

// CIDFromPath returns the CID whose connection object is at p, and false
// when p is not ConnPrefix followed by one validly escaped element. It
// does not check the CID rules or whether the CID is managed.
func CIDFromPath(p godbus.ObjectPath) (string, bool) {
	elem, ok := strings.CutPrefix(string(p), ConnPrefix)
	if !ok || elem == "" || strings.IndexByte(elem, '/') >= 0 {
		return "", false
	}
	cid, err := UnescapePathElement(elem)
	if err != nil {
		return "", false
	}
	return cid, true
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxCIDLen is the longest CID in bytes. Escaped for an object path a CID
// may triple in size, and it is stored and logged with every operation.
const maxCIDLen = 255

// maxCIDQuoted caps the prefix of a bad CID quoted in an error.
const maxCIDQuoted = 32

// CIDError says why a string is not a valid CID. It quotes at most a
// short, sanitized prefix of it.
type CIDError struct{ Reason string }

func (e *CIDError) Error() string { return "invalid CID: " + e.Reason }

// ValidateCID checks the CID rules: 1 to 255 bytes of valid UTF-8 without
// '/' or NUL. Any other character, control characters included, is
// allowed: clients choose CIDs and the object path escaping handles every
// byte. The error is a *CIDError.
func ValidateCID(s string) error {
	switch {
	case s == "":
		return &CIDError{Reason: "CID is empty"}
	case len(s) > maxCIDLen:
		return cidErrorf(s, "is %d bytes; the limit is %d", len(s), maxCIDLen)
	case !utf8.ValidString(s):
		return cidErrorf(s, "is not valid UTF-8")
	case strings.IndexByte(s, '/') >= 0:
		return cidErrorf(s, "contains '/'")
	case strings.IndexByte(s, 0) >= 0:
		return cidErrorf(s, "contains NUL")
	}
	return nil
}

// cidErrorf builds a CIDError that starts with a quoted prefix of s. %q
// escapes control characters and invalid bytes, so the prefix can't break
// a log line.
func cidErrorf(s, format string, args ...any) error {
	prefix := fmt.Sprintf("%.*q", maxCIDQuoted, s)
	if utf8.RuneCountInString(s) > maxCIDQuoted {
		prefix += "..."
	}
	return &CIDError{Reason: prefix + " " + fmt.Sprintf(format, args...)}
}

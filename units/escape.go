// SPDX-License-Identifier: Apache-2.0

// Package units names and describes the systemd units storkeep creates:
// one mount unit per NFS target.
package units

import (
	"path"
	"strings"
)

// PathEscape escapes an absolute path the way systemd names units after
// paths: slashes become dashes, and every byte outside [A-Za-z0-9:_.] (and
// a leading dot) becomes \xNN with lowercase hex.
//
// Equivalent to: systemd-escape --path PATH
func PathEscape(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "-"
	}
	p = strings.TrimPrefix(p, "/")
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0:
			// A leading dot would make a hidden file of the unit.
			writeHex(&b, c)
		case isAlnum(c) || c == ':' || c == '_' || c == '.':
			b.WriteByte(c)
		default:
			writeHex(&b, c)
		}
	}
	return b.String()
}

// MountUnitName returns the name of the mount unit for mount point where.
//
// Equivalent to: systemd-escape --path --suffix=mount WHERE
func MountUnitName(where string) string {
	return PathEscape(where) + ".mount"
}

// MaxUnitNameLen is the longest unit name systemd takes as it is; longer
// names of mount units are hashed, so storkeep keeps its mount points short
// enough never to reach it.
const MaxUnitNameLen = 255

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func writeHex(b *strings.Builder, c byte) {
	const hex = "0123456789abcdef"
	b.WriteString(`\x`)
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&0xf])
}

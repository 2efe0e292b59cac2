// SPDX-License-Identifier: Apache-2.0

package service

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultIface is the iscsiadm interface of a URI without iface=, and of
// a session whose iface sysfs does not show.
const DefaultIface = "default"

// Limits and defaults of the iSCSI URI form.
const (
	defaultTPGT = 1

	maxIQNLen   = 223 // RFC 3720 3.2.6.1
	maxLUN      = 16383
	maxIfaceLen = 64
)

// parseISCSI parses what follows "iscsi://".
func parseISCSI(rest string) (Spec, error) {
	// No part of an iSCSI URI may hold '@', so any '@' is user info, even
	// one after a password that contains '/'.
	if strings.IndexByte(rest, '@') >= 0 {
		return Spec{}, uriErrorf("%s", credentialsReason)
	}
	auth, after := splitAuthority(rest)
	host, port, err := parseHostPort(auth, DefaultISCSIPort, "")
	if err != nil {
		return Spec{}, err
	}
	rawPath, params := after, ""
	if i := strings.IndexAny(after, ";?"); i >= 0 {
		rawPath, params = after[:i], after[i:]
	}
	i := &ISCSISpec{Host: host, Port: port, LUN: -1, TPGT: defaultTPGT, Iface: DefaultIface}
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
	writeHostPort(&b, i.Host, i.Port)
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

func (i *ISCSISpec) info() map[string]any {
	port := i.PortalPort()
	m := map[string]any{
		"portal": HostPort(i.Host, port),
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

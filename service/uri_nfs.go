// SPDX-License-Identifier: Apache-2.0

package service

import (
	"slices"
	"strconv"
	"strings"
)

// Limits of the NFS URI form.
const (
	maxTimeo   = 6000 // deciseconds: 10 minutes
	maxRetrans = 100
)

// nfsHint is added to a bad-port error: "nfs://server:export" (the 2012
// proposal's spelling) puts the export where the port goes.
const nfsHint = " (write nfs://HOST/EXPORT, not HOST:EXPORT)"

// parseNFS parses what follows "nfs://".
func parseNFS(rest string) (Spec, error) {
	auth, after := splitAuthority(rest)
	if strings.IndexByte(auth, '@') >= 0 {
		return Spec{}, uriErrorf("%s", credentialsReason)
	}
	host, port, err := parseHostPort(auth, DefaultNFSPort, nfsHint)
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
	writeHostPort(&b, n.Server, n.Port)
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

func (n *NFSSpec) equal(o *NFSSpec) bool {
	return n.Server == o.Server && n.Port == o.Port && n.Export == o.Export &&
		n.sameSettings(o)
}

// sameSettings compares what a mount of one export may differ in.
func (n *NFSSpec) sameSettings(o *NFSSpec) bool {
	return n.Version == o.Version && n.Timeo == o.Timeo && n.Retrans == o.Retrans &&
		slices.Equal(n.Options, o.Options)
}

func (n *NFSSpec) info() map[string]any {
	m := map[string]any{
		"server": n.Server,
		"port":   n.ServerPort(),
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

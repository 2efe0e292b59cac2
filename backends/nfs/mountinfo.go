// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/storkeep/storkeep/service"
)

// Mount is one line of /proc/self/mountinfo (proc(5)).
type Mount struct {
	ID         int
	ParentID   int
	Root       string // the root of the mount within its file system
	MountPoint string
	Options    string // per-mount options
	FSType     string // e.g. nfs, nfs4
	Source     string // e.g. server:/export, [fd00::1]:/export
	SuperOpts  string // per-superblock options (vers=4.2,addr=...)
}

// IsNFS reports whether the mount is an NFS mount of any version.
func (m Mount) IsNFS() bool { return m.FSType == "nfs" || m.FSType == "nfs4" }

// ServerExport splits an NFS mount's source into server and export path.
// IPv6 servers come without brackets. ok is false for other sources.
func (m Mount) ServerExport() (server, export string, ok bool) {
	server, rest, ok := service.CutHost(m.Source)
	export, found := strings.CutPrefix(rest, ":")
	if !ok || !found || server == "" || !strings.HasPrefix(export, "/") {
		return "", "", false
	}
	return server, export, true
}

// ParseMountInfo reads the mount table in the format of
// /proc/self/mountinfo. It never touches the mount points themselves (a
// stat of a hung NFS mount blocks), only the table.
//
// Equivalent to: findmnt --raw --list (with the kernel's own escaping undone)
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return out, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

func parseMountLine(line string) (Mount, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || len(f) < sep+3 {
		return Mount{}, fmt.Errorf("malformed: %.80q", line)
	}
	id, err1 := strconv.Atoi(f[0])
	parent, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return Mount{}, fmt.Errorf("bad mount IDs: %.80q", line)
	}
	m := Mount{
		ID:         id,
		ParentID:   parent,
		Root:       unescapeOctal(f[3]),
		MountPoint: unescapeOctal(f[4]),
		Options:    f[5],
		FSType:     unescapeOctal(f[sep+1]),
		Source:     unescapeOctal(f[sep+2]),
	}
	if len(f) > sep+3 {
		m.SuperOpts = f[sep+3]
	}
	return m, nil
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline
// and backslash in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isOctal(s, i+1) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string, i int) bool {
	if i+3 > len(s) {
		return false
	}
	for _, c := range []byte(s[i : i+3]) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[i] <= '3' // \ooo above \377 is not a byte
}

// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"

	"github.com/storkeep/storkeep/service"
	"github.com/storkeep/storkeep/units"
)

// mountDirName returns the name of the directory, under the backend's
// mount root, where the export of n is mounted: the server (and port),
// then the export with '_' doubled and '/' written as '_', as vdsm names
// its mount points, so that an admin can read it:
//
//	10.0.0.1, /exports/vm_data  ->  10.0.0.1:_exports_vm__data
//	fd00::1 port 2050, /        ->  [fd00::1]:2050:_
//
// The mapping is one to one, so two targets never share a mount point.
func mountDirName(n *service.NFSSpec) string {
	var b strings.Builder
	b.WriteString(service.HostPort(n.Server, n.Port))
	b.WriteByte(':')
	for i := 0; i < len(n.Export); i++ {
		switch c := n.Export[i]; c {
		case '_':
			b.WriteString("__")
		case '/':
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hashedDirPrefix starts the names of mount points whose readable form is
// too long. Readable names always hold a ':', these never do.
const hashedDirPrefix = "hash-"

// MountPoint returns where the export of n is mounted under root, and the
// name of its mount unit. The readable form is used unless the unit name
// would be too long for systemd to keep as it is (systemd would hash it
// itself) or the directory name too long for the file system; then a
// stable hash of the target stands in.
func MountPoint(root string, spec service.Spec) (where, unit string) {
	name := mountDirName(spec.NFS)
	if len(name) <= 255 {
		where = path.Join(root, name)
		unit = units.MountUnitName(where)
		if len(unit) <= units.MaxUnitNameLen {
			return where, unit
		}
	}
	sum := sha256.Sum256([]byte(spec.Target))
	where = path.Join(root, hashedDirPrefix+hex.EncodeToString(sum[:16]))
	return where, units.MountUnitName(where)
}

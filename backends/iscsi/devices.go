// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// byPathName is the name udev's path_id gives an iSCSI LUN's link in
// /dev/disk/by-path (systemd src/udev/udev-builtin-path_id.c):
// "ip-ADDR:PORT-iscsi-IQN-lun-L", the address as sysfs shows it (IPv6
// without brackets) and big LUNs in path_id's hex form.
func byPathName(addr string, port uint16, iqn string, n int) string {
	var l string
	if n < 256 {
		l = strconv.Itoa(n)
	} else {
		l = "0x" + hex4(n&0xffff) + hex4((n>>16)&0xffff) + "00000000"
	}
	return "ip-" + addr + ":" + strconv.Itoa(int(port)) + "-iscsi-" + iqn + "-lun-" + l
}

func hex4(n int) string {
	s := strconv.FormatInt(int64(n), 16)
	return strings.Repeat("0", 4-len(s)) + s
}

// devices finds the block devices of s's LUNs and their stable names. It
// returns by-path link -> kernel node ("/dev/disk/by-path/ip-...-lun-1" ->
// "/dev/sdb") for every LUN that has both, and the LUNs whose block device
// has no link yet (udev has not caught up).
func devices(devRoot string, s session) (devs map[string]string, pending map[int]bool) {
	devs = make(map[string]string)
	byPath := filepath.Join(devRoot, "disk", "by-path")
	var listed map[string]string // link target's base -> link name, read lazily
	for _, l := range s.LUNs {
		if !l.hasBlock() || l.Block == "" {
			continue
		}
		name := byPathName(s.Address, s.Port, s.Target, l.LUN)
		if target, err := os.Readlink(filepath.Join(byPath, name)); err == nil && filepath.Base(target) == l.Block {
			devs[filepath.Join(byPath, name)] = filepath.Join(devRoot, l.Block)
			continue
		}
		// Not under the expected name (another path_id version?): look
		// for any iSCSI link to the device.
		if listed == nil {
			listed = listISCSILinks(byPath)
		}
		if link, ok := listed[l.Block]; ok {
			devs[filepath.Join(byPath, link)] = filepath.Join(devRoot, l.Block)
			continue
		}
		if pending == nil {
			pending = make(map[int]bool)
		}
		pending[l.LUN] = true
	}
	return devs, pending
}

// listISCSILinks maps kernel device names to the iSCSI by-path links that
// point to them.
func listISCSILinks(byPath string) map[string]string {
	out := make(map[string]string)
	entries, err := os.ReadDir(byPath)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if !strings.Contains(e.Name(), "-iscsi-") || strings.Contains(e.Name(), "-part") {
			continue
		}
		if target, err := os.Readlink(filepath.Join(byPath, e.Name())); err == nil {
			out[filepath.Base(target)] = e.Name()
		}
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Session states as /sys/class/iscsi_session/sessionN/state shows them.
const (
	stateLoggedIn = "LOGGED_IN"
	stateFailed   = "FAILED"
	stateFree     = "FREE"
)

// session is one iSCSI session as sysfs shows it. It is read from
// /sys/class/iscsi_session and /sys/class/iscsi_connection, never from
// iscsiadm's human output.
type session struct {
	// ID is the kernel's session number: the N of sessionN.
	ID uint32
	// Target is the target's IQN (targetname).
	Target string
	TPGT   int
	// Iface is iscsiadm's interface name (ifacename).
	Iface string
	// Address and Port are the portal logged in to (persistent_address and
	// persistent_port of the session's first connection; the current
	// address when there is no persistent one).
	Address string
	Port    uint16
	// State is LOGGED_IN, FAILED or FREE.
	State string
	// RecoveryTmo is how long the kernel holds I/O while the session
	// recovers before it fails it (recovery_tmo: open-iscsi's
	// node.session.timeo.replacement_timeout).
	RecoveryTmo time.Duration
	// LUNs are the SCSI devices of the session, by LUN.
	LUNs []lun
}

// lun is one SCSI device of a session.
type lun struct {
	LUN int
	// Type is the SCSI peripheral device type (0 disk, 5 CD/DVD, 12
	// storage array controller, ...).
	Type int
	// Block is the kernel name of its block device ("sdb"), or "".
	Block string
}

// hasBlock reports whether a device of this SCSI type gets a block device
// (sd or sr). Others, like the controller a target shows as LUN 0, don't,
// and are not counted as LUNs a connection waits for.
func (l lun) hasBlock() bool {
	switch l.Type {
	case 0, 5, 7, 14: // disk, CD/DVD, optical, reduced block commands
		return true
	}
	return false
}

// sysfsValue cleans a sysfs attribute: no trailing newline, and the
// spellings the kernel uses for "not set" become "".
func sysfsValue(b []byte) string {
	s := strings.TrimSpace(string(b))
	switch s {
	case "<NULL>", "(null)", "<null>":
		return ""
	}
	return s
}

// readAttr reads one attribute of dir.
func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return sysfsValue(b), nil
}

// parseSessionName returns N of "sessionN".
func parseSessionName(name string) (uint32, bool) {
	digits, ok := strings.CutPrefix(name, "session")
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	return uint32(n), err == nil
}

// parseHCTL returns the LUN of a SCSI device name "H:C:T:L".
func parseHCTL(name string) (int, bool) {
	parts := strings.Split(name, ":")
	if len(parts) != 4 {
		return 0, false
	}
	var lun int
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, false
		}
		if i == 3 {
			if n > 1<<40 {
				return 0, false
			}
			lun = int(n)
		}
	}
	return lun, true
}

// readSessions reads every iSCSI session from sysfs under sysRoot. No
// iSCSI module loaded (no class directory) means no sessions. A session
// that vanishes while it is read is left out.
//
// Equivalent to: iscsiadm -m session -P 3 (without asking iscsid).
func readSessions(sysRoot string) ([]session, error) {
	classDir := filepath.Join(sysRoot, "class", "iscsi_session")
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read iSCSI sessions: %w", err)
	}
	out := make([]session, 0, len(entries))
	for _, e := range entries {
		id, ok := parseSessionName(e.Name())
		if !ok {
			continue
		}
		s, err := readSession(sysRoot, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // logged out while we looked
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b session) int { return int(a.ID) - int(b.ID) })
	return out, nil
}

// sessionDir is session id's directory in sysfs.
func sessionDir(sysRoot string, id uint32) string {
	return filepath.Join(sysRoot, "class", "iscsi_session", "session"+strconv.FormatUint(uint64(id), 10))
}

// readSession reads session id from sysfs.
func readSession(sysRoot string, id uint32) (session, error) {
	dir := sessionDir(sysRoot, id)
	name := filepath.Base(dir)
	s := session{ID: id}
	var err error
	if s.Target, err = readAttr(dir, "targetname"); err != nil {
		return s, fmt.Errorf("read %s: %w", name, err)
	}
	if s.State, err = readAttr(dir, "state"); err != nil {
		return s, fmt.Errorf("read %s: %w", name, err)
	}
	// tpgt and ifacename are missing on some offload drivers: leave them
	// at their zero values rather than fail.
	if v, err := readAttr(dir, "tpgt"); err == nil && v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			s.TPGT = n
		}
	}
	if v, err := readAttr(dir, "ifacename"); err == nil {
		s.Iface = v
	}
	s.RecoveryTmo = defaultRecoveryTmo
	if v, err := readAttr(dir, "recovery_tmo"); err == nil {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			s.RecoveryTmo = time.Duration(n) * time.Second
		}
	}
	if err := readConnection(sysRoot, &s); err != nil {
		return s, err
	}
	luns, err := readLUNs(filepath.Join(dir, "device"))
	if err != nil {
		return s, fmt.Errorf("read %s: %w", name, err)
	}
	s.LUNs = luns
	return s, nil
}

// readConnection fills the portal of s from its first connection.
func readConnection(sysRoot string, s *session) error {
	classDir := filepath.Join(sysRoot, "class", "iscsi_connection")
	prefix := "connection" + strconv.FormatUint(uint64(s.ID), 10) + ":"
	dir := filepath.Join(classDir, prefix+"0")
	if _, err := os.Stat(dir); err != nil {
		entries, rerr := os.ReadDir(classDir)
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("read connections of session%d: %w", s.ID, rerr)
		}
		dir = ""
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				dir = filepath.Join(classDir, e.Name())
				break
			}
		}
		if dir == "" {
			// A session being set up or torn down may have no connection.
			return nil
		}
	}
	addr, _ := readAttr(dir, "persistent_address")
	port, _ := readAttr(dir, "persistent_port")
	if addr == "" {
		addr, _ = readAttr(dir, "address")
		port, _ = readAttr(dir, "port")
	}
	s.Address = addr
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		s.Port = uint16(n)
	}
	return nil
}

// readLUNs lists the SCSI devices under a session's device directory
// (sessionN/targetH:C:T/H:C:T:L).
func readLUNs(devDir string) ([]lun, error) {
	targets, err := os.ReadDir(devDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []lun
	for _, t := range targets {
		if !strings.HasPrefix(t.Name(), "target") {
			continue
		}
		tdir := filepath.Join(devDir, t.Name())
		devs, err := os.ReadDir(tdir)
		if err != nil {
			continue // removed while we looked
		}
		for _, d := range devs {
			n, ok := parseHCTL(d.Name())
			if !ok {
				continue
			}
			ddir := filepath.Join(tdir, d.Name())
			l := lun{LUN: n, Type: -1}
			if v, err := readAttr(ddir, "type"); err == nil {
				if t, err := strconv.Atoi(v); err == nil {
					l.Type = t
				}
			}
			if blocks, err := os.ReadDir(filepath.Join(ddir, "block")); err == nil && len(blocks) > 0 {
				l.Block = blocks[0].Name()
			}
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b lun) int { return a.LUN - b.LUN })
	return out, nil
}

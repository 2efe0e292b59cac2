// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// openPTY returns the terminal side of a new pseudo-terminal of cols
// columns (and its controlling side, to read what was written).
func openPTY(t *testing.T, cols uint16) (tty, ctl *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
		t.Fatalf("set the terminal's size: %v", err)
	}
	return tty, ctl
}

func TestTerminalWidthOfATerminal(t *testing.T) {
	tty, _ := openPTY(t, 123)
	if w := terminalWidth(tty); w != 123 {
		t.Errorf("terminalWidth = %d; want the terminal's 123 columns", w)
	}
}

// At 80 columns (where fixed widths used to cut it), an iSCSI target is
// whole and every line fits unless the CID and target alone do not.
func TestListFitsAn80ColumnTerminal(t *testing.T) {
	tty, _ := openPTY(t, 80)
	conns := map[string]map[string]dbus.Variant{
		"vm1-lun": status(true, false, "iscsi", "retrying", "iscsi://10.0.0.7:3260/iqn.2026-01.com.example:storage.lun7/1", "AuthenticationFailed"),
		"db":      status(true, true, "nfs", "connected", "nfs://filer/exports/db", ""),
	}
	header, rows := fitTable(listColumns, listRows(conns), terminalWidth(tty))
	var buf bytes.Buffer
	if err := writeTable(&buf, header, rows, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "iscsi://10.0.0.7:3260/iqn.2026-01.com.example:storage.lun7/1") {
		t.Errorf("the target was cut:\n%s", out)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line of %d runes on an 80-column terminal: %q", n, l)
		}
	}
}

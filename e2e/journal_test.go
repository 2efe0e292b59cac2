// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/logging"
)

// journalSince returns the messages (-o cat) journalctl shows since start
// for the matches and options in args.
func journalMatching(t *testing.T, start time.Time, args ...string) string {
	t.Helper()
	out, _ := sh(t, "journalctl", append([]string{"-q", "--no-pager", "-o", "cat",
		"--since", fmt.Sprintf("@%d", start.Unix()-1)}, args...)...)
	return out
}

// waitJournal waits until journalctl with args shows a line containing
// want (journald may take a moment to store what it was sent).
func waitJournal(t *testing.T, start time.Time, want string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := journalMatching(t, start, args...)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("journalctl %s shows no %q:\n%s", strings.Join(args, " "), want, out)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func messageID(t *testing.T, e logging.Event) string {
	t.Helper()
	id, ok := e.MessageID()
	if !ok {
		t.Fatalf("no MESSAGE_ID for %s", e)
	}
	return "MESSAGE_ID=" + id
}

// checkJournalLost: the loss of every CID is in the journal at warning
// level, natively (PRIORITY, CID=, MESSAGE_ID=), as admins look for it.
func checkJournalLost(t *testing.T, start time.Time, cids ...string) {
	t.Helper()
	waitJournal(t, start, "connection lost", "-p", "warning", "-u", "storkeepd.service")
	waitJournal(t, start, "network path not usable", "-u", "storkeepd.service", messageID(t, logging.PathDown))
	for _, cid := range cids {
		waitJournal(t, start, "connection lost", "-p", "warning", "CID="+cid)
		waitJournal(t, start, "cid="+cid, "-u", "storkeepd.service", messageID(t, logging.ConnectionLost), "CID="+cid)
	}
}

// checkJournalRestored: the return of every CID, and of the path.
func checkJournalRestored(t *testing.T, start time.Time, cids ...string) {
	t.Helper()
	waitJournal(t, start, "network path usable", "-u", "storkeepd.service", messageID(t, logging.PathUp))
	for _, cid := range cids {
		waitJournal(t, start, "connection restored", "CID="+cid, messageID(t, logging.ConnectionRestored))
	}
}

// unitStatusText is what systemctl status storkeepd shows as its status
// (sd_notify STATUS=).
func unitStatusText(t *testing.T) string {
	t.Helper()
	out, err := sh(t, "systemctl", "show", "-p", "StatusText", "--value", "storkeepd.service")
	if err != nil {
		t.Fatalf("systemctl show: %v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

// statusFromList is the status line the daemon should show, counted by
// the test from List.
func statusFromList(t *testing.T, c *godbus.Conn) string {
	t.Helper()
	var managed, connected, connecting, retrying int
	down := map[string]bool{}
	for _, e := range list(t, c) {
		if e[skdbus.ListManaged].Value() != true {
			continue
		}
		managed++
		switch {
		case e[skdbus.ListConnected].Value() == true:
			connected++
		case e[skdbus.ListState].Value() == "connecting":
			connecting++
		default:
			retrying++
		}
		if pathDownError(e[skdbus.ListLastError].Value()) {
			info, _ := e[skdbus.ListConnectionInfo].Value().(map[string]godbus.Variant)
			for _, k := range []string{"server", "host"} {
				if h, ok := info[k]; ok {
					down[fmt.Sprint(h.Value())] = true
				}
			}
		}
	}
	s := fmt.Sprintf("%d managed, %d connected", managed, connected)
	if connecting > 0 {
		s += fmt.Sprintf(", %d connecting", connecting)
	}
	s += fmt.Sprintf(", %d retrying", retrying)
	switch len(down) {
	case 0:
	case 1:
		s += ", 1 path down"
	default:
		s += fmt.Sprintf(", %d paths down", len(down))
	}
	return s
}

// checkStatusText waits until the unit's status line says what List
// says (it follows changes within a quarter of a second) and returns it.
func checkStatusText(t *testing.T, c *godbus.Conn) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, want := unitStatusText(t), statusFromList(t, c)
		if got == want {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("systemctl show -p StatusText: %q; List says %q", got, want)
			return got
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestWatchdogArmed: the packaged unit runs with the watchdog, and the
// daemon feeds it (it has not been restarted by it by the end of the
// other tests either: see NRestarts in the log).
func TestWatchdogArmed(t *testing.T) {
	out, err := sh(t, "systemctl", "show", "-p", "WatchdogUSec", "-p", "NotifyAccess", "-p", "NRestarts", "storkeepd.service")
	if err != nil {
		t.Fatalf("systemctl show: %v\n%s", err, out)
	}
	t.Logf("%s", strings.Join(strings.Fields(out), " "))
	if !strings.Contains(out, "WatchdogUSec=30s") || !strings.Contains(out, "NotifyAccess=main") {
		t.Errorf("unit: %s; want WatchdogUSec=30s and NotifyAccess=main", out)
	}
	if text := unitStatusText(t); !strings.Contains(text, " managed, ") {
		t.Errorf("StatusText %q; want the daemon's counts", text)
	}
}

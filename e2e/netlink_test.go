// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// Fast reconnect: one NFS and one iSCSI target, each behind its own veth
// link (vnf0 to nfsns, vis0 to iscsins). Taking the guest's side of a link
// down is a real link event and a real outage.

const (
	netCIDPrefix = "e2e-net-"
	configPath   = "/etc/storkeep/storkeep.toml"
)

var (
	netNFSURI  = "nfs://" + nfsSrvIP + "/b?vers=4.2"
	netNFSURI2 = "nfs://" + nfsSrvIP + "/a?vers=4.2"
	netLinks   = []string{"vnf0", "vis0"}
)

// netFixture is both storage hosts, and the daemon's view of them.
type netFixture struct {
	t  *testing.T
	c  *godbus.Conn
	is *iscsiFixture
}

func newNetFixture(t *testing.T) *netFixture {
	t.Helper()
	nfsServers(t)
	f := &netFixture{t: t, c: systemBus(t), is: newISCSIFixture(t)}
	t.Cleanup(func() {
		var cids []string
		_ = root(f.c).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, netCIDPrefix, map[string]godbus.Variant{}).Store(&cids)
	})
	// Runs first: whatever happened, the links are up for the cleanups.
	t.Cleanup(func() { setLinks(t, "up") })
	return f
}

// setLinks takes the guest's side of both links down or up, in one ip
// process (starting a process is slow in the test host: two would skew the
// second link's timings).
func setLinks(t *testing.T, state string) {
	t.Helper()
	var batch strings.Builder
	for _, l := range netLinks {
		fmt.Fprintf(&batch, "link set %s %s\n", l, state)
	}
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s: %v\n%s", state, err, out)
	}
}

// manageBoth manages the NFS export b and LUN 1 of the plain iSCSI target
// (under the iSCSI fixture's prefix, so that its teardown logs it out).
func (f *netFixture) manageBoth(suffix string) (nfsCID, isCID string) {
	f.t.Helper()
	nfsCID, isCID = netCIDPrefix+"nfs"+suffix, isCIDPrefix+"net"+suffix
	if err := manage(f.c, netNFSURI, nfsCID, nil); err != nil {
		f.t.Fatalf("Manage %s: %v", nfsCID, err)
	}
	f.is.manage(isCID, isURIPlain+"/1")
	return nfsCID, isCID
}

func (f *netFixture) sessionID(cid string) uint32 {
	f.t.Helper()
	id, _ := prop(f.t, f.c, cid, skdbus.ISCSIInterface, "SessionID").(uint32)
	return id
}

// sessionState reads the kernel's state of an iSCSI session ("" if gone).
func sessionState(id uint32) string {
	b, _ := os.ReadFile(fmt.Sprintf("/sys/class/iscsi_session/session%d/state", id))
	return strings.TrimSpace(string(b))
}

// pathDownError says whether a LastError names the path as the reason.
func pathDownError(v any) bool { return v == "LinkDown" || v == "NoRoute" }

// setConfig writes storkeepd's configuration and restarts it (which
// disconnects nothing). The original comes back when the test ends.
func setConfig(t *testing.T, c *godbus.Conn, content string) {
	t.Helper()
	if _, err := os.Stat(configPath + ".e2e-saved"); err != nil {
		old, readErr := os.ReadFile(configPath)
		if readErr == nil {
			if err := os.WriteFile(configPath+".e2e-saved", old, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			if old, err := os.ReadFile(configPath + ".e2e-saved"); err == nil {
				_ = os.WriteFile(configPath, old, 0o644)
				_ = os.Remove(configPath + ".e2e-saved")
			} else {
				_ = os.Remove(configPath)
			}
			try(t, "systemctl", "restart", "storkeepd.service")
			waitForName(t, c)
		})
	}
	if err := os.WriteFile(configPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "systemctl", "restart", "storkeepd.service")
	waitForName(t, c)
}

// monitor is `storkeepctl monitor` running for the length of a test.
type monitor struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (m *monitor) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.Write(p)
}

func startMonitor(t *testing.T) *monitor {
	t.Helper()
	m := &monitor{cmd: exec.Command("storkeepctl", "monitor")}
	m.cmd.Stdout, m.cmd.Stderr = m, m
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("storkeepctl monitor: %v", err)
	}
	t.Cleanup(func() { m.stop() })
	time.Sleep(300 * time.Millisecond) // subscribed before anything happens
	return m
}

// stop ends the monitor and returns what it printed.
func (m *monitor) stop() string {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Signal(syscall.SIGINT)
		_ = m.cmd.Wait()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// TestLinkDownAndUp: a link that goes down is a lost connection, reported
// at once and kept; the link coming back brings it back with no client
// call. Then 20 fast flaps in a row, and a storm of unrelated link events.
func TestLinkDownAndUp(t *testing.T) {
	f := newNetFixture(t)
	c := f.c
	mon := startMonitor(t)
	nfsCID, isCID := f.manageBoth("")
	waitConnected(t, c, nfsCID, true, 90*time.Second)
	waitConnected(t, c, isCID, true, 90*time.Second)
	where, _ := nfsMountPoint(t, c, nfsCID)
	mountID, _, _, _ := mountAt(t, where)
	sid := f.sessionID(isCID)

	t.Run("down then up", func(t *testing.T) {
		start := time.Now()
		setLinks(t, "down")
		for _, cid := range []string{nfsCID, isCID} {
			waitConnected(t, c, cid, false, 10*time.Second)
			t.Logf("%s: reported down after %s: %v %v", cid, time.Since(start).Round(time.Millisecond),
				connProp(t, c, cid, "LastError"), connProp(t, c, cid, "LastErrorMessage"))
			if e := connProp(t, c, cid, "LastError"); !pathDownError(e) {
				t.Errorf("%s: LastError %v; want LinkDown or NoRoute", cid, e)
			}
			if n := connProp(t, c, cid, "NextAttempt"); n != uint64(0) {
				t.Errorf("%s: NextAttempt %v while the connection waits for its link; want 0", cid, n)
			}
		}
		// Nothing torn down.
		if id, _, _, ok := mountAt(t, where); !ok || id != mountID {
			t.Errorf("the mount at %s changed while the link was down: id %q (was %q), mounted %v", where, id, mountID, ok)
		}
		if st := sessionState(sid); st == "" {
			t.Errorf("iSCSI session %d is gone while the link was down", sid)
		}
		// What admins see: journalctl -p warning, journalctl CID=, the
		// unit's status line and storkeepctl status.
		checkJournalLost(t, start, nfsCID, isCID)
		if text := checkStatusText(t, c); !strings.Contains(text, ", 2 paths down") {
			t.Errorf("StatusText %q while both links are down; want 2 paths down", text)
		}
		if out := must(t, "storkeepctl", "status"); !strings.Contains(out, "Paths down:       2: ") {
			t.Errorf("storkeepctl status while both links are down:\n%s", out)
		}

		start = time.Now()
		setLinks(t, "up")
		for _, cid := range []string{nfsCID, isCID} {
			waitConnected(t, c, cid, true, 60*time.Second)
			t.Logf("%s: connected %s after the link came up", cid, time.Since(start).Round(time.Millisecond))
		}
		if id, _, _, _ := mountAt(t, where); id != mountID {
			t.Errorf("mount ID %q after the outage; want the same mount %q", id, mountID)
		}
		if got := f.sessionID(isCID); got != sid {
			t.Errorf("session %d after the outage; want the same session %d", got, sid)
		}
		must(t, "sh", "-c", fmt.Sprintf("echo after-the-outage >'%s/net-e2e' && grep -q after-the-outage '%s/net-e2e'", where, where))
		checkJournalRestored(t, start, nfsCID, isCID)
		checkStatusText(t, c)
	})

	t.Run("20 fast flaps", func(t *testing.T) {
		for range 20 {
			setLinks(t, "down")
			time.Sleep(100 * time.Millisecond)
			setLinks(t, "up")
			time.Sleep(100 * time.Millisecond)
		}
		start := time.Now()
		for _, cid := range []string{nfsCID, isCID} {
			waitConnected(t, c, cid, true, 60*time.Second)
		}
		t.Logf("both connected %s after the last flap", time.Since(start).Round(time.Millisecond))
		if n := len(mountsAt(t, where)); n != 1 {
			t.Errorf("%d mounts at %s after the flaps; want 1", n, where)
		}
		if s := sessionsTo(isIQNPlain); len(s) != 1 || s[0].id != int(sid) {
			t.Errorf("sessions to %s after the flaps: %v; want only session %d", isIQNPlain, s, sid)
		}
	})

	t.Run("event storm", func(t *testing.T) {
		must(t, "modprobe", "dummy")
		type seen struct {
			since    any
			attempts any
		}
		before := map[string]seen{}
		for _, cid := range []string{nfsCID, isCID} {
			before[cid] = seen{connProp(t, c, cid, "ConnectedSince"), connProp(t, c, cid, "Attempts")}
		}
		cpu := daemonCPU(t)
		var batch strings.Builder
		for i := range 100 {
			fmt.Fprintf(&batch, "link add e2edummy%d type dummy\nlink set e2edummy%d up\n", i, i)
		}
		for i := range 100 {
			fmt.Fprintf(&batch, "link del e2edummy%d\n", i)
		}
		cmd := exec.Command("ip", "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ip -batch: %v\n%s", err, out)
		}
		time.Sleep(2 * time.Second) // room for any churn to show
		t.Logf("300 link changes cost the daemon %s of CPU", daemonCPU(t)-cpu)
		for _, cid := range []string{nfsCID, isCID} {
			now := seen{connProp(t, c, cid, "ConnectedSince"), connProp(t, c, cid, "Attempts")}
			if connProp(t, c, cid, "Connected") != true || now != before[cid] {
				t.Errorf("%s churned in the storm: ConnectedSince/Attempts %v, were %v", cid, now, before[cid])
			}
		}
	})

	out := mon.stop()
	for _, want := range []string{
		"path to " + nfsSrvIP + " down: ",
		"path to " + nfsSrvIP + " usable via vnf0",
		"path to " + isPortal + " down: ",
		"path to " + isPortal + " usable via vis0",
		nfsCID + " changed: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("storkeepctl monitor did not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "e2edummy") {
		t.Errorf("storkeepctl monitor shows unrelated links:\n%s", out)
	}
}

// TestLinkOutageLongerThanBackoffCap: with a backoff of 10 s, the link
// stays down 13 s. Connections made before the outage survive it (the
// iSCSI session fails in the kernel meanwhile); connections managed during
// it fail their attempts and wait on the backoff, and the link coming back
// connects them at once, long before their next attempt was due.
func TestLinkOutageLongerThanBackoffCap(t *testing.T) {
	f := newNetFixture(t)
	c := f.c
	setConfig(t, c, "[reconnect]\ninitial_backoff = \"10s\"\nmax_backoff = \"10s\"\n")
	nfsCID, isCID := f.manageBoth("-old")
	waitConnected(t, c, nfsCID, true, 90*time.Second)
	waitConnected(t, c, isCID, true, 90*time.Second)
	where, _ := nfsMountPoint(t, c, nfsCID)
	mountID, _, _, _ := mountAt(t, where)
	sid := f.sessionID(isCID)

	down := time.Now()
	setLinks(t, "down")
	newNFS, newIS := netCIDPrefix+"nfs-new", isCIDPrefix+"net-new"
	if err := manage(c, netNFSURI2, newNFS, nil); err != nil {
		t.Fatal(err)
	}
	f.is.manage(newIS, isURIChap+"/1", isChapUser, isSecret)
	for _, cid := range []string{newNFS, newIS} {
		waitFor(t, 30*time.Second, cid+" failed an attempt", func() (bool, string) {
			n, _ := connProp(t, c, cid, "NextAttempt").(uint64)
			e := connProp(t, c, cid, "LastError")
			return n != 0 && pathDownError(e), fmt.Sprintf("NextAttempt %d LastError %v", n, e)
		})
	}
	time.Sleep(time.Until(down.Add(13 * time.Second)))
	t.Logf("after 13 s without a link: session %d is %s", sid, sessionState(sid))

	// When each new CID's backoff would try next. One due within a few
	// seconds proves nothing (jitter can put an attempt right there).
	due := map[string]time.Time{}
	for _, cid := range []string{newNFS, newIS} {
		n, _ := connProp(t, c, cid, "NextAttempt").(uint64)
		if d := time.UnixMicro(int64(n)); time.Until(d) > 5*time.Second {
			due[cid] = d
		} else {
			t.Logf("%s: next attempt due in %s anyway; not counted as proof", cid, time.Until(d).Round(time.Millisecond))
		}
	}
	up := time.Now()
	setLinks(t, "up")
	// The link's return starts an attempt at once: each new CID is
	// connecting (or connected) long before its backoff's next attempt.
	var wg sync.WaitGroup
	for cid, d := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(d.Add(-time.Second)) {
				if st := connProp(t, c, cid, "State"); st == "connecting" || st == "connected" {
					t.Logf("%s: attempt under way %s after the link came up (its backoff said %s)", cid,
						time.Since(up).Round(time.Millisecond), d.Sub(up).Round(time.Second))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("%s: no attempt before its backoff's next one (%s after the link came up): the link did not trigger one",
				cid, d.Sub(up).Round(time.Second))
		}()
	}
	wg.Wait()
	for _, cid := range []string{newNFS, newIS, nfsCID, isCID} {
		waitConnected(t, c, cid, true, 60*time.Second)
		since, _ := connProp(t, c, cid, "ConnectedSince").(uint64)
		t.Logf("%s: connected %s after the link came up", cid, time.UnixMicro(int64(since)).Sub(up).Round(time.Millisecond))
	}
	if id, _, _, _ := mountAt(t, where); id != mountID {
		t.Errorf("mount ID %q after a 13 s outage; want the same mount %q", id, mountID)
	}
	if got := f.sessionID(isCID); got != sid {
		t.Errorf("session %d after a 13 s outage; want the same session %d", got, sid)
	}
}

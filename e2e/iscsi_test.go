// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The iSCSI fixture: a network namespace iscsins joined to the guest by the
// veth pair vis0 (guest side, 10.252.0.2/24) / vis1 (namespace side,
// 10.252.0.1/24), tgtd in the namespace, file-backed LUNs on a tmpfs.
// The first test that asks for it builds it; after each test it is put
// back as it was built (t.Cleanup), so every test starts clean, and what
// cannot be put back is rebuilt for the next test. Built once, not once a
// test: every command costs 0.1-0.5 s in the guest, and building it is
// some 30 of them.
const (
	isNS        = "iscsins"
	isHostIP    = "10.252.0.2"
	isPortal    = "10.252.0.1"
	isNoAnswer  = "10.252.0.99" // in the subnet, nothing answers there
	isLUNDir    = "/srv/iscsi-e2e"
	isIQNPlain  = "iqn.2026-01.org.storkeep.e2e:plain"
	isIQNChap   = "iqn.2026-01.org.storkeep.e2e:chap"
	isChapUser  = "e2e-initiator"
	isSecret    = "Isc5i-E2e-Planted-S3cret"
	isWrong     = "Wr0ng-E2e-Planted-Pass"
	isCIDPrefix = "e2e-iscsi-"
)

var (
	isURIPlain = "iscsi://" + isPortal + "/" + isIQNPlain
	isURIChap  = "iscsi://" + isPortal + "/" + isIQNChap
)

// isWorld is what the fixture built, shared by the tests (which run one
// at a time).
var isWorld struct {
	ready    bool   // built, and put back after the last test
	tgt      string // tgtadm's view of the targets and accounts as built
	chapPass string // the password of isChapUser on the target
}

// must runs a command of the fixture and fails the test if it fails.
func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := sh(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a cleanup command whose failure does not matter.
func try(t *testing.T, name string, args ...string) {
	t.Helper()
	_, _ = sh(t, name, args...)
}

type iscsiFixture struct {
	t         *testing.T
	conn      *godbus.Conn
	discarded bool
}

// newISCSIFixture gives the test the namespace, the link, tgtd and two
// targets: plain (LUNs 1 and 2, no CHAP) and chap (LUN 1, CHAP as
// isChapUser with isSecret), with no session or node record for them.
// Change the targets only through the fixture (addTarget, deleteTarget,
// setCHAPPassword), so that they can be put back; a test that changes what
// reset does not check (a qdisc, a route, ...) calls discard.
func newISCSIFixture(t *testing.T) *iscsiFixture {
	t.Helper()
	f := &iscsiFixture{t: t, conn: systemBus(t)}
	waitForName(t, f.conn)
	t.Cleanup(f.reset)
	if isWorld.ready {
		isWorld.ready = false // until reset has put it back
		return f
	}
	t.Log("iSCSI fixture: building the namespace, the link, tgtd and the targets")
	f.teardown() // leftovers of a test that died
	f.build()
	return f
}

// build makes the namespace, the link, tgtd and the targets.
func (f *iscsiFixture) build() {
	t := f.t
	t.Helper()
	must(t, "modprobe", "-a", "iscsi_tcp", "veth")
	must(t, "ip", "netns", "add", isNS)
	must(t, "ip", "link", "add", "vis0", "type", "veth", "peer", "name", "vis1")
	must(t, "ip", "link", "set", "vis1", "netns", isNS)
	must(t, "ip", "addr", "add", isHostIP+"/24", "dev", "vis0")
	must(t, "ip", "link", "set", "vis0", "up")
	must(t, "ip", "netns", "exec", isNS, "ip", "addr", "add", isPortal+"/24", "dev", "vis1")
	must(t, "ip", "netns", "exec", isNS, "ip", "link", "set", "vis1", "up")
	must(t, "ip", "netns", "exec", isNS, "ip", "link", "set", "lo", "up")
	must(t, "mkdir", "-p", isLUNDir)
	must(t, "mount", "-t", "tmpfs", "-o", "size=256M", "tmpfs", isLUNDir)
	for _, name := range []string{"plain1", "plain2", "chap1"} {
		must(t, "truncate", "-s", "16M", filepath.Join(isLUNDir, name+".img"))
	}
	// tgtd forks into the background: no pipes to it, or Run would wait.
	cmd := exec.Command("ip", "netns", "exec", isNS, "tgtd")
	if err := cmd.Run(); err != nil {
		t.Fatalf("tgtd: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tgtd did not answer within 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.addTarget(1, isIQNPlain, "plain1", "plain2")
	f.addTarget(2, isIQNChap, "chap1")
	must(t, "tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "account", "--user", isChapUser, "--password", isSecret)
	must(t, "tgtadm", "--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "2", "--user", isChapUser)
	isWorld.chapPass = isSecret
	isWorld.tgt = f.tgtState()
}

// addTarget adds target tid with one LUN per backing file (LUN 1, 2, ...).
func (f *iscsiFixture) addTarget(tid int, iqn string, files ...string) {
	t := f.t
	t.Helper()
	id := strconv.Itoa(tid)
	must(t, "tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", id, "-T", iqn)
	for i, name := range files {
		path := filepath.Join(isLUNDir, name+".img")
		if _, err := os.Stat(path); err != nil {
			must(t, "truncate", "-s", "16M", path)
		}
		must(t, "tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", id, "--lun", strconv.Itoa(i+1), "-b", path)
	}
	must(t, "tgtadm", "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", id, "-I", "ALL")
}

// deleteTarget deletes target tid even with sessions logged in. tgtd
// refuses while a LUN has a command in flight (the initiator's kernel and
// udev still probe the disks of a new session): that is retried.
func (f *iscsiFixture) deleteTarget(tid int) {
	t := f.t
	t.Helper()
	args := []string{"--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", strconv.Itoa(tid), "--force"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := sh(t, "tgtadm", args...)
		if err == nil {
			return
		}
		if !strings.Contains(out, "still active") || time.Now().After(deadline) {
			t.Fatalf("tgtadm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setCHAPPassword gives isChapUser, bound to the chap target, a new
// password.
func (f *iscsiFixture) setCHAPPassword(password string) {
	f.t.Helper()
	if err := f.chapPassword(password); err != nil {
		f.t.Fatal(err)
	}
}

// chapPassword is setCHAPPassword for reset, which must not fail the test:
// it returns what went wrong.
func (f *iscsiFixture) chapPassword(password string) error {
	isWorld.chapPass = "" // unknown until all four have run
	for _, args := range [][]string{
		{"--op", "unbind", "--mode", "account", "--tid", "2", "--user", isChapUser},
		{"--op", "delete", "--mode", "account", "--user", isChapUser},
		{"--op", "new", "--mode", "account", "--user", isChapUser, "--password", password},
		{"--op", "bind", "--mode", "account", "--tid", "2", "--user", isChapUser},
	} {
		if out, err := sh(f.t, "tgtadm", append([]string{"--lld", "iscsi"}, args...)...); err != nil {
			return fmt.Errorf("tgtadm %s %s: %v\n%s", args[1], args[3], err, out)
		}
	}
	isWorld.chapPass = password
	return nil
}

// tgtState is tgtadm's description of the targets (LUNs, ACLs, bound
// accounts, sessions) and of the accounts: the same text means the same
// targets, but for the accounts' passwords, which it does not show.
func (f *iscsiFixture) tgtState() string {
	out, err := sh(f.t, "sh", "-c", "tgtadm --lld iscsi --op show --mode target && tgtadm --lld iscsi --op show --mode account")
	if err != nil {
		return "tgtadm failed: " + err.Error() + "\n" + out
	}
	return out
}

// unmanageAll unmanages the suite's CIDs and waits, up to timeout, until
// storkeepd is done with their targets: it lists none of them as being
// torn down (logged out, node records it made deleted).
func (f *iscsiFixture) unmanageAll(timeout time.Duration) {
	var cids []string
	_ = root(f.conn).Call(skdbus.ManagerInterface+".UnmanagePrefix", 0, isCIDPrefix, map[string]godbus.Variant{}).Store(&cids)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var l map[string]map[string]godbus.Variant
		opts := map[string]godbus.Variant{"host": godbus.MakeVariant(false)}
		if err := root(f.conn).Call(skdbus.ManagerInterface+".List", 0, opts).Store(&l); err != nil {
			return // the daemon is gone: the caller cleans up by hand
		}
		busy := false
		for id, st := range l {
			target, _ := st["target"].Value().(string)
			if strings.HasPrefix(id, "unmanaged/") &&
				(strings.Contains(target, "//"+isPortal) || strings.Contains(target, "//"+isNoAnswer)) {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanSessions logs out whatever sessions to the fixture's portals are
// left and deletes their node records (an administrator's, or storkeepd's
// when it could not).
func (f *iscsiFixture) cleanSessions() {
	t := f.t
	for _, s := range sessionsTo("") {
		try(t, "iscsiadm", "-m", "session", "-r", strconv.Itoa(s.id), "--logout")
	}
	for _, p := range []string{isPortal, isNoAnswer} {
		if recs, _ := filepath.Glob("/etc/iscsi/nodes/*/" + p + ",*"); len(recs) > 0 {
			try(t, "iscsiadm", "-m", "node", "-o", "delete", "-p", p)
		}
	}
}

// discard has the next test build a new fixture instead of reusing this
// one, which the test changed in a way reset does not see.
func (f *iscsiFixture) discard() { f.discarded = true }

// reset puts the fixture back as built, after a test: the suite's CIDs
// unmanaged, no session or node record for its portals, the link up, the
// targets and the CHAP password as built. When it cannot, the next
// newISCSIFixture builds everything anew.
func (f *iscsiFixture) reset() {
	isWorld.ready = false
	f.unmanageAll(60 * time.Second)
	f.cleanSessions()
	if isWorld.chapPass != isSecret {
		_ = f.chapPassword(isSecret) // on failure, the next test builds anew
	}
	why := "discarded by the test"
	if !f.discarded {
		why = f.changed()
	}
	if why != "" {
		f.t.Logf("iSCSI fixture: %s; the next test builds it anew", why)
	}
	isWorld.ready = why == ""
}

// changed tells what is not as built, if anything: the link (up, with its
// address), tgtd on the portal, the targets and accounts, the CHAP
// password, sessions.
func (f *iscsiFixture) changed() string {
	if b, err := os.ReadFile("/sys/class/net/vis0/operstate"); err != nil || strings.TrimSpace(string(b)) != "up" {
		return fmt.Sprintf("vis0 is not up (%q, %v)", b, err)
	}
	ifc, err := net.InterfaceByName("vis0")
	if err != nil {
		return err.Error()
	}
	addrs, _ := ifc.Addrs()
	if !slices.ContainsFunc(addrs, func(a net.Addr) bool { return strings.HasPrefix(a.String(), isHostIP+"/") }) {
		return fmt.Sprintf("vis0 has addresses %v, not %s", addrs, isHostIP)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(isPortal, "3260"), 5*time.Second)
	if err != nil {
		return "tgtd does not answer: " + err.Error()
	}
	c.Close()
	if isWorld.chapPass != isSecret {
		return "the CHAP password could not be put back"
	}
	if s := sessionsTo(""); len(s) > 0 {
		return fmt.Sprintf("sessions left: %v", s)
	}
	if now := f.tgtState(); now != isWorld.tgt {
		return fmt.Sprintf("the targets changed:\n%s\nwere:\n%s", now, isWorld.tgt)
	}
	return ""
}

// teardown removes everything of the fixture that is there: the suite's
// CIDs, sessions to the portals, node records, tgtd, the namespace, the
// link, the tmpfs.
func (f *iscsiFixture) teardown() {
	t := f.t
	isWorld.ready = false
	f.unmanageAll(30 * time.Second)
	f.cleanSessions()
	if _, err := os.Stat("/run/netns/" + isNS); err == nil {
		if out, err := sh(t, "ip", "netns", "pids", isNS); err == nil {
			for _, pid := range strings.Fields(out) {
				try(t, "kill", "-9", pid)
			}
		}
		try(t, "ip", "netns", "del", isNS)
	}
	if _, err := os.Stat("/sys/class/net/vis0"); err == nil {
		try(t, "ip", "link", "del", "vis0")
	}
	if _, _, _, mounted := mountAt(t, isLUNDir); mounted {
		try(t, "umount", isLUNDir)
	}
}

// hostSession is an iSCSI session as the test reads it from sysfs.
type hostSession struct {
	id     int
	target string
	addr   string
	state  string
}

// sessionsTo lists the sessions to the fixture's portals for target iqn
// ("" for any).
func sessionsTo(iqn string) []hostSession {
	var out []hostSession
	dirs, _ := filepath.Glob("/sys/class/iscsi_session/session*")
	for _, d := range dirs {
		id, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "session"))
		if err != nil {
			continue
		}
		read := func(p string) string {
			b, _ := os.ReadFile(p)
			return strings.TrimSpace(string(b))
		}
		s := hostSession{id: id, target: read(d + "/targetname"), state: read(d + "/state"),
			addr: read(fmt.Sprintf("/sys/class/iscsi_connection/connection%d:0/persistent_address", id))}
		if (s.addr == isPortal || s.addr == isNoAnswer) && (iqn == "" || s.target == iqn) {
			out = append(out, s)
		}
	}
	return out
}

func (f *iscsiFixture) manage(cid, uri string, chap ...string) {
	f.t.Helper()
	opts := map[string]godbus.Variant{}
	if len(chap) == 2 {
		opts[skdbus.OptCHAPUsername] = godbus.MakeVariant(chap[0])
		opts[skdbus.OptCHAPPassword] = godbus.MakeVariant(chap[1])
	}
	if err := manage(f.conn, uri, cid, opts); err != nil {
		f.t.Fatalf("Manage %s %s: %v", cid, uri, err)
	}
}

func (f *iscsiFixture) unmanage(cid string) {
	f.t.Helper()
	if err := root(f.conn).Call(skdbus.ManagerInterface+".Unmanage", 0, cid, map[string]godbus.Variant{}).Err; err != nil {
		f.t.Fatalf("Unmanage %s: %v", cid, err)
	}
}

// status returns cid's List entry (nil when it is not listed).
func (f *iscsiFixture) status(cid string) map[string]godbus.Variant {
	var out map[string]map[string]godbus.Variant
	opts := map[string]godbus.Variant{skdbus.OptPrefix: godbus.MakeVariant(cid), "host": godbus.MakeVariant(false)}
	if err := root(f.conn).Call(skdbus.ManagerInterface+".List", 0, opts).Store(&out); err != nil {
		f.t.Fatalf("List: %v", err)
	}
	return out[cid]
}

// waitFor polls cid's status until ok says so, or fails after timeout.
func (f *iscsiFixture) waitFor(cid, what string, timeout time.Duration, ok func(map[string]godbus.Variant) bool) map[string]godbus.Variant {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	var st map[string]godbus.Variant
	for {
		st = f.status(cid)
		if st != nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: %s not within %s; last status %v", cid, what, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func connected(st map[string]godbus.Variant) bool { return st["connected"].Value() == true }

func lastError(name string) func(map[string]godbus.Variant) bool {
	return func(st map[string]godbus.Variant) bool { return st["lastError"].Value() == name }
}

// devices returns the by-path -> kernel node map of a status.
func devices(t *testing.T, st map[string]godbus.Variant) map[string]string {
	t.Helper()
	info, ok := st["connectionInfo"].Value().(map[string]godbus.Variant)
	if !ok {
		t.Fatalf("connectionInfo is %T", st["connectionInfo"].Value())
	}
	devs, ok := info["devices"].Value().(map[string]string)
	if !ok {
		t.Fatalf("devices is %T: %v", info["devices"].Value(), info)
	}
	return devs
}

func sessionID(t *testing.T, st map[string]godbus.Variant) uint32 {
	t.Helper()
	info := st["connectionInfo"].Value().(map[string]godbus.Variant)
	id, ok := info["sessionID"].Value().(uint32)
	if !ok {
		t.Fatalf("sessionID is %T", info["sessionID"].Value())
	}
	return id
}

// lunLink finds the by-path link of lun among devs.
func lunLink(t *testing.T, devs map[string]string, iqn string, lun int) string {
	t.Helper()
	want := fmt.Sprintf("/dev/disk/by-path/ip-%s:3260-iscsi-%s-lun-%d", isPortal, iqn, lun)
	if _, ok := devs[want]; !ok {
		t.Fatalf("no %s among devices %v", want, devs)
	}
	return want
}

// writeAndRead writes a block through the initiator and reads it back
// from the target's backing file, and through the device.
func writeAndRead(t *testing.T, dev, backing string) {
	t.Helper()
	payload := fmt.Sprintf("storkeep-e2e %s %d", t.Name(), time.Now().UnixNano())
	block := make([]byte, 4096)
	copy(block, payload)
	fd, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt(block, 8*4096); err != nil {
		t.Fatalf("write %s: %v", dev, err)
	}
	if err := fd.Close(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(payload))
	bf, err := os.Open(backing)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	if _, err := bf.ReadAt(got, 8*4096); err != nil || string(got) != payload {
		t.Fatalf("backing file %s holds %q (%v), want %q", backing, got, err, payload)
	}
	must(t, "blockdev", "--flushbufs", dev)
	df, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	if _, err := df.ReadAt(got, 8*4096); err != nil || string(got) != payload {
		t.Fatalf("device %s reads %q (%v), want %q", dev, got, err, payload)
	}
}

// secretWatch samples every process's command line (what `ps -eo args`
// shows any user) until stopped, and remembers those holding a secret.
// tgtadm, which the fixture runs with the target's password, is not
// storkeep's and is left out.
type secretWatch struct {
	secrets []string
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	seen    []string
	samples int
}

func watchSecrets(t *testing.T, secrets ...string) *secretWatch {
	w := &secretWatch{secrets: secrets, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.sample()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *secretWatch) sample() {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		args := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.HasPrefix(args, "tgtadm ") {
			continue
		}
		for _, s := range w.secrets {
			if strings.Contains(args, s) {
				w.mu.Lock()
				w.seen = append(w.seen, args)
				w.mu.Unlock()
			}
		}
	}
	w.mu.Lock()
	w.samples++
	w.mu.Unlock()
}

func (w *secretWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check stops the watch and fails if a command line held a secret; it
// also runs `ps -eo args` once as the unprivileged user.
func (w *secretWatch) check(t *testing.T) {
	t.Helper()
	w.end()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) > 0 {
		t.Errorf("a command line held a CHAP secret: %q", w.seen)
	}
	if w.samples < 10 {
		t.Errorf("only %d process-list samples", w.samples)
	}
	t.Logf("%d process-list samples, none with a secret", w.samples)
	out, err := sh(t, "runuser", "-u", "tester", "--", "ps", "-eo", "args")
	if err != nil {
		t.Errorf("ps as tester: %v", err)
	}
	for _, s := range w.secrets {
		if strings.Contains(out, s) {
			t.Errorf("ps -eo args as tester shows a secret:\n%s", out)
		}
	}
}

// wrapIscsiadm puts a wrapper first in the daemon's PATH (systemd gives
// services /usr/local/sbin before /usr/sbin) that records every command
// line storkeepd gives iscsiadm, then runs the real one. The returned
// function fails the test unless storkeepd logged in through it and no
// command line held a secret: a complete check, where sampling the
// process list may miss a short-lived helper.
func wrapIscsiadm(t *testing.T, secrets ...string) (check func()) {
	t.Helper()
	const wrapper, argsLog = "/usr/local/sbin/iscsiadm", "/run/storkeep-e2e-iscsiadm.args"
	os.Remove(argsLog)
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + argsLog + "\nexec /usr/sbin/iscsiadm \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(wrapper); os.Remove(argsLog) })
	return func() {
		t.Helper()
		b, err := os.ReadFile(argsLog)
		if err != nil {
			t.Fatalf("no iscsiadm command line was recorded: %v", err)
		}
		if !strings.Contains(string(b), "--login") {
			t.Errorf("storkeepd did not log in through the wrapper:\n%s", b)
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("an iscsiadm command line held a CHAP secret")
			}
		}
		t.Logf("iscsiadm command lines of storkeepd (%d), none with a secret:\n%s", strings.Count(string(b), "\n"), b)
	}
}

// journalHoldsNo fails if the journal of this boot holds a secret.
func journalHoldsNo(t *testing.T, secrets ...string) {
	t.Helper()
	out, err := sh(t, "journalctl", "-b", "--no-pager", "-o", "cat")
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the journal holds a CHAP secret")
		}
	}
}

// nodeRecordExists reports whether open-iscsi has a node record for iqn.
func nodeRecordExists(iqn string) bool {
	_, err := os.Stat(filepath.Join("/etc/iscsi/nodes", iqn))
	return err == nil
}

func TestISCSIManageWithAndWithoutCHAP(t *testing.T) {
	f := newISCSIFixture(t)
	w := watchSecrets(t, isSecret)
	argv := wrapIscsiadm(t, isSecret)

	f.manage(isCIDPrefix+"plain", isURIPlain)
	f.manage(isCIDPrefix+"chap", isURIChap+"/1", isChapUser, isSecret)
	st := f.waitFor(isCIDPrefix+"plain", "connected", 60*time.Second, connected)
	devs := devices(t, st)
	if len(devs) != 2 {
		t.Errorf("plain target: devices %v, want LUNs 1 and 2", devs)
	}
	writeAndRead(t, lunLink(t, devs, isIQNPlain, 1), filepath.Join(isLUNDir, "plain1.img"))
	writeAndRead(t, lunLink(t, devs, isIQNPlain, 2), filepath.Join(isLUNDir, "plain2.img"))
	if id := sessionID(t, st); len(sessionsTo(isIQNPlain)) != 1 || sessionsTo(isIQNPlain)[0].id != int(id) {
		t.Errorf("sessionID %d; sessions %v", id, sessionsTo(isIQNPlain))
	}

	st = f.waitFor(isCIDPrefix+"chap", "connected", 60*time.Second, connected)
	writeAndRead(t, lunLink(t, devices(t, st), isIQNChap, 1), filepath.Join(isLUNDir, "chap1.img"))
	rec := filepath.Join("/etc/iscsi/nodes", isIQNChap, isPortal+",3260,1", "default")
	if fi, err := os.Stat(rec); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CHAP node record %s: %v %v, want mode 0600", rec, fi, err)
	}
	out := must(t, "iscsiadm", "-m", "node", "-T", isIQNChap, "-p", isPortal)
	if !strings.Contains(out, "node.startup = manual") || !strings.Contains(out, "node.session.auth.username = "+isChapUser) {
		t.Errorf("iscsiadm shows the record as:\n%s", out)
	}

	f.unmanage(isCIDPrefix + "plain")
	f.unmanage(isCIDPrefix + "chap")
	deadline := time.Now().Add(30 * time.Second)
	for len(sessionsTo("")) > 0 || nodeRecordExists(isIQNPlain) || nodeRecordExists(isIQNChap) {
		if time.Now().After(deadline) {
			t.Fatalf("after Unmanage: sessions %v, records plain %t chap %t", sessionsTo(""),
				nodeRecordExists(isIQNPlain), nodeRecordExists(isIQNChap))
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.check(t)
	argv()
	journalHoldsNo(t, isSecret)
}

func TestISCSIWrongPasswordThenFixed(t *testing.T) {
	f := newISCSIFixture(t)
	w := watchSecrets(t, isSecret, isWrong)
	argv := wrapIscsiadm(t, isSecret, isWrong)
	cid := isCIDPrefix + "wrong"
	f.manage(cid, isURIChap, isChapUser, isWrong)
	st := f.waitFor(cid, "AuthenticationFailed", 60*time.Second, lastError("AuthenticationFailed"))
	if connected(st) {
		t.Fatalf("connected with a wrong password: %v", st)
	}
	if len(sessionsTo(isIQNChap)) != 0 {
		t.Errorf("a session exists after a failed login: %v", sessionsTo(isIQNChap))
	}
	// It is retried: the attempts go on while the password is wrong.
	n, _ := connProp(t, f.conn, cid, "Attempts").(uint32)
	waitFor(t, 60*time.Second, "another attempt with the wrong password", func() (bool, string) {
		m, _ := connProp(t, f.conn, cid, "Attempts").(uint32)
		return m > n, fmt.Sprintf("Attempts %d, was %d", m, n)
	})
	st = f.waitFor(cid, "still AuthenticationFailed", 5*time.Second, lastError("AuthenticationFailed"))

	// The target's password now matches what the client gave.
	f.setCHAPPassword(isWrong)
	st = f.waitFor(cid, "connected once the passwords match", 120*time.Second, connected)
	if st["lastError"].Value() != "" {
		t.Errorf("lastError %v after connecting", st["lastError"])
	}
	f.unmanage(cid)
	w.check(t)
	argv()
	journalHoldsNo(t, isSecret, isWrong)
}

func TestISCSISharedSessionAndRelease(t *testing.T) {
	f := newISCSIFixture(t)
	f.manage(isCIDPrefix+"lun1", isURIPlain+"/1")
	f.manage(isCIDPrefix+"lun2", isURIPlain+"/2")
	st1 := f.waitFor(isCIDPrefix+"lun1", "connected", 60*time.Second, connected)
	st2 := f.waitFor(isCIDPrefix+"lun2", "connected", 60*time.Second, connected)
	if s := sessionsTo(isIQNPlain); len(s) != 1 || sessionID(t, st1) != uint32(s[0].id) || sessionID(t, st2) != uint32(s[0].id) {
		t.Fatalf("two CIDs, sessions %v (CIDs say %d and %d); want one shared", s, sessionID(t, st1), sessionID(t, st2))
	}
	id := sessionsTo(isIQNPlain)[0].id

	f.unmanage(isCIDPrefix + "lun1")
	time.Sleep(3 * time.Second)
	if s := sessionsTo(isIQNPlain); len(s) != 1 || s[0].id != id || s[0].state != "LOGGED_IN" {
		t.Fatalf("after unmanaging one of two CIDs: sessions %v, want session %d logged in", s, id)
	}
	f.waitFor(isCIDPrefix+"lun2", "still connected", 5*time.Second, connected)

	f.unmanage(isCIDPrefix + "lun2")
	deadline := time.Now().Add(30 * time.Second)
	for len(sessionsTo(isIQNPlain)) > 0 || nodeRecordExists(isIQNPlain) {
		if time.Now().After(deadline) {
			t.Fatalf("after unmanaging the last CID: sessions %v, record %t", sessionsTo(isIQNPlain), nodeRecordExists(isIQNPlain))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestISCSILossAndRecovery(t *testing.T) {
	f := newISCSIFixture(t)
	cid := isCIDPrefix + "loss"
	f.manage(cid, isURIPlain+"/1")
	f.waitFor(cid, "connected", 60*time.Second, connected)

	// The target goes away: the session fails, and is reported.
	start := time.Now()
	f.deleteTarget(1)
	st := f.waitFor(cid, "reported down after the target was deleted", 60*time.Second,
		func(st map[string]godbus.Variant) bool { return !connected(st) && st["lastError"].Value() != "" })
	t.Logf("target deleted: reported %s (%s) after %s", st["lastError"].Value(), st["lastErrorMessage"].Value(), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	f.addTarget(1, isIQNPlain, "plain1", "plain2")
	st = f.waitFor(cid, "recovered once the target is back", 120*time.Second, connected)
	t.Logf("target back: connected after %s", time.Since(start).Round(time.Millisecond))
	writeAndRead(t, lunLink(t, devices(t, st), isIQNPlain, 1), filepath.Join(isLUNDir, "plain1.img"))

	// The link goes down: the kernel fails the session after its NOP-out
	// timeout (about 10 s), which is reported.
	start = time.Now()
	must(t, "ip", "link", "set", "vis0", "down")
	st = f.waitFor(cid, "reported down after the link went down", 90*time.Second,
		func(st map[string]godbus.Variant) bool { return !connected(st) && st["lastError"].Value() != "" })
	t.Logf("link down: reported %s (%s) after %s", st["lastError"].Value(), st["lastErrorMessage"].Value(), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	must(t, "ip", "link", "set", "vis0", "up")
	st = f.waitFor(cid, "recovered once the link is back", 120*time.Second, connected)
	t.Logf("link up: connected after %s", time.Since(start).Round(time.Millisecond))
	writeAndRead(t, lunLink(t, devices(t, st), isIQNPlain, 1), filepath.Join(isLUNDir, "plain1.img"))
}

func TestISCSIPreexistingSessionAdopted(t *testing.T) {
	f := newISCSIFixture(t)
	must(t, "iscsiadm", "-m", "node", "-o", "new", "-T", isIQNPlain, "-p", isPortal+":3260,1")
	must(t, "iscsiadm", "-m", "node", "-T", isIQNPlain, "-p", isPortal+":3260,1", "--login")
	s := sessionsTo(isIQNPlain)
	if len(s) != 1 {
		t.Fatalf("sessions after a login by hand: %v", s)
	}
	// Listed, unmanaged, under the target key a Manage would use.
	hostID := fmt.Sprintf("iscsi/session%d", s[0].id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, ok := list(t, f.conn)[hostID]
		if ok {
			if e["managed"].Value() != false || e["kind"].Value() != "iscsi" ||
				e["target"].Value() != "iscsi://"+isPortal+"/"+isIQNPlain+";tpgt=1;iface=default" {
				t.Errorf("host entry %s: %v", hostID, e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listed: %v", hostID, list(t, f.conn))
		}
		time.Sleep(200 * time.Millisecond)
	}

	cid := isCIDPrefix + "adopt"
	f.manage(cid, isURIPlain)
	f.waitFor(cid, "connected", 60*time.Second, connected)
	var pre godbus.Variant
	pre, err := f.conn.Object(skdbus.BusName, skdbus.ConnectionPath(cid)).GetProperty(skdbus.ConnInterface + ".Preexisting")
	if err != nil || pre.Value() != true {
		t.Errorf("Preexisting = %v, %v; want true", pre, err)
	}
	if _, ok := list(t, f.conn)[hostID]; ok {
		t.Errorf("%s is still listed as unmanaged while %s manages it", hostID, cid)
	}
	f.unmanage(cid)
	time.Sleep(3 * time.Second)
	if after := sessionsTo(isIQNPlain); len(after) != 1 || after[0].id != s[0].id || after[0].state != "LOGGED_IN" {
		t.Fatalf("the adopted session after Unmanage: %v; want session %d left logged in", after, s[0].id)
	}
	if !nodeRecordExists(isIQNPlain) {
		t.Error("the administrator's node record was deleted")
	}
}

func TestISCSIRestartAndKill9LeaveSession(t *testing.T) {
	f := newISCSIFixture(t)
	cid := isCIDPrefix + "restart"
	f.manage(cid, isURIPlain)
	f.waitFor(cid, "connected", 60*time.Second, connected)
	s := sessionsTo(isIQNPlain)
	if len(s) != 1 {
		t.Fatalf("sessions: %v", s)
	}
	check := func(when string) {
		t.Helper()
		waitForName(t, f.conn)
		if after := sessionsTo(isIQNPlain); len(after) != 1 || after[0].id != s[0].id || after[0].state != "LOGGED_IN" {
			t.Fatalf("%s: sessions %v; want session %d untouched", when, after, s[0].id)
		}
		st := f.waitFor(cid, "connected "+when, 60*time.Second, connected)
		if sessionID(t, st) != uint32(s[0].id) {
			t.Errorf("%s: sessionID %d, want %d", when, sessionID(t, st), s[0].id)
		}
	}
	if out, err := sh(t, "systemctl", "restart", "storkeepd.service"); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	check("after systemctl restart")

	before := mainPID(t)
	if out, err := sh(t, "systemctl", "kill", "--signal=KILL", "storkeepd.service"); err != nil {
		t.Fatalf("kill -9: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if pid := mainPID(t); pid != before && pid != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("storkeepd was not restarted after kill -9")
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("after kill -9")
}

func TestISCSIErrorNames(t *testing.T) {
	f := newISCSIFixture(t)
	cases := []struct{ cid, uri, want string }{
		{isCIDPrefix + "nolun", isURIPlain + "/7", "NoLUN"},
		{isCIDPrefix + "notfound", "iscsi://" + isPortal + "/iqn.2026-01.org.storkeep.e2e:nope", "TargetNotFound"},
		{isCIDPrefix + "unreachable", "iscsi://" + isNoAnswer + "/" + isIQNPlain, "PortalUnreachable"},
		{isCIDPrefix + "refused", "iscsi://" + isPortal + ":3261/" + isIQNPlain, "PortalUnreachable"},
		{isCIDPrefix + "noauth", isURIChap, "AuthenticationFailed"},
	}
	for _, c := range cases {
		f.manage(c.cid, c.uri)
	}
	for _, c := range cases {
		st := f.waitFor(c.cid, c.want, 90*time.Second, lastError(c.want))
		t.Logf("%s: %s: %s", c.uri, c.want, st["lastErrorMessage"].Value())
	}
	// Only the NoLUN target has a session (logged in, without LUN 7).
	if s := sessionsTo(""); len(s) != 1 || s[0].target != isIQNPlain {
		t.Errorf("sessions: %v; want only the plain target's", s)
	}
	for _, c := range cases {
		f.unmanage(c.cid)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(sessionsTo("")) > 0 || nodeRecordExists(isIQNPlain) || nodeRecordExists(isIQNChap) {
		if time.Now().After(deadline) {
			t.Fatalf("after Unmanage: sessions %v, records plain %t chap %t", sessionsTo(""), nodeRecordExists(isIQNPlain), nodeRecordExists(isIQNChap))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

const chapSecret = "Pl4nted-S3cret #= x"

func chapSpec(t *testing.T, uri, password string) service.Spec {
	spec := mustSpec(t, uri)
	spec.ISCSI.CHAP = service.CHAP{Username: "alice", Password: password}
	return spec
}

func TestConnectWithCHAPThenDisconnect(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	t.Setenv("FAKE_CHAP_PASSWORD", chapSecret)
	ctx := context.Background()
	spec := chapSpec(t, "iscsi://10.252.0.1/"+testIQN+"/2", chapSecret)

	obs, err := b.Connect(ctx, spec)
	if err != nil || !obs.Connected {
		t.Fatalf("Connect = %+v, %v; calls %q", obs, err, calls(t, log))
	}
	if devs := obs.Info[infoDevices].(map[string]string); len(devs) != 2 || obs.Info[infoSessionID] != uint32(1) {
		t.Errorf("info = %v", obs.Info)
	}
	got := calls(t, log)
	want := []string{
		"-m node -o new -T " + testIQN + " -p 10.252.0.1:3260,1 -I default",
		"-m node -T " + testIQN + " -p 10.252.0.1:3260,1 -I default --login",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rec := nodeRecord{IQN: testIQN, Addr: "10.252.0.1", Port: 3260, TPGT: 1, Iface: "default"}
	fi, err := os.Stat(rec.path(b.nodesDir()))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v, %v; want mode 0600", fi, err)
	}
	content, _ := os.ReadFile(rec.path(b.nodesDir()))
	for _, line := range []string{"node.startup = manual", "node.session.auth.authmethod = CHAP",
		"node.session.auth.username = alice", "node.session.auth.password = " + chapSecret, recordMarker} {
		if !strings.Contains(string(content), "\n"+line+"\n") {
			t.Errorf("record lacks %q:\n%s", line, content)
		}
	}
	if strings.Count(string(content), "node.startup =") != 1 || !strings.HasSuffix(string(content), "# END RECORD\n") {
		t.Errorf("record is malformed:\n%s", content)
	}

	// Connect again: idempotent, no helper runs.
	if obs, err := b.Connect(ctx, spec); err != nil || !obs.Connected {
		t.Fatalf("second Connect = %+v, %v", obs, err)
	}
	if n := len(calls(t, log)); n != 2 {
		t.Errorf("second Connect ran iscsiadm: %q", calls(t, log))
	}

	if err := b.Disconnect(ctx, spec); err != nil {
		t.Fatal(err)
	}
	got = calls(t, log)[2:]
	want = []string{
		"-m session -r 1 --logout",
		"-m node -o delete -T " + testIQN + " -p 10.252.0.1:3260,1 -I default",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Disconnect calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(rec.path(b.nodesDir())); !os.IsNotExist(err) {
		t.Errorf("record still there after Disconnect: %v", err)
	}
	if obs, _ := b.Observe(ctx, spec); obs.Present {
		t.Error("session still there after Disconnect")
	}
	for _, c := range calls(t, log) {
		if strings.Contains(c, chapSecret) || strings.Contains(c, "password") {
			t.Errorf("a command line holds the secret: %q", c)
		}
	}
	// Disconnect of what is gone is success.
	if err := b.Disconnect(ctx, spec); err != nil {
		t.Fatal(err)
	}
}

func TestConnectAuthenticationFailedCleansUp(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	t.Setenv("FAKE_CHAP_PASSWORD", "the-right-one")
	spec := chapSpec(t, "iscsi://10.252.0.1/"+testIQN, "a-wrong-one")
	_, err := b.Connect(context.Background(), spec)
	if ce := connErrorFor("", err); ce.Name != ErrAuthenticationFailed || strings.Contains(err.Error(), "a-wrong-one") {
		t.Fatalf("Connect error = %v; want AuthenticationFailed without the secret", err)
	}
	got := calls(t, log)
	if len(got) != 3 || !strings.Contains(got[2], "-o delete") {
		t.Errorf("calls = %q; want new, login, delete", got)
	}
	rec := nodeRecord{IQN: testIQN, Addr: "10.252.0.1", Port: 3260, TPGT: 1, Iface: "default"}
	if _, err := os.Stat(rec.path(b.nodesDir())); !os.IsNotExist(err) {
		t.Errorf("the record of the failed login is still there: %v", err)
	}
	// Once the password matches, the retry logs in.
	spec.ISCSI.CHAP.Password = "the-right-one"
	if obs, err := b.Connect(context.Background(), spec); err != nil || !obs.Connected {
		t.Fatalf("retry = %+v, %v", obs, err)
	}
}

func TestConnectFailureKeepsForeignRecordAndSessions(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	// An administrator's record for the target, and another target's session.
	rec := nodeRecord{IQN: testIQN, Addr: "10.252.0.1", Port: 3260, TPGT: 1, Iface: "default"}
	template, _ := os.ReadFile("testdata/node-record")
	writeFile(t, rec.path(b.nodesDir()), string(template))
	other := standard(1)
	other.IQN = "iqn.2026-01.org.storkeep.test:other"
	h.add(t, other)

	t.Setenv("FAKE_LOGIN_EXIT", "19")
	t.Setenv("FAKE_DISCOVERY", "10.252.0.1:3260,1 iqn.2026-01.org.storkeep.test:other\n")
	_, err := b.Connect(context.Background(), mustSpec(t, "iscsi://10.252.0.1/"+testIQN))
	if ce := connErrorFor("", err); ce.Name != ErrTargetNotFound {
		t.Fatalf("Connect error = %v; want TargetNotFound", err)
	}
	t.Setenv("FAKE_DISCOVERY", "10.252.0.1:3260,1 "+testIQN+"\n")
	_, err = b.Connect(context.Background(), mustSpec(t, "iscsi://10.252.0.1/"+testIQN))
	if ce := connErrorFor("", err); ce.Name != ErrLoginFailed {
		t.Fatalf("Connect error = %v; want LoginFailed (the target exists)", err)
	}
	for _, c := range calls(t, log) {
		if strings.Contains(c, "-o new") || strings.Contains(c, "-o delete") || strings.Contains(c, "--logout") {
			t.Errorf("unexpected call %q", c)
		}
	}
	content, err := os.ReadFile(rec.path(b.nodesDir()))
	if err != nil || string(content) != string(template) {
		t.Errorf("the administrator's record changed: %v\n%s", err, content)
	}
	if obs, _ := b.Observe(context.Background(), mustSpec(t, "iscsi://10.252.0.1/iqn.2026-01.org.storkeep.test:other")); !obs.Connected {
		t.Error("the other session is gone")
	}
}

func TestConnectLeavesExistingSessions(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	h.add(t, standard(4))
	spec := mustSpec(t, "iscsi://10.252.0.1/"+testIQN)
	if obs, err := b.Connect(context.Background(), spec); err != nil || !obs.Connected {
		t.Fatalf("Connect to a logged-in session = %+v, %v", obs, err)
	}
	h.setState(t, 4, stateFailed)
	obs, err := b.Connect(context.Background(), spec)
	if err != nil || obs.Connected || obs.Err == nil || obs.Err.Name != ErrSessionFailed {
		t.Fatalf("Connect to a failed session = %+v, %v; want SessionFailed", obs, err)
	}
	if c := calls(t, log); len(c) != 0 {
		t.Errorf("iscsiadm ran: %q", c)
	}
}

func TestDisconnectKeepsForeignRecord(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	rec := nodeRecord{IQN: testIQN, Addr: "10.252.0.1", Port: 3260, TPGT: 1, Iface: "default"}
	writeFile(t, rec.path(b.nodesDir()), "node.name = "+testIQN+"\n# END RECORD\n")
	h.add(t, standard(2))
	if err := b.Disconnect(context.Background(), mustSpec(t, "iscsi://10.252.0.1/"+testIQN)); err != nil {
		t.Fatal(err)
	}
	if c := calls(t, log); len(c) != 1 || c[0] != "-m session -r 2 --logout" {
		t.Errorf("calls = %q; want only the logout", c)
	}
	if _, err := os.Stat(rec.path(b.nodesDir())); err != nil {
		t.Errorf("a record storkeep did not make was deleted: %v", err)
	}
}

func TestConnectPortalUnreachable(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	log := useFakeIscsiadm(t, h, b)
	b.PortalTimeout = 0 // the default check
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	spec := mustSpec(t, "iscsi://127.0.0.1:"+strconv.Itoa(port)+"/"+testIQN)
	_, err = b.Connect(context.Background(), spec)
	if ce := connErrorFor("", err); ce.Name != ErrPortalUnreachable {
		t.Fatalf("Connect error = %v; want PortalUnreachable", err)
	}
	for _, c := range calls(t, log) {
		if strings.Contains(c, "--login") {
			t.Errorf("logged in to an unreachable portal: %q", c)
		}
	}
}

func TestConnectRefusesUnstorableCHAP(t *testing.T) {
	b := newFakeHost(t).backend()
	for _, pw := range []string{"two\nlines", " padded", strings.Repeat("x", 256)} {
		_, err := b.Connect(context.Background(), chapSpec(t, "iscsi://10.252.0.1/"+testIQN, pw))
		if ce := connErrorFor("", err); ce.Name != ErrLoginFailed || strings.Contains(err.Error(), pw) {
			t.Errorf("password %q: %v", pw, err)
		}
	}
}

// TestWaitDevicesWakesOnUevents: after a login, the wait for the LUNs'
// by-path links ends at udev's event for them (what readUevents passes
// on), not at the next re-read of sysfs, which is only the fallback.
func TestWaitDevicesWakesOnUevents(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	b.PollInterval = time.Hour // only an event can end the wait
	s := standard(1)
	s.NoLinks = true // udev has not made them yet
	h.add(t, s)
	is, err := iscsiSpec(mustSpec(t, "iscsi://"+testAddr+"/"+testIQN))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// udev makes the links while Connect waits (most likely: if it
		// is before Connect's first look, that look finds them).
		time.Sleep(100 * time.Millisecond)
		for _, l := range s.LUNs[1:] {
			if err := os.Symlink("../../"+l.Block, filepath.Join(h.dev, "disk", "by-path", byPathName(testAddr, 3260, testIQN, l.LUN))); err != nil {
				t.Error(err)
			}
		}
		b.sysfsChanged() // udev's event for them
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if obs, err := b.waitDevices(ctx, 1, is); err != nil || !obs.Connected {
		t.Fatalf("waitDevices = %+v, %v; want connected at the uevent", obs, err)
	}
}

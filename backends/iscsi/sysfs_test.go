// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"maps"
	"path/filepath"
	"testing"

	"github.com/storkeep/storkeep/service"
)

func mustSpec(t testing.TB, uri string) service.Spec {
	t.Helper()
	spec, err := service.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestReadSessionsNoModule(t *testing.T) {
	got, err := readSessions(filepath.Join(t.TempDir(), "nosys"))
	if err != nil || got != nil {
		t.Fatalf("readSessions without iscsi_session class = %v, %v; want nil, nil", got, err)
	}
}

func TestReadSessions(t *testing.T) {
	h := newFakeHost(t)
	h.add(t, standard(1))
	h.add(t, fakeSession{ID: 12, Host: 11, IQN: "iqn.2026-01.org.storkeep.test:other", Addr: "fd00::1", Port: 3261, TPGT: 2,
		Iface: "ens3", State: stateFailed})
	got, err := readSessions(h.sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d sessions, want 2: %+v", len(got), got)
	}
	s := got[0]
	if s.ID != 1 || s.Target != testIQN || s.Address != testAddr || s.Port != 3260 || s.TPGT != 1 || s.Iface != "default" || s.State != stateLoggedIn {
		t.Errorf("session 1 = %+v", s)
	}
	wantLUNs := []lun{{0, 12, ""}, {1, 0, "sda"}, {2, 0, "sdb"}}
	if len(s.LUNs) != 3 || s.LUNs[0] != wantLUNs[0] || s.LUNs[1] != wantLUNs[1] || s.LUNs[2] != wantLUNs[2] {
		t.Errorf("LUNs = %+v, want %+v", s.LUNs, wantLUNs)
	}
	s = got[1]
	if s.ID != 12 || s.Address != "fd00::1" || s.Port != 3261 || s.TPGT != 2 || s.Iface != "ens3" || s.State != stateFailed || len(s.LUNs) != 0 {
		t.Errorf("session 12 = %+v", s)
	}
}

func TestSysfsValue(t *testing.T) {
	for in, want := range map[string]string{
		"LOGGED_IN\n": "LOGGED_IN", "(null)\n": "", "<NULL>": "", "": "", " 3260 \n": "3260",
	} {
		if got := sysfsValue([]byte(in)); got != want {
			t.Errorf("sysfsValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseNames(t *testing.T) {
	for in, want := range map[string]int64{
		"session1": 1, "session42": 42, "session": -1, "session01": -1, "sessionx": -1, "connection1:0": -1,
		"session4294967296": -1,
	} {
		n, ok := parseSessionName(in)
		if (want < 0) == ok || (ok && int64(n) != want) {
			t.Errorf("parseSessionName(%q) = %d, %t; want %d", in, n, ok, want)
		}
	}
	for in, want := range map[string]int{
		"0:0:0:1": 1, "2:0:0:255": 255, "1:0:0": -1, "a:0:0:1": -1, "0:0:0:-1": -1, "target0:0:0": -1,
	} {
		n, ok := parseHCTL(in)
		if (want < 0) == ok || (ok && n != want) {
			t.Errorf("parseHCTL(%q) = %d, %t; want %d", in, n, ok, want)
		}
	}
}

func TestByPathName(t *testing.T) {
	for _, c := range []struct {
		addr string
		lun  int
		want string
	}{
		{"10.252.0.1", 1, "ip-10.252.0.1:3260-iscsi-iqn.x:y-lun-1"},
		{"fd00::1", 0, "ip-fd00::1:3260-iscsi-iqn.x:y-lun-0"},
		{"10.0.0.1", 256, "ip-10.0.0.1:3260-iscsi-iqn.x:y-lun-0x0100000000000000"},
		{"10.0.0.1", 0x10001, "ip-10.0.0.1:3260-iscsi-iqn.x:y-lun-0x0001000100000000"},
	} {
		if got := byPathName(c.addr, 3260, "iqn.x:y", c.lun); got != c.want {
			t.Errorf("byPathName(%s, %d) = %s, want %s", c.addr, c.lun, got, c.want)
		}
	}
}

func TestObserve(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	ctx := context.Background()
	uri := "iscsi://" + testAddr + "/" + testIQN

	obs, err := b.Observe(ctx, mustSpec(t, uri))
	if err != nil || obs.Present || obs.Connected {
		t.Fatalf("no session: %+v, %v", obs, err)
	}

	h.add(t, standard(3))
	byPath := filepath.Join(h.dev, "disk", "by-path")
	wantDevs := map[string]string{
		filepath.Join(byPath, "ip-10.252.0.1:3260-iscsi-"+testIQN+"-lun-1"): filepath.Join(h.dev, "sda"),
		filepath.Join(byPath, "ip-10.252.0.1:3260-iscsi-"+testIQN+"-lun-2"): filepath.Join(h.dev, "sdb"),
	}
	for _, u := range []string{uri, uri + "/1", uri + "/2", "iscsi://10.252.0.1:3260/" + "IQN.2026-01.org.storkeep.test:disk" + ";tpgt=1"} {
		obs, err = b.Observe(ctx, mustSpec(t, u))
		if err != nil || !obs.Present || !obs.Connected || obs.Err != nil {
			t.Fatalf("%s: %+v, %v", u, obs, err)
		}
		if obs.Info[infoSessionID] != uint32(3) || !maps.Equal(obs.Info[infoDevices].(map[string]string), wantDevs) {
			t.Errorf("%s: info %v, want devices %v", u, obs.Info, wantDevs)
		}
	}

	// Another target, portal, tpgt or iface is another connection.
	for _, u := range []string{
		"iscsi://10.252.0.1/iqn.2026-01.org.storkeep.test:other",
		"iscsi://10.252.0.2/" + testIQN,
		"iscsi://10.252.0.1:3261/" + testIQN,
		uri + ";tpgt=2",
		uri + ";iface=ens3",
	} {
		obs, err = b.Observe(ctx, mustSpec(t, u))
		if err != nil || obs.Present {
			t.Errorf("%s matched session 3: %+v, %v", u, obs, err)
		}
	}

	for u, want := range map[string]string{uri + "/3": ErrNoLUN, uri + "/0": ErrNoLUN} {
		obs, err = b.Observe(ctx, mustSpec(t, u))
		if err != nil || !obs.Present || obs.Connected || obs.Err == nil || obs.Err.Name != want {
			t.Errorf("%s: %+v, %v; want present, not connected, %s", u, obs, err, want)
		}
	}

	h.setState(t, 3, stateFailed)
	obs, err = b.Observe(ctx, mustSpec(t, uri))
	if err != nil || !obs.Present || obs.Connected || obs.Err == nil || obs.Err.Name != ErrSessionFailed {
		t.Fatalf("failed session: %+v, %v", obs, err)
	}
	if obs.Info[infoSessionState] != stateFailed {
		t.Errorf("sessionState = %v", obs.Info[infoSessionState])
	}
}

func TestObserveDevicesPending(t *testing.T) {
	h := newFakeHost(t)
	s := standard(1)
	s.NoLinks = true
	h.add(t, s)
	obs, err := h.backend().Observe(context.Background(), mustSpec(t, "iscsi://"+testAddr+"/"+testIQN))
	if err != nil || !obs.Present || obs.Connected || obs.Err == nil || obs.Err.Name != ErrNoLUN {
		t.Fatalf("no by-path links yet: %+v, %v", obs, err)
	}
	// A session with only a controller has no LUN to connect to.
	h2 := newFakeHost(t)
	h2.add(t, fakeSession{ID: 1, IQN: testIQN, Addr: testAddr, TPGT: 1, LUNs: []fakeLUN{{0, 12, ""}}})
	obs, err = h2.backend().Observe(context.Background(), mustSpec(t, "iscsi://"+testAddr+"/"+testIQN))
	if err != nil || obs.Connected || obs.Err == nil || obs.Err.Name != ErrNoLUN {
		t.Fatalf("controller only: %+v, %v", obs, err)
	}
}

func TestListHost(t *testing.T) {
	h := newFakeHost(t)
	h.add(t, standard(1))
	h.add(t, fakeSession{ID: 2, Host: 1, IQN: "iqn.2026-01.org.storkeep.test:v6", Addr: "fd00::1", TPGT: 1, State: stateFailed})
	b := h.backend()
	got, err := b.ListHost(context.Background())
	if err != nil || len(got) != 2 {
		t.Fatalf("ListHost = %+v, %v", got, err)
	}
	want1 := mustSpec(t, "iscsi://10.252.0.1/"+testIQN)
	if got[0].ID != "iscsi/session1" || got[0].Kind != service.KindISCSI || got[0].Target != want1.Target ||
		got[0].URI != want1.URI || !got[0].Connected || got[0].Info[infoSessionID] != uint32(1) {
		t.Errorf("session1: %+v; want target %s", got[0], want1.Target)
	}
	want2 := mustSpec(t, "iscsi://[fd00::1]:3260/iqn.2026-01.org.storkeep.test:v6;tpgt=1;iface=default")
	if got[1].ID != "iscsi/session2" || got[1].Target != want2.Target || got[1].Connected {
		t.Errorf("session2: %+v; want target %s", got[1], want2.Target)
	}
}

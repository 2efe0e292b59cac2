// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeHost is a sysfs and /dev tree laid out as Linux 6.1 lays out iSCSI
// sessions (seen in the test host):
//
//	class/iscsi_session/sessionN -> ../../devices/platform/hostH/sessionN/iscsi_session/sessionN
//	  .../sessionN/device -> ../../../sessionN
//	class/iscsi_connection/connectionN:0 -> ../../devices/platform/hostH/sessionN/connectionN:0/iscsi_connection/connectionN:0
//	devices/platform/hostH/sessionN/targetH:0:0/H:0:0:L/{type,block/sdX}
//	dev/sdX, dev/disk/by-path/ip-ADDR:PORT-iscsi-IQN-lun-L -> ../../sdX
//
// tb is what the fake's helpers need of a testing.TB; the fake iscsiadm
// (a re-run of the test binary) has its own.
type tb interface {
	Helper()
	Fatal(args ...any)
}

type fakeHost struct {
	sys, dev string
}

type fakeSession struct {
	ID      uint32
	Host    int
	IQN     string
	Addr    string
	Port    uint16
	TPGT    int
	Iface   string
	State   string
	LUNs    []fakeLUN
	NoLinks bool // block devices without by-path links (udev not done)
}

type fakeLUN struct {
	LUN   int
	Type  int
	Block string // "" for none
}

func newFakeHost(t testing.TB) *fakeHost {
	t.Helper()
	root := t.TempDir()
	h := &fakeHost{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	mkdirs(t, filepath.Join(h.sys, "class", "iscsi_session"), filepath.Join(h.sys, "class", "iscsi_connection"),
		filepath.Join(h.dev, "disk", "by-path"))
	return h
}

func mkdirs(t tb, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t tb, path, content string) {
	t.Helper()
	mkdirs(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t tb, target, link string) {
	t.Helper()
	mkdirs(t, filepath.Dir(link))
	os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// add creates a session the way the kernel shows it.
func (h *fakeHost) add(t tb, s fakeSession) {
	t.Helper()
	if s.Port == 0 {
		s.Port = 3260
	}
	if s.Iface == "" {
		s.Iface = "default"
	}
	if s.State == "" {
		s.State = stateLoggedIn
	}
	n := strconv.FormatUint(uint64(s.ID), 10)
	host := "host" + strconv.Itoa(s.Host)
	sdir := filepath.Join(h.sys, "devices", "platform", host, "session"+n)
	attrs := filepath.Join(sdir, "iscsi_session", "session"+n)
	for name, v := range map[string]string{
		"targetname": s.IQN, "tpgt": strconv.Itoa(s.TPGT), "ifacename": s.Iface, "state": s.State,
		"username": "(null)", "recovery_tmo": "120", "target_state": "SCANNED",
	} {
		writeFile(t, filepath.Join(attrs, name), v+"\n")
	}
	symlink(t, "../../../session"+n, filepath.Join(attrs, "device"))
	symlink(t, "../../devices/platform/"+host+"/session"+n+"/iscsi_session/session"+n,
		filepath.Join(h.sys, "class", "iscsi_session", "session"+n))
	conn := "connection" + n + ":0"
	cdir := filepath.Join(sdir, conn, "iscsi_connection", conn)
	for name, v := range map[string]string{
		"persistent_address": s.Addr, "persistent_port": strconv.Itoa(int(s.Port)),
		"address": s.Addr, "port": strconv.Itoa(int(s.Port)), "state": "up",
	} {
		writeFile(t, filepath.Join(cdir, name), v+"\n")
	}
	symlink(t, "../../devices/platform/"+host+"/session"+n+"/"+conn+"/iscsi_connection/"+conn,
		filepath.Join(h.sys, "class", "iscsi_connection", conn))
	for _, l := range s.LUNs {
		hctl := fmt.Sprintf("%d:0:0:%d", s.Host, l.LUN)
		ddir := filepath.Join(sdir, fmt.Sprintf("target%d:0:0", s.Host), hctl)
		writeFile(t, filepath.Join(ddir, "type"), strconv.Itoa(l.Type)+"\n")
		if l.Block == "" {
			continue
		}
		mkdirs(t, filepath.Join(ddir, "block", l.Block))
		writeFile(t, filepath.Join(h.dev, l.Block), "")
		if !s.NoLinks {
			symlink(t, "../../"+l.Block, filepath.Join(h.dev, "disk", "by-path", byPathName(s.Addr, s.Port, s.IQN, l.LUN)))
		}
	}
}

func (h *fakeHost) setState(t tb, id uint32, state string) {
	t.Helper()
	link := filepath.Join(h.sys, "class", "iscsi_session", "session"+strconv.FormatUint(uint64(id), 10))
	writeFile(t, filepath.Join(link, "state"), state+"\n")
}

// remove deletes a session, as a logout does.
func (h *fakeHost) remove(t tb, id uint32) {
	t.Helper()
	n := strconv.FormatUint(uint64(id), 10)
	link := filepath.Join(h.sys, "class", "iscsi_session", "session"+n)
	real, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(link)
	os.Remove(filepath.Join(h.sys, "class", "iscsi_connection", "connection"+n+":0"))
	if err := os.RemoveAll(filepath.Dir(filepath.Dir(real))); err != nil {
		t.Fatal(err)
	}
}

func (h *fakeHost) backend() *Backend {
	return &Backend{SysRoot: h.sys, DevRoot: h.dev, PortalTimeout: -1}
}

const (
	testIQN  = "iqn.2026-01.org.storkeep.test:disk"
	testAddr = "10.252.0.1"
)

// standard is a logged-in session with a controller at LUN 0 and two
// disks, as tgt shows a target with two LUNs.
func standard(id uint32) fakeSession {
	return fakeSession{ID: id, Host: int(id) - 1, IQN: testIQN, Addr: testAddr, TPGT: 1,
		LUNs: []fakeLUN{{0, 12, ""}, {1, 0, "sda"}, {2, 0, "sdb"}}}
}

// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The fake iscsiadm is this test binary, run again with
// STORKEEP_FAKE_ISCSIADM=1. It keeps its node database in FAKE_NODES and
// its sessions in the fake sysfs FAKE_SYS / FAKE_DEV, and appends every
// command line it gets to FAKE_LOG. Knobs:
//
//	FAKE_LOGIN_EXIT   exit code of --login (after the checks below)
//	FAKE_CHAP_PASSWORD the target's CHAP secret: a login whose record
//	                   holds another gets exit code 24
//	FAKE_DISCOVERY    what -m discovery prints
func TestMain(m *testing.M) {
	if os.Getenv("STORKEEP_FAKE_ISCSIADM") == "1" {
		os.Exit(fakeIscsiadm(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type fakeTB struct{}

func (fakeTB) Helper() {}
func (fakeTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(99)
}

// useFakeIscsiadm points b at the fake and returns the file its calls are
// logged to.
func useFakeIscsiadm(t *testing.T, h *fakeHost, b *Backend) (log string) {
	t.Helper()
	root := t.TempDir()
	log = filepath.Join(root, "calls")
	b.Iscsiadm = os.Args[0]
	b.ConfigRoot = filepath.Join(root, "etc-iscsi")
	b.LockDir = filepath.Join(root, "lock")
	mkdirs(t, b.nodesDir())
	t.Setenv("STORKEEP_FAKE_ISCSIADM", "1")
	t.Setenv("FAKE_NODES", b.nodesDir())
	t.Setenv("FAKE_SYS", h.sys)
	t.Setenv("FAKE_DEV", h.dev)
	t.Setenv("FAKE_LOG", log)
	template, err := os.ReadFile("testdata/node-record")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_TEMPLATE", string(template))
	return log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func fakeIscsiadm(args []string) int {
	if f, err := os.OpenFile(os.Getenv("FAKE_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
	opt := map[string]string{}
	flags := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") {
			flags[a] = true
			continue
		}
		if i+1 < len(args) {
			opt[a] = args[i+1]
			i++
		}
	}
	h := &fakeHost{sys: os.Getenv("FAKE_SYS"), dev: os.Getenv("FAKE_DEV")}
	switch opt["-m"] {
	case "discovery":
		fmt.Print(os.Getenv("FAKE_DISCOVERY"))
		return 0
	case "session":
		id, _ := strconv.ParseUint(opt["-r"], 10, 32)
		if _, err := os.Stat(filepath.Join(h.sys, "class", "iscsi_session", "session"+opt["-r"])); err != nil {
			fmt.Fprintln(os.Stderr, "iscsiadm: No matching sessions found")
			return exitNoObjects
		}
		if flags["--logout"] {
			h.remove(fakeTB{}, uint32(id))
		}
		return 0
	case "node":
	default:
		return 7
	}
	addrPort, tpgt, _ := strings.Cut(opt["-p"], ",")
	i := strings.LastIndexByte(addrPort, ':')
	addr, port := strings.Trim(addrPort[:i], "[]"), addrPort[i+1:]
	dir := filepath.Join(os.Getenv("FAKE_NODES"), opt["-T"], addr+","+port+","+tpgt)
	path := filepath.Join(dir, opt["-I"])
	switch opt["-o"] {
	case "new":
		mkdirs(fakeTB{}, dir)
		rec := strings.Replace(os.Getenv("FAKE_TEMPLATE"), "iqn.2026-01.org.storkeep.e2e:plain", opt["-T"], 1)
		if err := os.WriteFile(path, []byte(rec), 0o600); err != nil {
			return 6
		}
		fmt.Printf("New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if=%s] %s,%s,%s %s] added\n", opt["-I"], addr, port, tpgt, opt["-T"])
		return 0
	case "delete":
		if err := os.Remove(path); err != nil {
			fmt.Fprintln(os.Stderr, "iscsiadm: No records found")
			return exitNoObjects
		}
		os.Remove(dir)
		os.Remove(filepath.Dir(dir))
		return 0
	}
	if !flags["--login"] {
		return 7
	}
	rec, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "iscsiadm: No records found")
		return exitNoObjects
	}
	if want := os.Getenv("FAKE_CHAP_PASSWORD"); want != "" && !strings.Contains(string(rec), "\nnode.session.auth.password = "+want+"\n") {
		fmt.Fprintln(os.Stderr, "iscsiadm: initiator reported error (24 - iSCSI login failed due to authorization failure)")
		return exitAuthFailed
	}
	if code, err := strconv.Atoi(os.Getenv("FAKE_LOGIN_EXIT")); err == nil && code != 0 {
		fmt.Fprintf(os.Stderr, "iscsiadm: initiator reported error (%d - fake)\n", code)
		return code
	}
	sessions, _ := readSessions(h.sys)
	next := uint32(1)
	for _, s := range sessions {
		if s.Target == opt["-T"] && s.Address == addr {
			fmt.Fprintln(os.Stderr, "iscsiadm: default: 1 session requested, but 1 already present.")
			return exitSessionExists
		}
		next = max(next, s.ID+1)
	}
	p, _ := strconv.Atoi(port)
	tp, _ := strconv.Atoi(tpgt)
	h.add(fakeTB{}, fakeSession{ID: next, Host: int(next), IQN: opt["-T"], Addr: addr, Port: uint16(p), TPGT: tp, Iface: opt["-I"],
		LUNs: []fakeLUN{{0, 12, ""}, {1, 0, fmt.Sprintf("sd%c", 'a'+rune(2*next))}, {2, 0, fmt.Sprintf("sd%c", 'b'+rune(2*next))}}})
	fmt.Printf("Login to [iface: %s, target: %s, portal: %s,%s] successful.\n", opt["-I"], opt["-T"], addr, port)
	return 0
}

// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The sandbox of the packaged unit (packaging/storkeepd.service), as
// systemd applies it to the running daemon.

// maxExposure is the highest "Overall exposure level" systemd-analyze
// security may report for storkeepd.service: the value the hardened unit
// reached on the test host (systemd 252). Before the hardening it was 9.4.
const maxExposure = 4.2

// Capability numbers (linux/capability.h) of the bounding set.
const (
	capDACOverride    = 1
	capLinuxImmutable = 9
	capNetAdmin       = 12
	capSysAdmin       = 21
)

// unitProps returns the properties of unit as `systemctl show` prints them.
func unitProps(t *testing.T, unit string, names ...string) map[string]string {
	t.Helper()
	args := []string{"show", unit}
	for _, n := range names {
		args = append(args, "-p", n)
	}
	out, err := sh(t, "systemctl", args...)
	if err != nil {
		t.Fatalf("systemctl show: %v\n%s", err, out)
	}
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// sameWords reports whether a and b hold the same space-separated words,
// in any order.
func sameWords(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func TestHardeningPropertiesInEffect(t *testing.T) {
	want := map[string]string{
		"NoNewPrivileges":            "yes",
		"CapabilityBoundingSet":      "cap_dac_override cap_linux_immutable cap_net_admin cap_sys_admin",
		"AmbientCapabilities":        "",
		"RestrictAddressFamilies":    "AF_UNIX AF_NETLINK AF_INET AF_INET6",
		"DevicePolicy":               "closed",
		"DeviceAllow":                "block-sd r",
		"SystemCallArchitectures":    "native",
		"ProtectHostname":            "yes",
		"ProtectClock":               "yes",
		"LockPersonality":            "yes",
		"MemoryDenyWriteExecute":     "yes",
		"RestrictRealtime":           "yes",
		"RestrictSUIDSGID":           "yes",
		"UMask":                      "0077",
		"StateDirectory":             "storkeep",
		"StateDirectoryMode":         "0700",
		"ConfigurationDirectoryMode": "0755",
		"RuntimeDirectory":           "storkeep storkeep/nfs",
		"RuntimeDirectoryMode":       "0755",
		"RuntimeDirectoryPreserve":   "yes",
		"KillMode":                   "process",
		// Each of these would give the daemon a mount namespace of its own.
		"ProtectSystem":         "no",
		"ProtectHome":           "no",
		"PrivateTmp":            "no",
		"PrivateDevices":        "no",
		"PrivateMounts":         "no",
		"ProtectKernelTunables": "no",
		"ProtectKernelModules":  "no",
		"ProtectKernelLogs":     "no",
		"ProtectControlGroups":  "no",
		"ReadOnlyPaths":         "",
		"ReadWritePaths":        "",
		"InaccessiblePaths":     "",
	}
	names := []string{"RestrictNamespaces", "SystemCallFilter", "SystemCallErrorNumber"}
	for k := range want {
		names = append(names, k)
	}
	got := unitProps(t, "storkeepd.service", names...)
	for k, v := range want {
		if !sameWords(got[k], v) {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	// Printed as "yes", or as the list of namespace types still allowed
	// (none), depending on the systemd version.
	if ns := got["RestrictNamespaces"]; ns != "yes" && ns != "" {
		t.Errorf("RestrictNamespaces=%q, want every namespace type refused", ns)
	}
	if e := got["SystemCallErrorNumber"]; e != "EPERM" && e != "1" {
		t.Errorf("SystemCallErrorNumber=%q, want EPERM", e)
	}
	calls := strings.Fields(got["SystemCallFilter"])
	if len(calls) == 0 || strings.HasPrefix(calls[0], "~") {
		t.Fatalf("SystemCallFilter=%q, want an allow list", got["SystemCallFilter"])
	}
	for _, c := range []string{"umount2", "openat", "socket", "execve", "epoll_pwait"} {
		if !slices.Contains(calls, c) {
			t.Errorf("SystemCallFilter does not allow %s", c)
		}
	}
	for _, c := range []string{"mount", "move_mount", "fsmount", "setuid", "chown", "capset", "init_module",
		"reboot", "swapon", "settimeofday", "setrlimit", "sched_setscheduler", "bpf", "ptrace", "kexec_load"} {
		if slices.Contains(calls, c) {
			t.Errorf("SystemCallFilter allows %s", c)
		}
	}
}

// TestHardenedDaemonSharesTheHostMountNamespace: the daemon sees the mount
// table PID 1 sees (the same mount IDs), and what it unmounts is gone for
// everyone. Its capabilities and seccomp filter are in place.
func TestHardenedDaemonSharesTheHostMountNamespace(t *testing.T) {
	pid := mainPID(t)
	if pid == "0" || pid == "" {
		t.Fatal("storkeepd is not running")
	}
	ns := func(p, kind string) string {
		l, err := os.Readlink(filepath.Join("/proc", p, "ns", kind))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, kind := range []string{"mnt", "net", "pid"} {
		if d, h := ns(pid, kind), ns("1", kind); d != h {
			t.Errorf("the daemon's %s namespace is %s, PID 1's %s", kind, d, h)
		}
	}
	if d, h := ns(pid, "uts"), ns("1", "uts"); d == h {
		t.Errorf("the daemon shares PID 1's UTS namespace (%s): ProtectHostname is not in effect", d)
	}

	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	wantCaps := fmt.Sprintf("%016x", uint64(1)<<capDACOverride|1<<capLinuxImmutable|1<<capNetAdmin|1<<capSysAdmin)
	want := map[string]string{"NoNewPrivs": "1", "Seccomp": "2", "CapBnd": wantCaps, "CapEff": wantCaps, "CapAmb": "0000000000000000"}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if w, ok := want[k]; ok {
			if strings.TrimSpace(v) != w {
				t.Errorf("/proc/%s/status %s: %s, want %s", pid, k, strings.TrimSpace(v), w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("/proc/%s/status lacks %v", pid, want)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for storkeepd\.service: ([0-9]+\.[0-9]+)`)

func TestHardeningExposure(t *testing.T) {
	out, err := sh(t, "systemd-analyze", "security", "--no-pager", "storkeepd.service")
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	got, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security storkeepd.service: %s\n%s", m[1], out)
	if got > maxExposure {
		t.Errorf("exposure %.1f, want at most %.1f", got, maxExposure)
	}
}

// twinEnv names the mount point the twin unit's helper unmounts.
const twinEnv = "STORKEEP_E2E_UNMOUNT_HELPER"

// TestHardenedUnmountReachesTheHost runs the fallback unmount's own
// umount2 call under exactly the packaged unit's sandbox: a twin of
// storkeepd.service that runs TestHardeningUnmountHelper instead of the
// daemon. The host's mount must be gone afterwards, and mount(2) must
// have been refused.
func TestHardenedUnmountReachesTheHost(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := "/run/storkeep-e2e-hardening"
	must(t, "mkdir", "-p", dir)
	must(t, "mount", "-t", "tmpfs", "-o", "size=1M", "e2e-hardening", dir)
	t.Cleanup(func() { try(t, "umount", "-l", dir) })

	unit := "storkeepd-e2e-twin.service"
	// No "$" at the end of the pattern: systemd would expand it.
	text := twinUnit(t, exe+" -test.v -test.run ^TestHardeningUnmountHelper", twinEnv+"="+dir)
	path := filepath.Join("/run/systemd/system", unit)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		try(t, "systemctl", "reset-failed", unit)
		try(t, "systemctl", "daemon-reload")
	})
	must(t, "systemctl", "daemon-reload")
	out, err := sh(t, "systemctl", "start", unit)
	if err != nil {
		journal, _ := sh(t, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit)
		t.Fatalf("the twin unit failed: %v\n%s\njournal:\n%s", err, out, journal)
	}
	// It ran, and did not skip (the journal may lag its exit a little).
	waitFor(t, 10*time.Second, "the twin's PASS in the journal", func() (bool, string) {
		journal, _ := sh(t, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit)
		return strings.Contains(journal, "--- PASS: TestHardeningUnmountHelper"), journal
	})
	if _, _, _, ok := mountAt(t, dir); ok {
		t.Fatalf("%s is still mounted on the host after umount2 in the sandbox", dir)
	}
}

// twinUnit returns storkeepd.service as packaged, sandbox and all, with
// the daemon's ExecStart replaced by a one-shot command, and without what
// belongs to the daemon alone (its bus name, reloads, restarts, its
// directories, [Install]).
func twinUnit(t *testing.T, execStart, env string) string {
	t.Helper()
	data, err := os.ReadFile("/lib/systemd/system/storkeepd.service")
	if err != nil {
		t.Fatal(err)
	}
	drop := []string{"Type", "BusName", "ExecStart", "ExecReload", "Restart", "RestartSec", "Alias", "WantedBy",
		"StateDirectory", "StateDirectoryMode", "RuntimeDirectory", "RuntimeDirectoryMode",
		"RuntimeDirectoryPreserve", "ConfigurationDirectory", "ConfigurationDirectoryMode"}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		key, _, _ := strings.Cut(line, "=")
		if line == "[Install]" || slices.Contains(drop, strings.TrimSpace(key)) {
			continue
		}
		b.WriteString(line + "\n")
		if line == "[Service]" {
			fmt.Fprintf(&b, "Type=oneshot\nExecStart=%s\nEnvironment=%s\n", execStart, env)
		}
	}
	return b.String()
}

// TestHardeningUnmountHelper is the twin unit's payload; it skips in the
// suite itself.
func TestHardeningUnmountHelper(t *testing.T) {
	dir := os.Getenv(twinEnv)
	if dir == "" {
		t.Skip("runs only in the twin unit of TestHardenedUnmountReachesTheHost")
	}
	if err := syscall.Mount("e2e-twin", dir, "tmpfs", 0, "size=1M"); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mount(2) in the sandbox: %v, want EPERM", err)
	}
	// The fallback unmount's own call (backends/nfs/unmount.go).
	if err := syscall.Unmount(dir, syscall.MNT_FORCE|syscall.MNT_DETACH); err != nil {
		t.Fatalf("umount2 %s: %v", dir, err)
	}
}

// TestHardenedHelpersCreateRootOnlyFiles: iscsiadm, run by the daemon
// under UMask=0077, makes node database directories and records no one
// but root can read.
func TestHardenedHelpersCreateRootOnlyFiles(t *testing.T) {
	f := newISCSIFixture(t)
	cid := isCIDPrefix + "hardening"
	f.manage(cid, isURIPlain)
	f.waitFor(cid, "connected", 60*time.Second, connected)
	iqnDir := filepath.Join("/etc/iscsi/nodes", isIQNPlain)
	for _, p := range []string{iqnDir, filepath.Join(iqnDir, isPortal+",3260,1"), filepath.Join(iqnDir, isPortal+",3260,1", "default")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("node database: %v", err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %#o: group or others have access", p, fi.Mode().Perm())
		}
	}
	for _, p := range []string{"/var/lib/storkeep", "/var/lib/storkeep/cids"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", p, fi, err)
		}
	}
	files, _ := filepath.Glob("/var/lib/storkeep/cids/*.toml")
	if len(files) == 0 {
		t.Error("no CID files in /var/lib/storkeep/cids")
	}
	for _, p := range files {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
		}
	}
	for _, p := range []string{"/run/storkeep", "/run/storkeep/nfs"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want mode 0755 (users reach the mounts through it)", p, fi, err)
		}
	}
	f.unmanage(cid)
}

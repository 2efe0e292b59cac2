//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// Boot ordering: storkeep-wait-online.service (and its @PREFIX instances)
// as a VM's unit uses it, with the packaged units, the real systemd and
// NFS servers. TestWaitOnlineUnit restarts the daemon with the storage
// down, as at boot; TestBootOrderingAcrossReboot reboots the test host.

// writeUnit writes a unit file (or drop-in) and reloads systemd; the file
// goes when the test ends.
func writeUnit(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		sh(t, "systemctl", "daemon-reload")
	})
	if out, err := sh(t, "systemctl", "daemon-reload"); err != nil {
		t.Fatalf("daemon-reload: %v\n%s", err, out)
	}
}

// vmUnit is a stand-in for a VM's unit: ordered after waitUnit as the
// README says, it records at its start whether cid is connected.
func vmUnit(waitUnit, cid, saw string) string {
	return fmt.Sprintf(`[Unit]
Description=storkeep e2e: a VM whose disk is %[2]s
Wants=%[1]s
After=%[1]s

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'busctl get-property %[3]s %[4]s %[5]s Connected >%[6]s 2>&1'
`, waitUnit, cid, skdbus.BusName, skdbus.ConnectionPath(cid), skdbus.ConnInterface, saw)
}

func TestWaitOnlineUnit(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	const cid = "e2e-wo-disk"
	// storkeep-wait-online@e2e\x2dwo\x2d.service: the CIDs "e2e-wo-...",
	// so that nothing else the suite manages counts.
	unit := `storkeep-wait-online@e2e\x2dwo\x2d.service`
	if out, err := sh(t, "systemd-escape", "--template", "storkeep-wait-online@.service", "e2e-wo-"); err != nil ||
		strings.TrimSpace(out) != unit {
		t.Fatalf("systemd-escape: %q, %v; the README's instance name is %s", out, err, unit)
	}
	if err := manage(c, "nfs://"+nfsSrvIP+"/a", cid, nil); err != nil {
		t.Fatal(err)
	}
	defer unmanage(t, c, cid)
	waitConnected(t, c, cid, true, 60*time.Second)

	const saw = "/run/e2e-wo-vm-saw"
	dropIn := "/run/systemd/system/" + unit + ".d/timeout.conf"
	writeUnit(t, dropIn, "[Service]\nEnvironment=STORKEEP_WAIT_ONLINE_TIMEOUT=6s\n")
	writeUnit(t, "/run/systemd/system/e2e-wo-vm.service", vmUnit(unit, cid, saw))
	t.Cleanup(func() {
		sh(t, "systemctl", "stop", "e2e-wo-vm.service", unit)
		sh(t, "systemctl", "reset-failed", "e2e-wo-vm.service", unit)
		os.Remove(saw)
	})

	// The storage goes down, and the daemon starts with it down, as at a
	// boot where the storage answers late.
	nfsLink(t, "down")
	t.Cleanup(func() { nfsLink(t, "up") })
	waitConnected(t, c, cid, false, 30*time.Second)
	if out, err := sh(t, "systemctl", "restart", "storkeepd.service"); err != nil {
		t.Fatalf("restart storkeepd: %v\n%s", err, out)
	}
	waitForName(t, c)

	// 1. It fails at its timeout, naming the CID and why.
	since := time.Now().Add(-time.Second)
	out, err := sh(t, "systemctl", "start", unit)
	if err == nil {
		t.Fatalf("systemctl start %s succeeded with the storage down:\n%s", unit, out)
	}
	if r, s := systemctlShow(t, unit, "Result"), systemctlShow(t, unit, "ExecMainStatus"); r != "exit-code" || s != "4" {
		t.Errorf("%s: Result=%s ExecMainStatus=%s, want exit-code and 4 (Timeout)", unit, r, s)
	}
	j, _ := sh(t, "journalctl", "--no-pager", "-o", "cat", "-u", unit, "--since", since.Format("2006-01-02 15:04:05"))
	if !strings.Contains(j, "storkeepctl: wait: "+cid+": not connected: ") ||
		!strings.Contains(j, "managed CIDs starting with e2e-wo-: 1 of 1 not connected within 6s (Timeout)") {
		t.Errorf("the journal of %s does not name %s and the timeout:\n%s", unit, cid, j)
	}
	t.Logf("%s timed out:\n%s", unit, j)

	// 2. A VM ordered after it waits until the storage is back.
	writeUnit(t, dropIn, "[Service]\nEnvironment=STORKEEP_WAIT_ONLINE_TIMEOUT=2m\n")
	sh(t, "systemctl", "reset-failed", unit)
	if out, err := sh(t, "systemctl", "start", "--no-block", "e2e-wo-vm.service"); err != nil {
		t.Fatalf("start e2e-wo-vm: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, unit+" activating", func() (bool, string) {
		s := systemctlShow(t, unit, "ActiveState")
		return s == "activating", s
	})
	time.Sleep(2 * time.Second)
	if s, vm := systemctlShow(t, unit, "ActiveState"), systemctlShow(t, "e2e-wo-vm.service", "ActiveState"); s != "activating" ||
		vm != "inactive" {
		t.Fatalf("with the storage down: %s is %s, the VM %s; want activating and inactive (waiting)", unit, s, vm)
	}
	nfsLink(t, "up")
	waitFor(t, 90*time.Second, "the VM started", func() (bool, string) {
		s := systemctlShow(t, "e2e-wo-vm.service", "ActiveState")
		return s == "active", s
	})
	if r := systemctlShow(t, unit, "Result"); r != "success" {
		t.Errorf("%s: Result=%s, want success", unit, r)
	}
	if b, err := os.ReadFile(saw); err != nil || strings.TrimSpace(string(b)) != "b true" {
		t.Errorf("the VM saw its disk as %q (%v), want b true", b, err)
	}
	up, exited := monotonic(t, "e2e-wo-vm.service", "ExecMainStartTimestampMonotonic"), monotonic(t, unit, "ExecMainExitTimestampMonotonic")
	if up < exited {
		t.Errorf("the VM started at %d µs, before %s ended at %d µs", up, unit, exited)
	}
}

// nfsLink takes the guest's side of the NFS server's link down or up.
func nfsLink(t *testing.T, state string) {
	t.Helper()
	if out, err := sh(t, "ip", "link", "set", "vnf0", state); err != nil {
		t.Fatalf("ip link set vnf0 %s: %v\n%s", state, err, out)
	}
}

// monotonic reads a µs timestamp property of unit.
func monotonic(t *testing.T, unit, prop string) uint64 {
	t.Helper()
	v := systemctlShow(t, unit, prop)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("%s %s = %q", unit, prop, v)
	}
	return n
}

// Across a reboot: e2e-guest.sh runs TestBootOrderingAcrossReboot with
// STORKEEP_E2E_BOOT_PHASE=before after the suite, reboots the test host
// when it passes, and runs it again with =after on the next boot.
const (
	bootStateDir = "/var/lib/storkeep-e2e"
	bootCID      = "e2e-boot-disk"
	bootExport   = "/srv/e2e-boot"
	// The storage starts coming up this long after storkeepd has started
	// at boot (and storkeep-wait-online.service with it).
	bootStorageDelay = "10"
)

func TestBootOrderingAcrossReboot(t *testing.T) {
	switch os.Getenv("STORKEEP_E2E_BOOT_PHASE") {
	case "before":
		bootBefore(t)
	case "after":
		bootAfter(t)
	default:
		t.Skip("run by e2e-guest.sh around a reboot of the test host (STORKEEP_E2E_BOOT_PHASE=before, then after)")
	}
}

// bootBefore sets up the next boot: an NFS server that answers late (its
// unit sleeps first), a CID on it, and a "VM" that storkeep-wait-online
// orders after it, all enabled in multi-user.target as an admin would.
func bootBefore(t *testing.T) {
	c := systemBus(t)
	storage := `#!/bin/sh
# storkeep e2e: the storage of TestBootOrderingAcrossReboot, at boot.
set -e
mkdir -p ` + bootExport + `
mountpoint -q ` + bootExport + ` || mount -t tmpfs -o size=16m,mode=0755 tmpfs ` + bootExport + `
echo "from the late server" >` + bootExport + `/hello
# The suite's other exports lived on file systems that are gone now.
find /etc/exports.d -name 'e2e-*.exports' ! -name e2e-boot.exports -delete
echo "` + bootExport + ` 127.0.0.1/32(rw,sync,no_subtree_check,no_root_squash,fsid=45)" >/etc/exports.d/e2e-boot.exports
systemctl start nfs-server.service
exportfs -ra
`
	files := map[string]string{
		"/usr/local/sbin/e2e-late-storage": storage,
		"/etc/systemd/system/e2e-late-storage.service": `[Unit]
Description=storkeep e2e: NFS storage that answers late at boot
# Late after storkeepd, which storkeep-wait-online.service starts after:
# so the wait begins before the storage comes up, however slow the boot.
After=storkeepd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=/bin/sleep ` + bootStorageDelay + `
ExecStart=/usr/local/sbin/e2e-late-storage

[Install]
WantedBy=multi-user.target
`,
		"/etc/systemd/system/e2e-boot-vm.service": vmUnit("storkeep-wait-online.service", bootCID, bootStateDir+"/vm-saw") +
			"\n[Install]\nWantedBy=multi-user.target\n",
	}
	if err := os.MkdirAll(bootStateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(path, "/usr/local/sbin/") {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := sh(t, "systemctl", "daemon-reload"); err != nil {
		t.Fatalf("daemon-reload: %v\n%s", err, out)
	}
	if out, err := sh(t, "systemctl", "enable", "e2e-late-storage.service", "e2e-boot-vm.service"); err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	if err := manage(c, "nfs://127.0.0.1"+bootExport+"?vers=3", bootCID, nil); err != nil {
		t.Fatal(err)
	}
	// storkeep-wait-online.service waits for every managed CID: the suite
	// must have left none of its own.
	for id, st := range list(t, c) {
		if st[skdbus.ListManaged].Value() == true && id != bootCID {
			t.Errorf("%s is still managed after the suite: storkeep-wait-online.service would wait for it too", id)
		}
	}
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootStateDir+"/boot-id", bootID, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bootAfter checks the boot: the VM started after storkeep-wait-online,
// which waited while the storage was down, and found its disk connected.
func bootAfter(t *testing.T) {
	c := systemBus(t)
	t.Cleanup(func() {
		unmanageAll(t, c, bootCID)
		sh(t, "systemctl", "disable", "e2e-late-storage.service", "e2e-boot-vm.service")
	})
	before, _ := os.ReadFile(bootStateDir + "/boot-id")
	now, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if len(before) == 0 || string(before) == string(now) {
		t.Fatalf("not a new boot: boot id %q, before the reboot %q", now, before)
	}
	const wo = "storkeep-wait-online.service"
	if s := systemctlShow(t, "e2e-boot-vm.service", "ActiveState"); s != "active" {
		t.Errorf("e2e-boot-vm.service is %s after boot", s)
	}
	if s, r := systemctlShow(t, wo, "ActiveState"), systemctlShow(t, wo, "Result"); s != "active" || r != "success" {
		t.Errorf("%s: %s, Result=%s; want active, success", wo, s, r)
	}
	if b, err := os.ReadFile(bootStateDir + "/vm-saw"); err != nil || strings.TrimSpace(string(b)) != "b true" {
		t.Errorf("the VM saw its disk as %q (%v), want b true", b, err)
	}
	waitStart, waitEnd := monotonic(t, wo, "ExecMainStartTimestampMonotonic"), monotonic(t, wo, "ExecMainExitTimestampMonotonic")
	storageStart := monotonic(t, "e2e-late-storage.service", "ExecMainStartTimestampMonotonic")
	vmStart := monotonic(t, "e2e-boot-vm.service", "ExecMainStartTimestampMonotonic")
	t.Logf("since boot: %s started at %.1f s; the storage came up from %.1f s; %s ended at %.1f s; the VM started at %.1f s",
		wo, sec(waitStart), sec(storageStart), wo, sec(waitEnd), sec(vmStart))
	if !(waitStart < storageStart && storageStart < waitEnd && waitEnd <= vmStart) {
		t.Errorf("want %s waiting before the storage came up, ending after, and the VM after it", wo)
	}
	j, _ := sh(t, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", wo)
	if !strings.Contains(j, "managed CIDs: all 1 connected") {
		t.Errorf("the journal of %s this boot:\n%s", wo, j)
	}
	t.Logf("%s this boot:\n%s", wo, j)
	if got := connProp(t, c, bootCID, "Connected"); got != true {
		t.Errorf("%s Connected=%v", bootCID, got)
	}
}

func sec(usec uint64) float64 { return float64(usec) / 1e6 }

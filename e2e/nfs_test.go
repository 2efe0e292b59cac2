// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// The NFS "remote host": a network namespace behind a veth pair, with the
// kernel's nfsd serving tmpfs exports over NFSv4.2; NFSv3 is served by the
// guest's own nfs-server.service over loopback.
const (
	nfsNS     = "nfsns"
	nfsHostIP = "10.251.0.2" // this side of the veth pair (vnf0)
	nfsSrvIP  = "10.251.0.1" // the server's side (vnf1, in nfsns)
	nfsV4Root = "/srv/e2e-nfs4"
	nfsV3Dir  = "/srv/e2e-nfs3"
)

var nfsOnce sync.Once

// nfsServers starts both servers once for the whole suite.
func nfsServers(t *testing.T) {
	t.Helper()
	var failed string
	nfsOnce.Do(func() {
		script := fmt.Sprintf(`set -ex
ip netns add %[1]s
ip link add vnf0 type veth peer name vnf1
ip link set vnf1 netns %[1]s
ip addr add %[2]s/24 dev vnf0
ip link set vnf0 up
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[3]s/24 dev vnf1
ip -n %[1]s link set vnf1 up
mkdir -p %[4]s && mount -t tmpfs -o size=64m,mode=0755 tmpfs %[4]s
# One mkdir for all 200 of the benchmark's directories: a command costs
# 0.1-0.5 s in the guest.
mkdir -p %[4]s/a %[4]s/b %[4]s/bench/d{001..200} /etc/exports.d
echo "from the v4 server" >%[4]s/a/hello
cat >/etc/exports.d/e2e-v4.exports <<EOF
%[4]s    %[2]s/32(rw,sync,no_subtree_check,no_root_squash,fsid=0,crossmnt)
%[4]s/a  %[2]s/32(rw,sync,no_subtree_check,no_root_squash)
%[4]s/b  %[2]s/32(rw,sync,no_subtree_check,no_root_squash)
%[4]s/bench  %[2]s/32(rw,sync,no_subtree_check,no_root_squash)
EOF
ip netns exec %[1]s sh -ec '
  mount -t nfsd nfsd /proc/fs/nfsd
  mkdir -p /run/e2e-pipefs /var/lib/nfs/nfsdcld-e2e
  mount -t rpc_pipefs rpc_pipefs /run/e2e-pipefs
  nfsdcld -p /run/e2e-pipefs -s /var/lib/nfs/nfsdcld-e2e
  echo 10 >/proc/fs/nfsd/nfsv4gracetime
  rpc.mountd -N 3
  exportfs -ra
  rpc.nfsd -N 3 4'
mkdir -p %[5]s && mount -t tmpfs -o size=32m,mode=0755 tmpfs %[5]s
echo "from the v3 server" >%[5]s/hello
echo "%[5]s 127.0.0.1/32(rw,sync,no_subtree_check,no_root_squash,fsid=33)" >/etc/exports.d/e2e-v3.exports
systemctl start nfs-server.service
exportfs -ra
`, nfsNS, nfsHostIP, nfsSrvIP, nfsV4Root, nfsV3Dir)
		if out, err := sh(t, "bash", "-c", script); err != nil {
			failed = fmt.Sprintf("NFS servers: %v\n%s", err, out)
		}
	})
	if failed != "" {
		t.Fatal(failed)
	}
}

// nfsdInNS stops (threads 0) or starts the namespace's nfsd.
func nfsdInNS(t *testing.T, threads int) {
	t.Helper()
	args := fmt.Sprintf("mount -t nfsd nfsd /proc/fs/nfsd 2>/dev/null || true; rpc.nfsd -N 3 %d", threads)
	if threads == 0 {
		args = "mount -t nfsd nfsd /proc/fs/nfsd 2>/dev/null || true; rpc.nfsd 0"
	}
	if out, err := sh(t, "ip", "netns", "exec", nfsNS, "sh", "-c", args); err != nil {
		t.Fatalf("rpc.nfsd %d: %v\n%s", threads, err, out)
	}
}

func conn(c *godbus.Conn, cid string) godbus.BusObject {
	return c.Object(skdbus.BusName, skdbus.ConnectionPath(cid))
}

func prop(t *testing.T, c *godbus.Conn, cid, iface, name string) any {
	t.Helper()
	v, err := conn(c, cid).GetProperty(iface + "." + name)
	if err != nil {
		t.Fatalf("%s %s.%s: %v", cid, iface, name, err)
	}
	return v.Value()
}

func connProp(t *testing.T, c *godbus.Conn, cid, name string) any {
	t.Helper()
	return prop(t, c, cid, skdbus.ConnInterface, name)
}

// waitFor polls cond until it holds or d passes; what names the condition
// in the failure, with cond's last word on it.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			// The daemon's goroutines, in the journal, for the reader.
			sh(t, "systemctl", "kill", "--signal=QUIT", "storkeepd.service")
			t.Fatalf("%s: not within %v (%s)", what, d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitConnected(t *testing.T, c *godbus.Conn, cid string, want bool, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%s Connected=%v", cid, want), func() (bool, string) {
		got := connProp(t, c, cid, "Connected")
		return got == want, fmt.Sprintf("Connected=%v State=%v LastError=%v %v", got,
			connProp(t, c, cid, "State"), connProp(t, c, cid, "LastError"), connProp(t, c, cid, "LastErrorMessage"))
	})
}

func unmanage(t *testing.T, c *godbus.Conn, cid string) {
	t.Helper()
	if err := root(c).Call(skdbus.ManagerInterface+".Unmanage", 0, cid, map[string]godbus.Variant{}).Err; err != nil {
		t.Fatalf("Unmanage %s: %v", cid, err)
	}
}

// mountEntry is one line of the guest's mount table, as the tests need it.
type mountEntry struct{ id, source, fstype string }

// mountsAt reads the guest's mount table: every mount at where, bottom
// first.
func mountsAt(t *testing.T, where string) []mountEntry {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []mountEntry
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := 0
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep == 0 || len(fields) < sep+3 {
			continue
		}
		if strings.ReplaceAll(fields[4], `\040`, " ") == where {
			out = append(out, mountEntry{id: fields[0], fstype: fields[sep+1], source: fields[sep+2]})
		}
	}
	return out
}

// mountAt is the topmost mount at where: its ID, source and type, or ok
// false.
func mountAt(t *testing.T, where string) (id, source, fstype string, ok bool) {
	t.Helper()
	m := mountsAt(t, where)
	if len(m) == 0 {
		return "", "", "", false
	}
	top := m[len(m)-1]
	return top.id, top.source, top.fstype, true
}

func nfsMountPoint(t *testing.T, c *godbus.Conn, cid string) (where, unit string) {
	t.Helper()
	where, _ = prop(t, c, cid, skdbus.NFSInterface, "MountPoint").(string)
	unit, _ = prop(t, c, cid, skdbus.NFSInterface, "MountUnit").(string)
	if where == "" || unit == "" {
		t.Fatalf("%s: MountPoint %q, MountUnit %q", cid, where, unit)
	}
	return where, unit
}

func systemctlShow(t *testing.T, unit, prop string) string {
	t.Helper()
	out, _ := sh(t, "systemctl", "show", "-p", prop, "--value", unit)
	return strings.TrimSpace(out)
}

// TestNFSManageReadWriteShareUnmanage covers the life of a mount: v4.2 and
// v3, files through MountPoint, two CIDs on one mount, the unit as systemd
// shows it, and the unmount by the last Unmanage.
func TestNFSManageReadWriteShareUnmanage(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	for _, tc := range []struct{ name, uri, hello string }{
		{"v4.2", "nfs://" + nfsSrvIP + "/a?vers=4.2", "from the v4 server"},
		{"v3", "nfs://127.0.0.1" + nfsV3Dir + "?vers=3", "from the v3 server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cid1, cid2 := "e2e-nfs-"+tc.name+"-1", "e2e-nfs-"+tc.name+"-2"
			if err := manage(c, tc.uri, cid1, nil); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, c, cid1, true, 60*time.Second)
			where, unit := nfsMountPoint(t, c, cid1)

			// What the host shows: the mount, the unit, its name.
			id, source, fstype, ok := mountAt(t, where)
			if !ok || !strings.HasPrefix(fstype, "nfs") {
				t.Fatalf("mount table has no NFS mount at %s (%s %s)", where, source, fstype)
			}
			esc, err := sh(t, "systemd-escape", "--path", "--suffix=mount", where)
			if err != nil || strings.TrimSpace(esc) != unit {
				t.Errorf("MountUnit %q, systemd-escape says %q (%v)", unit, esc, err)
			}
			if s := systemctlShow(t, unit, "ActiveState"); s != "active" {
				t.Errorf("%s ActiveState %s", unit, s)
			}
			if s := systemctlShow(t, unit, "Transient"); s != "yes" {
				t.Errorf("%s Transient=%s", unit, s)
			}
			if d := systemctlShow(t, unit, "Description"); !strings.Contains(d, cid1) {
				t.Errorf("%s Description %q does not name %s", unit, d, cid1)
			}
			opts := systemctlShow(t, unit, "Options")
			for _, o := range []string{"soft", "timeo=100", "retrans=3", "nosharecache"} {
				if !strings.Contains(opts, o) {
					t.Errorf("%s Options %q lack %s", unit, opts, o)
				}
			}
			t.Logf("%s at %s (%s %s), unit %s, options %s", tc.uri, where, fstype, source, unit, opts)

			// Files through the mount point (a shell with a deadline: a
			// hung mount must not hang the suite).
			out, err := sh(t, "timeout", "30", "cat", filepath.Join(where, "hello"))
			if err != nil || strings.TrimSpace(out) != tc.hello {
				t.Errorf("read through %s: %q %v", where, out, err)
			}
			msg := "written through storkeep " + tc.name
			if out, err := sh(t, "timeout", "30", "sh", "-c",
				fmt.Sprintf("echo '%s' >%s/written && sync %s/written && cat %s/written", msg, where, where, where)); err != nil || strings.TrimSpace(out) != msg {
				t.Errorf("write through %s: %q %v", where, out, err)
			}

			// A second CID shares the mount.
			if err := manage(c, tc.uri, cid2, nil); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, c, cid2, true, 30*time.Second)
			if w2, _ := nfsMountPoint(t, c, cid2); w2 != where {
				t.Errorf("second CID at %s, first at %s", w2, where)
			}
			if id2, _, _, _ := mountAt(t, where); id2 != id {
				t.Errorf("mount ID changed from %s to %s: remounted", id, id2)
			}

			unmanage(t, c, cid1)
			time.Sleep(500 * time.Millisecond)
			if id2, _, _, ok := mountAt(t, where); !ok || id2 != id {
				t.Fatalf("unmanaging one of two CIDs touched the mount (%v %s)", ok, id2)
			}
			unmanage(t, c, cid2)
			waitFor(t, 30*time.Second, "unmounted after the last Unmanage", func() (bool, string) {
				_, _, _, ok := mountAt(t, where)
				return !ok, "still in the mount table"
			})
			waitFor(t, 10*time.Second, "unit gone", func() (bool, string) {
				s := systemctlShow(t, unit, "LoadState")
				return s == "not-found", "LoadState " + s
			})
			if _, err := os.Stat(where); !os.IsNotExist(err) {
				t.Errorf("mount point %s left behind: %v", where, err)
			}
		})
	}
}

// TestNFSWrongExportIsNamedAndRetried: a named error with the server's
// words, and attempts that go on.
func TestNFSWrongExportIsNamedAndRetried(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	cid := "e2e-nfs-wrong"
	if err := manage(c, "nfs://"+nfsSrvIP+"/nope?vers=4.2", cid, nil); err != nil {
		t.Fatal(err)
	}
	defer unmanage(t, c, cid)
	waitFor(t, 60*time.Second, "ExportNotFound after three attempts", func() (bool, string) {
		e := connProp(t, c, cid, "LastError")
		n, _ := connProp(t, c, cid, "Attempts").(uint32)
		return e == "ExportNotFound" && n >= 3, fmt.Sprintf("LastError %v, %d attempts", e, n)
	})
	msg, _ := connProp(t, c, cid, "LastErrorMessage").(string)
	if !strings.Contains(msg, "No such file or directory") {
		t.Errorf("LastErrorMessage %q lacks the helper's words", msg)
	}
	t.Logf("LastErrorMessage: %s", msg)
	if connProp(t, c, cid, "Connected") != false {
		t.Error("a missing export counts as connected")
	}
}

// TestNFSServerOutageAndUnmountBehindOurBack: loss is reported and the
// connection comes back with no client call.
func TestNFSServerOutageAndUnmountBehindOurBack(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	cid := "e2e-nfs-outage"
	if err := manage(c, "nfs://"+nfsSrvIP+"/b?vers=4.2", cid, nil); err != nil {
		t.Fatal(err)
	}
	defer unmanage(t, c, cid)
	waitConnected(t, c, cid, true, 60*time.Second)
	where, _ := nfsMountPoint(t, c, cid)

	// The server stops: reported, with an error.
	nfsdInNS(t, 0)
	start := time.Now()
	waitConnected(t, c, cid, false, 30*time.Second)
	t.Logf("server stop noticed after %v: %v %v", time.Since(start).Round(time.Millisecond),
		connProp(t, c, cid, "LastError"), connProp(t, c, cid, "LastErrorMessage"))
	if connProp(t, c, cid, "LastError") == "" {
		t.Error("no LastError while the server is down")
	}
	// It starts again: back, with no call from us.
	nfsdInNS(t, 8)
	start = time.Now()
	waitConnected(t, c, cid, true, 60*time.Second)
	t.Logf("server return noticed after %v", time.Since(start).Round(time.Millisecond))

	// An admin unmounts behind the daemon's back: lost, then mounted
	// again (the kernel may well reuse the mount ID: ConnectedSince tells).
	since := connProp(t, c, cid, "ConnectedSince")
	if out, err := sh(t, "umount", "-l", where); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	start = time.Now()
	waitFor(t, 30*time.Second, "mounted again", func() (bool, string) {
		_, _, _, ok := mountAt(t, where)
		now := connProp(t, c, cid, "ConnectedSince")
		return ok && now != since && connProp(t, c, cid, "Connected") == true,
			fmt.Sprintf("in the mount table: %v, ConnectedSince %v", ok, now)
	})
	t.Logf("remounted %v after the admin's umount", time.Since(start).Round(time.Millisecond))
}

// TestNFSRestartAndKill9LeaveMountsAlone: the mount's ID stays the same
// across a restart and a kill -9 of the daemon, and it still counts as
// storkeep's own (so it goes with the last Unmanage).
func TestNFSRestartAndKill9LeaveMountsAlone(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	cid := "e2e-nfs-restart"
	if err := manage(c, "nfs://"+nfsSrvIP+"/a?vers=4.2", cid, nil); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c, cid, true, 60*time.Second)
	where, _ := nfsMountPoint(t, c, cid)
	id, _, _, _ := mountAt(t, where)

	for _, how := range [][]string{
		{"systemctl", "restart", "storkeepd.service"},
		{"systemctl", "kill", "--signal=KILL", "storkeepd.service"},
	} {
		before := mainPID(t)
		if out, err := sh(t, how[0], how[1:]...); err != nil {
			t.Fatalf("%v: %v\n%s", how, err, out)
		}
		waitFor(t, 60*time.Second, "daemon back after "+strings.Join(how, " "), func() (bool, string) {
			p := mainPID(t)
			return p != before && p != "0", "MainPID " + p
		})
		waitForName(t, c)
		waitConnected(t, c, cid, true, 30*time.Second)
		if id2, _, _, ok := mountAt(t, where); !ok || id2 != id {
			t.Fatalf("after %v the mount changed: %v %s -> %s", how, ok, id, id2)
		}
		if connProp(t, c, cid, "Preexisting") != false {
			t.Errorf("after %v the mount counts as pre-existing", how)
		}
	}
	unmanage(t, c, cid)
	waitFor(t, 30*time.Second, "unmounted", func() (bool, string) {
		_, _, _, ok := mountAt(t, where)
		return !ok, "still mounted"
	})
}

// TestNFSPreexistingMountAdoptedAndLeft: a mount an admin made at the
// mount point storkeep would use is adopted, not remounted, and stays
// after the last Unmanage. Until then, it is listed as a host connection.
func TestNFSPreexistingMountAdoptedAndLeft(t *testing.T) {
	nfsServers(t)
	c := systemBus(t)
	uri := "nfs://" + nfsSrvIP + "/b?vers=4.2"
	cid := "e2e-nfs-adopt"

	// Learn the mount point from a CID, then let it go.
	if err := manage(c, uri, cid, nil); err != nil {
		t.Fatal(err)
	}
	where, _ := nfsMountPoint(t, c, cid)
	waitConnected(t, c, cid, true, 60*time.Second)
	unmanage(t, c, cid)
	// Disconnect removes the mount point after the unmount: wait for that
	// too, or it removes the directory made for the manual mount.
	waitFor(t, 30*time.Second, "unmounted and the mount point removed", func() (bool, string) {
		if _, _, _, ok := mountAt(t, where); ok {
			return false, "still mounted"
		}
		if _, err := os.Lstat(where); !os.IsNotExist(err) {
			return false, fmt.Sprintf("mount point still there (%v)", err)
		}
		return true, ""
	})

	if out, err := sh(t, "sh", "-c", fmt.Sprintf("mkdir -p '%s' && timeout 60 mount -t nfs -o vers=4.2,soft %s:/b '%s'", where, nfsSrvIP, where)); err != nil {
		t.Fatalf("manual mount: %v\n%s", err, out)
	}
	defer sh(t, "umount", "-l", where)
	id, _, _, _ := mountAt(t, where)

	// Unmanaged, it is listed with a transient ID.
	found := false
	for name, st := range list(t, c) {
		if strings.HasPrefix(name, "nfs/") && st["managed"].Value() == false {
			if info, ok := st["connectionInfo"].Value().(map[string]godbus.Variant); ok && info["mountPoint"].Value() == where {
				found = true
			}
		}
	}
	if !found {
		t.Error("List does not show the manual mount as a host connection")
	}

	if err := manage(c, uri, cid, nil); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c, cid, true, 30*time.Second)
	if connProp(t, c, cid, "Preexisting") != true {
		t.Error("the manual mount is not marked Preexisting")
	}
	if id2, _, _, _ := mountAt(t, where); id2 != id {
		t.Errorf("adopting remounted: %s -> %s", id, id2)
	}
	unmanage(t, c, cid)
	time.Sleep(time.Second)
	if id2, _, _, ok := mountAt(t, where); !ok || id2 != id {
		t.Errorf("the last Unmanage touched the pre-existing mount (%v %s)", ok, id2)
	}
}

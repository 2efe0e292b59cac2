package main

import (
	"strings"
	"testing"
)

// TestWaitAllAgainstDaemon: storkeepctl wait --all and --prefix (what
// storkeep-wait-online.service runs) against the real daemon, where no
// connection comes up (no systemd, no server): nothing managed is success
// at once, and a CID that stays down fails at the timeout, named with its
// state and error.
func TestWaitAllAgainstDaemon(t *testing.T) {
	d := newDaemon(t)
	if out, errOut, code := d.ctl(t, "wait", "--all", "--timeout", "5s"); code != 0 ||
		out != "no managed CIDs: nothing to wait for\n" {
		t.Fatalf("wait --all with nothing managed: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := d.ctl(t, "manage", nfsURI, "vm1-disk"); code != 0 {
		t.Fatalf("manage: exit %d: %s", code, errOut)
	}
	out, errOut, code := d.ctl(t, "wait", "--prefix", "vm1-", "--timeout", "1s")
	if code != 4 || out != "" || !strings.Contains(errOut, "storkeepctl: wait: vm1-disk: not connected: ") ||
		!strings.HasSuffix(errOut, "managed CIDs starting with vm1-: 1 of 1 not connected within 1s (Timeout)\n") {
		t.Fatalf("wait --prefix vm1- with vm1-disk down: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := d.ctl(t, "wait", "--prefix", "vm2-", "--timeout", "1s"); code != 0 {
		t.Fatalf("wait --prefix vm2- (none): exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("wait --prefix vm1-: %s", errOut)
}

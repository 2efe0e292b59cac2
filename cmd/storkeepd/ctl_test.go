// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ctl runs storkeepctl against the test daemon and returns its stdout,
// stderr and exit code.
func (d *daemon) ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, append([]string{"--bus", d.bus.Address}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("storkeepctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestStorkeepctl drives the real daemon with the real client.
func TestStorkeepctl(t *testing.T) {
	d := newDaemon(t)

	mon := exec.Command(ctlBin, "--bus", d.bus.Address, "monitor")
	monOut, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mon.Process.Kill(); _ = mon.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(monOut)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond) // let monitor subscribe; the test does not depend on it otherwise

	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := d.ctl(t, "manage", iscsiURI, "ctl-lun", "--chap-user", "alice", "--chap-password-file", pw)
	if code != 0 || !strings.Contains(out, "/connection/ctl_2dlun") {
		t.Fatalf("manage: code %d\n%s%s", code, out, errOut)
	}
	if _, _, code := d.ctl(t, "manage", nfsURI, "ctl-nfs"); code != 0 {
		t.Fatalf("manage nfs: code %d", code)
	}

	for _, args := range [][]string{{"list", "--json"}, {"list", "-o", "json"}, {"list", "--output=json"}} {
		out, _, code = d.ctl(t, args...)
		var l map[string]map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || l["ctl-nfs"]["Kind"] != "nfs" || l["ctl-nfs"]["CID"] != "ctl-nfs" {
			t.Fatalf("%q: code %d\n%s", args, code, out)
		}
	}
	out, _, code = d.ctl(t, "status")
	if code != 0 || !strings.Contains(out, "Version:          "+testVersion+"\n") || !strings.Contains(out, "Managed:          2 (") {
		t.Fatalf("status: code %d\n%s", code, out)
	}
	out, _, code = d.ctl(t, "show", "ctl-nfs", "-p", "Kind", "--value")
	if code != 0 || out != "nfs\n" {
		t.Fatalf("show -p Kind --value: code %d\n%q", code, out)
	}
	out, _, code = d.ctl(t, "list")
	if code != 0 || !strings.Contains(out, "ctl-lun") || !strings.Contains(out, "ctl-nfs") {
		t.Fatalf("list: code %d\n%s", code, out)
	}
	out, _, code = d.ctl(t, "show", "ctl-lun")
	if code != 0 || !strings.Contains(out, "Kind: iscsi") || strings.Contains(out, secret) {
		t.Fatalf("show: code %d\n%s", code, out)
	}
	_, errOut, code = d.ctl(t, "wait", "ctl-nfs", "--timeout", "200ms")
	if code != 4 || !strings.Contains(errOut, "last error") {
		t.Fatalf("wait on a connection that cannot come up here: code %d, want 4\n%s", code, errOut)
	}
	if _, _, code := d.ctl(t, "manage", "http://x/y", "bad"); code != 6 {
		t.Errorf("manage with a bad URI: code %d, want 6", code)
	}
	if _, _, code := d.ctl(t, "manage", nfsURI+"?vers=3", "ctl-nfs"); code != 7 {
		t.Errorf("manage of a used CID with another spec: code %d, want 7", code)
	}
	if _, _, code := d.ctl(t, "unmanage", "ctl-nfs"); code != 0 {
		t.Errorf("unmanage: code %d", code)
	}
	if _, _, code := d.ctl(t, "unmanage", "ctl-nfs"); code != 3 {
		t.Errorf("unmanage unknown: code %d, want 3", code)
	}
	out, _, code = d.ctl(t, "unmanage", "--prefix", "ctl-")
	if code != 0 || strings.TrimSpace(out) != "ctl-lun" {
		t.Errorf("unmanage --prefix: code %d, %q", code, out)
	}

	// The monitor saw the CIDs come and go.
	var seen []string
	deadline := time.After(20 * time.Second)
	for !(containsLine(seen, "ctl-lun added") && containsLine(seen, "ctl-lun removed")) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("monitor ended; saw:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("monitor did not show ctl-lun added and removed; saw:\n%s", strings.Join(seen, "\n"))
		}
	}
	for _, l := range seen {
		if strings.Contains(l, secret) {
			t.Errorf("monitor shows the secret: %s", l)
		}
	}
	// Once the daemon is gone, the client says so.
	d.stop()
	if _, _, code := d.ctl(t, "list"); code != 69 {
		t.Errorf("list without a daemon: code %d, want 69", code)
	}
	d.start()
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

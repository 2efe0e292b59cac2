// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// TestTenThousandUnprivilegedCalls floods the daemon with ten thousand
// hostile changing calls from one unprivileged client (uid 65534,
// testdata/floodclient) while root keeps managing, listing and reading.
// Every hostile call must get a named error, root's calls must keep being
// answered, and nothing of the flood may reach the state directory.
func TestTenThousandUnprivilegedCalls(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	if testing.Short() {
		t.Skip("floods the daemon for a while")
	}
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	const victim = "victim"
	if _, err := manage(conn, nfsURI, victim, nil); err != nil {
		t.Fatal(err)
	}
	// The bus's directory is world-readable: uid 65534 can run it there.
	client := filepath.Join(d.bus.Dir, "floodclient")
	if out, err := exec.Command("go", "build", "-o", client, "./testdata/floodclient").CombinedOutput(); err != nil {
		t.Fatalf("build floodclient: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	flood := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		client, "-address", d.bus.Address, "-victim", victim, "-n", "10000")
	flood.Stdout, flood.Stderr = &out, &out
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()

	// Root, meanwhile: every call answered, none slow.
	call := func(obj godbus.BusObject, method string, args ...any) *godbus.Call {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return obj.CallWithContext(ctx, method, 0, args...)
	}
	managed := map[string]bool{victim: true}
	var (
		answered int
		slowest  time.Duration
		floodErr error
	)
	// The flood's end is known from floodDone alone: reading
	// flood.ProcessState here would race with flood.Wait.
	for i, finished := 0, false; !finished; i++ {
		select {
		case floodErr = <-floodDone:
			finished = true
			continue
		default:
		}
		start := time.Now()
		cid := fmt.Sprintf("ok-%d", i)
		if err := call(root(conn), skdbus.ManagerInterface+".Manage", nfsURI, cid, map[string]godbus.Variant{}).Err; err != nil {
			t.Fatalf("root's Manage %s during the flood: %v", cid, err)
		}
		managed[cid] = true
		if i%10 != 0 {
			if err := call(root(conn), skdbus.ManagerInterface+".Unmanage", cid, map[string]godbus.Variant{}).Err; err != nil {
				t.Fatalf("root's Unmanage %s during the flood: %v", cid, err)
			}
			delete(managed, cid)
		}
		var l map[string]map[string]godbus.Variant
		if err := call(root(conn), skdbus.ManagerInterface+".List", map[string]godbus.Variant{}).Store(&l); err != nil || len(l) != len(managed) {
			t.Fatalf("root's List during the flood: %d entries (%v), want %d", len(l), err, len(managed))
		}
		if err := call(conn.Object(skdbus.BusName, skdbus.ConnectionPath(victim)), skdbus.PropertiesIface+".Get",
			skdbus.ConnInterface, "State").Err; err != nil {
			t.Fatalf("root's Get during the flood: %v", err)
		}
		slowest = max(slowest, time.Since(start))
		answered++
	}
	if floodErr != nil {
		t.Fatalf("floodclient: %v\n%s", floodErr, out.String())
	}
	var res struct {
		Counts  map[string]int
		Bad     []string
		Seconds float64
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res); err != nil {
		t.Fatalf("floodclient output: %v\n%s", err, out.String())
	}
	total := 0
	for name, n := range res.Counts {
		total += n
		if !strings.HasPrefix(name, skdbus.ErrorPrefix) && name != "org.freedesktop.DBus.Error.InvalidArgs" &&
			name != "org.freedesktop.DBus.Error.PropertyReadOnly" {
			t.Errorf("%d hostile calls got error %s", n, name)
		}
	}
	if total != 10000 || len(res.Bad) != 0 {
		t.Fatalf("floodclient: %d named errors, bad: %q", total, res.Bad)
	}
	if res.Counts[skdbus.ErrorNotAuthorized] == 0 {
		t.Errorf("no NotAuthorized among the errors: %v", res.Counts)
	}
	t.Logf("10,000 hostile calls in %.1f s: %v; root got %d rounds answered meanwhile, the slowest in %v",
		res.Seconds, res.Counts, answered, slowest)
	if answered < 5 {
		t.Errorf("root got only %d rounds answered during the flood", answered)
	}
	if slowest > 20*time.Second {
		t.Errorf("a round of root's calls took %v during the flood", slowest)
	}

	// Nothing of the flood is on disk; the victim is still managed.
	files := 0
	err := filepath.WalkDir(d.stateDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("flood")) {
			t.Errorf("%s holds something of the flood:\n%s", path, b)
		}
		if filepath.Base(filepath.Dir(path)) == "cids" {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != len(managed) {
		t.Errorf("the state holds %d CID files, want %d", files, len(managed))
	}
	if _, ok := list(t, conn, nil)[victim]; !ok {
		t.Error("the victim was unmanaged")
	}
	if !contains(d.log.String(), "uid=65534") {
		t.Error("the denials are not logged with the caller's uid")
	}
}

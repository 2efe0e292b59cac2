// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// countingBackend has every target connected and counts Disconnect calls.
type countingBackend struct {
	mu          sync.Mutex
	observed    map[service.TargetKey]int
	disconnects int
}

func (b *countingBackend) Observe(_ context.Context, spec service.Spec) (service.Observation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observed[spec.Target]++
	return service.Observation{Present: true, Connected: true}, nil
}

func (b *countingBackend) Connect(context.Context, service.Spec) (service.Observation, error) {
	return service.Observation{Present: true, Connected: true}, nil
}

func (b *countingBackend) Disconnect(context.Context, service.Spec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.disconnects++
	return nil
}

func (b *countingBackend) counts() (observed, disconnects int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.observed), b.disconnects
}

// TestUnreadableStateFilesHoldOverTheBus: the daemon starts over CID files
// damaged while it was stopped (an unknown key, as a downgrade leaves; a
// file torn to 7 bytes). On a private bus, with a backend that counts:
// no Disconnect at all, and List tells a client which files hold what.
func TestUnreadableStateFilesHoldOverTheBus(t *testing.T) {
	damages := map[string]func(path string) error{
		"unknown key": func(path string) error {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("\nfuture_key = true\n")
			return err
		},
		"torn": func(path string) error { return os.Truncate(path, 7) },
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			// Arrange: the state a daemon left with two connections it made.
			dir := t.TempDir()
			store, _, err := service.OpenStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			for cid, uri := range map[string]string{
				"vm1-nfs": "nfs://files.example/exports/a",
				"vm1-lun": "iscsi://san.example/iqn.2004-04.org.example:store1",
			} {
				spec, err := service.ParseURI(uri)
				if err != nil {
					t.Fatal(err)
				}
				if err := store.PutCID(service.CID(cid), spec); err != nil {
					t.Fatal(err)
				}
				if err := store.PutTarget(spec, false); err != nil {
					t.Fatal(err)
				}
			}
			files, _ := os.ReadDir(dir + "/cids")
			for _, f := range files {
				if err := damage(dir + "/cids/" + f.Name()); err != nil {
					t.Fatal(err)
				}
			}

			// Act: the daemon starts, on a private bus.
			be := &countingBackend{observed: map[service.TargetKey]int{}}
			svc, err := service.New(service.Options{Store: store,
				Backends: map[service.Kind]service.Backend{service.KindNFS: be, service.KindISCSI: be}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { _ = svc.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			srv, addr := newBusServer(t, svc)
			go srv.Serve(ctx)
			client, err := godbus.Connect(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()

			// Assert: both targets looked at, listed as held, never
			// disconnected.
			var entries map[string]map[string]godbus.Variant
			deadline := time.Now().Add(20 * time.Second)
			for {
				entries = nil
				_ = client.Object(BusName, RootPath).Call(ManagerInterface+".List", 0, map[string]godbus.Variant{}).Store(&entries)
				held := 0
				for id, e := range entries {
					if strings.HasPrefix(id, "unmanaged/") && e["lastError"].Value() == "BadStateFile" && e["connected"].Value() == true {
						held++
					}
				}
				if observed, _ := be.counts(); observed == 2 && held == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("List never showed both targets held: %v", entries)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // a teardown, if any, would be under way by now
			if _, n := be.counts(); n != 0 {
				t.Errorf("%d Disconnect calls; want 0", n)
			}
			statefiles := 0
			for id, e := range entries {
				if strings.HasPrefix(id, "statefile/") {
					statefiles++
					if msg, _ := e["lastErrorMessage"].Value().(string); !strings.Contains(msg, "held") {
						t.Errorf("%s: LastErrorMessage %q does not say what it holds", id, msg)
					}
				}
			}
			if statefiles != 2 {
				t.Errorf("List shows %d bad state files; want 2: %v", statefiles, entries)
			}
		})
	}
}

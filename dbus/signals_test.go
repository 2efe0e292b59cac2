// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"context"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// mountBackend has every target connected at a mount point the test
// sets, and pokes a target when asked.
type mountBackend struct {
	mu    sync.Mutex
	where string
	poke  func(service.TargetKey)
}

func (b *mountBackend) observation() service.Observation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return service.Observation{Present: true, Connected: true, Info: map[string]any{InfoMountPoint: b.where}}
}

func (b *mountBackend) Observe(context.Context, service.Spec) (service.Observation, error) {
	return b.observation(), nil
}

func (b *mountBackend) Connect(context.Context, service.Spec) (service.Observation, error) {
	return b.observation(), nil
}

func (b *mountBackend) Disconnect(context.Context, service.Spec) error { return nil }

func (b *mountBackend) Watch(ctx context.Context, poke func(service.TargetKey)) {
	b.mu.Lock()
	b.poke = poke
	b.mu.Unlock()
	<-ctx.Done()
}

// move mounts every target at where from now on and pokes key.
func (b *mountBackend) move(t *testing.T, where string, key service.TargetKey) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b.mu.Lock()
		b.where = where
		poke := b.poke
		b.mu.Unlock()
		if poke != nil {
			poke(key)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never watched the backend")
		}
	}
}

// TestSignalsDiffFromWhatClientsSaw: an object managed before the server
// served changes: a PropertiesChanged with the properties that changed
// alone (the server started from what it was, not from nothing); when it
// changes back, another. An object managed later is added, then removed
// with the interfaces of its kind.
func TestSignalsDiffFromWhatClientsSaw(t *testing.T) {
	store, _, err := service.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	be := &mountBackend{where: "/mnt/a"}
	svc, err := service.New(service.Options{Store: store, Backends: map[service.Kind]service.Backend{service.KindNFS: be}})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := service.ParseURI("nfs://files.example/exports/seeded")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Manage("seeded", spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, _ := svc.Status("seeded"); st.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("seeded never connected")
		}
	}
	srv, addr := newBusServer(t, svc)
	served := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(served) }()
	defer func() { cancel(); <-served }()
	client, err := godbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.AddMatchSignal(godbus.WithMatchSender(BusName)); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *godbus.Signal, 64)
	client.Signal(sigs)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var has bool
		if err := client.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err == nil && has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not own its name")
		}
	}
	next := func(what string) *godbus.Signal {
		t.Helper()
		select {
		case s := <-sigs:
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("no signal: want %s", what)
			return nil
		}
	}
	// propsChanged takes the PropertiesChanged signals of one change, for
	// each interface the properties that changed.
	propsChanged := func(what string, path godbus.ObjectPath) map[string]map[string]godbus.Variant {
		t.Helper()
		out := map[string]map[string]godbus.Variant{}
		for len(out) < 2 {
			s := next(what)
			if s.Name != PropertiesIface+".PropertiesChanged" || s.Path != path {
				t.Fatalf("%s: got %s from %s %v", what, s.Name, s.Path, s.Body)
			}
			out[s.Body[0].(string)] = s.Body[1].(map[string]godbus.Variant)
		}
		return out
	}

	seeded := ConnectionPath("seeded")
	for _, where := range []string{"/mnt/b", "/mnt/a"} {
		be.move(t, where, spec.Target)
		got := propsChanged("the move to "+where, seeded)
		if len(got[ConnInterface]) != 1 || len(got[NFSInterface]) != 1 ||
			got[NFSInterface]["MountPoint"].Value() != where ||
			got[ConnInterface]["ConnectionInfo"].Value().(map[string]godbus.Variant)[InfoMountPoint].Value() != where {
			t.Fatalf("the move to %s: signals %v; want ConnectionInfo and MountPoint alone, at %s", where, got, where)
		}
	}

	later, err := service.ParseURI("nfs://files.example/exports/later")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Manage("later", later); err != nil {
		t.Fatal(err)
	}
	if s := next("InterfacesAdded"); s.Name != ObjectManagerIface+".InterfacesAdded" || s.Body[0] != ConnectionPath("later") {
		t.Fatalf("after Manage: %s %v; want InterfacesAdded of later", s.Name, s.Body)
	}
	if err := svc.Unmanage("later"); err != nil {
		t.Fatal(err)
	}
	for {
		s := next("InterfacesRemoved")
		if s.Name == PropertiesIface+".PropertiesChanged" && s.Path == ConnectionPath("later") {
			continue // it connected before it went
		}
		names, _ := s.Body[1].([]string)
		if s.Name != ObjectManagerIface+".InterfacesRemoved" || s.Body[0] != ConnectionPath("later") ||
			len(names) != len(interfaceNames(service.Status{Kind: service.KindNFS})) || names[1] != NFSInterface {
			t.Fatalf("after Unmanage: %s %v; want InterfacesRemoved of later with the NFS interfaces", s.Name, s.Body)
		}
		break
	}
}

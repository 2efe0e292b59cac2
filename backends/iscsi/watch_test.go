// SPDX-License-Identifier: Apache-2.0

package iscsi

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/storkeep/storkeep/service"
)

// TestWatchPokes: a session that appears, fails, recovers and goes is
// poked each time, under its canonical key and the key of the known
// target it belongs to, within the watch interval.
func TestWatchPokes(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	b.WatchInterval = 20 * time.Millisecond
	// A target the service asked about, spelled differently from sysfs.
	spec := mustSpec(t, "iscsi://10.252.0.1/"+testIQN+"/1")
	if _, err := b.Observe(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	canonical := mustSpec(t, "iscsi://10.252.0.1:3260/"+testIQN+";tpgt=1;iface=default").Target

	var mu sync.Mutex
	poked := map[service.TargetKey]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Watch(ctx, func(k service.TargetKey) {
			mu.Lock()
			poked[k]++
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context ended")
		}
	}()
	waitPoke := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			mu.Lock()
			got, gotC := poked[spec.Target], poked[canonical]
			mu.Unlock()
			if got >= n && gotC >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: poked %d (canonical %d) times, want %d", what, got, gotC, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond) // the first snapshot
	h.add(t, standard(1))
	waitPoke("login", 1)
	h.setState(t, 1, stateFailed)
	waitPoke("failure", 2)
	h.setState(t, 1, stateLoggedIn)
	waitPoke("recovery", 3)
	h.remove(t, 1)
	waitPoke("logout", 4)

	mu.Lock()
	for k := range poked {
		if k != spec.Target && k != canonical {
			t.Errorf("poked an unrelated key %s", k)
		}
	}
	mu.Unlock()
}

func udevMessage(props string) []byte {
	head := make([]byte, 40)
	copy(head, "libudev\x00")
	binary.LittleEndian.PutUint32(head[8:], 0xfeedcafe)
	binary.LittleEndian.PutUint32(head[12:], 40)
	binary.LittleEndian.PutUint32(head[16:], 40)
	binary.LittleEndian.PutUint32(head[20:], uint32(len(props)))
	return append(head, props...)
}

func TestParseUevent(t *testing.T) {
	kernel := []byte("add@/devices/platform/host0/session1/iscsi_session/session1\x00ACTION=add\x00" +
		"DEVPATH=/devices/platform/host0/session1/iscsi_session/session1\x00SUBSYSTEM=iscsi_session\x00SEQNUM=1234\x00")
	u := parseUevent(kernel)
	if u.Action != "add" || u.Subsystem != "iscsi_session" || !relevantUevent(u) {
		t.Errorf("kernel uevent: %+v", u)
	}
	udev := udevMessage("ACTION=add\x00DEVPATH=/devices/platform/host0/session1/target0:0:0/0:0:0:1/block/sda\x00SUBSYSTEM=block\x00DEVTYPE=disk\x00")
	u = parseUevent(udev)
	if u.Action != "add" || u.Subsystem != "block" || u.DevType != "disk" || !relevantUevent(u) {
		t.Errorf("udev uevent: %+v", u)
	}
	u = parseUevent([]byte("change@/devices/virtual/net/vis0\x00ACTION=change\x00SUBSYSTEM=net\x00"))
	if relevantUevent(u) {
		t.Errorf("a net uevent is relevant: %+v", u)
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00SUBSYSTEM=block\x00"))
	f.Add(udevMessage("SUBSYSTEM=scsi\x00"))
	f.Add([]byte("libudev\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		u := parseUevent(msg)
		_ = relevantUevent(u)
	})
}

// TestWatchSeesARecoveryAtOnce: the end of a recovery makes no uevent; a
// session that is not logged in has its state re-read far more often than
// the watch interval, so the recovery is poked long before the next full
// re-read.
func TestWatchSeesARecoveryAtOnce(t *testing.T) {
	h := newFakeHost(t)
	b := h.backend()
	b.WatchInterval = time.Hour
	s := standard(1)
	h.add(t, s)
	h.setState(t, 1, stateFailed)
	canonical := mustSpec(t, "iscsi://10.252.0.1:3260/"+testIQN+";tpgt=1;iface=default").Target

	poked := make(chan service.TargetKey, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Watch(ctx, func(k service.TargetKey) { poked <- k })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // the first snapshot
	h.setState(t, 1, stateLoggedIn)
	select {
	case k := <-poked:
		if k != canonical {
			t.Fatalf("poked %s, want %s", k, canonical)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a session's recovery was not seen before the next full re-read")
	}
	// Logged in: only the full re-read looks again; nothing more is poked.
	select {
	case k := <-poked:
		t.Fatalf("poked %s again with nothing changed", k)
	case <-time.After(300 * time.Millisecond):
	}
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

// TestListEntryIsWhatTheGenericEncoderWrites: each entry, with every key,
// none, each key alone and the brief keys, is byte for byte what kvs
// writes of listValues, the values godbus gets for the same entry.
func TestListEntryIsWhatTheGenericEncoderWrites(t *testing.T) {
	keySets := []map[string]bool{nil, {}, {}}
	for _, k := range listBriefKeys {
		keySets[2][k] = true
	}
	for _, p := range listValues(service.Status{}) {
		keySets = append(keySets, map[string]bool{p.k: true})
	}
	if len(listFields) != len(listValues(service.Status{})) {
		t.Fatalf("%d list fields, %d list values", len(listFields), len(listValues(service.Status{})))
	}
	for i, p := range listValues(service.Status{}) {
		if listFields[i].key != p.k {
			t.Fatalf("list field %d is %s, list value %d is %s", i, listFields[i].key, i, p.k)
		}
	}
	for _, st := range testStatuses() {
		for _, keys := range keySets {
			var want wireEncoder
			if err := want.str(st.ID); err != nil {
				t.Fatal(err)
			}
			if err := want.kvs(selectKeys(listValues(st), keys)); err != nil {
				t.Fatal(err)
			}
			var got wireEncoder
			got.b = []byte("left from the last entry")
			if err := encodeListEntry(&got, &st, listFieldMask(keys)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.b, want.b) {
				t.Errorf("%s, keys %v:\n got %q\nwant %q", st.ID, keys, got.b, want.b)
			}
		}
	}
}

// TestBlockBodyCrossesBlocks: a body written in pieces of every size
// across block boundaries reads back whole, aligned where it was aligned,
// and its blocks go back for the next body.
func TestBlockBodyCrossesBlocks(t *testing.T) {
	var want []byte
	var b blockBody
	for i := 0; len(want) < 3*listBlockSize; i++ {
		p := bytes.Repeat([]byte{byte(i)}, i*37%1000+1)
		b.write(p)
		want = append(want, p...)
		b.align(8)
		for len(want)%8 != 0 {
			want = append(want, 0)
		}
	}
	if b.size != len(want) {
		t.Fatalf("size %d, wrote %d", b.size, len(want))
	}
	var got []byte
	for i, blk := range b.blocks {
		if i < len(b.blocks)-1 && len(blk) != listBlockSize {
			t.Fatalf("block %d of %d holds %d bytes", i, len(b.blocks), len(blk))
		}
		got = append(got, blk...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the blocks do not hold what was written")
	}
	n := len(b.blocks)
	b.release()
	if b.size != 0 || b.blocks != nil {
		t.Fatal("a released body is not empty")
	}
	listFree.mu.Lock()
	kept := len(listFree.blocks)
	listFree.mu.Unlock()
	if kept < min(n, listBlocksKept) || kept > listBlocksKept {
		t.Fatalf("%d blocks kept of %d released (at most %d)", kept, n, listBlocksKept)
	}
}

// TestEncodeListBodyIsOneArray: the Server's List body (blocks) is the
// a{sa{sv}} wire.go's encodeList writes of the same statuses.
func TestEncodeListBodyIsOneArray(t *testing.T) {
	svc := listService(t, 3000)
	s := &Server{svc: svc}
	s.lim.Store(&Limits{MaxMessageSize: 128 << 20})
	for _, keys := range []map[string]bool{nil, {ListState: true}} {
		body, derr := s.encodeList(listQuery{keys: keys}, nil)
		if derr != nil {
			t.Fatal(derr)
		}
		var got []byte
		for _, blk := range body.blocks {
			got = append(got, blk...)
		}
		body.release()
		var want wireEncoder
		lp, st := want.beginArray(8)
		if err := encodeListEntries(&want, svc.ListPage(service.ListQuery{NoInfo: keys != nil}), keys); err != nil {
			t.Fatal(err)
		}
		want.endArray(lp, st)
		if !bytes.Equal(got, want.b) {
			t.Fatalf("keys %v: the body (%d bytes, array of %d) is not the array encodeListEntries writes (%d bytes, array of %d)",
				keys, len(got), binary.LittleEndian.Uint32(got), len(want.b), binary.LittleEndian.Uint32(want.b))
		}
	}
}

// TestGetManagedObjectsInBlocksOverTheBus: GetManagedObjects of 400
// objects (a reply of several blocks, written at once) reaches a godbus
// client whole: every managed object, with the interfaces and values
// godbus itself would have sent.
func TestGetManagedObjectsInBlocksOverTheBus(t *testing.T) {
	svc := listService(t, 400)
	srv, addr := newBusServer(t, svc)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(served) }()
	defer func() { cancel(); <-served }()
	client, err := godbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var objs map[godbus.ObjectPath]map[string]map[string]godbus.Variant
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err = client.Object(BusName, RootPath).Call(ObjectManagerIface+".GetManagedObjects", 0).Store(&objs)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("GetManagedObjects: %v", err)
	}
	list := svc.ListPage(service.ListQuery{})
	if len(objs) != len(list) || len(list) != 400 {
		t.Fatalf("%d objects, want %d", len(objs), len(list))
	}
	if body, _, _ := srv.encodeEntries(service.ListQuery{}, func(e *wireEncoder, st *service.Status) (bool, error) {
		return true, encodeObject(e, st)
	}); len(body.blocks) < 2 {
		t.Fatalf("the reply is %d bytes, one block: a test of one", body.size)
	}
	for _, st := range list {
		want := interfacesOf(st)
		got := objs[ConnectionPath(st.ID)]
		if len(got) != len(want) {
			t.Fatalf("%s: interfaces %v, want %v", st.ID, got, want)
		}
		for iface := range want {
			if !reflect.DeepEqual(fmtVariants(got[iface]), fmtVariants(want[iface])) {
				t.Fatalf("%s %s:\n got %v\nwant %v", st.ID, iface, got[iface], want[iface])
			}
		}
	}
}

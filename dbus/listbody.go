// SPDX-License-Identifier: Apache-2.0

package dbus

// A List (or GetManagedObjects) reply's body, encoded an entry at a time
// straight from the statuses into fixed-size blocks. A 10,000-entry reply is 3 to 8 MB:
// one contiguous buffer grew by copying (both copies live at once), and
// pooled for the next call it held its largest size while the daemon
// idled; boxing each value into an interface for the generic encoder,
// then switching on its type, was a tenth of List's CPU.

import (
	"encoding/binary"
	"sync"

	"github.com/storkeep/storkeep/service"
)

// listBlockSize is the size of a body block (a multiple of 8, so that a
// block boundary keeps no alignment from the encoder).
const listBlockSize = 64 << 10

// listBlocksKept is how many blocks wait between calls for the next
// reply: enough for a page of brief entries, not a whole v1 reply of
// 10,000 (which would stay resident while the daemon idles).
const listBlocksKept = 32

var listFree struct {
	mu     sync.Mutex
	blocks [][]byte
}

func getBlock() []byte {
	listFree.mu.Lock()
	defer listFree.mu.Unlock()
	if n := len(listFree.blocks); n > 0 {
		b := listFree.blocks[n-1]
		listFree.blocks = listFree.blocks[:n-1]
		return b[:0]
	}
	return make([]byte, 0, listBlockSize)
}

// blockBody is a message body in blocks, each full but the last.
type blockBody struct {
	blocks [][]byte
	size   int
}

// write appends p.
func (b *blockBody) write(p []byte) {
	b.size += len(p)
	for len(p) > 0 {
		if len(b.blocks) == 0 || len(b.blocks[len(b.blocks)-1]) == listBlockSize {
			b.blocks = append(b.blocks, getBlock())
		}
		last := &b.blocks[len(b.blocks)-1]
		k := copy((*last)[len(*last):listBlockSize], p)
		*last = (*last)[:len(*last)+k]
		p = p[k:]
	}
}

// align pads the body to a multiple of n bytes.
func (b *blockBody) align(n int) {
	if pad := (n - b.size%n) % n; pad > 0 {
		b.write(zeros[:pad])
	}
}

// release gives the blocks back for the next reply (up to
// listBlocksKept; the rest are garbage). The body is empty after.
func (b *blockBody) release() {
	listFree.mu.Lock()
	for _, blk := range b.blocks {
		if len(listFree.blocks) == listBlocksKept {
			break
		}
		listFree.blocks = append(listFree.blocks, blk)
	}
	listFree.mu.Unlock()
	b.blocks, b.size = nil, 0
}

// listField is one key of a List entry: the bytes each entry repeats for
// it (the key, 8-aligned as a dictionary entry is, and the signature of
// its value), and how to write its value.
type listField struct {
	key  string
	head []byte
	put  func(e *wireEncoder, st *service.Status) error
}

func putBool(e *wireEncoder, v bool) error {
	b := uint32(0)
	if v {
		b = 1
	}
	e.u32(b)
	return nil
}

// listFields are List's keys in appendListValues's order (a test holds
// the two to the same bytes).
var listFields = []listField{
	{key: ListManaged, put: func(e *wireEncoder, st *service.Status) error { return putBool(e, st.Managed) }},
	{key: ListConnected, put: func(e *wireEncoder, st *service.Status) error { return putBool(e, st.Connected) }},
	{key: ListState, put: func(e *wireEncoder, st *service.Status) error { return e.str(string(st.State)) }},
	{key: ListKind, put: func(e *wireEncoder, st *service.Status) error { return e.str(string(st.Kind)) }},
	{key: ListURI, put: func(e *wireEncoder, st *service.Status) error { return e.str(st.URI) }},
	{key: ListTarget, put: func(e *wireEncoder, st *service.Status) error { return e.str(string(st.Target)) }},
	{key: ListLastError, put: func(e *wireEncoder, st *service.Status) error { return e.str(st.LastError) }},
	{key: ListLastErrorMessage, put: func(e *wireEncoder, st *service.Status) error { return e.str(st.LastErrorMessage) }},
	{key: ListConnectionInfo, put: func(e *wireEncoder, st *service.Status) error { return e.dict(st.Info) }},
	{key: ListReadDelay, put: func(e *wireEncoder, st *service.Status) error {
		e.u32(readDelay(st.ReadDelay))
		return nil
	}},
	{key: ListLastProbe, put: func(e *wireEncoder, st *service.Status) error {
		e.u64(usec(st.LastProbe))
		return nil
	}},
}

func init() {
	// Each head is what kvs writes before a value: the key, then the
	// signature of the value appendListValues gives.
	vals := appendListValues(nil, service.Status{Info: map[string]any{}})
	for i := range listFields {
		var e wireEncoder
		if err := e.str(listFields[i].key); err != nil {
			panic(err)
		}
		var v wireEncoder
		if err := v.variant(vals[i].v); err != nil {
			panic(err)
		}
		listFields[i].head = append(e.b, v.b[:int(v.b[0])+2]...)
	}
}

// listFieldMask says which of listFields a query keeps (keys nil: all).
func listFieldMask(keys map[string]bool) []bool {
	keep := make([]bool, len(listFields))
	for i, f := range listFields {
		keep[i] = keys == nil || keys[f.key]
	}
	return keep
}

// encodeListEntry writes one entry of an a{sa{sv}} (ID, then the fields
// keep marks) into e, from its start, which must be 8-aligned in the body.
func encodeListEntry(e *wireEncoder, st *service.Status, keep []bool) error {
	e.b = e.b[:0]
	if err := e.str(st.ID); err != nil {
		return err
	}
	lp, start := e.beginArray(8)
	for i := range listFields {
		if !keep[i] {
			continue
		}
		e.align(8)
		e.b = append(e.b, listFields[i].head...)
		if err := listFields[i].put(e, st); err != nil {
			return err
		}
	}
	e.endArray(lp, start)
	return nil
}

// encodeEntries encodes the body of a reply that is one array of
// dictionary entries (List, GetManagedObjects) from the statuses query
// selects, a chunk at a time, into blocks: entry writes the entry of one
// status into a scratch encoder (the entry starts 8-aligned) or reports
// false to leave it out. It stops once the body is larger than a message
// may be (the caller says so: body.size) and returns the entries written,
// or the error of the first one entry could not write (no body).
func (s *Server) encodeEntries(query service.ListQuery, entry func(e *wireEncoder, st *service.Status) (bool, error)) (*blockBody, int, error) {
	maxBody := s.limits().MaxMessageSize - replyHeaderRoom
	body := &blockBody{}
	body.write(zeros[:8]) // the array's length, then padding to its first entry
	var (
		scratch wireEncoder
		err     error
		n       int
	)
	s.svc.ListPages(query, listChunk, func(page []service.Status, _ int) bool {
		for i := range page {
			scratch.b = scratch.b[:0]
			var ok bool
			if ok, err = entry(&scratch, &page[i]); err != nil {
				return false
			}
			if ok {
				body.align(8)
				body.write(scratch.b)
				n++
			}
		}
		return body.size <= maxBody
	})
	if err != nil {
		body.release()
		return nil, 0, err
	}
	binary.LittleEndian.PutUint32(body.blocks[0], uint32(body.size-8))
	return body, n, nil
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"fmt"
	"net"
	"sync"
)

// replySwapper sits between godbus and the bus socket. godbus encodes by
// reflection, encodes every reply twice (once to count file descriptors)
// and copies each nested array once per level: a 10,000-entry List took
// about a second of daemon CPU, and godbus has no way to send a body it did
// not encode. So a handler with a big reply encodes it itself (wire.go),
// registers it, and returns an empty placeholder; when godbus writes the
// placeholder reply, the swapper writes the registered message instead,
// with the serial godbus chose.
//
// The swapper cuts the outgoing stream into messages itself (the fixed
// header of each says how long it is), so it does not depend on how godbus
// cuts its writes. godbus v5.2.4 writes each message with one Write
// (message.go, EncodeToWithFDs), which passes on without a copy.
type replySwapper struct {
	net.Conn

	mu      sync.Mutex // guards pending
	pending map[replyKey]swapped

	// Only Write touches these; wmu keeps writers in turn (godbus does too).
	wmu   sync.Mutex
	began bool   // the client wrote BEGIN: from here on, messages
	head  []byte // the start of a message too short to decide on yet
	pass  int    // bytes of the current message still to pass on
	drop  int    // bytes of the current placeholder still to drop
	err   error  // the stream is out of step: every Write fails
}

// buffersWriter writes several buffers in turn, as one message.
type buffersWriter interface {
	writeBuffers(net.Buffers) (int64, error)
}

// maxSwappedBodySize bounds a body the swapper sends: with its header it
// must stay within maxMessageSize, the longest message D-Bus allows.
const maxSwappedBodySize = maxMessageSize - 4096

type replyKey struct {
	dest   string
	serial uint32
}

type swapped struct {
	signature string
	body      [][]byte // in pieces, written in turn
	size      int
	written   func() // nil, or called once body is written: it may be reused
}

func newReplySwapper(c net.Conn) *replySwapper {
	return &replySwapper{Conn: c, pending: make(map[replyKey]swapped)}
}

// register makes the reply to the call with serial from dest carry body,
// size bytes in pieces.
// The caller registers only a reply godbus is about to write (the call
// wants one, and names its sender), so every entry is taken by the
// placeholder's Write or goes with the connection.
func (r *replySwapper) register(dest string, serial uint32, signature string, body [][]byte, size int, written func()) {
	r.mu.Lock()
	r.pending[replyKey{dest, serial}] = swapped{signature, body, size, written}
	r.mu.Unlock()
}

// take removes and returns the registration for a reply, if any.
func (r *replySwapper) take(dest string, serial uint32) (swapped, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := replyKey{dest, serial}
	sw, ok := r.pending[k]
	if ok {
		delete(r.pending, k)
	}
	return sw, ok
}

func (r *replySwapper) anyPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) > 0
}

// Write passes the authentication exchange on, then the messages in p,
// whole or in pieces, each as it is or swapped. It consumes all of p
// unless the socket fails.
func (r *replySwapper) Write(p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if !r.began {
		if !bytes.HasPrefix(p, []byte("BEGIN\r\n")) {
			return r.Conn.Write(p)
		}
		if _, err := r.Conn.Write(p[:7]); err != nil {
			return 0, err
		}
		r.began = true
		n, err := r.writeMessages(p[7:])
		return 7 + n, err
	}
	return r.writeMessages(p)
}

// writeMessages is Write once messages have begun.
func (r *replySwapper) writeMessages(p []byte) (n int, err error) {
	if r.err != nil {
		return 0, r.err
	}
	for n < len(p) {
		q := p[n:]
		switch {
		case r.pass > 0:
			k := min(r.pass, len(q))
			if _, err := r.Conn.Write(q[:k]); err != nil {
				return n, err
			}
			r.pass -= k
			n += k
		case r.drop > 0:
			k := min(r.drop, len(q))
			r.drop -= k
			n += k
		case len(r.head) == 0 && len(q) >= r.need(q):
			// The usual case: a message's header is in one piece.
			if err := r.decide(q); err != nil {
				return n, err
			}
		default:
			k := min(r.need(r.head)-len(r.head), len(q))
			r.head = append(r.head, q[:k]...)
			n += k
			if len(r.head) < r.need(r.head) {
				continue
			}
			if err := r.decide(r.head); err != nil {
				return n, err
			}
			// The head is consumed already: pass it on or drop it.
			if r.pass > 0 {
				if _, err := r.Conn.Write(r.head); err != nil {
					return n, err
				}
				r.pass -= len(r.head)
			} else {
				r.drop -= len(r.head)
			}
			r.head = r.head[:0]
		}
	}
	return n, nil
}

// need returns how much of the message starting with b it takes to decide
// on it: the fixed header, and the header fields of a method return while
// a swap is registered (registration comes before godbus writes the
// reply, so it cannot appear in the middle of its message).
func (r *replySwapper) need(b []byte) int {
	if len(b) < 16 || b[1] != msgMethodReturn || !r.anyPending() {
		return 16
	}
	if _, err := messageLength(b[:16]); err != nil {
		return 16 // decide reports it
	}
	order, _ := byteOrder(b[0])
	return 16 + int(order.Uint32(b[12:]))
}

// decide reads the header at the start of b, a message or its beginning
// with need(b) bytes, and sets pass to the message's length, or writes
// the registered reply in its place and sets drop.
func (r *replySwapper) decide(b []byte) error {
	total, err := messageLength(b[:16])
	if err != nil {
		r.err = fmt.Errorf("write to bus: out of step with the messages godbus writes: %w", err)
		return r.err
	}
	r.pass = total
	need := r.need(b)
	if need == 16 || len(b) < need {
		return nil // not a reply, or none registered when it began
	}
	h, err := parseHeader(b[:need])
	if err != nil {
		return nil // not ours to judge: the bus will
	}
	rs, ok := h.fields[fieldReplySerial]
	if !ok || rs.t != 'u' {
		return nil
	}
	sw, ok := r.take(h.str(fieldDestination), uint32(rs.n))
	if !ok {
		return nil
	}
	hdr, err := replyHeader(h.serial, uint32(rs.n), h.flags, h.str(fieldDestination), sw.signature, sw.size)
	if err != nil {
		return nil // the placeholder is still a valid reply
	}
	// The header, then each piece of the body, which is not copied again:
	// in one writev where the connection below has one (busFilter).
	if bw, ok := r.Conn.(buffersWriter); ok {
		_, err = bw.writeBuffers(append(net.Buffers{hdr}, sw.body...))
	} else if _, err = r.Conn.Write(hdr); err == nil {
		for _, p := range sw.body {
			if _, err = r.Conn.Write(p); err != nil {
				break
			}
		}
	}
	if sw.written != nil {
		sw.written()
	}
	if err != nil {
		return err
	}
	r.pass, r.drop = 0, total
	return nil
}

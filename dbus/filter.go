// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"
)

// busFilter sits below godbus on a bus connection and hands godbus only
// messages its decoder accepts. godbus v5.2.4 takes any error decoding a
// message body for a broken connection and closes it (conn.go, inWorker:
// every ReadMessage error but InvalidMessageError), and its decoder
// refuses valid D-Bus: a non-empty dictionary keyed by booleans or
// signatures (decoder.go, decode, case 'a': isKeyType). The bus delivers
// such a message from any local user, so one message took the daemon off
// the bus. The filter reads each whole message (the fixed header says how
// long it is), decodes it with godbus itself, and if that fails, or if a
// call's arguments are ones godbus would panic on storing (guard.go),
// keeps it from godbus: a call gets an error reply, a reply to one of our
// calls becomes an error reply to it, anything else is dropped. Unknown
// header flags, which the specification says to ignore and godbus
// refuses, are cleared.
type busFilter struct {
	net.Conn

	began atomic.Bool // the client wrote BEGIN: from here on, messages

	// Only the reading goroutine (godbus's inWorker) touches these.
	br  *bufio.Reader
	msg []byte // the message being handed to godbus
	off int    // how much of msg godbus has read
	err error  // the read error that ends the stream

	mu    sync.Mutex // guards conn, log and cause
	conn  *godbus.Conn
	log   *slog.Logger
	cause error // f.err, for other goroutines
}

// What the filter changes in a message.
const (
	knownFlags = byte(godbus.FlagNoReplyExpected | godbus.FlagNoAutoStart | godbus.FlagAllowInteractiveAuthorization)
	// undecodableError is the error name a call or reply that cannot be
	// decoded is answered with.
	undecodableError = "org.freedesktop.DBus.Error.InvalidArgs"
)

// newBusFilter wraps a bus socket. Call setConn once godbus has a Conn on it.
func newBusFilter(c net.Conn) *busFilter {
	return &busFilter{Conn: c, log: slog.New(slog.DiscardHandler)}
}

// setConn gives the filter the godbus connection it answers calls on.
func (f *busFilter) setConn(c *godbus.Conn) {
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
}

// setLogger makes the filter log what it keeps from godbus (at debug
// level: any local user can send such messages, as many as they like).
func (f *busFilter) setLogger(l *slog.Logger) {
	f.mu.Lock()
	f.log = l
	f.mu.Unlock()
}

// readErr is the error that ended the stream of messages, if any.
func (f *busFilter) readErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cause
}

// fail ends the stream with err.
func (f *busFilter) fail(err error) {
	f.err = err
	f.mu.Lock()
	f.cause = err
	f.mu.Unlock()
}

// Write passes everything through and notes the end of the
// authentication exchange, after which the server sends only messages.
func (f *busFilter) Write(p []byte) (int, error) {
	if !f.began.Load() && bytes.HasPrefix(p, []byte("BEGIN\r\n")) {
		f.began.Store(true)
	}
	return f.Conn.Write(p)
}

// writeBuffers writes bufs in turn, in one writev where the socket
// takes it: a big reply's header and body blocks (swap.go). Messages
// have begun by then.
func (f *busFilter) writeBuffers(bufs net.Buffers) (int64, error) {
	return bufs.WriteTo(f.Conn)
}

// Read hands out whole messages that godbus can decode. It never returns
// 0 bytes without an error: godbus reads a message's first byte with a
// single Read and does not look at the count.
func (f *busFilter) Read(p []byte) (int, error) {
	if !f.began.Load() {
		return f.Conn.Read(p) // the authentication exchange, in text
	}
	if f.br == nil {
		f.br = bufio.NewReaderSize(f.Conn, 64<<10)
	}
	for f.off == len(f.msg) {
		if f.err != nil {
			return 0, f.err
		}
		f.next()
	}
	n := copy(p, f.msg[f.off:])
	f.off += n
	return n, nil
}

// next reads the next message and sets f.msg to what godbus gets of it:
// the message, a replacement, or nothing.
func (f *busFilter) next() {
	f.msg, f.off = f.msg[:0], 0
	if cap(f.msg) > 1<<20 {
		f.msg = nil // don't keep a big message's buffer
	}
	var fixed [16]byte
	if _, err := io.ReadFull(f.br, fixed[:]); err != nil {
		f.fail(err)
		return
	}
	total, err := messageLength(fixed[:])
	if err != nil {
		// The stream is not D-Bus: there is no next message to find.
		f.fail(fmt.Errorf("read from bus: %w", err))
		return
	}
	if cap(f.msg) < total {
		f.msg = make([]byte, 0, total)
	}
	f.msg = append(f.msg[:0], fixed[:]...)[:total]
	if _, err := io.ReadFull(f.br, f.msg[16:]); err != nil {
		f.fail(fmt.Errorf("read from bus: %w", noEOF(err)))
		return
	}
	f.msg[2] &= knownFlags
	reason := undecodable(f.msg)
	if reason == "" {
		return
	}
	f.keep(safeText(reason))
}

// safeText makes s fit to send: a string with bytes that are not UTF-8,
// or NUL, in a message makes the bus drop the connection that sent it.
// godbus's errors can quote what they could not decode.
func safeText(s string) string {
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// keep keeps the message in f.msg from godbus: it answers a call that
// wants a reply, turns a reply into an error reply, and drops the rest.
func (f *busFilter) keep(reason string) {
	f.mu.Lock()
	conn, log := f.conn, f.log
	f.mu.Unlock()
	h, err := parseHeader(f.msg)
	if err != nil {
		log.Debug("message dropped", "reason", reason, "header", err)
		f.msg = f.msg[:0]
		return
	}
	sender := h.str(fieldSender)
	log.Debug("message not decoded", "type", h.typ, "sender", sender, "serial", h.serial,
		"interface", h.str(fieldInterface), "member", h.str(fieldMember), "reason", reason)
	switch {
	case h.typ == byte(godbus.TypeMethodCall) && h.flags&byte(godbus.FlagNoReplyExpected) == 0 && conn != nil:
		f.msg = f.msg[:0]
		reply := &godbus.Message{Type: godbus.TypeError, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldReplySerial: godbus.MakeVariant(h.serial),
			godbus.FieldErrorName:   godbus.MakeVariant(undecodableError),
			godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf("")),
		}, Body: []any{reason}}
		if sender != "" {
			reply.Headers[godbus.FieldDestination] = godbus.MakeVariant(sender)
		}
		// Not from the reading goroutine: a write may wait for the bus.
		go conn.Send(reply, nil)
	case h.typ == byte(godbus.TypeMethodReply) || h.typ == byte(godbus.TypeError):
		// A reply to one of our calls: fail the call now rather than at
		// its timeout.
		rs, ok := h.fields[fieldReplySerial]
		if !ok || rs.t != 'u' {
			f.msg = f.msg[:0]
			return
		}
		out := header{order: h.order, typ: byte(godbus.TypeError), flags: h.flags, serial: h.serial, fields: map[byte]field{
			fieldReplySerial: rs,
			fieldErrorName:   strField('s', undecodableError),
			fieldSignature:   strField('g', "s"),
		}}
		for _, k := range []byte{fieldSender, fieldDestination} {
			if v, ok := h.fields[k]; ok && v.t == 's' {
				out.fields[k] = v
			}
		}
		body := wireEncoder{}
		_ = body.str(reason) // ours: valid UTF-8 without NUL
		if h.order == binary.BigEndian {
			binary.BigEndian.PutUint32(body.b, uint32(len(reason)))
		}
		f.msg = out.encode(f.msg[:0], body.b)
		if undecodable(f.msg) != "" {
			f.msg = f.msg[:0] // never hand godbus what it refuses
		}
	default:
		f.msg = f.msg[:0]
	}
}

// undecodable returns why godbus must not see msg, a whole message, or ""
// if it may.
func undecodable(msg []byte) string {
	m, err := godbus.DecodeMessage(bytes.NewReader(msg))
	if err != nil {
		var ime godbus.InvalidMessageError
		if errors.As(err, &ime) {
			return fmt.Sprintf("invalid message: %v", err)
		}
		sig := "?"
		if h, herr := parseHeader(msg); herr == nil {
			sig = h.str(fieldSignature)
		}
		why := err.Error()
		var ite godbus.InvalidTypeError
		if errors.As(err, &ite) && ite.Type != nil && ite.Type.Kind() == reflect.Map {
			why = keysNotSupported(ite.Type.Key())
		}
		return fmt.Sprintf("arguments of type %q cannot be decoded: %s", sig, why)
	}
	if m.Type == godbus.TypeMethodCall {
		if why := unstorable(m.Body); why != "" {
			sig, _ := m.Headers[godbus.FieldSignature].Value().(godbus.Signature)
			return fmt.Sprintf("arguments of type %q cannot be decoded: %s", sig.String(), why)
		}
	}
	return ""
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// replySwapper sits between godbus and the bus socket. A handler whose
// reply is too big for godbus's encoder encodes it itself, registers it,
// and returns a small placeholder; when godbus writes the placeholder
// reply, the swapper writes the registered message instead, with the
// serial godbus chose. godbus writes each message with a single Write.
type replySwapper struct {
	net.Conn

	mu      sync.Mutex // guards pending
	pending map[replyKey]swapped
}

type replyKey struct {
	dest   string
	serial uint32
}

type swapped struct {
	signature string
	body      []byte
}

// register makes the reply to the call with serial from dest carry body.
func (r *replySwapper) register(dest string, serial uint32, signature string, body []byte) {
	r.mu.Lock()
	r.pending[replyKey{dest, serial}] = swapped{signature, body}
	r.mu.Unlock()
}

// forget drops a registration whose placeholder will never be written.
func (r *replySwapper) forget(dest string, serial uint32) {
	r.mu.Lock()
	delete(r.pending, replyKey{dest, serial})
	r.mu.Unlock()
}

func (r *replySwapper) Write(p []byte) (int, error) {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return r.Conn.Write(p)
	}
	var (
		sw  swapped
		hit bool
		h   replyHeader
	)
	if hh, ok := parseReplyHeader(p); ok {
		h = hh
		k := replyKey{h.dest, h.replySerial}
		if sw, hit = r.pending[k]; hit {
			delete(r.pending, k)
		}
	}
	r.mu.Unlock()
	if !hit {
		return r.Conn.Write(p)
	}
	msg, err := replyMessage(h.serial, h.replySerial, h.flags, h.dest, sw.signature, sw.body)
	if err != nil {
		return r.Conn.Write(p) // the placeholder is still a valid reply
	}
	if _, err := r.Conn.Write(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Dial connects to a bus: "system", "session", or a D-Bus address such as
// unix:path=/run/x. The connection is authenticated and has said Hello.
func Dial(bus string) (*godbus.Conn, error) {
	c, err := Connect(bus)
	if err != nil {
		return nil, err
	}
	return c.Conn, nil
}

// Connect connects to a bus: "system", "session", or a D-Bus address such
// as unix:path=/run/x. The connection is authenticated and has said Hello.
func Connect(bus string) (*Conn, error) {
	addr := bus
	switch bus {
	case "system":
		addr = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
		if addr == "" {
			addr = "unix:path=/var/run/dbus/system_bus_socket"
		}
	case "session":
		addr = os.Getenv("DBUS_SESSION_BUS_ADDRESS")
		if addr == "" {
			return nil, fmt.Errorf("session bus: DBUS_SESSION_BUS_ADDRESS is not set")
		}
	}
	var lastErr error
	for _, a := range strings.Split(addr, ";") {
		nc, err := dialUnix(a)
		if err != nil {
			lastErr = err
			continue
		}
		conn, sw, f, err := newBusConn(nc)
		if err == nil {
			if err = conn.Auth(nil); err == nil {
				err = conn.Hello()
			}
		}
		if err != nil {
			nc.Close()
			lastErr = fmt.Errorf("%s: %w", a, err)
			continue
		}
		return &Conn{Conn: conn, swap: sw, filter: f}, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no address")
	}
	return nil, fmt.Errorf("connect to bus %s: %w", bus, lastErr)
}

// dialUnix dials a unix:path= or unix:abstract= address.
func dialUnix(addr string) (net.Conn, error) {
	rest, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return nil, fmt.Errorf("address %q: only unix: addresses are supported", addr)
	}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(kv, "=")
		v, err := unescapeAddrValue(v)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", addr, err)
		}
		switch k {
		case "path":
			return net.Dial("unix", v)
		case "abstract":
			return net.Dial("unix", "@"+v)
		}
	}
	return nil, fmt.Errorf("address %q has neither path= nor abstract=", addr)
}

// unescapeAddrValue undoes the %xx escaping of D-Bus address values.
func unescapeAddrValue(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", fmt.Errorf("bad escape in %q", v)
		}
		var c byte
		if _, err := fmt.Sscanf(v[i+1:i+3], "%02x", &c); err != nil {
			return "", fmt.Errorf("bad escape in %q", v)
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

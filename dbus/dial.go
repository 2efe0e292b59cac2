// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

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
//
// It dials the socket itself, rather than through godbus.Dial, because
// busFilter and replySwapper must sit between godbus and the socket, and
// godbus takes a socket it did not dial only through NewConn. It takes
// the addresses godbus.Dial takes on Linux: unix: (path= or abstract=),
// tcp: and nonce-tcp:, several separated by ';', tried in turn.
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
		nc, err := dialAddress(a)
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
		lastErr = errors.New("no address")
	}
	return nil, fmt.Errorf("connect to bus %s: %w", bus, lastErr)
}

// dialAddress dials one D-Bus address, with the keys godbus reads for
// its transport (transport_unix.go, transport_tcp.go,
// transport_nonce_tcp.go).
func dialAddress(addr string) (net.Conn, error) {
	transport, rest, ok := strings.Cut(addr, ":")
	if !ok {
		return nil, fmt.Errorf("address %q names no transport", addr)
	}
	keys := make(map[string]string)
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := keys[k]; seen || k == "" {
			continue // godbus reads the first
		}
		v, err := godbus.UnescapeBusAddressValue(v)
		if err != nil {
			return nil, fmt.Errorf("address %q: %s: %w", addr, k, err)
		}
		keys[k] = v
	}
	switch transport {
	case "unix":
		path, abstract := keys["path"], keys["abstract"]
		switch {
		case path != "" && abstract != "":
			return nil, fmt.Errorf("address %q has both path= and abstract=", addr)
		case path != "":
			return net.Dial("unix", path)
		case abstract != "":
			return net.Dial("unix", "@"+abstract)
		}
		return nil, fmt.Errorf("address %q has neither path= nor abstract=", addr)
	case "tcp", "nonce-tcp":
		host, port := keys["host"], keys["port"]
		if host == "" || port == "" {
			return nil, fmt.Errorf("address %q: host= and port= are needed", addr)
		}
		network := "tcp"
		switch keys["family"] {
		case "":
		case "ipv4":
			network = "tcp4"
		case "ipv6":
			network = "tcp6"
		default:
			return nil, fmt.Errorf("address %q: family must be ipv4 or ipv6", addr)
		}
		if transport == "tcp" {
			return net.Dial(network, net.JoinHostPort(host, port))
		}
		return dialNonceTCP(addr, network, net.JoinHostPort(host, port), keys["noncefile"])
	}
	return nil, fmt.Errorf("address %q: transport %q is not supported (unix, tcp, nonce-tcp)", addr, transport)
}

// dialNonceTCP connects and sends the nonce, as the bus expects first.
func dialNonceTCP(addr, network, hostport, noncefile string) (net.Conn, error) {
	if noncefile == "" {
		return nil, fmt.Errorf("address %q: noncefile= is needed", addr)
	}
	nonce, err := os.ReadFile(noncefile)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	c, err := net.Dial(network, hostport)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(nonce); err != nil {
		c.Close()
		return nil, fmt.Errorf("address %q: send nonce: %w", addr, err)
	}
	return c, nil
}

// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// accepted returns a listener and a channel of the first bytes (up to n)
// its first connection sends.
func accepted(t *testing.T, network, addr string, n int) (net.Listener, chan string) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, n)
		_, err = io.ReadFull(c, b)
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- string(b)
	}()
	return l, got
}

// TestDialAddressTakesWhatGodbusTakes: unix path= (escaped) and abstract=,
// tcp and nonce-tcp, as godbus.Dial reads them.
func TestDialAddressTakesWhatGodbusTakes(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus socket,1")
	_, gotUnix := accepted(t, "unix", sock, 2)
	abstract := "storkeep-dial-test-" + filepath.Base(dir)
	_, gotAbstract := accepted(t, "unix", "@"+abstract, 2)
	tcp, gotTCP := accepted(t, "tcp", "127.0.0.1:0", 2)
	nonceTCP, gotNonce := accepted(t, "tcp", "127.0.0.1:0", 18)
	nonceFile := filepath.Join(dir, "nonce")
	if err := os.WriteFile(nonceFile, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := func(l net.Listener) string { return l.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):] }

	for _, tc := range []struct {
		addr string
		got  chan string
		want string
	}{
		{"unix:path=" + strings.ReplaceAll(strings.ReplaceAll(sock, " ", "%20"), ",", "%2c"), gotUnix, "hi"},
		{"unix:abstract=" + abstract + ",guid=0123", gotAbstract, "hi"},
		{"tcp:host=127.0.0.1,port=" + port(tcp) + ",family=ipv4", gotTCP, "hi"},
		{"nonce-tcp:host=127.0.0.1,port=" + port(nonceTCP) + ",noncefile=" + nonceFile, gotNonce, "0123456789abcdefhi"},
	} {
		c, err := dialAddress(tc.addr)
		if err != nil {
			t.Errorf("dialAddress(%q): %v", tc.addr, err)
			continue
		}
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Errorf("%s: write: %v", tc.addr, err)
		}
		if got := <-tc.got; got != tc.want {
			t.Errorf("%s: the other end read %q, want %q", tc.addr, got, tc.want)
		}
		c.Close()
	}
}

func TestDialAddressRefusesWhatGodbusRefuses(t *testing.T) {
	for addr, want := range map[string]string{
		"unix:path=/x,abstract=y":     "both path= and abstract=",
		"unix:guid=1":                 "neither path= nor abstract=",
		"tcp:host=127.0.0.1":          "host= and port= are needed",
		"tcp:host=h,port=1,family=ip": "family must be ipv4 or ipv6",
		"nonce-tcp:host=h,port=1":     "noncefile= is needed",
		"launchd:env=X":               `transport "launchd" is not supported`,
		"/run/bus":                    "names no transport",
		"unix:path=%zz":               "unix:path=%zz",
	} {
		if _, err := dialAddress(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("dialAddress(%q) = %v, want an error with %q", addr, err, want)
		}
	}
}

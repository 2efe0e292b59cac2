// SPDX-License-Identifier: Apache-2.0

package main

// A minimal D-Bus client for benchmarks: it sends one method call and reads
// the reply's bytes without decoding them, so that a measurement of a big
// reply is the daemon's and the bus's time, not godbus's decoder's (which
// takes longer than either for a 10,000-entry List).

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

type rawClient struct {
	c      net.Conn
	r      *bufio.Reader
	serial uint32
}

func dialRaw(addr string) (*rawClient, error) {
	path, ok := strings.CutPrefix(addr, "unix:path=")
	if !ok {
		return nil, fmt.Errorf("raw client: unsupported address %q", addr)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	rc := &rawClient{c: c, r: bufio.NewReaderSize(c, 1<<20)}
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	if _, err := io.WriteString(c, "\x00AUTH EXTERNAL "+uid+"\r\n"); err != nil {
		return nil, err
	}
	line, err := rc.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK") {
		return nil, fmt.Errorf("raw client: auth: %q %v", line, err)
	}
	if _, err := io.WriteString(c, "BEGIN\r\n"); err != nil {
		return nil, err
	}
	if _, err := rc.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", "", nil); err != nil {
		return nil, err
	}
	return rc, nil
}

func (rc *rawClient) Close() { rc.c.Close() }

func pad(b []byte, n int) []byte {
	for len(b)%n != 0 {
		b = append(b, 0)
	}
	return b
}

func field(b []byte, code byte, sig string, val string) []byte {
	b = pad(b, 8)
	b = append(b, code, 1, sig[0], 0)
	if sig == "g" {
		b = append(b, byte(len(val)))
		b = append(b, val...)
		return append(b, 0)
	}
	b = pad(b, 4)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(val)))
	b = append(b, val...)
	return append(b, 0)
}

// call sends a method call with an already encoded body and returns the
// size of the reply it read. An error reply is an error.
func (rc *rawClient) call(dest, path, iface, member, sig string, body []byte) (int, error) {
	rc.serial++
	h := []byte{'l', 1, 0, 1}
	h = binary.LittleEndian.AppendUint32(h, uint32(len(body)))
	h = binary.LittleEndian.AppendUint32(h, rc.serial)
	h = binary.LittleEndian.AppendUint32(h, 0) // fields length, patched below
	start := len(h)
	h = field(h, 1, "o", path)
	h = field(h, 2, "s", iface)
	h = field(h, 3, "s", member)
	h = field(h, 6, "s", dest)
	if sig != "" {
		h = field(h, 8, "g", sig)
	}
	binary.LittleEndian.PutUint32(h[12:], uint32(len(h)-start))
	h = pad(h, 8)
	if _, err := rc.c.Write(append(h, body...)); err != nil {
		return 0, err
	}
	for {
		var fixed [16]byte
		if _, err := io.ReadFull(rc.r, fixed[:]); err != nil {
			return 0, err
		}
		bodyLen := int(binary.LittleEndian.Uint32(fixed[4:]))
		fieldsLen := int(binary.LittleEndian.Uint32(fixed[12:]))
		rest := (16 + fieldsLen + 7) &^ 7
		rest += bodyLen - 16
		if _, err := rc.r.Discard(rest); err != nil {
			return 0, err
		}
		switch fixed[1] {
		case 2: // method return; replies come in order for one caller
			return 16 + rest, nil
		case 3:
			return 0, fmt.Errorf("raw client: %s returned an error", member)
		}
		// A signal: skip it.
	}
}

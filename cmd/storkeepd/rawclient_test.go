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
	"sync"
)

type rawClient struct {
	c      net.Conn
	r      *bufio.Reader
	wmu    sync.Mutex // a relayPeer writes replies while call may write
	serial uint32
	name   string // our unique name: the destination of what we receive
	// keep makes call keep the last reply's body in body.
	keep bool
	body []byte
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
	rc.wmu.Lock()
	_, err := rc.c.Write(append(h, body...))
	rc.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	for {
		m, err := rc.read()
		if err != nil {
			return 0, err
		}
		switch m.typ {
		case 2: // method return; replies come in order for one caller
			return m.size, nil
		case 3:
			return 0, fmt.Errorf("raw client: %s returned an error", member)
		}
		// A signal: skip it.
	}
}

// rawMessage is what rawClient.read keeps of a message.
type rawMessage struct {
	typ    byte
	serial uint32
	sender string
	size   int // the whole message's
}

// read reads one message, keeping its body in rc.body if rc.keep.
func (rc *rawClient) read() (rawMessage, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(rc.r, fixed[:]); err != nil {
		return rawMessage{}, err
	}
	bodyLen := int(binary.LittleEndian.Uint32(fixed[4:]))
	fieldsLen := int(binary.LittleEndian.Uint32(fixed[12:]))
	fields := make([]byte, (fieldsLen+7)&^7)
	if _, err := io.ReadFull(rc.r, fields); err != nil {
		return rawMessage{}, err
	}
	m := rawMessage{typ: fixed[1], serial: binary.LittleEndian.Uint32(fixed[8:]), size: 16 + len(fields) + bodyLen}
	// Header fields: code, signature, value; only strings matter here.
	for pos := 0; pos+4 <= fieldsLen; {
		code, sig := fields[pos], fields[pos+2]
		pos += 4
		switch sig {
		case 's', 'o':
			n := int(binary.LittleEndian.Uint32(fields[pos:]))
			v := string(fields[pos+4 : pos+4+n])
			pos += 4 + n + 1
			switch code {
			case 6:
				rc.name = v
			case 7:
				m.sender = v
			}
		case 'g':
			pos += 1 + int(fields[pos]) + 1
		case 'u':
			pos = (pos+3)&^3 + 4
		default:
			return m, fmt.Errorf("raw client: header field %d of type %q", code, sig)
		}
		pos = (pos + 7) &^ 7
	}
	if rc.keep && m.typ == 2 {
		rc.body = make([]byte, bodyLen)
		_, err := io.ReadFull(rc.r, rc.body)
		return m, err
	}
	_, err := rc.r.Discard(bodyLen)
	return m, err
}

// relayPeer is a raw bus connection that answers every method call with
// the same reply: what the bus takes to move a reply of that size and
// type is the floor under any daemon's.
type relayPeer struct {
	*rawClient
	sig  string
	body []byte
}

// startRelay connects a relay peer that answers with body of type sig.
func startRelay(addr, sig string, body []byte) (*relayPeer, error) {
	rc, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	p := &relayPeer{rawClient: rc, sig: sig, body: body}
	go p.serve()
	return p, nil
}

// serve answers method calls until the connection closes.
func (p *relayPeer) serve() {
	serial := uint32(1 << 31) // apart from the serials of call
	for {
		m, err := p.read()
		if err != nil {
			return
		}
		if m.typ != 1 {
			continue
		}
		h := []byte{'l', 2, 0, 1}
		h = binary.LittleEndian.AppendUint32(h, uint32(len(p.body)))
		serial++
		h = binary.LittleEndian.AppendUint32(h, serial)
		h = binary.LittleEndian.AppendUint32(h, 0)
		start := len(h)
		h = append(h, 5, 1, 'u', 0)
		h = binary.LittleEndian.AppendUint32(h, m.serial)
		h = field(h, 6, "s", m.sender)
		h = field(h, 8, "g", p.sig)
		binary.LittleEndian.PutUint32(h[12:], uint32(len(h)-start))
		h = pad(h, 8)
		p.wmu.Lock()
		_, err = p.c.Write(h)
		if err == nil {
			_, err = p.c.Write(p.body)
		}
		p.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

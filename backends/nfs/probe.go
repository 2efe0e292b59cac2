// SPDX-License-Identifier: Apache-2.0

package nfs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"

	"github.com/storkeep/storkeep/service"
)

// ONC RPC (RFC 5531) constants for an NFS NULL call.
const (
	rpcCall        = 0
	rpcReply       = 1
	rpcVersion     = 2
	nfsProgram     = 100003
	lastFragment   = 1 << 31
	maxReplyLength = 1 << 16
)

// probeServer sends the NFS NULL procedure to server:port over TCP and
// waits for any well-formed reply: the cheapest question that only a live
// NFS server answers. It never touches a mount, so a dead server costs at
// most ctx's deadline and blocks nothing else. A reply that rejects the
// version still proves the server is there.
//
// Equivalent to: rpcinfo -T tcp -n PORT -t SERVER nfs VERS
func probeServer(ctx context.Context, server string, port uint16, vers uint32) error {
	addr := service.HostPort(server, cmp.Or(port, service.DefaultNFSPort))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	xid := rand.Uint32()
	call := make([]byte, 0, 44)
	call = binary.BigEndian.AppendUint32(call, lastFragment|40)
	for _, w := range []uint32{xid, rpcCall, rpcVersion, nfsProgram, vers, 0, 0, 0, 0, 0} {
		call = binary.BigEndian.AppendUint32(call, w) // proc 0, AUTH_NONE cred and verifier
	}
	if _, err := conn.Write(call); err != nil {
		return fmt.Errorf("NFS NULL call to %s: %w", addr, err)
	}
	var hdr [12]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("NFS NULL call to %s: no answer: %w", addr, context.DeadlineExceeded)
		}
		return fmt.Errorf("NFS NULL call to %s: %w", addr, err)
	}
	frag := binary.BigEndian.Uint32(hdr[0:4]) &^ lastFragment
	if frag < 8 || frag > maxReplyLength ||
		binary.BigEndian.Uint32(hdr[4:8]) != xid || binary.BigEndian.Uint32(hdr[8:12]) != rpcReply {
		return fmt.Errorf("NFS NULL call to %s: %w", addr, errBadReply)
	}
	return nil
}

var errBadReply = errors.New("not an RPC reply to our call")

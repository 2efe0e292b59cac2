// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/storkeep/storkeep/service"
)

func testStatuses() []service.Status {
	return []service.Status{
		{ID: "a", Managed: true, Kind: service.KindNFS, URI: "nfs://h/e", Target: "nfs://h/e",
			State: service.StateRetrying, LastError: "Lost", LastErrorMessage: "gone",
			LastErrorTime: time.UnixMicro(1700000000000001), Attempts: 3,
			Info: map[string]any{"server": "h", "port": uint16(2049), "lun": int32(1),
				"paths": []string{"/dev/sda", "/dev/sdb"}, "chap": true, "big": uint64(1 << 40),
				InfoMountPoint: "/run/storkeep/nfs/h:_e", InfoMountUnit: "run-storkeep-nfs-h:_e.mount"}},
		{ID: "vm1 disk\n", Managed: true, Kind: service.KindISCSI, State: service.StateConnected,
			Connected: true, Info: map[string]any{InfoSessionID: uint32(3),
				InfoDevices: map[string]string{"/dev/disk/by-path/b": "/dev/sdc", "/dev/disk/by-path/a": "/dev/sdb"}}},
		{ID: "vm2", Managed: true, Kind: service.KindISCSI, Info: map[string]any{}},
		{ID: "unmanaged/x", Info: map[string]any{"path": "/var/lib/storkeep/cids/x.toml"}},
	}
}

// decodeBody wraps body in a whole reply message and lets godbus decode it,
// so the wire encoder is checked against an independent decoder.
func decodeBody(t *testing.T, sig string, body []byte) []any {
	t.Helper()
	hdr, err := replyHeader(7, 42, 0, ":1.5", sig, len(body))
	if err != nil {
		t.Fatal(err)
	}
	msg := append(hdr, body...)
	h, err := parseHeader(msg)
	if err != nil || h.serial != 7 || h.fields[fieldReplySerial].n != 42 || h.str(fieldDestination) != ":1.5" || h.str(fieldSignature) != sig {
		t.Fatalf("parseHeader = %+v, %v", h, err)
	}
	m, err := godbus.DecodeMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("godbus cannot decode our message: %v", err)
	}
	return m.Body
}

func TestEncodeListMatchesGodbus(t *testing.T) {
	list := testStatuses()
	var e wireEncoder
	if err := encodeList(&e, list); err != nil {
		t.Fatal(err)
	}
	body := decodeBody(t, "a{sa{sv}}", e.b)
	got := body[0].(map[string]map[string]godbus.Variant)
	for _, st := range list {
		want := listEntry(st)
		if !reflect.DeepEqual(fmtVariants(got[st.ID]), fmtVariants(want)) {
			t.Errorf("%q:\n got %v\nwant %v", st.ID, got[st.ID], want)
		}
	}
}

func TestEncodeManagedObjectsMatchesGodbus(t *testing.T) {
	list := testStatuses()
	var e wireEncoder
	if err := encodeManagedObjects(&e, list); err != nil {
		t.Fatal(err)
	}
	body := decodeBody(t, "a{oa{sa{sv}}}", e.b)
	got := body[0].(map[godbus.ObjectPath]map[string]map[string]godbus.Variant)
	if len(got) != 3 {
		t.Fatalf("%d objects, want the 3 managed ones", len(got))
	}
	for _, st := range list[:3] {
		want := interfacesOf(st)
		g := got[ConnectionPath(st.ID)]
		if len(g) != len(want) || len(g) != 5 {
			t.Errorf("%s: interfaces %v, want %v", st.ID, g, want)
		}
		for iface := range want {
			if !reflect.DeepEqual(fmtVariants(g[iface]), fmtVariants(want[iface])) {
				t.Errorf("%s %s:\n got %v\nwant %v", st.ID, iface, g[iface], want[iface])
			}
		}
	}
}

func TestEncodeRefusesWhatItCannotWrite(t *testing.T) {
	var e wireEncoder
	bad := []service.Status{{ID: "x", Info: map[string]any{"f": 1.5}}}
	if err := encodeList(&e, bad); err == nil {
		t.Error("a float64 was encoded; the caller should fall back to godbus")
	}
	e = wireEncoder{}
	if err := encodeList(&e, []service.Status{{ID: "bad\xff"}}); err == nil {
		t.Error("invalid UTF-8 was encoded")
	}
}

// fmtVariants compares variants by their text form (signature and value).
func fmtVariants(m map[string]godbus.Variant) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.Signature().String() + " " + v.String()
	}
	return out
}

// benchList is 10,000 typical NFS entries.
func benchList() []service.Status {
	list := make([]service.Status, 10000)
	for i := range list {
		list[i] = service.Status{ID: "bench-" + string(rune('a'+i%26)) + time.Duration(i).String(), Managed: true,
			Kind: service.KindNFS, URI: "nfs://127.0.0.1/srv/export", Target: "nfs://127.0.0.1/srv/export",
			State: service.StateRetrying, LastError: "SystemdUnavailable",
			LastErrorMessage: "NFS mounts are systemd mount units, and systemd is not reachable on the system bus",
			Info:             map[string]any{"server": "127.0.0.1", "port": uint16(2049), "export": "/srv/export"}}
	}
	return list
}

// BenchmarkEncodeList10k is the daemon's own share of a 10,000-entry List
// reply; the rest of BenchmarkList10k is the bus moving the bytes.
func BenchmarkEncodeList10k(b *testing.B) {
	list := benchList()
	b.ResetTimer()
	for range b.N {
		var e wireEncoder
		if err := encodeList(&e, list); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeList10kGodbus is the same reply as godbus would send it
// without the swap: the handler's map, counted for file descriptors and
// encoded (unixTransport.SendMessage).
func BenchmarkEncodeList10kGodbus(b *testing.B) {
	list := benchList()
	b.ResetTimer()
	for range b.N {
		out := make(map[string]map[string]godbus.Variant, len(list))
		for _, st := range list {
			out[st.ID] = listEntry(st)
		}
		msg := replyTo(":1.5", 42, out)
		if _, err := msg.CountFds(); err != nil {
			b.Fatal(err)
		}
		if err := msg.EncodeTo(io.Discard, binary.LittleEndian); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWireStringIsValidUTF8WithoutNUL: wireString agrees with the plain
// checks on strings with a NUL, a byte of 0x80 and more, a broken and a
// whole multi-byte rune at every position of every length up to 40.
func TestWireStringIsValidUTF8WithoutNUL(t *testing.T) {
	for n := 0; n <= 40; n++ {
		base := strings.Repeat("a", n)
		cases := []string{base}
		for i := 0; i < n; i++ {
			for _, ins := range []string{"\x00", "\x7f", "\x80", "\xff", "é", "\xc3", "€", "\xe2\x82", "😀"} {
				cases = append(cases, base[:i]+ins+base[i:], base[:i]+ins)
			}
		}
		for _, s := range cases {
			want := utf8.ValidString(s) && !strings.Contains(s, "\x00")
			if got := wireString(s); got != want {
				t.Errorf("wireString(%q) = %v, want %v", s, got, want)
			}
		}
	}
}

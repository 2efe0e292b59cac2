// SPDX-License-Identifier: Apache-2.0

package service

import (
	"reflect"
	"testing"
)

func withCHAP(s Spec, c CHAP) Spec {
	i := *s.ISCSI
	i.CHAP = c
	s.ISCSI = &i
	return s
}

func TestEqualAndCompatible(t *testing.T) {
	chap := CHAP{Username: "u", Password: "p"}
	lun1 := mustParse(t, "iscsi://h/"+iqn+"/1")
	tests := []struct {
		name              string
		a, b              Spec
		equal, compatible bool
	}{
		{"same nfs", mustParse(t, "nfs://h/x?soft"), mustParse(t, "nfs://H/x/?soft"), true, true},
		{"nfs options differ", mustParse(t, "nfs://h/x?soft"), mustParse(t, "nfs://h/x?hard"), false, false},
		{"nfs version differs", mustParse(t, "nfs://h/x?vers=3"), mustParse(t, "nfs://h/x?vers=4"), false, false},
		{"nfs timeo differs", mustParse(t, "nfs://h/x?timeo=1"), mustParse(t, "nfs://h/x?timeo=2"), false, false},
		{"nfs retrans differs", mustParse(t, "nfs://h/x?retrans=1"), mustParse(t, "nfs://h/x"), false, false},
		{"nfs export differs", mustParse(t, "nfs://h/x"), mustParse(t, "nfs://h/y"), false, false},
		{"same iscsi", lun1, mustParse(t, "iscsi://h/"+iqn+"/1;tpgt=1"), true, true},
		{"iscsi lun differs", lun1, mustParse(t, "iscsi://h/"+iqn+"/2"), false, true},
		{"iscsi all luns", lun1, mustParse(t, "iscsi://h/"+iqn), false, true},
		{"iscsi same chap", withCHAP(lun1, chap), withCHAP(lun1, chap), true, true},
		{"iscsi chap differs", withCHAP(lun1, chap), lun1, false, false},
		{"iscsi password differs", withCHAP(lun1, chap), withCHAP(lun1, CHAP{Username: "u", Password: "q"}), false, false},
		{"iscsi lun and chap differ", withCHAP(lun1, chap), withCHAP(mustParse(t, "iscsi://h/"+iqn+"/2"), chap), false, true},
		{"iscsi tpgt differs", lun1, mustParse(t, "iscsi://h/"+iqn+"/1;tpgt=2"), false, false},
		{"iscsi iface differs", lun1, mustParse(t, "iscsi://h/"+iqn+"/1;iface=x"), false, false},
		{"kinds differ", mustParse(t, "nfs://h/x"), lun1, false, false},
		{"zero specs", Spec{}, Spec{}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Equal(tc.b); got != tc.equal {
				t.Errorf("%s.Equal(%s) = %v; want %v", dumpSpec(tc.a), dumpSpec(tc.b), got, tc.equal)
			}
			if got := tc.b.Equal(tc.a); got != tc.equal {
				t.Errorf("Equal is not symmetric for %s and %s", dumpSpec(tc.a), dumpSpec(tc.b))
			}
			if got := tc.a.Compatible(tc.b); got != tc.compatible {
				t.Errorf("%s.Compatible(%s) = %v; want %v", dumpSpec(tc.a), dumpSpec(tc.b), got, tc.compatible)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want map[string]any
	}{
		{"nfs defaults", mustParse(t, "nfs://h/x"), map[string]any{
			"server": "h", "port": uint16(2049), "export": "/x",
		}},
		{"nfs everything", mustParse(t, "nfs://[fd00::1]:2050/x?vers=4.1&timeo=100&retrans=3&soft&rsize=65536"), map[string]any{
			"server": "fd00::1", "port": uint16(2050), "export": "/x", "version": "4.1",
			"timeo": int32(100), "retrans": int32(3), "options": "rsize=65536,soft",
		}},
		{"iscsi all luns", mustParse(t, "iscsi://h/"+iqn), map[string]any{
			"portal": "h:3260", "host": "h", "port": uint16(3260), "iqn": iqn,
			"tpgt": int32(1), "iface": "default", "chap": false,
		}},
		{"iscsi lun and chap", withCHAP(mustParse(t, "iscsi://[fd00::1]:3261/"+iqn+"/0;tpgt=2;iface=x"), CHAP{Username: "u", Password: "s3cr3t"}), map[string]any{
			"portal": "[fd00::1]:3261", "host": "fd00::1", "port": uint16(3261), "iqn": iqn,
			"lun": int32(0), "tpgt": int32(2), "iface": "x", "chap": true,
		}},
		{"zero spec", Spec{}, map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.spec.Info()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Info() = %#v\nwant %#v", got, tc.want)
			}
			// Callers add keys to the map: it must be theirs.
			got["extra"] = true
			if _, shared := tc.spec.Info()["extra"]; shared {
				t.Errorf("Info() returned a shared map")
			}
		})
	}
}

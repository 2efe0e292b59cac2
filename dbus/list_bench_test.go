// SPDX-License-Identifier: Apache-2.0

package dbus

import (
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// BenchmarkListEncode10k: the daemon's own work for a List of 10,000
// CIDs (the service's pages and the encoding), without the bus, in CPU
// time (wall time on a shared machine measures the others too); for
// profiles with go test -cpuprofile.
func BenchmarkListEncode10k(b *testing.B) {
	svc := listService(b, 10000)
	for _, tc := range []struct {
		name string
		opts map[string]godbus.Variant
	}{
		{"brief", map[string]godbus.Variant{OptLimit: godbus.MakeVariant(uint32(10000))}},
		{"v1", map[string]godbus.Variant{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q, derr := parseListOptions(tc.opts)
			if derr != nil {
				b.Fatal(derr)
			}
			s := &Server{svc: svc}
			s.lim.Store(&Limits{MaxMessageSize: 128 << 20})
			b.ReportAllocs()
			cpu0 := processCPU()
			for range b.N {
				body, err := s.encodeList(q, nil)
				if err != nil {
					b.Fatal(err)
				}
				body.release()
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// processCPU is the CPU time this process has used, user and system: on
// a machine shared with other work, wall time measures the others too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

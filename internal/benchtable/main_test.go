// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

const local = `goos: linux
BenchmarkManageClients10k-2   	 400	  88949256 ns/op	 700 calls/s-4clients	 200 calls/s-4clients-floor	 3.0 ms/manage-4clients-p50	 1.0 ms/manage-4clients-p50-floor
BenchmarkManageClients10k-2   	 400	  88949256 ns/op	 500 calls/s-4clients	 200 calls/s-4clients-floor	 1.0 ms/manage-4clients-p50	 1.0 ms/manage-4clients-p50-floor
BenchmarkManageClients10k-2   	 400	  88949256 ns/op	 600 calls/s-4clients	 100 calls/s-4clients-floor	 1.5 ms/manage-4clients-p50	 1.0 ms/manage-4clients-p50-floor
BenchmarkParseURI-2   	 1000000	      1500 ns/op	     400 B/op	       9 allocs/op
PASS
ok  	github.com/storkeep/storkeep/cmd/storkeepd	147.091s
`

const host = `some free text the e2e suite logged
BenchmarkHostManageToReadNFS 5 637 ms/connect 84 ms/connect-floor
`

func table(t *testing.T, inputs ...string) map[string][]string {
	t.Helper()
	var rows []*row
	idx := map[string]*row{}
	for _, in := range inputs {
		rows = parse(strings.NewReader(in), rows, idx)
	}
	var out strings.Builder
	write(&out, rows)
	got := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n")[2:] {
		if line == "" {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		got[cells[0]] = cells[1:]
	}
	return got
}

func TestTable(t *testing.T) {
	got := table(t, local, host)

	tests := []struct {
		measure string
		want    []string // value, floor, ratio, goal
	}{
		// The medians over three counts: 600 of 500, 600, 700; 200 of the floors.
		{"ManageClients10k calls/s-4clients", []string{"600", "200", "3.00x", "ratio >= 3: met"}},
		{"ManageClients10k ms/manage-4clients-p50", []string{"1.5", "1", "1.50x", "ratio < 2: met"}},
		{"HostManageToReadNFS ms/connect", []string{"637", "84", "7.58x", "value - floor < 100: missed"}},
		{"ParseURI ns/op", []string{"1500", "", "", ""}},
	}
	for _, tc := range tests {
		cells, ok := got[tc.measure]
		if !ok {
			t.Errorf("no row %q in %v", tc.measure, got)
			continue
		}
		if strings.Join(cells, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s = %q; want %q", tc.measure, cells, tc.want)
		}
	}
	for measure := range got {
		if strings.Contains(measure, "-floor") || strings.HasSuffix(measure, "ManageClients10k ns/op") ||
			strings.HasSuffix(measure, "B/op") {
			t.Errorf("row %q: floors and the standard metrics of a benchmark with its own are not measures", measure)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d rows; want 4: %v", len(got), got)
	}
}

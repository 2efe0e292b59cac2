// SPDX-License-Identifier: Apache-2.0

// Command benchtable prints the one table `make bench` ends with: every
// measure of the benchmark files it is given, its value (the median over
// the counts), the floor measured in the same run, their ratio and the
// goal, as a Markdown table.
//
//	go run ./internal/benchtable bench.txt dist/bench-host/out/bench-*.txt
//
// The files are in Go's benchmark format (`go test -bench` output, and
// the lines the e2e benchmarks write in the same format). A measure is a
// metric unit U; its floor is the metric U-floor of the same benchmark
// line. Lines that are not benchmark results are skipped, and so are the
// standard ns/op, B/op and allocs/op of a benchmark that reports its own
// metrics.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	var rows []*row
	idx := map[string]*row{}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v (skipped)\n", err)
			continue
		}
		rows = parse(f, rows, idx)
		f.Close()
	}
	write(os.Stdout, rows)
}

// row is one measure: a benchmark's metric, with every count's value and
// floor.
type row struct {
	bench, unit   string
	values, floor []float64
}

var procSuffix = regexp.MustCompile(`-\d+$`)

var standard = map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true, "MB/s": true}

// parse adds the benchmark lines read from r to rows (idx finds a row by
// benchmark and unit).
func parse(r io.Reader, rows []*row, idx map[string]*row) []*row {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		metrics := map[string]float64{}
		var order []string
		custom := false
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			metrics[f[i+1]] = v
			order = append(order, f[i+1])
			custom = custom || !standard[f[i+1]]
		}
		for _, unit := range order {
			if strings.HasSuffix(unit, "-floor") || (custom && standard[unit]) || (!custom && unit != "ns/op") {
				continue
			}
			key := name + " " + unit
			rw := idx[key]
			if rw == nil {
				rw = &row{bench: name, unit: unit}
				idx[key] = rw
				rows = append(rows, rw)
			}
			rw.values = append(rw.values, metrics[unit])
			if fl, ok := metrics[unit+"-floor"]; ok {
				rw.floor = append(rw.floor, fl)
			}
		}
	}
	return rows
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// goal is what a measure should reach: its ratio to the floor, its value,
// or its excess over the floor (value - floor), below (or at least) a
// bound.
type goal struct {
	bench string // a prefix of the benchmark's name
	unit  string // "" matches every unit of the benchmark
	what  string // "ratio", "value" or "excess"
	least bool   // the measure must be at least bound (else below it)
	bound float64
}

func (g goal) String() string {
	op := "<"
	if g.least {
		op = ">="
	}
	switch g.what {
	case "ratio":
		return fmt.Sprintf("ratio %s %g", op, g.bound)
	case "excess":
		return fmt.Sprintf("value - floor %s %g", op, g.bound)
	}
	return fmt.Sprintf("%s %g", op, g.bound)
}

// met reports whether r's medians reach g.
func (g goal) met(v, floor float64, hasFloor bool) (bool, bool) {
	var x float64
	switch g.what {
	case "ratio":
		if !hasFloor || floor == 0 {
			return false, false
		}
		x = v / floor
	case "excess":
		if !hasFloor {
			return false, false
		}
		x = v - floor
	default:
		x = v
	}
	if g.least {
		return x >= g.bound, true
	}
	return x < g.bound, true
}

// goals are issue 16's (and the earlier issues' that still hold).
var goals = []goal{
	{"BenchmarkManageCPU10k", "", "excess", false, 0.2},
	{"BenchmarkManageClients10k", "cpu-ms/call", "excess", false, 0.2},
	{"BenchmarkManageClients10k", "cpu-ms/call-4clients", "excess", false, 0.2},
	{"BenchmarkManageClients10k", "calls/s-4clients", "ratio", true, 3},
	{"BenchmarkManageClients10k", "ms/manage-4clients-p50", "ratio", false, 2},
	{"BenchmarkManageClients10k", "ms/manage-4clients-p99", "ratio", false, 4},
	{"BenchmarkManageClients10k", "ms/unmanage-4clients-p50", "ratio", false, 2},
	{"BenchmarkManageClients10k", "ms/unmanage-4clients-p99", "ratio", false, 4},
	{"BenchmarkScale100k", "ms/restart-100k", "value", false, 3000},
	{"BenchmarkScale100k", "rss-MB-100k", "value", false, 300},
	{"BenchmarkScale100k", "peak-rss-MB-100k", "value", false, 300},
	{"BenchmarkScale100k", "ms/manage-100k-p99", "ratio", false, 2},
	{"BenchmarkRestart10k", "ms/restart", "value", false, 300},
	{"BenchmarkRestart10k", "rss-MB", "value", false, 40},
	{"BenchmarkList10k", "ms/list", "ratio", false, 1.3},
	{"BenchmarkList10k", "ms/list-godbus", "value", false, 150},
	{"BenchmarkList10k", "bytes/entry", "value", false, 350},
	{"BenchmarkList10k", "MB/rss-peak", "value", false, 40},
	{"BenchmarkList10k", "MB/rss-idle", "value", false, 40},
	{"BenchmarkListPaged100k", "MB/rss-peak-100k", "value", false, 300},
	{"BenchmarkHostManageToRead", "", "excess", false, 100},
}

func goalOf(r *row) (goal, bool) {
	for _, g := range goals {
		if strings.HasPrefix(r.bench, g.bench) && (g.unit == "" || g.unit == r.unit) {
			return g, true
		}
	}
	return goal{}, false
}

// write prints rows as one Markdown table.
func write(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| measure | value | floor | ratio | goal |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range rows {
		v := median(r.values)
		floor, ratio, fl := "", "", 0.0
		has := len(r.floor) > 0
		if has {
			fl = median(r.floor)
			floor = num(fl)
			if fl != 0 {
				ratio = fmt.Sprintf("%.2fx", v/fl)
			}
		}
		goalText := ""
		if g, ok := goalOf(r); ok {
			goalText = g.String()
			if met, known := g.met(v, fl, has); known {
				if met {
					goalText += ": met"
				} else {
					goalText += ": missed"
				}
			}
		}
		name := strings.TrimPrefix(r.bench, "Benchmark")
		fmt.Fprintf(w, "| %s %s | %s | %s | %s | %s |\n", name, r.unit, num(v), floor, ratio, goalText)
	}
}

// num prints a value with three significant digits, or as an integer
// when it is that large.
func num(v float64) string {
	if v >= 1000 || v <= -1000 || v == float64(int64(v)) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

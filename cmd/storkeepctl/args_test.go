// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"io"
	"reflect"
	"testing"
	"time"
)

// testFlagSet declares flags like manage and list do.
func testFlagSet() (*flag.FlagSet, *time.Duration, *string, *bool) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := new(time.Duration)
	file := new(string)
	asJSON := new(bool)
	fs.Var((*durationFlag)(wait), "wait", "")
	fs.StringVar(file, "chap-password-file", "", "")
	fs.BoolVar(asJSON, "json", false, "")
	return fs, wait, file, asJSON
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		pos     []string
		wait    time.Duration
		file    string
		json    bool
		wantErr bool
	}{
		{name: "flags after positionals", args: []string{"nfs://h/x", "cid", "--wait", "30s"},
			pos: []string{"nfs://h/x", "cid"}, wait: 30 * time.Second},
		{name: "flags before and between", args: []string{"--json", "a", "-wait=2s", "b"},
			pos: []string{"a", "b"}, wait: 2 * time.Second, json: true},
		{name: "value may be a lone dash", args: []string{"u", "c", "--chap-password-file", "-"},
			pos: []string{"u", "c"}, file: "-"},
		{name: "value may start with a dash", args: []string{"--chap-password-file", "-weird", "u"},
			pos: []string{"u"}, file: "-weird"},
		{name: "double dash ends flags", args: []string{"--json", "--", "-cid", "--wait"},
			pos: []string{"-cid", "--wait"}, json: true},
		{name: "lone dash is positional", args: []string{"-"}, pos: []string{"-"}},
		{name: "seconds without unit", args: []string{"--wait", "5"}, wait: 5 * time.Second},
		{name: "bool with explicit value", args: []string{"x", "--json=false"}, pos: []string{"x"}},
		{name: "unknown flag", args: []string{"x", "--nope"}, wantErr: true},
		{name: "missing value", args: []string{"x", "--wait"}, wantErr: true},
		{name: "bad duration", args: []string{"--wait", "soon"}, wantErr: true},
		{name: "negative duration", args: []string{"--wait", "-1s"}, wantErr: true},
		{name: "help", args: []string{"a", "-h"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, wait, file, asJSON := testFlagSet()
			pos, err := parseArgs(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseArgs(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !reflect.DeepEqual(pos, tt.pos) && (len(pos) != 0 || len(tt.pos) != 0) {
				t.Errorf("positionals = %q, want %q", pos, tt.pos)
			}
			if *wait != tt.wait || *file != tt.file || *asJSON != tt.json {
				t.Errorf("flags = (%v, %q, %v), want (%v, %q, %v)", *wait, *file, *asJSON, tt.wait, tt.file, tt.json)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30s", 30 * time.Second, false},
		{"1m30s", 90 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"2", 2 * time.Second, false},
		{"0.5", 500 * time.Millisecond, false},
		{"0", 0, false},
		{"-3", 0, true},
		{"inf", 0, true},
		{"NaN", 0, true},
		{"1e400", 0, true},
		{"", 0, true},
		{"99999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMicroseconds(t *testing.T) {
	if got := microseconds(30 * time.Second); got != 30_000_000 {
		t.Errorf("microseconds(30s) = %d, want 30000000", got)
	}
}

func TestWantArgs(t *testing.T) {
	if err := wantArgs([]string{"a"}, "URI", "CID"); err == nil || err.Error() != "missing CID" {
		t.Errorf("one of two: %v", err)
	}
	if err := wantArgs(nil, "URI", "CID"); err == nil || err.Error() != "missing URI and CID" {
		t.Errorf("none of two: %v", err)
	}
	if err := wantArgs([]string{"a", "b\x1b[2J"}, "CID"); err == nil || err.Error() != `unexpected argument "b\x1b[2J"` {
		t.Errorf("extra: %v", err)
	}
	if err := wantArgs([]string{"a"}, "CID"); err != nil {
		t.Errorf("exact: %v", err)
	}
}

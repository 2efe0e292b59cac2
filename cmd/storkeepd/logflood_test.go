// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRefusedCallFloodIsRateLimited: 1,200 refused and malformed calls
// from one unprivileged user (testdata/floodclient: a third are changes
// it may not make, the rest malformed) write a handful of lines, and once
// the flood is over one line says how many were held back.
func TestRefusedCallFloodIsRateLimited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	const calls = 1200
	d := newDaemon(t)
	conn := d.client()
	defer conn.Close()
	if _, err := manage(conn, nfsURI, "victim", nil); err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(d.bus.Dir, "floodclient")
	if out, err := exec.Command("go", "build", "-o", client, "./testdata/floodclient").CombinedOutput(); err != nil {
		t.Fatalf("build floodclient: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	flood := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		client, "-address", d.bus.Address, "-victim", "victim", "-n", strconv.Itoa(calls))
	flood.Stdout, flood.Stderr = &out, &out
	start := time.Now()
	if err := flood.Run(); err != nil {
		t.Fatalf("floodclient: %v\n%s", err, out.String())
	}
	took := time.Since(start)

	// The summary comes once the caller has been quiet for a while.
	summaryRE := regexp.MustCompile(`msg="log lines suppressed" .*caller="uid 65534" suppressed=(\d+)`)
	var summaries [][]string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if summaries = summaryRE.FindAllStringSubmatch(d.log.String(), -1); len(summaries) > 0 &&
			time.Since(start) > took+5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lines, suppressed int
	for _, l := range strings.Split(d.log.String(), "\n") {
		if strings.Contains(l, "uid=65534") && !strings.Contains(l, "log lines suppressed") {
			lines++
		}
	}
	for _, s := range summaries {
		n, _ := strconv.Atoi(s[1])
		suppressed += n
	}
	t.Logf("%d refused calls in %v: %d lines about uid 65534, %d summaries saying %d were suppressed",
		calls, took.Round(time.Millisecond), lines, len(summaries), suppressed)
	// A burst of 5, then one line per 10 s, each after a summary.
	bound := 5 + int(took/(10*time.Second)) + 1
	if lines > bound {
		t.Errorf("%d refused calls wrote %d lines about their caller; want at most %d", calls, lines, bound)
	}
	if len(summaries) == 0 {
		t.Fatalf("no line says what was suppressed")
	}
	if lines+suppressed != calls {
		t.Errorf("%d lines written + %d suppressed = %d; want every one of the %d refused calls accounted for",
			lines, suppressed, lines+suppressed, calls)
	}
	for _, s := range summaries {
		if !strings.Contains(d.log.String(), s[0]+` what="`) {
			t.Errorf("summary %q does not say what was suppressed", s[0])
		}
	}
}

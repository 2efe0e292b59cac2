// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strings"
)

// wantCIDArgs is wantArgs for a command whose first argument is a CID: a
// URI there is a mix-up worth naming, and since a CID never contains '/'
// it cannot be one.
func wantCIDArgs(verb string, args []string, names ...string) error {
	if len(args) > 0 && looksLikeURI(args[0]) {
		return usagef("%s looks like a target URI; %s takes a CID (storkeepctl list shows them)", escapeText(args[0]), verb)
	}
	return wantArgs(args, names...)
}

// looksLikeURI reports whether s is shaped like a target URI (nfs://...,
// iscsi://...).
func looksLikeURI(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, "/ ")
}

// unknownCommand is the error for a command that does not exist, with the
// nearest one when a typo explains it ("did you mean").
func unknownCommand(name string) error {
	if s := suggestCommand(name); s != "" {
		return usagef("unknown command %s; did you mean %q?", fmt.Sprintf("%q", name), s)
	}
	return usagef("unknown command %q", name)
}

// suggestCommand returns the command name nearest to name: within two
// edits (one for names of up to four letters), or the only command that
// starts with it; "" when none is near enough.
func suggestCommand(name string) string {
	names := []string{"help"}
	for _, c := range commands() {
		names = append(names, c.name)
	}
	best, bestD := "", 0
	for _, n := range names {
		d := editDistance(strings.ToLower(name), n)
		if best == "" || d < bestD {
			best, bestD = n, d
		}
	}
	limit := 2
	if len([]rune(name)) <= 4 {
		limit = 1
	}
	if bestD <= limit {
		return best
	}
	var prefixed []string
	for _, n := range names {
		if len(name) >= 2 && strings.HasPrefix(n, strings.ToLower(name)) {
			prefixed = append(prefixed, n)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) between a and b, by rune: a swap of two neighbours is one
// edit, as typists make them.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

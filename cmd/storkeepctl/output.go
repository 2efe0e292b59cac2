// SPDX-License-Identifier: Apache-2.0

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// outputFormat is what -o (--output) asks for.
type outputFormat string

const (
	outputTable outputFormat = "table" // columns that fit the terminal
	outputWide  outputFormat = "wide"  // every column, nothing cut
	outputJSON  outputFormat = "json"  // keys are the D-Bus property names
)

// outputFlag is the value of -o and --output.
type outputFlag struct{ f *outputFormat }

func (o outputFlag) String() string {
	if o.f == nil {
		return ""
	}
	return string(*o.f)
}

func (o outputFlag) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputWide, outputJSON:
		*o.f = f
		return nil
	}
	return fmt.Errorf("%q is not an output format (table, wide or json)", s)
}

// jsonAlias is --json: the same as -o json.
type jsonAlias struct{ f *outputFormat }

func (j jsonAlias) String() string   { return "false" }
func (j jsonAlias) IsBoolFlag() bool { return true }
func (j jsonAlias) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	if b {
		*j.f = outputJSON
	} else if *j.f == outputJSON {
		*j.f = outputTable
	}
	return nil
}

// declareOutput declares -o, --output and --json on fs.
func declareOutput(fs *flag.FlagSet, f *outputFormat) {
	*f = outputTable
	fs.Var(outputFlag{f}, "o", "output `format`: table, wide or json")
	fs.Var(outputFlag{f}, "output", "output `format`: table, wide or json")
	fs.Var(jsonAlias{f}, "json", "the same as -o json")
}

// propertyKeys maps the keys of Manager.List's status dictionaries to the
// names of the Connection properties that hold the same values: JSON
// output spells every key as the D-Bus property does.
var propertyKeys = map[string]string{
	skdbus.ListManaged:          "Managed",
	skdbus.ListConnected:        "Connected",
	skdbus.ListState:            "State",
	skdbus.ListKind:             "Kind",
	skdbus.ListURI:              "URI",
	skdbus.ListTarget:           "Target",
	skdbus.ListLastError:        "LastError",
	skdbus.ListLastErrorMessage: "LastErrorMessage",
	skdbus.ListConnectionInfo:   "ConnectionInfo",
}

// propertyKey is the property name of a List key; a key the API adds
// later gets its first letter in upper case.
func propertyKey(k string) string {
	if p, ok := propertyKeys[k]; ok {
		return p
	}
	r, n := utf8.DecodeRuneInString(k)
	return strings.ToUpper(string(r)) + k[n:]
}

// terminalWidth returns the width of the terminal w is, or 0 when w is
// not a terminal (a pipe or file gets whole lines). A terminal whose size
// cannot be read has $COLUMNS columns, else 80.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(w) {
		return 0
	}
	if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		return int(ws.Col)
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

// column describes a table column for fitTable.
type column struct {
	header string
	// keep: never cut or dropped (what identifies a row: CID, target).
	keep bool
	// drop orders the columns dropped when shrinking is not enough:
	// lowest first; 0 is never dropped.
	drop int
}

// fitTable fits rows (escaped cells) into width runes: columns that are
// not kept shrink (cut with "…", never below their header), then are
// dropped in their drop order, until the table fits. Kept columns are
// never touched: a table whose kept columns alone are wider than the
// terminal is wider than the terminal. width <= 0 means no limit.
func fitTable(cols []column, rows [][]string, width int) ([]string, [][]string) {
	live := make([]int, len(cols)) // indexes of the columns still shown
	for i := range live {
		live[i] = i
	}
	natural := make([]int, len(cols))
	for i, c := range cols {
		natural[i] = utf8.RuneCountInString(c.header)
		for _, r := range rows {
			if i < len(r) {
				natural[i] = max(natural[i], utf8.RuneCountInString(r[i]))
			}
		}
	}
	widths := append([]int(nil), natural...)
	for width > 0 {
		least, total := 0, 0
		for n, i := range live {
			if n > 0 {
				least += 2
				total += 2
			}
			total += natural[i]
			if cols[i].keep {
				least += natural[i]
			} else {
				least += min(natural[i], utf8.RuneCountInString(cols[i].header))
			}
		}
		if total <= width {
			break
		}
		if least <= width {
			shrink(cols, live, widths, total-width)
			break
		}
		next := -1
		for n, i := range live {
			if cols[i].drop > 0 && (next < 0 || cols[i].drop < cols[live[next]].drop) {
				next = n
			}
		}
		if next < 0 {
			break // only kept columns left: they stay whole
		}
		live = append(live[:next], live[next+1:]...)
	}
	header := make([]string, len(live))
	for n, i := range live {
		header[n] = truncate(cols[i].header, widths[i])
	}
	out := make([][]string, len(rows))
	for r, row := range rows {
		out[r] = make([]string, len(live))
		for n, i := range live {
			if i < len(row) {
				out[r][n] = truncate(row[i], widths[i])
			}
		}
	}
	return header, out
}

// shrink takes excess runes from the widest shrinkable live columns, one
// at a time, never below a column's header.
func shrink(cols []column, live, widths []int, excess int) {
	for ; excess > 0; excess-- {
		widest := -1
		for _, i := range live {
			if cols[i].keep || widths[i] <= utf8.RuneCountInString(cols[i].header) {
				continue
			}
			if widest < 0 || widths[i] > widths[widest] {
				widest = i
			}
		}
		if widest < 0 {
			return
		}
		widths[widest]--
	}
}

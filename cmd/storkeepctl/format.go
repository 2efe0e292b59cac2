// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
)

// escapeText returns s as it can be shown on a terminal. s is returned
// unchanged when every rune in it is printable (strconv.IsPrint: no control
// characters, no ANSI escapes, no bidi overrides, no invalid UTF-8) and it
// does not start with a double quote; otherwise it is quoted with
// strconv.Quote. So a CID containing "\n" prints as "a\nb", in quotes, and
// cannot break a table or a line-per-CID output, and a quoted output is
// never mistaken for a CID that looks the same unquoted.
func escapeText(s string) string {
	if needsQuote(s) {
		return strconv.Quote(s)
	}
	return s
}

func needsQuote(s string) bool {
	return strings.HasPrefix(s, `"`) || hasUnprintable(s)
}

func hasUnprintable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}

// escapeMessage makes a message from storkeepd or the bus safe to print:
// unprintable characters are escaped in place (without surrounding quotes,
// since a message is read, not parsed).
func escapeMessage(s string) string {
	if !hasUnprintable(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// escapeWord is escapeText for a value inside "Name=value": it also quotes
// the empty string and values with spaces or '=', so that the line splits
// unambiguously.
func escapeWord(s string) string {
	if s == "" || strings.ContainsAny(s, " =") {
		return strconv.Quote(s)
	}
	return escapeText(s)
}

// truncate shortens s to at most max runes, marking the cut with "…".
// max <= 0 means no limit.
func truncate(s string, max int) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	if max == 1 {
		return "…"
	}
	n := 0
	for i := range s {
		if n == max-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// writeTable writes rows under header, in columns two spaces apart. Cells
// must already be escaped. maxWidth[i] > 0 truncates column i; nil means no
// truncation.
func writeTable(w io.Writer, header []string, rows [][]string, maxWidth []int) error {
	cells := make([][]string, 0, len(rows)+1)
	cells = append(cells, header)
	for _, r := range rows {
		row := make([]string, len(header))
		for i := range row {
			if i < len(r) {
				row[i] = r[i]
			}
			if i < len(maxWidth) {
				row[i] = truncate(row[i], maxWidth[i])
			}
		}
		cells = append(cells, row)
	}
	width := make([]int, len(header))
	for _, r := range cells {
		for i, cell := range r {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, r := range cells {
		for i, cell := range r {
			b.WriteString(cell)
			if i == len(r)-1 {
				break
			}
			b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell)+2))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// jsonValue converts a value decoded by godbus (variants, object paths,
// signatures, typed maps and slices, structs as []any) to plain values that
// encoding/json writes naturally: variants are unwrapped, maps become
// objects with string keys, byte arrays become arrays of numbers rather
// than base64, and non-finite floats become strings.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case dbus.Variant:
		return jsonValue(x.Value())
	case *dbus.Variant:
		if x == nil {
			return nil
		}
		return jsonValue(x.Value())
	case dbus.ObjectPath:
		return string(x)
	case dbus.Signature:
		return x.String()
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return x
	case string, bool, int16, uint16, int32, uint32, int64, uint64, uint8:
		return x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			out[fmt.Sprint(jsonValue(iter.Key().Interface()))] = jsonValue(iter.Value().Interface())
		}
		return out
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = jsonValue(rv.Index(i).Interface())
		}
		return out
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil
		}
		return jsonValue(rv.Elem().Interface())
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Uint()
	case reflect.Float32:
		return jsonValue(rv.Float())
	}
	return fmt.Sprint(v)
}

// jsonProperties converts a property or status dictionary.
func jsonProperties(props map[string]dbus.Variant) map[string]any {
	out := make(map[string]any, len(props))
	for k, v := range props {
		out[k] = jsonValue(v)
	}
	return out
}

// writeJSON writes v as one JSON document, indented when indent is set.
// HTML characters are not escaped: the output is for programs and people,
// not web pages.
func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

// formatValue renders a property value for text output: top-level strings
// go through escapeText (empty as "-"), containers use a JSON-like syntax
// with every string quoted.
func formatValue(v any) string {
	v = unwrapVariant(v)
	if s, ok := v.(string); ok {
		if s == "" {
			return "-"
		}
		return escapeText(s)
	}
	if p, ok := v.(dbus.ObjectPath); ok {
		return escapeText(string(p))
	}
	return formatNested(v)
}

func unwrapVariant(v any) any {
	for {
		x, ok := v.(dbus.Variant)
		if !ok {
			return v
		}
		v = x.Value()
	}
}

// formatNested renders v with strings always quoted, so that values inside
// lists and maps are unambiguous.
func formatNested(v any) string {
	switch x := jsonValue(v).(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatNested(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k) + ": " + formatNested(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	default:
		return fmt.Sprint(x)
	}
}

// timeProperties are the t-typed properties holding µs since the epoch,
// with what to print for 0.
var timeProperties = map[string]string{
	"LastErrorTime":  "never",
	"ConnectedSince": "-",
	"NextAttempt":    "-",
	"LastProbe":      "never",
}

// timeZero reports whether name is a time property and what 0 means.
func timeZero(name string, v any) (zero string, ok bool) {
	if _, isT := unwrapVariant(v).(uint64); !isT {
		return "", false
	}
	zero, ok = timeProperties[name]
	return zero, ok
}

// formatTime renders µs since the epoch as RFC 3339 in local time plus the
// distance from now: "2026-03-01T10:00:00+01:00 (42 s ago)".
func formatTime(usec uint64, zero string, now time.Time) string {
	if usec == 0 {
		return zero
	}
	t := time.UnixMicro(int64(min(usec, math.MaxInt64))).Local()
	d := now.Sub(t)
	rel := humanDuration(d) + " ago"
	if d < 0 {
		rel = "in " + humanDuration(-d)
	}
	return fmt.Sprintf("%s (%s)", t.Format(time.RFC3339), rel)
}

// humanDuration renders d rounded to seconds in at most two units:
// "42 s", "5 min 3 s", "3 h 12 min", "2 d 4 h".
func humanDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return joinUnits(s/60, "min", s%60, "s")
	case s < 86400:
		return joinUnits(s/3600, "h", s%3600/60, "min")
	default:
		return joinUnits(s/86400, "d", s%86400/3600, "h")
	}
}

func joinUnits(a int64, ua string, b int64, ub string) string {
	if b == 0 {
		return fmt.Sprintf("%d %s", a, ua)
	}
	return fmt.Sprintf("%d %s %d %s", a, ua, b, ub)
}

// connPropertyOrder is the order of the Connection interface's properties
// in the API; show and monitor print known properties in this order and
// any others after them, sorted.
var connPropertyOrder = []string{
	"CID", "URI", "Kind", "Target", "Managed", "Connected", "State", "Preexisting",
	"LastError", "LastErrorMessage", "LastErrorTime", "ConnectedSince",
	"Attempts", "NextAttempt", "ReadDelay", "LastProbe", "ConnectionInfo",
}

// sortedPropertyNames returns the keys of props, properties of iface, in
// display order: the API's order for the Connection interface, by name
// otherwise.
func sortedPropertyNames(iface string, props map[string]dbus.Variant) []string {
	rank := make(map[string]int, len(connPropertyOrder))
	if iface == skdbus.ConnInterface {
		for i, n := range connPropertyOrder {
			rank[n] = i + 1
		}
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank[names[i]], rank[names[j]]
		if ri == 0 && rj == 0 {
			return names[i] < names[j]
		}
		if ri == 0 || rj == 0 {
			return ri != 0
		}
		return ri < rj
	})
	return names
}

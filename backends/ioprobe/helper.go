// SPDX-License-Identifier: Apache-2.0

package ioprobe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serveArg, after HelperArg, makes the helper answer requests from its
// stdin until it closes.
const serveArg = "serve"

// Main is the helper. With "serve" it reads requests, one a line (a Mode
// and quoted paths, as request writes them), from stdin and answers each
// with one line on stdout until stdin closes; otherwise it reads each path
// in args[1:] as args[0] says, once. An answer is "ok <µs>", or
// "err <errno> <path>: <message>" for the first path that failed; the
// one-shot form returns 0 or 1 accordingly.
func Main(args []string) int {
	if len(args) == 1 && args[0] == serveArg {
		if err := serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "probe helper:", err)
			return 1
		}
		return 0
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if len(args) < 2 {
		fmt.Fprintf(w, "err %d usage: %s dir|block PATH... | %s %s\n", syscall.EINVAL, HelperArg, HelperArg, serveArg)
		return 2
	}
	ans := read(Mode(args[0]), args[1:])
	w.WriteString(ans)
	if !strings.HasPrefix(ans, "ok ") {
		return 1
	}
	return 0
}

// serve answers requests from in on out, one line each, until in ends.
func serve(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), maxRequest)
	w := bufio.NewWriter(out)
	for sc.Scan() {
		ans := ""
		if mode, paths, err := parseRequest(sc.Text()); err != nil {
			ans = fmt.Sprintf("err %d %s\n", syscall.EINVAL, oneLine(err.Error()))
		} else {
			ans = read(mode, paths)
		}
		w.WriteString(ans)
		if err := w.Flush(); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
	}
	return sc.Err()
}

// maxRequest bounds a request line: a target's LUNs, quoted.
const maxRequest = 1 << 20

// request is the line that asks a serving helper to read paths.
func request(mode Mode, paths []string) string {
	var b strings.Builder
	b.WriteString(string(mode))
	for _, p := range paths {
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(p))
	}
	b.WriteByte('\n')
	return b.String()
}

// parseRequest reads what request wrote (without its newline).
func parseRequest(line string) (Mode, []string, error) {
	mode, rest, _ := strings.Cut(line, " ")
	var paths []string
	for rest != "" {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", nil, fmt.Errorf("request %q: %w", line, err)
		}
		p, _ := strconv.Unquote(q)
		paths = append(paths, p)
		rest = strings.TrimPrefix(rest[len(q):], " ")
	}
	if len(paths) == 0 {
		return "", nil, fmt.Errorf("request %q: no path", line)
	}
	return Mode(mode), paths, nil
}

// read reads each path as mode says and returns the answer line.
func read(mode Mode, paths []string) string {
	start := time.Now()
	for _, p := range paths {
		var err error
		switch mode {
		case Dir:
			err = readDir(p)
		case Block:
			err = readBlock(p)
		default:
			err = fmt.Errorf("unknown mode %q: %w", mode, syscall.EINVAL)
		}
		if err != nil {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				errno = syscall.EIO
			}
			return fmt.Sprintf("err %d %s\n", int(errno), oneLine(err.Error()))
		}
	}
	return fmt.Sprintf("ok %d\n", time.Since(start).Microseconds())
}

// oneLine keeps an answer on its line whatever a path holds.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

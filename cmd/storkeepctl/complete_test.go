// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	bashCompletion = "../../packaging/completion/bash/storkeepctl"
	zshCompletion  = "../../packaging/completion/zsh/_storkeepctl"
)

// knownFlags returns the flags of each command (without the global ones)
// and the global flags, as storkeepctl declares them, by name, with
// whether each takes a value.
func knownFlags() (map[string]map[string]bool, map[string]bool) {
	valued := func(fs *flag.FlagSet) map[string]bool {
		m := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) { m[f.Name] = !isBoolFlag(f) })
		return m
	}
	perCmd := map[string]map[string]bool{}
	for _, cmd := range commands() {
		fs := newFlagSet(cmd)
		cmd.setup(fs)
		perCmd[cmd.name] = valued(fs)
	}
	global := flag.NewFlagSet("global", flag.ContinueOnError)
	(&cli{}).addGlobalFlags(global)
	return perCmd, valued(global)
}

func readScript(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	// A flag: --name, or -x for a one-letter one (-o, -p).
	flagRE   = regexp.MustCompile(`(?:--([a-z][a-z-]+)|(?:^|[^a-z-])-([a-z])\b)`)
	caseArm  = regexp.MustCompile(`(?m)^\s*\(?([a-z]+)\)`)
	beginEnd = regexp.MustCompile(`(?s)Flags of each command \(begin.*?\n(.*)Flags of each command \(end\)`)
)

// scriptFlags reads the per-command flag block of a completion script:
// command -> the flag names in its case arm.
func scriptFlags(t *testing.T, script string) map[string][]string {
	t.Helper()
	m := beginEnd.FindStringSubmatch(script)
	if m == nil {
		t.Fatal("no \"Flags of each command\" block")
	}
	block := m[1]
	out := map[string][]string{}
	arms := caseArm.FindAllStringSubmatchIndex(block, -1)
	for i, a := range arms {
		name := block[a[2]:a[3]]
		end := len(block)
		if i+1 < len(arms) {
			end = arms[i+1][0]
		}
		out[name] = []string{}
		for _, f := range flagRE.FindAllStringSubmatch(block[a[1]:end], -1) {
			out[name] = append(out[name], f[1]+f[2])
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// TestCompletionKnowsEveryCommandAndFlag fails when a command or flag is
// added to (or dropped from) storkeepctl without its completion.
func TestCompletionKnowsEveryCommandAndFlag(t *testing.T) {
	perCmd, global := knownFlags()
	var names []string
	for _, cmd := range commands() {
		names = append(names, cmd.name)
	}
	names = append(names, "help")
	sort.Strings(names)

	for _, path := range []string{bashCompletion, zshCompletion} {
		script := readScript(t, path)
		t.Run(filepath.Base(path), func(t *testing.T) {
			var gotCmds, gotGlobal []string
			if strings.HasPrefix(filepath.Base(path), "_") {
				m := regexp.MustCompile(`(?s)commands=\((.*?)\n\s*\)`).FindStringSubmatch(script)
				for _, c := range regexp.MustCompile(`(?m)^\s*'([a-z]+):`).FindAllStringSubmatch(m[1], -1) {
					gotCmds = append(gotCmds, c[1])
				}
				m = regexp.MustCompile(`(?s)global_flags=\((.*?)\n\s*\)`).FindStringSubmatch(script)
				for _, f := range flagRE.FindAllStringSubmatch(m[1], -1) {
					gotGlobal = append(gotGlobal, f[1]+f[2])
				}
			} else {
				m := regexp.MustCompile(`local commands="([^"]*)"`).FindStringSubmatch(script)
				gotCmds = strings.Fields(m[1])
				m = regexp.MustCompile(`local global_flags="([^"]*)"`).FindStringSubmatch(script)
				for _, f := range flagRE.FindAllStringSubmatch(m[1], -1) {
					gotGlobal = append(gotGlobal, f[1]+f[2])
				}
				// Every flag that takes a value, and no other, is in valued.
				want := map[string]bool{}
				for _, fs := range append([]map[string]bool{global}, mapsOf(perCmd)...) {
					for name, v := range fs {
						if v {
							want[name] = true
						}
					}
				}
				m = regexp.MustCompile(`local valued="([^"]*)"`).FindStringSubmatch(script)
				var got []string
				for _, f := range flagRE.FindAllStringSubmatch(m[1], -1) {
					got = append(got, f[1]+f[2])
				}
				if g, w := strings.Join(sorted(got), " "), strings.Join(keys(want), " "); g != w {
					t.Errorf("flags that take a value: script has %q, storkeepctl %q", g, w)
				}
			}
			if g, w := strings.Join(sorted(gotCmds), " "), strings.Join(names, " "); g != w {
				t.Errorf("commands: script has %q, storkeepctl %q", g, w)
			}
			if g, w := strings.Join(sorted(gotGlobal), " "), strings.Join(keys(global), " "); g != w {
				t.Errorf("global flags: script has %q, storkeepctl %q", g, w)
			}
			flags := scriptFlags(t, script)
			for _, cmd := range commands() {
				got, ok := flags[cmd.name]
				if !ok {
					t.Errorf("no flags listed for command %s", cmd.name)
					continue
				}
				if g, w := strings.Join(sorted(got), " "), strings.Join(keys(perCmd[cmd.name]), " "); g != w {
					t.Errorf("flags of %s: script has %q, storkeepctl %q", cmd.name, g, w)
				}
			}
			for name := range flags {
				if _, ok := lookupCommand(name); !ok {
					t.Errorf("the script lists flags of %q, which storkeepctl does not know", name)
				}
			}
		})
	}
}

func mapsOf(m map[string]map[string]bool) []map[string]bool {
	var out []map[string]bool
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// bashComplete runs the bash completion for the words of line (the last
// one is completed; "" for a new word) with path as PATH and returns the
// candidates.
func bashComplete(t *testing.T, path string, line ...string) []string {
	t.Helper()
	script, err := filepath.Abs(bashCompletion)
	if err != nil {
		t.Fatal(err)
	}
	prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _storkeepctl; printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", append([]string{"--norc", "-c", prog, "bash", script}, line...)...)
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", line, err, out)
	}
	return strings.Fields(string(out))
}

// TestBashCompletion runs the bash script: commands, flags, flag values,
// and CIDs from storkeepctl __complete-cids, with the --bus of the
// command line (a stub storkeepctl records how it was run).
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "args")
	stub := "#!" + bash + "\nprintf '%s\\n' \"$*\" >>" + log + "\nprintf 'vm1-disk\\nvm1 lun\\nvm2-disk\\n'\n"
	if err := os.WriteFile(filepath.Join(dir, "storkeepctl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	path := dir + ":" + os.Getenv("PATH")

	check := func(want string, line ...string) {
		t.Helper()
		if got := strings.Join(bashComplete(t, path, line...), " "); got != want {
			t.Errorf("complete %q: got %q, want %q", line, got, want)
		}
	}
	check("manage unmanage list show status wait reconnect monitor help", "storkeepctl", "")
	check("manage monitor", "storkeepctl", "--bus", "session", "m")
	check("--bus --timeout --help --version", "storkeepctl", "-")
	check("system session", "storkeepctl", "--bus", "s")
	check("--prefix -o --output --json --full --bus --timeout --help", "storkeepctl", "list", "-")
	check("table wide json", "storkeepctl", "list", "-o", "")
	check("json", "storkeepctl", "show", "vm1-disk", "--output", "j")
	check("State", "storkeepctl", "show", "vm1-disk", "-p", "Sta")
	check("nfs:// iscsi://", "storkeepctl", "manage", "")
	check("", "storkeepctl", "manage", "nfs://x/y", "")
	check("vm1-disk vm1\\ lun vm2-disk", "storkeepctl", "--bus", "session", "show", "vm")
	check("vm1-disk vm1\\ lun vm2-disk", "storkeepctl", "wait", "--timeout", "5s", "v")
	check("", "storkeepctl", "wait", "vm1-disk", "")
	check("vm1-disk vm1\\ lun vm2-disk", "storkeepctl", "unmanage", "--prefix", "")
	check("show status", "storkeepctl", "help", "s")
	check("show", "storkeepctl", "help", "sh")

	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "--bus session __complete-cids vm\n__complete-cids v\n__complete-cids \n"
	if string(b) != want {
		t.Errorf("storkeepctl was run as:\n%s\nwant:\n%s", b, want)
	}
}

func TestZshCompletionParses(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("no zsh")
	}
	if out, err := exec.Command(zsh, "-n", zshCompletion).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

func TestCompleteCIDs(t *testing.T) {
	_, addr := startFake(t)
	ctx := context.Background()
	for _, cid := range []string{"vm1-disk", "vm1-lun", "vm2-disk", "bad\nline"} {
		if code, _, errOut := runCtl(ctx, addr, "", "manage", "nfs://srv/"+cid[:3], cid); code != 0 {
			t.Fatalf("manage %q: %d %s", cid, code, errOut)
		}
	}
	code, out, errOut := runCtl(ctx, addr, "", completeCIDsCommand, "vm1")
	if code != 0 || out != "vm1-disk\nvm1-lun\n" || errOut != "" {
		t.Errorf("__complete-cids vm1: %d %q %q", code, out, errOut)
	}
	// All managed CIDs, none found on the host, none with a newline.
	code, out, _ = runCtl(ctx, addr, "", completeCIDsCommand)
	if code != 0 || out != "vm1-disk\nvm1-lun\nvm2-disk\n" {
		t.Errorf("__complete-cids: %d %q", code, out)
	}
	// No daemon: nothing at all on either stream.
	code, out, errOut = runCtl(ctx, "unix:path="+filepath.Join(t.TempDir(), "none"), "", completeCIDsCommand)
	if code == 0 || out != "" || errOut != "" {
		t.Errorf("__complete-cids without a bus: %d %q %q", code, out, errOut)
	}
}

// TestManPageKnowsEveryCommandAndFlag checks man/storkeepctl.1: each
// command is an item of COMMANDS, each of its flags is on that item, and
// each global flag is an item of OPTIONS.
func TestManPageKnowsEveryCommandAndFlag(t *testing.T) {
	page := strings.ReplaceAll(readScript(t, "../../man/storkeepctl.1"), `\-`, "-")
	perCmd, global := knownFlags()
	items := map[string]string{} // command -> its .TP item, up to the next
	for _, chunk := range strings.Split(page, "\n.TP\n")[1:] {
		chunk, _, _ = strings.Cut(chunk, "\n.SH")
		if m := regexp.MustCompile(`^\.B ([a-z]+)\b`).FindStringSubmatch(chunk); m != nil {
			items[m[1]] += chunk
		}
	}
	for _, cmd := range append(commands(), command{name: "help"}) {
		body, ok := items[cmd.name]
		if !ok {
			t.Errorf("storkeepctl.1 describes no command %s", cmd.name)
			continue
		}
		for _, f := range keys(perCmd[cmd.name]) {
			name := "--" + f
			if len(f) == 1 {
				name = "-" + f // -o, -p
			}
			if !strings.Contains(body, name) {
				t.Errorf("storkeepctl.1: %s does not describe %s", cmd.name, name)
			}
		}
	}
	for _, f := range keys(global) {
		if !regexp.MustCompile(`(?m)^\.BI? --` + f + ` `).MatchString(page) {
			t.Errorf("storkeepctl.1 describes no global flag --%s", f)
		}
	}
}

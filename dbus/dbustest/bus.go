// SPDX-License-Identifier: Apache-2.0

// Package dbustest starts private dbus-daemons for tests: a real bus with
// the system bus's rules (anyone may connect, the daemon authorizes), on a
// socket of its own, so tests need neither systemd nor the host's bus.
package dbustest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bus is a running private dbus-daemon.
type Bus struct {
	// Address is the D-Bus address clients dial (unix:path=...).
	Address string
	// Dir is a temporary directory the bus lives in; tests may use it.
	Dir string
	cmd *exec.Cmd
}

const configTemplate = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_message_size">%d</limit>
  <limit name="reply_timeout">60000</limit>
</busconfig>
`

// Start starts a private bus and stops it when the test ends. The bus's
// directory is world-readable so that tests can connect as other users.
// It takes messages of up to 128 MiB, the protocol's limit.
func Start(tb testing.TB) *Bus {
	tb.Helper()
	return StartLimited(tb, 128<<20)
}

// StartLimited is Start with the bus's max_message_size: the bus drops a
// connection that sends a longer message (the system bus's is 32 MiB).
func StartLimited(tb testing.TB, maxMessageSize int) *Bus {
	tb.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		tb.Fatalf("dbus-daemon not found (install the dbus package; make deps does): %v", err)
	}
	dir, err := os.MkdirTemp("", "storkeep-bus-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(configTemplate, sock, maxMessageSize)), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	// Its complaints (such as failing to raise the fd limit when not run
	// by systemd) would interleave with test and benchmark output.
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start dbus-daemon: %v", err)
	}
	b := &Bus{Dir: dir, cmd: cmd}
	tb.Cleanup(b.stop)
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			tb.Fatal("dbus-daemon printed no address")
		}
		b.Address = "unix:path=" + sock
	case <-time.After(20 * time.Second):
		tb.Fatal("dbus-daemon did not start within 20 s")
	}
	return b
}

func (b *Bus) stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
	_ = os.RemoveAll(b.Dir)
}

// Kill kills the bus daemon at once, as a crash would: every connection
// to it is lost. The test's cleanup still removes its directory.
func (b *Bus) Kill() {
	_ = b.cmd.Process.Kill()
}

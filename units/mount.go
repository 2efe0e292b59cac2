// SPDX-License-Identifier: Apache-2.0

package units

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Mount describes a transient mount unit: what `systemd-mount` would
// create, without a unit file and without a daemon-reload.
type Mount struct {
	What        string // e.g. "server:/export"
	Where       string // the mount point, an absolute path
	Type        string // e.g. "nfs"
	Options     string // comma-separated mount options
	Description string
	// Timeout bounds the mount helper; systemd kills it and fails the unit
	// when it passes (TimeoutSec=).
	Timeout time.Duration
}

// Name returns the unit's name, derived from Where as systemd requires.
func (m Mount) Name() string { return MountUnitName(m.Where) }

// properties returns the unit's settings as StartTransientUnit takes them.
// Network file systems (Type nfs) get systemd's network-mount ordering by
// default (After=network-online.target, Before=remote-fs.target).
// LazyUnmount and ForceUnmount make stopping the unit finish even when the
// server is dead. A failed unit stays loaded only until the Manager has
// read why it failed (its Result and its invocation's log are gone once
// systemd collects it); then the Manager resets it and systemd collects it,
// so failed units don't linger.
func (m Mount) properties() []sd.Property {
	return []sd.Property{
		sd.PropDescription(m.Description),
		{Name: "What", Value: godbus.MakeVariant(m.What)},
		{Name: "Where", Value: godbus.MakeVariant(m.Where)},
		{Name: "Type", Value: godbus.MakeVariant(m.Type)},
		{Name: "Options", Value: godbus.MakeVariant(m.Options)},
		{Name: "TimeoutUSec", Value: godbus.MakeVariant(uint64(m.Timeout / time.Microsecond))},
		{Name: "LazyUnmount", Value: godbus.MakeVariant(true)},
		{Name: "ForceUnmount", Value: godbus.MakeVariant(true)},
	}
}

// UnitError is a unit that failed to start or stop, with what systemd and
// the journal say about it.
type UnitError struct {
	Unit   string
	Op     string // "start" or "stop"
	Job    string // the job's result: failed, timeout, canceled, dependency...
	Result string // the unit's Result: exit-code, timeout, signal, resources...
	// Log holds the unit's own log lines for that invocation (the mount
	// helper's words), newest last.
	Log []string
}

func (e *UnitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: job %s", e.Op, e.Unit, e.Job)
	if e.Result != "" && e.Result != "success" {
		fmt.Fprintf(&b, ", result %s", e.Result)
	}
	if len(e.Log) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Log, "; "))
	}
	return b.String()
}

// ErrUnavailable wraps failures to reach systemd on the bus.
var ErrUnavailable = errors.New("systemd unavailable")

// Manager starts and stops transient mount units through systemd's D-Bus
// API. It dials the system bus on first use and again after the bus went
// away. It is safe for concurrent use.
type Manager struct {
	// Dial returns a new, authenticated connection to the bus systemd is
	// on; nil means the system bus.
	Dial func() (*godbus.Conn, error)
	// Journal reads the log lines of one unit invocation; nil runs
	// journalctl. Tests replace it.
	Journal func(ctx context.Context, invocationID string) []string

	mu   sync.Mutex // guards conn
	conn *sd.Conn

	wmu     sync.Mutex // guards waiters
	waiters map[string][]chan string
}

// UnitChanged passes on what a watcher of systemd's signals saw: unit
// name's ActiveState is now state ("" if the signal did not carry it).
// Start and Stop wait on this as well as on their job's result, whichever
// comes first.
func (m *Manager) UnitChanged(name, state string) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	for _, ch := range m.waiters[name] {
		select {
		case ch <- state:
		default: // the waiter has a change to look at already
		}
	}
}

func (m *Manager) addWaiter(name string) chan string {
	ch := make(chan string, 1)
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.waiters == nil {
		m.waiters = make(map[string][]chan string)
	}
	m.waiters[name] = append(m.waiters[name], ch)
	return ch
}

func (m *Manager) removeWaiter(name string, ch chan string) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	w := m.waiters[name]
	for i, c := range w {
		if c == ch {
			w = append(w[:i], w[i+1:]...)
			break
		}
	}
	if len(w) == 0 {
		delete(m.waiters, name)
	} else {
		m.waiters[name] = w
	}
}

func (m *Manager) systemd(ctx context.Context) (*sd.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil && m.conn.Connected() {
		return m.conn, nil
	}
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	var c *sd.Conn
	var err error
	if m.Dial == nil {
		// Not ctx: go-systemd closes the connection when the context it
		// was dialled with ends, and this one outlives the call.
		c, err = sd.NewSystemConnectionContext(context.Background())
	} else {
		c, err = sd.NewConnection(m.Dial)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.conn = c
	return c, nil
}

// Close drops the connection to systemd.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
}

// Check asks systemd for its version, to tell whether it is reachable.
//
// Equivalent to: busctl get-property org.freedesktop.systemd1
// /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version
func (m *Manager) Check(ctx context.Context) error {
	c, err := m.systemd(ctx)
	if err != nil {
		return err
	}
	if _, err := c.GetManagerProperty("Version"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Start creates the transient unit for mnt and waits until it is active
// (mounted) or has failed. A unit of that name that is already loaded
// (starting, failed, or inactive but not yet collected) is started again
// instead, after its failed state is reset.
//
// Equivalent to: systemd-mount --type=TYPE --options=OPTIONS WHAT WHERE
func (m *Manager) Start(ctx context.Context, mnt Mount) error {
	c, err := m.systemd(ctx)
	if err != nil {
		return err
	}
	name := mnt.Name()
	changed := m.addWaiter(name)
	defer m.removeWaiter(name, changed)
	done := make(chan string, 1) // buffered: go-systemd must never block on it
	_, err = c.StartTransientUnitContext(ctx, name, "fail", mnt.properties(), done)
	if isDBusError(err, "org.freedesktop.systemd1.UnitExists") {
		done, err = m.startExisting(ctx, c, name)
	}
	if err != nil {
		return m.callError(ctx, "start", name, err)
	}
	return m.waitJob(ctx, c, "start", name, done, changed)
}

// startExisting starts a unit that is still loaded: one that is already
// starting joins its job, a failed one is reset first.
func (m *Manager) startExisting(ctx context.Context, c *sd.Conn, name string) (chan string, error) {
	state, err := c.GetUnitPropertyContext(ctx, name, "ActiveState")
	if err == nil && state.Value.Value() == "failed" {
		if err := c.ResetFailedUnitContext(ctx, name); err != nil {
			return nil, err
		}
	}
	done := make(chan string, 1)
	_, err = c.StartUnitContext(ctx, name, "replace", done)
	return done, err
}

// Stop stops the unit named name and waits until it is inactive. A unit
// systemd doesn't know is already stopped.
//
// Equivalent to: systemctl stop NAME
func (m *Manager) Stop(ctx context.Context, name string) error {
	c, err := m.systemd(ctx)
	if err != nil {
		return err
	}
	changed := m.addWaiter(name)
	defer m.removeWaiter(name, changed)
	done := make(chan string, 1)
	_, err = c.StopUnitContext(ctx, name, "replace", done)
	if isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		return nil
	}
	// A unit that failed stays failed (and loaded) through a stop.
	defer c.ResetFailedUnitContext(context.WithoutCancel(ctx), name)
	if err != nil {
		return m.callError(ctx, "stop", name, err)
	}
	return m.waitJob(ctx, c, "stop", name, done, changed)
}

// waitJob waits for a job's result and, on failure, explains it. The
// unit's own state changes (UnitChanged) end the wait too, and without a
// watcher it looks at the unit every second: a JobRemoved signal that never
// arrives must not leave the caller waiting until its deadline.
func (m *Manager) waitJob(ctx context.Context, c *sd.Conn, op, name string, done <-chan string, changed <-chan string) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		state := ""
		select {
		case res := <-done:
			if res == "done" {
				return nil
			}
			return m.failed(ctx, c, op, name, res)
		case state = <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", op, name, ctx.Err())
		}
		if state == "" {
			p, err := c.GetUnitPropertyContext(ctx, name, "ActiveState")
			if err != nil {
				continue
			}
			state, _ = p.Value.Value().(string)
		}
		switch {
		case op == "start" && state == "active", op == "stop" && state == "inactive":
			return nil
		case state == "failed":
			return m.failed(ctx, c, op, name, "failed")
		}
	}
}

// failed explains a failed job, then lets systemd collect the unit.
func (m *Manager) failed(ctx context.Context, c *sd.Conn, op, name, job string) error {
	err := m.explain(ctx, c, op, name, job)
	// Equivalent to: systemctl reset-failed NAME
	_ = c.ResetFailedUnitContext(ctx, name)
	return err
}

func (m *Manager) callError(ctx context.Context, op, name string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", op, name, ctx.Err())
	}
	var de godbus.Error
	if errors.As(err, &de) || errors.Is(err, godbus.ErrClosed) {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return fmt.Errorf("%s %s: %w: %v", op, name, ErrUnavailable, err)
}

// explain reads the failed unit's Result and the log of its last
// invocation. The unit may be gone already (collected): then the job
// result is all there is.
func (m *Manager) explain(ctx context.Context, c *sd.Conn, op, name, job string) error {
	e := &UnitError{Unit: name, Op: op, Job: job}
	props, err := c.GetUnitTypePropertiesContext(ctx, name, "Mount")
	if err == nil {
		e.Result, _ = props["Result"].(string)
	}
	uprops, err := c.GetUnitPropertiesContext(ctx, name)
	if err == nil {
		if id, ok := uprops["InvocationID"].([]byte); ok && len(id) > 0 {
			journal := m.Journal
			if journal == nil {
				journal = readJournal
			}
			e.Log = journal(ctx, fmt.Sprintf("%x", id))
		}
	}
	return e
}

// readJournal returns the messages of one unit invocation: the helper's
// own output (mount.nfs's reason) when there is any, else systemd's lines
// about the unit. The journal may lag the unit's failure by a little, so
// it asks a few times for the helper's lines.
//
// Equivalent to: journalctl -o cat _SYSTEMD_INVOCATION_ID=ID
func readJournal(ctx context.Context, id string) []string {
	tries, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	for tries.Err() == nil {
		if lines := journalLines(tries, "_SYSTEMD_INVOCATION_ID="+id); len(lines) > 0 {
			return lines
		}
		select {
		case <-tries.Done():
		case <-time.After(150 * time.Millisecond):
		}
	}
	last, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel2()
	return journalLines(last, "INVOCATION_ID="+id)
}

// journalLines runs journalctl for one match, with a deadline, killing its
// whole process group if it passes.
func journalLines(ctx context.Context, match string) []string {
	cmd := exec.CommandContext(ctx, "journalctl", "--no-pager", "-q", "-o", "cat", match)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, _ := cmd.Output()
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func isDBusError(err error, name string) bool {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *godbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/dbus/dbustest"
	"github.com/storkeep/storkeep/ratelog"
)

// lockedBuffer collects a logger's output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// polkitSetup is a private bus with the daemon's connection (which the
// authorizer uses) and a caller's connection.
type polkitSetup struct {
	bus    *dbustest.Bus
	auth   *Polkit
	caller *godbus.Conn
	log    *lockedBuffer
}

// newPolkitSetup trusts no uid unless trusted says so, so that these tests
// ask the (fake) polkit whoever runs them, root included.
func newPolkitSetup(t *testing.T, trusted func(uint32) bool) *polkitSetup {
	t.Helper()
	bus := dbustest.Start(t)
	daemon, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Close() })
	caller, err := godbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caller.Close() })
	log := &lockedBuffer{}
	return &polkitSetup{bus: bus, caller: caller, log: log, auth: &Polkit{Conn: daemon,
		Log: slog.New(slog.NewTextHandler(log, nil)), Callers: NewCallerCache(), Trusted: trusted}}
}

func (s *polkitSetup) authorize(t *testing.T, action string, interactive bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.auth.Authorize(ctx, skdbus.AuthRequest{Sender: s.caller.Names()[0], Action: action, Interactive: interactive})
}

func answer(a dbustest.PolkitAnswer) func(dbustest.PolkitQuestion) dbustest.PolkitAnswer {
	return func(dbustest.PolkitQuestion) dbustest.PolkitAnswer { return a }
}

func TestPolkitAllowed(t *testing.T) {
	s := newPolkitSetup(t, nil)
	fake := dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{IsAuthorized: true}))
	if err := s.authorize(t, skdbus.ActionManage, false); err != nil {
		t.Fatalf("Authorize: %v, want allowed", err)
	}
	asked := fake.Asked()
	if len(asked) != 1 {
		t.Fatalf("polkit was asked %d times, want 1", len(asked))
	}
	q := asked[0]
	if q.SubjectKind != "system-bus-name" || q.SubjectDetails["name"] != s.caller.Names()[0] || len(q.SubjectDetails) != 1 {
		t.Errorf("subject = %s %v, want system-bus-name {name: %s}", q.SubjectKind, q.SubjectDetails, s.caller.Names()[0])
	}
	if q.Action != skdbus.ActionManage || len(q.Details) != 0 || q.Flags != 0 || q.CancellationID != "" {
		t.Errorf("question = %+v, want action %s, no details (none were given), flags 0, no cancellation id", q, skdbus.ActionManage)
	}
	if out := s.log.String(); !strings.Contains(out, "msg=authorized") || !strings.Contains(out, "by=polkit") ||
		!strings.Contains(out, "uid=") || !strings.Contains(out, "pid=") || !strings.Contains(out, "action="+skdbus.ActionManage) {
		t.Errorf("the decision is not logged with uid, pid, action and who decided:\n%s", out)
	}
}

// TestPolkitGetsDetails: what the call acts on reaches polkit as the
// details of CheckAuthorization, which rules read with action.lookup().
func TestPolkitGetsDetails(t *testing.T) {
	s := newPolkitSetup(t, nil)
	fake := dbustest.StartPolkit(t, s.bus, func(q dbustest.PolkitQuestion) dbustest.PolkitAnswer {
		// Like a rule that delegates a prefix of CIDs.
		return dbustest.PolkitAnswer{IsAuthorized: strings.HasPrefix(q.Details["cid"], "tenant1-")}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ask := func(cid string) error {
		return s.auth.Authorize(ctx, skdbus.AuthRequest{Sender: s.caller.Names()[0], Action: skdbus.ActionManage,
			Details: map[string]string{skdbus.AuthDetailCID: cid, skdbus.AuthDetailKind: "nfs", skdbus.AuthDetailHost: "filer"}})
	}
	if err := ask("tenant1-disk"); err != nil {
		t.Errorf("tenant1-disk: %v, want allowed", err)
	}
	if err := ask("tenant2-disk"); !errors.Is(err, skdbus.ErrNotAuthorized) {
		t.Errorf("tenant2-disk: %v, want denied", err)
	}
	asked := fake.Asked()
	want := map[string]string{"cid": "tenant2-disk", "kind": "nfs", "host": "filer"}
	if len(asked) != 2 || fmt.Sprint(asked[1].Details) != fmt.Sprint(want) {
		t.Errorf("polkit was asked %+v, want details %v last", asked, want)
	}
	if out := s.log.String(); !strings.Contains(out, "cid=tenant1-disk host=filer kind=nfs by=polkit result=authorized") ||
		!strings.Contains(out, "cid=tenant2-disk host=filer kind=nfs by=polkit result=denied") {
		t.Errorf("the decisions are not logged with what the calls act on:\n%s", out)
	}
}

func TestPolkitDenials(t *testing.T) {
	tests := []struct {
		name        string
		answer      dbustest.PolkitAnswer
		interactive bool
		want        []string // in the error message
		wantLog     string
	}{
		{"denied", dbustest.PolkitAnswer{}, false,
			[]string{"not authorized for " + skdbus.ActionReconnect, "polkit denied it"}, "result=denied"},
		{"challenge without interaction", dbustest.PolkitAnswer{IsChallenge: true}, false,
			[]string{"not authorized for " + skdbus.ActionReconnect, "did not allow interactive authorization"}, "result=challenge"},
		{"dismissed", dbustest.PolkitAnswer{Details: map[string]string{"polkit.dismissed": "true"}}, true,
			[]string{"not authorized for " + skdbus.ActionReconnect, "dismissed"}, "result=dismissed"},
		{"polkit fails", dbustest.PolkitAnswer{Err: godbus.NewError("org.freedesktop.PolicyKit1.Error.Failed", []any{"boom"})}, false,
			[]string{"not authorized for " + skdbus.ActionReconnect, "could not ask polkit", "boom"}, "result=error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newPolkitSetup(t, nil)
			dbustest.StartPolkit(t, s.bus, answer(tt.answer))
			err := s.authorize(t, skdbus.ActionReconnect, tt.interactive)
			if !errors.Is(err, skdbus.ErrNotAuthorized) {
				t.Fatalf("Authorize: %v, want ErrNotAuthorized", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if out := s.log.String(); !strings.Contains(out, "msg=denied") || !strings.Contains(out, tt.wantLog) ||
				!strings.Contains(out, "uid=") || !strings.Contains(out, "pid=") {
				t.Errorf("the denial is not logged with %s, uid and pid:\n%s", tt.wantLog, out)
			}
		})
	}
}

func TestPolkitInteractiveFlagPassedThrough(t *testing.T) {
	s := newPolkitSetup(t, nil)
	fake := dbustest.StartPolkit(t, s.bus, func(q dbustest.PolkitQuestion) dbustest.PolkitAnswer {
		// Like polkitd with auth_admin_keep: a challenge unless the
		// caller lets it ask, then (the password was right) allowed.
		return dbustest.PolkitAnswer{IsAuthorized: q.Flags == 1, IsChallenge: q.Flags != 1}
	})
	if err := s.authorize(t, skdbus.ActionManage, false); !errors.Is(err, skdbus.ErrNotAuthorized) {
		t.Errorf("non-interactive: %v, want denied", err)
	}
	if err := s.authorize(t, skdbus.ActionManage, true); err != nil {
		t.Errorf("interactive: %v, want allowed", err)
	}
	asked := fake.Asked()
	if len(asked) != 2 || asked[0].Flags != 0 || asked[1].Flags != 1 {
		t.Fatalf("flags seen by polkit: %+v, want 0 then 1", asked)
	}
}

func TestPolkitAbsentFallsBackToRootOnly(t *testing.T) {
	self := uint32(0)
	var trustSelf bool
	s := newPolkitSetup(t, func(uid uint32) bool { return trustSelf && uid == self })
	creds, err := LookupCaller(context.Background(), s.auth.Conn, s.caller.Names()[0])
	if err != nil {
		t.Fatal(err)
	}
	self = creds.UID

	// Nobody owns polkit's name and nothing can activate it.
	err = s.authorize(t, skdbus.ActionManage, true)
	if !errors.Is(err, skdbus.ErrNotAuthorized) || !strings.Contains(err.Error(), "polkit is not available") ||
		!strings.Contains(err.Error(), "not authorized for "+skdbus.ActionManage) {
		t.Fatalf("untrusted caller without polkit: %v, want a root-only denial", err)
	}
	if out := s.log.String(); !strings.Contains(out, `by="root-only fallback"`) {
		t.Errorf("the fallback is not logged:\n%s", out)
	}
	trustSelf = true
	if err := s.authorize(t, skdbus.ActionManage, false); err != nil {
		t.Fatalf("trusted caller without polkit: %v, want allowed", err)
	}

	// A polkit that was there and left: the same.
	trustSelf = false
	fake := dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{IsAuthorized: true}))
	if err := s.authorize(t, skdbus.ActionManage, false); err != nil {
		t.Fatalf("with polkit: %v", err)
	}
	fake.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.authorize(t, skdbus.ActionManage, false)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the bus notices the departure
	}
	if err == nil || !strings.Contains(err.Error(), "polkit is not available") {
		t.Fatalf("after polkit left: %v, want a root-only denial", err)
	}
}

func TestPolkitTrustedCallerNotAsked(t *testing.T) {
	s := newPolkitSetup(t, func(uint32) bool { return true })
	fake := dbustest.StartPolkit(t, s.bus, nil) // would deny
	if err := s.authorize(t, skdbus.ActionManage, false); err != nil {
		t.Fatalf("trusted caller: %v", err)
	}
	if n := len(fake.Asked()); n != 0 {
		t.Errorf("polkit was asked %d times about a trusted caller", n)
	}
	if out := s.log.String(); !strings.Contains(out, `by="trusted uid"`) {
		t.Errorf("the decision is not logged:\n%s", out)
	}
}

func TestPolkitUnknownCallerDenied(t *testing.T) {
	s := newPolkitSetup(t, func(uint32) bool { return true })
	dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{IsAuthorized: true}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.auth.Authorize(ctx, skdbus.AuthRequest{Sender: ":1.9999", Action: skdbus.ActionManage})
	if !errors.Is(err, skdbus.ErrNotAuthorized) || !strings.Contains(err.Error(), "could not identify the caller") {
		t.Fatalf("a sender that is gone: %v, want denied", err)
	}
}

func TestRootOnlyNamesTheAction(t *testing.T) {
	s := newPolkitSetup(t, nil)
	r := RootOnly{Conn: s.auth.Conn, Log: s.auth.Log, AllowUID: -1}
	creds, err := LookupCaller(context.Background(), s.auth.Conn, s.caller.Names()[0])
	if err != nil {
		t.Fatal(err)
	}
	err = r.Authorize(context.Background(), skdbus.AuthRequest{Sender: s.caller.Names()[0], Action: skdbus.ActionManage})
	if creds.UID == 0 {
		if err != nil {
			t.Fatalf("root denied: %v", err)
		}
		return
	}
	if !errors.Is(err, skdbus.ErrNotAuthorized) || !strings.Contains(err.Error(), "not authorized for "+skdbus.ActionManage) {
		t.Fatalf("uid %d: %v, want a denial naming the action", creds.UID, err)
	}
	r.AllowUID = int64(creds.UID)
	if err := r.Authorize(context.Background(), skdbus.AuthRequest{Sender: s.caller.Names()[0], Action: skdbus.ActionManage}); err != nil {
		t.Fatalf("the allowed uid was denied: %v", err)
	}
}

// TestDenialsAreRateLimited: a caller's denials go through the shared
// limiter: a burst of lines, then a count once the caller is quiet.
func TestDenialsAreRateLimited(t *testing.T) {
	s := newPolkitSetup(t, nil)
	dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{}))
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	lim := ratelog.New(s.auth.Log, ratelog.Options{Burst: 2, Quiet: time.Second, Now: clock})
	s.auth.Refused = lim
	for range 50 {
		if err := s.authorize(t, skdbus.ActionManage, false); err == nil {
			t.Fatal("allowed")
		}
	}
	if n := strings.Count(s.log.String(), "msg=denied"); n != 2 {
		t.Errorf("50 denials wrote %d lines, want 2:\n%s", n, s.log.String())
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	lim.Flush(context.Background())
	if !strings.Contains(s.log.String(), "suppressed=48") || !strings.Contains(s.log.String(), `what="denied: 48"`) {
		t.Errorf("no summary of the 48 held back:\n%s", s.log.String())
	}
}

// The fallback to root-only is the daemon's state, not a caller's doing: it
// is logged when it starts (and when it ends), however many lines the
// caller's rate limit has already held back, and once, not per denial.
func TestPolkitFallbackLoggedWhateverTheCallerSpent(t *testing.T) {
	s := newPolkitSetup(t, nil)
	frozen := time.Now() // the caller's bucket never refills
	s.auth.Refused = ratelog.New(s.auth.Log, ratelog.Options{Burst: 1, Quiet: time.Hour,
		Now: func() time.Time { return frozen }})
	fake := dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{}))
	if err := s.authorize(t, skdbus.ActionManage, false); err == nil {
		t.Fatal("allowed") // the caller's one line is spent on this denial
	}
	fake.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.log.String(), `by="root-only fallback"`) && time.Now().Before(deadline) {
		if err := s.authorize(t, skdbus.ActionManage, false); err == nil {
			t.Fatal("allowed")
		}
		time.Sleep(10 * time.Millisecond) // the bus notices the departure
	}
	for range 20 {
		if err := s.authorize(t, skdbus.ActionManage, false); err == nil || !strings.Contains(err.Error(), "polkit is not available") {
			t.Fatalf("without polkit: %v, want a root-only denial", err)
		}
	}
	if n := strings.Count(s.log.String(), `by="root-only fallback"`); n != 1 {
		t.Errorf("the fallback is logged %d times, want once:\n%s", n, s.log.String())
	}
	dbustest.StartPolkit(t, s.bus, answer(dbustest.PolkitAnswer{IsAuthorized: true}))
	if err := s.authorize(t, skdbus.ActionManage, false); err != nil {
		t.Fatalf("polkit back: %v", err)
	}
	if !strings.Contains(s.log.String(), "polkit is back") {
		t.Errorf("polkit's return is not logged:\n%s", s.log.String())
	}
}

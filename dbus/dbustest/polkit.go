// SPDX-License-Identifier: Apache-2.0

package dbustest

import (
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// PolkitQuestion is one CheckAuthorization call the fake authority got.
type PolkitQuestion struct {
	SubjectKind    string            // "system-bus-name" for storkeep
	SubjectDetails map[string]any    // {"name": ":1.42"}
	Action         string            // e.g. org.storkeep.StorKeep1.manage
	Details        map[string]string // what the caller passed
	Flags          uint32            // 1: AllowUserInteraction
	CancellationID string
}

// PolkitAnswer is what the fake authority replies: a
// PolkitAuthorizationResult, or an error reply when Err is set.
type PolkitAnswer struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
	Err          *godbus.Error
}

// Polkit is a fake polkit authority: it owns org.freedesktop.PolicyKit1 on
// a test bus and answers CheckAuthorization as its answer function says,
// recording every question. Tests use it where the real polkitd would
// need root and a system bus.
type Polkit struct {
	conn *godbus.Conn

	mu     sync.Mutex // guards answer and asked
	answer func(PolkitQuestion) PolkitAnswer
	asked  []PolkitQuestion
}

// StartPolkit exports the fake authority on b and owns polkit's name until
// the test ends. A nil answer denies everything.
func StartPolkit(tb testing.TB, b *Bus, answer func(PolkitQuestion) PolkitAnswer) *Polkit {
	tb.Helper()
	conn, err := godbus.Connect(b.Address)
	if err != nil {
		tb.Fatalf("fake polkit: connect to %s: %v", b.Address, err)
	}
	tb.Cleanup(func() { conn.Close() })
	p := &Polkit{conn: conn}
	p.SetAnswer(answer)
	if err := conn.Export(authority{p}, "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1.Authority"); err != nil {
		tb.Fatalf("fake polkit: export: %v", err)
	}
	reply, err := conn.RequestName("org.freedesktop.PolicyKit1", godbus.NameFlagDoNotQueue)
	if err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		tb.Fatalf("fake polkit: own org.freedesktop.PolicyKit1: reply %v, %v", reply, err)
	}
	return p
}

// SetAnswer replaces how the authority answers from now on.
func (p *Polkit) SetAnswer(answer func(PolkitQuestion) PolkitAnswer) {
	if answer == nil {
		answer = func(PolkitQuestion) PolkitAnswer { return PolkitAnswer{} }
	}
	p.mu.Lock()
	p.answer = answer
	p.mu.Unlock()
}

// Asked returns the questions so far, oldest first.
func (p *Polkit) Asked() []PolkitQuestion {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PolkitQuestion(nil), p.asked...)
}

// Close releases polkit's name, as if polkitd had stopped.
func (p *Polkit) Close() { p.conn.Close() }

type authority struct{ p *Polkit }

// authResult is a PolkitAuthorizationResult, (bba{ss}).
type authResult struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
}

// subject is a PolkitSubject, (sa{sv}).
type subject struct {
	Kind    string
	Details map[string]godbus.Variant
}

// CheckAuthorization implements the one method storkeep calls.
func (a authority) CheckAuthorization(subj subject, action string, details map[string]string,
	flags uint32, cancellationID string) (authResult, *godbus.Error) {
	q := PolkitQuestion{SubjectKind: subj.Kind, SubjectDetails: map[string]any{}, Action: action,
		Details: details, Flags: flags, CancellationID: cancellationID}
	for k, v := range subj.Details {
		q.SubjectDetails[k] = v.Value()
	}
	a.p.mu.Lock()
	a.p.asked = append(a.p.asked, q)
	answer := a.p.answer
	a.p.mu.Unlock()
	ans := answer(q)
	if ans.Err != nil {
		return authResult{}, ans.Err
	}
	if ans.Details == nil {
		ans.Details = map[string]string{}
	}
	return authResult{ans.IsAuthorized, ans.IsChallenge, ans.Details}, nil
}

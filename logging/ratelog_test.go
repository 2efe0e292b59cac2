// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/storkeep/storkeep/ratelog"
)

// The per-caller limit works the same into the journal: a burst, then one
// summary entry at warning level with the caller and the count as fields.
func TestRatelogIntoTheJournal(t *testing.T) {
	f := &fakeJournal{}
	log := slog.New(NewJournalHandler(JournalOptions{Send: f.send}))
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := ratelog.New(log, ratelog.Options{Burst: 2, Every: 10 * time.Second, Quiet: 2 * time.Second,
		Now: func() time.Time { return now }})
	for i := range 100 {
		l.Log(context.Background(), log, "uid 65534", slog.LevelWarn, "call refused", "uid", 65534, "n", i)
		now = now.Add(time.Millisecond)
	}
	now = now.Add(3 * time.Second)
	l.Flush(context.Background())

	if len(f.entries) != 3 {
		t.Fatalf("%d journal entries, want the burst of 2 and a summary: %+v", len(f.entries), f.entries)
	}
	sum := f.entries[2]
	if sum.pri != journal.PriWarning || sum.fields["CALLER"] != "uid 65534" || sum.fields["SUPPRESSED"] != "98" {
		t.Errorf("summary entry %+v; want warning, CALLER=uid 65534, SUPPRESSED=98", sum)
	}
}

// SPDX-License-Identifier: Apache-2.0

// Package logging is storkeepd's log output: native journal entries when
// stderr is the journal (PRIORITY from the level, CID=, TARGET=, ERROR=
// fields, a MESSAGE_ID per kind of event), plain text otherwise.
package logging

import "log/slog"

// EventKey is the attribute that tags a log record with the kind of event
// it reports; the journal handler turns it into MESSAGE_ID.
const EventKey = "event"

// Event is a kind of event that admins filter on (journalctl MESSAGE_ID=).
type Event string

// The events storkeepd tags. Their MESSAGE_IDs are fixed: they are part of
// the interface, like systemd's catalog ids (journalctl MESSAGE_ID=...).
const (
	// ConnectionLost: a connection that was up is down (its CIDs'
	// Connected went false). Logged at warning level.
	ConnectionLost Event = "connection-lost"
	// ConnectionRestored: a connection that had been lost is up again.
	ConnectionRestored Event = "connection-restored"
	// PathDown: the network path to a storage host became unusable.
	PathDown Event = "path-down"
	// PathUp: the network path to a storage host is usable again.
	PathUp Event = "path-up"
	// Held: a target is kept (never torn down) because a state file that
	// may name it did not load.
	Held Event = "held"
)

// messageIDs are the events' MESSAGE_IDs: 128-bit ids in the form
// journalctl and systemd-id128 use (32 lowercase hex digits).
var messageIDs = map[Event]string{
	ConnectionLost:     "2d279693895f4684b83cd61b9d430304",
	ConnectionRestored: "bd850632e3474fd3b1c6cb007adbeba9",
	PathDown:           "e093f138227e435eb6f96234927b1902",
	PathUp:             "7385e97fcd834a91ab4e810d79c68aa8",
	Held:               "8ae4c5c9633a427ebfa88485300118e6",
}

// MessageID returns the journal MESSAGE_ID of e, and whether e is known.
func (e Event) MessageID() (string, bool) {
	id, ok := messageIDs[e]
	return id, ok
}

// Attr tags a log record with e:
//
//	log.Warn("connection lost", logging.ConnectionLost.Attr(), "cid", cid)
func (e Event) Attr() slog.Attr { return slog.String(EventKey, string(e)) }

// Events returns every event kind, for documentation and tests.
func Events() []Event {
	return []Event{ConnectionLost, ConnectionRestored, PathDown, PathUp, Held}
}

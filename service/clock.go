// SPDX-License-Identifier: Apache-2.0

package service

import "time"

// Clock is the time the service reads and the timers it sets: one clock
// for both, so that a test that moves it sees every timer it passes fire.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop cancels the call; it reports false if the call already ran
	// or was stopped.
	Stop() bool
}

// wallClock is the real clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

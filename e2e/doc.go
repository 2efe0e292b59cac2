// SPDX-License-Identifier: Apache-2.0

// Package e2e is the end-to-end suite (build tag e2e). It runs inside the
// test host (see testhost/), as root, against storkeepd installed from the
// .deb and running as the packaged systemd service on the guest's real
// system bus, and talks to it exactly as a client would. `make e2e` builds
// the package and the suite, boots the test host and runs it there.
package e2e

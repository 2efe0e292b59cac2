// SPDX-License-Identifier: Apache-2.0

package service

import (
	"testing"
	"unsafe"
)

// TestCIDsOfATargetShareItsSettings: CIDs that ask for the same thing
// hold one parsed copy of it, managed or loaded at start.
func TestCIDsOfATargetShareItsSettings(t *testing.T) {
	ts := newTestService(t)
	ts.manage("a", specFor(t, nfsA))
	ts.manage("b", specFor(t, nfsA))
	for _, when := range []string{"managed", "loaded"} {
		ts.svc.mu.RLock()
		a, b := ts.svc.cids["a"].spec, ts.svc.cids["b"].spec
		ts.svc.mu.RUnlock()
		if a.NFS != b.NFS || unsafe.StringData(a.URI) != unsafe.StringData(b.URI) {
			t.Errorf("%s: two CIDs of %s hold two copies of its settings", when, nfsA)
		}
		ts.restart()
	}
}

// SPDX-License-Identifier: Apache-2.0

package service

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseURI checks that ParseURI never panics, that its errors are
// *URIErrors of bounded size, and that what parses round-trips: the
// canonical URI parses back to an equal Spec, and the Target parses to a
// Spec with the same Target.
func FuzzParseURI(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.raw)
	}
	for _, tc := range rejectCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		spec, err := ParseURI(raw)
		if err != nil {
			var uerr *URIError
			if !errors.As(err, &uerr) {
				t.Fatalf("ParseURI(%q) error %T is not a *URIError", raw, err)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("ParseURI(%q) error is %d bytes", raw, len(err.Error()))
			}
			return
		}
		if spec.Kind == KindNFS && (spec.NFS == nil || spec.ISCSI != nil) ||
			spec.Kind == KindISCSI && (spec.ISCSI == nil || spec.NFS != nil) {
			t.Fatalf("ParseURI(%q) = %s: sub-spec does not match Kind", raw, dumpSpec(spec))
		}
		again, err := ParseURI(spec.URI)
		if err != nil {
			t.Fatalf("ParseURI(%q) gave URI %q, which does not parse: %v", raw, spec.URI, err)
		}
		if !reflect.DeepEqual(again, spec) || !again.Equal(spec) || !again.Compatible(spec) {
			t.Fatalf("round trip of %q:\n first  %s\n second %s", raw, dumpSpec(spec), dumpSpec(again))
		}
		target, err := ParseURI(string(spec.Target))
		if err != nil || target.Target != spec.Target {
			t.Fatalf("Target %q of %q does not parse to itself: %v", spec.Target, raw, err)
		}
		if !strings.HasPrefix(spec.URI, string(spec.Kind)+"://") {
			t.Fatalf("ParseURI(%q).URI = %q; want it to start with the kind", raw, spec.URI)
		}
	})
}

package cli

import "testing"

// TestDeleteGraceFlags: ctl delete turns --grace-period, --force and --now into
// the request's gracePeriodSeconds as kubectl does.
func TestDeleteGraceFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		grace      int
		force, now bool
		want       int64 // -1: not sent
		err        bool
	}{
		{"defaults: the pod's own", -1, false, false, -1, false},
		{"explicit period", 7, false, false, 7, false},
		{"0 without --force waits a second", 0, false, false, 1, false},
		{"--force alone is immediate", -1, true, false, 0, false},
		{"--force --grace-period=0", 0, true, false, 0, false},
		{"--now", -1, false, true, 1, false},
		{"--now with a period", 3, false, true, 0, true},
	} {
		opts, err := deleteOptions("background", tc.grace, tc.force, tc.now)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if tc.err {
			continue
		}
		got := int64(-1)
		if opts.GracePeriodSeconds != nil {
			got = *opts.GracePeriodSeconds
		}
		if got != tc.want || opts.PropagationPolicy != "Background" {
			t.Errorf("%s: gracePeriodSeconds %d, policy %q; want %d, Background", tc.name, got, opts.PropagationPolicy, tc.want)
		}
	}
	if _, err := deleteOptions("sideways", -1, false, false); err == nil {
		t.Error("a bad --cascade was accepted")
	}
}

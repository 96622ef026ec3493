package check

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	tests := []struct {
		name                string
		ops, keys, faults   int
		lin                 bool
		watchProblems, lost int
		converged           bool
		want                string
	}{
		{"all good", 12034, 40, 37, true, 0, 0, true,
			"ops=12034 keys=40 faults=37 linearizable=true watch=ok lost=0 converged=true"},
		{"all bad", 10, 2, 0, false, 3, 1, false,
			"ops=10 keys=2 faults=0 linearizable=false watch=3-problems lost=1 converged=false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summary(tt.ops, tt.keys, tt.faults, tt.lin, tt.watchProblems, tt.lost, tt.converged); got != tt.want {
				t.Errorf("Summary = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestConverged(t *testing.T) {
	tests := []struct {
		name      string
		applied   []uint64
		digests   []string
		converged bool
		why       string
	}{
		{"agree", []uint64{120, 120, 120}, []string{"ab", "ab", "ab"}, true, ""},
		{"one peer", []uint64{7}, []string{"ab"}, true, ""},
		{"applied index differs", []uint64{120, 118, 120}, []string{"ab", "ab", "ab"}, false, "peer 1 has applied=118 digest=ab"},
		{"digest differs", []uint64{120, 120, 120}, []string{"ab", "ab", "cd"}, false, "peer 2 has applied=120 digest=cd"},
		{"no peers", nil, nil, false, "no peer"},
		{"lengths differ", []uint64{1, 1}, []string{"ab"}, false, "2 applied indexes but 1 digests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Converged(tt.applied, tt.digests); got != tt.converged {
				t.Errorf("Converged = %v; want %v", got, tt.converged)
			}
			why := Divergence(tt.applied, tt.digests)
			if (why == "") != (tt.why == "") || !strings.Contains(why, tt.why) {
				t.Errorf("Divergence = %q; want it to contain %q", why, tt.why)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := History{Ops: []Op{write(0, "a", "1", "5", 0, 10), info(write(0, "a", "2", "", 20, 1))}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	bad := History{Ops: []Op{
		{Kind: "get", Key: "a", Result: OK},
		{Kind: Read, Key: "a", Result: "maybe"},
		{Kind: Read, Result: OK},
		{Kind: CAS, Key: "a", Result: OK},
		{Kind: Read, Key: "a", Result: OK, Call: 5, Return: 4},
	}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate(bad) = nil")
	}
	for _, want := range []string{"op 0", "op 1", "op 2", "op 3", "op 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(bad) = %v; want it to mention %s", err, want)
		}
	}
}

func TestFailReason(t *testing.T) {
	tests := map[string]string{
		"rpc error: code = NotFound desc = configmaps \"a\" not found":  ReasonNotFound,
		"rpc error: code = AlreadyExists desc = exists":                 ReasonAlreadyExists,
		"rpc error: code = Aborted desc = the object has been modified": ReasonConflict,
		"rpc error: code = Unavailable desc = no leader":                "",
		"Conflict":                             ReasonConflict,
		"NotFound: configmaps \"a\" not found": ReasonNotFound,
		"context deadline exceeded":            "",
		"":                                     "",
	}
	for err, want := range tests {
		if got := failReason(err); got != want {
			t.Errorf("failReason(%q) = %q; want %q", err, got, want)
		}
	}
}

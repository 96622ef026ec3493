package check

import (
	"strings"
	"testing"
)

func TestLostWrites(t *testing.T) {
	tests := []struct {
		name  string
		ops   []Op
		final map[string]Final
		lost  []string // substrings of the reported lines, one per line
	}{
		{
			name:  "last write present",
			ops:   []Op{write(0, "a", "1", "5", 0, 10), write(0, "a", "2", "7", 20, 30)},
			final: map[string]Final{"a": {Found: true, Value: "2", RV: "7"}},
		},
		{
			name:  "acknowledged write vanished, older value back",
			ops:   []Op{write(0, "a", "1", "5", 0, 10), write(0, "a", "2", "7", 20, 30)},
			final: map[string]Final{"a": {Found: true, Value: "1", RV: "5"}},
			lost:  []string{`key "a": write("2") by client 0 acknowledged at rv 7`},
		},
		{
			name: "older version at the end despite concurrent and indeterminate writes",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				write(1, "a", "2", "7", 20, 30),
				info(write(2, "a", "3", "", 25, 26)),
				write(3, "a", "4", "9", 28, 40),
			},
			final: map[string]Final{"a": {Found: true, Value: "2", RV: "7"}},
			lost:  []string{`write("4") by client 3 acknowledged at rv 9`},
		},
		{
			name: "concurrent writes, either may win",
			ops: []Op{
				write(0, "a", "1", "8", 0, 10), // committed after the other
				write(1, "a", "2", "7", 5, 15),
			},
			final: map[string]Final{"a": {Found: true, Value: "1", RV: "8"}},
		},
		{
			name: "overwritten by an indeterminate write",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(write(1, "a", "2", "", 20, 30)),
			},
			final: map[string]Final{"a": {Found: true, Value: "2", RV: "8"}},
		},
		{
			name: "a pending indeterminate write spares an earlier one",
			ops: []Op{
				info(write(1, "a", "2", "", 0, 1)),
				write(0, "a", "1", "5", 20, 30),
			},
			final: map[string]Final{"a": {Found: true, Value: "2"}},
		},
		{
			name: "a failed write spares nothing",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				fail(write(1, "a", "2", "", 20, 30), "rpc error: code = Aborted desc = conflict"),
			},
			final: map[string]Final{"a": {Found: true, Value: "0", RV: "3"}},
			lost:  []string{`write("1")`},
		},
		{
			name:  "acknowledged create missing from the final listing",
			ops:   []Op{create(0, "a", "1", "5", 0, 10), create(0, "b", "1", "6", 0, 10)},
			final: map[string]Final{"b": {Found: true, Value: "1", RV: "6"}},
			lost:  []string{`key "a": create("1")`},
		},
		{
			name:  "same value, other version",
			ops:   []Op{write(0, "a", "1", "5", 0, 10), write(0, "a", "1", "7", 20, 30)},
			final: map[string]Final{"a": {Found: true, Value: "1", RV: "5"}},
			lost:  []string{`write("1") by client 0 acknowledged at rv 7`},
		},
		{
			name:  "cas and delete",
			ops:   []Op{create(0, "a", "1", "5", 0, 10), cas(0, "a", "5", "2", "7", 20, 30), del(1, "a", 40, 50)},
			final: map[string]Final{"a": {Found: true, Value: "2", RV: "7"}},
			lost:  []string{`key "a": delete by client 1`},
		},
		{
			name:  "deleted as acknowledged",
			ops:   []Op{create(0, "a", "1", "5", 0, 10), del(1, "a", 40, 50)},
			final: map[string]Final{},
		},
		{
			name: "reads do not count",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				read(1, "a", "1", "5", 20, 30),
			},
			final: map[string]Final{"a": {Found: true, Value: "1", RV: "5"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LostWrites(History{Ops: tt.ops}, tt.final)
			if len(got) != len(tt.lost) {
				t.Fatalf("LostWrites = %q; want %d lines matching %q", got, len(tt.lost), tt.lost)
			}
			for i, want := range tt.lost {
				if !strings.Contains(got[i], want) {
					t.Errorf("line %d = %q; want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}

func TestLostWritesSimulated(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		sim := simulate(simConfig{seed: seed, clients: 6, keys: 4, ticks: 400, infoRate: 0.1})
		if lost := LostWrites(sim.h, sim.final); len(lost) > 0 {
			t.Errorf("seed %d: a correct store lost writes: %q", seed, lost)
		}
	}
}

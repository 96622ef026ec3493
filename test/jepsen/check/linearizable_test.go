package check

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Builders for hand-written histories. Times are arbitrary ticks.

func write(c int, key, v, rv string, call, ret int64) Op {
	return Op{Client: c, Kind: Write, Key: key, Value: v, Result: OK, OutRV: rv, Call: call, Return: ret}
}

func create(c int, key, v, rv string, call, ret int64) Op {
	return Op{Client: c, Kind: Create, Key: key, Value: v, Result: OK, OutRV: rv, Call: call, Return: ret}
}

func cas(c int, key, expect, v, rv string, call, ret int64) Op {
	return Op{Client: c, Kind: CAS, Key: key, ExpectRV: expect, Value: v, Result: OK, OutRV: rv, Call: call, Return: ret}
}

func del(c int, key string, call, ret int64) Op {
	return Op{Client: c, Kind: Delete, Key: key, Result: OK, Call: call, Return: ret}
}

func read(c int, key, v, rv string, call, ret int64) Op {
	return Op{Client: c, Kind: Read, Key: key, Result: OK, Found: true, Out: v, OutRV: rv, Call: call, Return: ret}
}

func readAbsent(c int, key string, call, ret int64) Op {
	return Op{Client: c, Kind: Read, Key: key, Result: OK, Call: call, Return: ret}
}

// info makes op indeterminate: the client learned nothing.
func info(op Op) Op {
	op.Result, op.OutRV, op.Err = Info, "", "context deadline exceeded"
	return op
}

func fail(op Op, err string) Op {
	op.Result, op.OutRV, op.Err = Fail, "", err
	return op
}

func TestLinearizable(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		bad  []string // nil: linearizable
	}{
		{name: "empty history"},
		{
			name: "correct concurrent history",
			ops: []Op{
				create(0, "a", "1", "5", 0, 10),
				read(1, "a", "1", "5", 12, 14),
				write(0, "a", "2", "7", 20, 40),
				read(1, "a", "1", "5", 21, 25), // concurrent with the write: old value
				read(2, "a", "2", "7", 30, 35), // concurrent with the write: new value
				cas(1, "a", "7", "3", "9", 45, 50),
				fail(cas(2, "a", "7", "4", "", 46, 55), "rpc error: code = Aborted desc = the object has been modified"),
				read(0, "a", "3", "9", 60, 61),
				write(0, "b", "x", "6", 0, 100),
				readAbsent(1, "b", 1, 2),
				read(1, "b", "x", "6", 3, 4),
				del(2, "b", 101, 102),
				readAbsent(1, "b", 103, 104),
			},
		},
		{
			name: "stale read after an acknowledged newer write",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				write(0, "a", "2", "7", 20, 30),
				read(1, "a", "1", "5", 40, 50),
				write(0, "b", "x", "6", 0, 10), // a fine key beside the bad one
				read(1, "b", "x", "6", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "read returns the right value at a superseded version",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				write(0, "a", "1", "7", 20, 30),
				read(1, "a", "1", "5", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "cas succeeds against a superseded version",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				read(1, "a", "1", "5", 11, 12),
				write(0, "a", "2", "7", 20, 30),
				cas(1, "a", "5", "3", "9", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "cas against a superseded version while an info write is pending",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				read(1, "a", "1", "5", 11, 12),
				info(write(2, "a", "x", "", 15, 16)),
				write(0, "a", "2", "7", 20, 30),
				cas(1, "a", "5", "3", "9", 40, 50), // 5 is write 1's version, not the info write's
			},
			bad: []string{"a"},
		},
		{
			name: "stale read disguised by an info write of the same value",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				write(0, "a", "2", "7", 20, 30),
				info(write(1, "a", "1", "", 21, 22)),
				read(2, "a", "1", "5", 40, 50), // the info write's version cannot be 5
			},
			bad: []string{"a"},
		},
		{
			name: "info write that appears later",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(write(1, "a", "2", "", 20, 30)),
				read(2, "a", "1", "5", 40, 50), // not applied yet
				read(2, "a", "2", "8", 100, 110),
				cas(2, "a", "8", "3", "9", 120, 130), // cas on the version only the read revealed
				read(0, "a", "3", "9", 140, 150),
			},
		},
		{
			name: "info write that never appears",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(write(1, "a", "2", "", 20, 30)),
				read(2, "a", "1", "5", 40, 50),
				read(2, "a", "1", "5", 1000, 1010),
			},
		},
		{
			name: "info cas on an unknown version, applied",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(write(1, "a", "2", "", 20, 30)),
				info(cas(2, "a", "8", "3", "", 40, 50)),
				read(0, "a", "3", "12", 100, 110),
			},
		},
		{
			name: "info cas on an unknown version, not applied",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(write(1, "a", "2", "", 20, 30)),
				info(cas(2, "a", "8", "3", "", 40, 50)),
				read(0, "a", "2", "8", 100, 110),
			},
		},
		{
			name: "info cas against a known other version cannot apply",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(cas(2, "a", "4", "3", "", 40, 50)),
				read(0, "a", "3", "12", 100, 110),
			},
			bad: []string{"a"},
		},
		{
			name: "info create on an existing key cannot apply",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(create(1, "a", "2", "", 20, 30)),
				read(0, "a", "2", "8", 100, 110),
			},
			bad: []string{"a"},
		},
		{
			name: "info delete that happened",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				info(del(1, "a", 20, 30)),
				readAbsent(0, "a", 100, 110),
			},
		},
		{
			name: "read of a deleted key",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				del(1, "a", 20, 30),
				read(0, "a", "1", "5", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "create failing with AlreadyExists on an absent key",
			ops: []Op{
				readAbsent(0, "a", 0, 10),
				fail(create(1, "a", "1", "", 20, 30), "rpc error: code = AlreadyExists desc = configmaps \"a\" already exists"),
				readAbsent(0, "a", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "cas failing with Conflict although the version matched",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				fail(cas(1, "a", "5", "2", "", 20, 30), "Conflict: the object has been modified"),
				read(0, "a", "1", "5", 40, 50),
			},
			bad: []string{"a"},
		},
		{
			name: "cas failing with NotFound on a present key",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				fail(cas(1, "a", "5", "2", "", 20, 30), "rpc error: code = NotFound desc = configmaps \"a\" not found"),
			},
			bad: []string{"a"},
		},
		{
			name: "cas conflict explained by a concurrent write",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				fail(cas(1, "a", "5", "2", "", 20, 30), "Conflict"),
				write(2, "a", "3", "7", 25, 35),
			},
		},
		{
			name: "fail ops that name no state are ignored",
			ops: []Op{
				write(0, "a", "1", "5", 0, 10),
				fail(cas(1, "a", "5", "2", "", 20, 30), "rpc error: code = InvalidArgument desc = bad"),
				fail(write(1, "a", "9", "", 31, 32), "rpc error: code = Aborted desc = lost the race five times"),
				fail(read(1, "a", "", "", 33, 34), "rpc error: code = Unavailable desc = no leader"),
				info(read(1, "a", "", "", 35, 36)),
				read(0, "a", "1", "5", 40, 50),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := History{Ops: tt.ops}
			if err := h.Validate(); err != nil {
				t.Fatalf("test history: %v", err)
			}
			ok, bad, vis := Linearizable(h, 10*time.Second)
			if ok != (tt.bad == nil) || !slices.Equal(bad, tt.bad) {
				t.Fatalf("Linearizable = %v, bad keys %q; want bad keys %q", ok, bad, tt.bad)
			}
			var buf bytes.Buffer
			if err := vis(&buf); err != nil {
				t.Fatalf("vis: %v", err)
			}
			if ok != (buf.Len() == 0) {
				t.Errorf("vis wrote %d bytes for a history with linearizable=%v", buf.Len(), ok)
			}
		})
	}
}

func TestLinearizableVisualizesBadKeysOnly(t *testing.T) {
	h := History{Ops: []Op{
		create(0, "good", "g1", "4", 0, 10),
		create(0, "stale", "s1", "5", 0, 10),
		write(0, "stale", "s2", "7", 20, 30),
		read(1, "stale", "s1", "5", 40, 50),
		read(1, "good", "g1", "4", 40, 50),
	}}
	ok, bad, vis := Linearizable(h, 10*time.Second)
	if ok || !slices.Equal(bad, []string{"stale"}) {
		t.Fatalf("Linearizable = %v, %q; want false, [stale]", ok, bad)
	}
	path := filepath.Join(t.TempDir(), "linearizability.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := vis(f); err != nil {
		t.Fatalf("vis: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if !strings.Contains(html, "<html") {
		t.Errorf("%s is not HTML", path)
	}
	// Descriptions are JSON-escaped in the page, so look for parts without quotes.
	for _, want := range []string{"history op 3", "s1", "s2"} {
		if !strings.Contains(html, want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
	if strings.Contains(html, "g1") {
		t.Errorf("visualization shows the linearizable key too")
	}
}

func TestLinearizableSimulated(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		sim := simulate(simConfig{seed: seed, clients: 6, keys: 4, ticks: 400, infoRate: 0.1})
		if err := sim.h.Validate(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if ok, bad, _ := Linearizable(sim.h, time.Minute); !ok {
			t.Errorf("seed %d: a correct store's history (%d ops) judged non-linearizable, keys %q", seed, len(sim.h.Ops), bad)
		}
	}
}

func TestLinearizableDetectsInjectedStaleRead(t *testing.T) {
	sim := simulate(simConfig{seed: 7, clients: 6, keys: 4, ticks: 400, infoRate: 0.1})
	// Answer the last read of some key with the first value that key ever had,
	// long after it was overwritten.
	first := map[string]Op{}
	last := -1
	for i, op := range sim.h.Ops {
		if op.Kind == Read && op.Result == OK && op.Found {
			if _, ok := first[op.Key]; !ok {
				first[op.Key] = op
			} else if op.Out != first[op.Key].Out {
				last = i
			}
		}
	}
	if last < 0 {
		t.Fatal("simulation produced no key read with two values")
	}
	stale := first[sim.h.Ops[last].Key]
	sim.h.Ops[last].Out, sim.h.Ops[last].OutRV = stale.Out, stale.OutRV
	ok, bad, _ := Linearizable(sim.h, time.Minute)
	if ok || !slices.Equal(bad, []string{sim.h.Ops[last].Key}) {
		t.Fatalf("Linearizable = %v, %q; want false, [%s]", ok, bad, sim.h.Ops[last].Key)
	}
}

func BenchmarkLinearizable(b *testing.B) {
	// About the shape of a short suite run: 40 keys, 10 clients, many timeouts.
	sim := simulate(simConfig{seed: 3, clients: 10, keys: 40, ticks: 3000, infoRate: 0.05})
	b.ReportMetric(float64(len(sim.h.Ops)), "ops")
	for b.Loop() {
		if ok, bad, _ := Linearizable(sim.h, 0); !ok {
			b.Fatalf("bad keys %q", bad)
		}
	}
}

package netns

import (
	"errors"
	"net/netip"
	"sort"
	"testing"
)

// cuts lists the directed pairs a matrix drops, sorted, for readable diffs.
func cuts(d [][]bool) [][2]int {
	var out [][2]int
	for from := range d {
		for to := range d[from] {
			if d[from][to] {
				out = append(out, [2]int{from, to})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

// both returns the pairs a->b and b->a for every listed pair, sorted.
func both(pairs ...[2]int) [][2]int {
	n := 0
	for _, p := range pairs {
		n = max(n, p[0]+1, p[1]+1)
	}
	d := newMatrix(n)
	for _, p := range pairs {
		d[p[0]][p[1]], d[p[1]][p[0]] = true, true
	}
	return cuts(d)
}

func equalCuts(a, b [][2]int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultMatrices(t *testing.T) {
	tests := []struct {
		name    string
		drops   func() ([][]bool, error)
		want    [][2]int
		wantErr error
	}{
		{
			name:  "partition one vs two",
			drops: func() ([][]bool, error) { return partitionDrops(3, [][]int{{0}, {1, 2}}) },
			want:  both([2]int{0, 1}, [2]int{0, 2}),
		},
		{
			name:  "partition into one group cuts nothing",
			drops: func() ([][]bool, error) { return partitionDrops(3, [][]int{{2, 0, 1}}) },
		},
		{
			name:  "partition three ways",
			drops: func() ([][]bool, error) { return partitionDrops(3, [][]int{{0}, {1}, {2}}) },
			want:  both([2]int{0, 1}, [2]int{0, 2}, [2]int{1, 2}),
		},
		{
			name:    "partition missing a peer",
			drops:   func() ([][]bool, error) { return partitionDrops(3, [][]int{{0}, {1}}) },
			wantErr: ErrInvalidFault,
		},
		{
			name:    "partition naming a peer twice",
			drops:   func() ([][]bool, error) { return partitionDrops(3, [][]int{{0, 1}, {1, 2}}) },
			wantErr: ErrInvalidFault,
		},
		{
			name:    "partition out of range",
			drops:   func() ([][]bool, error) { return partitionDrops(3, [][]int{{0, 1}, {3}}) },
			wantErr: ErrInvalidFault,
		},
		{
			name:  "bridge",
			drops: func() ([][]bool, error) { return bridgeDrops(5, []int{0, 1}, []int{3, 4}, 2) },
			want:  both([2]int{0, 3}, [2]int{0, 4}, [2]int{1, 3}, [2]int{1, 4}),
		},
		{
			name:    "bridge peer also in a half",
			drops:   func() ([][]bool, error) { return bridgeDrops(5, []int{0, 1, 2}, []int{3, 4}, 2) },
			wantErr: ErrInvalidFault,
		},
		{
			name:  "ring of five sees only neighbours",
			drops: func() ([][]bool, error) { return ringDrops(5, nil) },
			want:  both([2]int{0, 2}, [2]int{0, 3}, [2]int{1, 3}, [2]int{1, 4}, [2]int{2, 4}),
		},
		{
			name:  "ring of five in a given order",
			drops: func() ([][]bool, error) { return ringDrops(5, []int{0, 2, 4, 1, 3}) },
			// Neighbours are now 0-2, 2-4, 4-1, 1-3, 3-0.
			want: both([2]int{0, 1}, [2]int{0, 4}, [2]int{1, 2}, [2]int{2, 3}, [2]int{3, 4}),
		},
		{
			name:  "ring of three is one-way: each hears itself and the one before",
			drops: func() ([][]bool, error) { return ringDrops(3, nil) },
			want:  [][2]int{{0, 2}, {1, 0}, {2, 1}},
		},
		{
			name:    "ring of two",
			drops:   func() ([][]bool, error) { return ringDrops(2, nil) },
			wantErr: ErrInvalidFault,
		},
		{
			name:    "ring order not a permutation",
			drops:   func() ([][]bool, error) { return ringDrops(3, []int{0, 1, 1}) },
			wantErr: ErrInvalidFault,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.drops()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cuts(d); !equalCuts(got, tt.want) {
				t.Errorf("cuts = %v, want %v", got, tt.want)
			}
		})
	}
}

// Every peer in a majorities ring hears a majority, and no two hear the same.
func TestRingMajorities(t *testing.T) {
	for n := 3; n <= 9; n++ {
		d, err := ringDrops(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for to := 0; to < n; to++ {
			hears, key := 0, ""
			for from := 0; from < n; from++ {
				if !d[from][to] {
					hears++
					key += "1"
				} else {
					key += "0"
				}
			}
			if d[to][to] {
				t.Errorf("n=%d: peer %d drops its own packets", n, to)
			}
			if hears != n/2+1 {
				t.Errorf("n=%d: peer %d hears %d peers, want %d", n, to, hears, n/2+1)
			}
			if prev, ok := seen[key]; ok {
				t.Errorf("n=%d: peers %d and %d hear the same majority", n, prev, to)
			}
			seen[key] = to
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig("jp", 5), true},
		{"zero subnet means default", Config{Prefix: "jp", Peers: 3}, true},
		{"longest prefix", Config{Prefix: "abcdefghij", Peers: 3}, true},
		{"prefix too long", Config{Prefix: "abcdefghijk", Peers: 3}, false},
		{"empty prefix", Config{Prefix: "", Peers: 3}, false},
		{"prefix with a dot", Config{Prefix: "a.b", Peers: 3}, false},
		{"prefix starting with a digit", Config{Prefix: "1a", Peers: 3}, false},
		{"no peers", Config{Prefix: "jp", Peers: 0}, false},
		{"too many peers", Config{Prefix: "jp", Peers: MaxPeers + 1}, false},
		{"subnet /16", Config{Prefix: "jp", Peers: 3, Subnet: netip.MustParsePrefix("10.231.0.0/16")}, false},
		{"subnet with host bits", Config{Prefix: "jp", Peers: 3, Subnet: netip.MustParsePrefix("10.231.1.7/24")}, false},
		{"IPv6 subnet", Config{Prefix: "jp", Peers: 3, Subnet: netip.MustParsePrefix("fd00::/120")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefaultSubnet(t *testing.T) {
	a, b := DefaultSubnet("jp"), DefaultSubnet("jq")
	for _, s := range []netip.Prefix{a, b} {
		if s.Bits() != 24 || !netip.MustParsePrefix("10.231.0.0/16").Contains(s.Addr()) || s.Masked() != s {
			t.Errorf("DefaultSubnet = %s, want a /24 network in 10.231.0.0/16", s)
		}
	}
	if a != DefaultSubnet("jp") {
		t.Error("DefaultSubnet is not deterministic")
	}
	if a == b {
		t.Errorf("prefixes jp and jq share subnet %s", a)
	}
}

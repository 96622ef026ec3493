package netns

import (
	"fmt"
	"net/netip"
	"sync"
)

// Faults are kept as a drop matrix: drops[from][to] means IPv4 packets from
// peer from to peer to are dropped. Each peer's namespace holds the rules for
// its own column, in its input chain (see nft.go): a peer ignores what the
// peers it is cut off from send it, as Jepsen's iptables INPUT rules do, so
// senders see silence and time out rather than getting an error. Traffic
// between the root namespace and the peers is never dropped.
//
// Partition, Isolate, Bridge and Ring replace whatever faults were in place;
// Drop adds one direction to them; Heal removes them all. Each call rewrites
// every peer's chain in one nftables transaction per peer. If a call fails the
// rules may be partly applied and Reachable still reports the previous faults;
// Heal puts every peer back to no rules.

// Rules holds the drop matrix of n peers and installs it in their namespaces.
// Network embeds one; NewRules makes one for peers whose namespaces someone else
// made (Docker containers, say).
type Rules struct {
	n      int
	ip     func(i int) netip.Addr
	nsPath func(i int) (string, error)

	mu     sync.Mutex // guards drops and closed, and serializes rule changes
	drops  [][]bool   // drops[from][to]: packets from peer from to peer to are dropped
	closed bool
}

// NewRules keeps the faults of n peers: ip(i) is peer i's IPv4 address and
// nsPath(i) a path of its network namespace (a bind mount or /proc/PID/ns/net),
// looked up at every change because a restarted container has a new namespace;
// an empty path means the peer is not running and gets no rules (it starts with
// none when it comes back, and the next change installs them).
func NewRules(n int, ip func(i int) netip.Addr, nsPath func(i int) (string, error)) *Rules {
	return &Rules{n: n, ip: ip, nsPath: nsPath, drops: newMatrix(n)}
}

// shut marks r closed; it reports whether r was open.
func (n *Rules) shut() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	was := !n.closed
	n.closed = true
	return was
}

func (n *Rules) check(i int) {
	if i < 0 || i >= n.n {
		panic(fmt.Sprintf("netns: peer %d out of range [0,%d)", i, n.n))
	}
}

// Partition splits the peers into groups: peers in different groups cannot
// exchange packets in either direction; peers in the same group, and the root
// namespace with everyone, keep full connectivity. Every peer must be in
// exactly one group, otherwise the error wraps ErrInvalidFault and nothing
// changes.
func (n *Rules) Partition(groups ...[]int) error {
	d, err := partitionDrops(n.n, groups)
	if err != nil {
		return err
	}
	return n.set(func([][]bool) [][]bool { return d })
}

// Isolate cuts peer i off from every other peer, both directions.
func (n *Rules) Isolate(i int) error {
	if i < 0 || i >= n.n {
		return fmt.Errorf("%w: peer %d out of range [0,%d)", ErrInvalidFault, i, n.n)
	}
	var rest []int
	for j := 0; j < n.n; j++ {
		if j != i {
			rest = append(rest, j)
		}
	}
	return n.Partition([]int{i}, rest)
}

// Bridge cuts a off from b (both directions) while the peer bridge talks to
// both halves. a, b and bridge together must name every peer exactly once.
func (n *Rules) Bridge(a, b []int, bridge int) error {
	d, err := bridgeDrops(n.n, a, b, bridge)
	if err != nil {
		return err
	}
	return n.set(func([][]bool) [][]bool { return d })
}

// Ring puts the peers in a ring, in the given order (index order when none is
// given), and lets each peer hear only from the majority window of the ring
// centred on it: with 5 peers, itself and its two neighbours; every peer sees
// a majority, no two the same one (Jepsen's majorities ring). The window has
// n/2+1 peers; when that is even (3, 6, 7 peers) it reaches one further back
// than forward and the cut is one-way for some pairs. Needs at least 3 peers;
// order, when given, must be a permutation of all peers.
func (n *Rules) Ring(order ...int) error {
	d, err := ringDrops(n.n, order)
	if err != nil {
		return err
	}
	return n.set(func([][]bool) [][]bool { return d })
}

// Drop adds a one-way fault: packets from peer from to peer to are dropped,
// packets from to to from still arrive. Since TCP needs both directions, a TCP
// connection between the two fails either way; datagrams show the asymmetry.
func (n *Rules) Drop(from, to int) error {
	if from < 0 || from >= n.n || to < 0 || to >= n.n || from == to {
		return fmt.Errorf("%w: drop %d -> %d with %d peers", ErrInvalidFault, from, to, n.n)
	}
	return n.set(func(cur [][]bool) [][]bool {
		d := newMatrix(n.n)
		for i := range cur {
			copy(d[i], cur[i])
		}
		d[from][to] = true
		return d
	})
}

// Heal removes every drop rule.
func (n *Rules) Heal() error {
	return n.set(func([][]bool) [][]bool { return newMatrix(n.n) })
}

// Reachable reports whether, under the faults in place, packets from peer from
// reach peer to.
func (n *Rules) Reachable(from, to int) bool {
	n.check(from)
	n.check(to)
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.drops[from][to]
}

// set computes the new drop matrix from the current one and installs it.
func (n *Rules) set(next func(cur [][]bool) [][]bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	d := next(n.drops)
	for to := 0; to < n.n; to++ {
		var from []netip.Addr
		for f := 0; f < n.n; f++ {
			if d[f][to] {
				from = append(from, n.ip(f))
			}
		}
		path, err := n.nsPath(to)
		if err != nil {
			return fmt.Errorf("namespace of peer %d: %w", to+1, err)
		}
		if path == "" {
			continue
		}
		if err := applyDrops(path, from); err != nil {
			return fmt.Errorf("rules in %s: %w", path, err)
		}
	}
	n.drops = d
	return nil
}

func newMatrix(n int) [][]bool {
	m := make([][]bool, n)
	for i := range m {
		m[i] = make([]bool, n)
	}
	return m
}

// groupOf checks that lists name every peer in [0,n) exactly once and returns
// the index of the list holding each peer.
func groupOf(n int, lists [][]int) ([]int, error) {
	g := make([]int, n)
	for i := range g {
		g[i] = -1
	}
	for li, l := range lists {
		for _, p := range l {
			if p < 0 || p >= n {
				return nil, fmt.Errorf("%w: peer %d out of range [0,%d)", ErrInvalidFault, p, n)
			}
			if g[p] != -1 {
				return nil, fmt.Errorf("%w: peer %d named twice", ErrInvalidFault, p)
			}
			g[p] = li
		}
	}
	for p, li := range g {
		if li == -1 {
			return nil, fmt.Errorf("%w: peer %d in no group", ErrInvalidFault, p)
		}
	}
	return g, nil
}

func partitionDrops(n int, groups [][]int) ([][]bool, error) {
	g, err := groupOf(n, groups)
	if err != nil {
		return nil, err
	}
	d := newMatrix(n)
	for a := 0; a < n; a++ {
		for b := 0; b < n; b++ {
			d[a][b] = g[a] != g[b]
		}
	}
	return d, nil
}

func bridgeDrops(n int, a, b []int, bridge int) ([][]bool, error) {
	if _, err := groupOf(n, [][]int{a, b, {bridge}}); err != nil {
		return nil, err
	}
	d := newMatrix(n)
	for _, x := range a {
		for _, y := range b {
			d[x][y], d[y][x] = true, true
		}
	}
	return d, nil
}

func ringDrops(n int, order []int) ([][]bool, error) {
	if n < 3 {
		return nil, fmt.Errorf("%w: a ring needs at least 3 peers, have %d", ErrInvalidFault, n)
	}
	if len(order) == 0 {
		for i := 0; i < n; i++ {
			order = append(order, i)
		}
	}
	if _, err := groupOf(n, [][]int{order}); err != nil {
		return nil, err
	}
	m := n/2 + 1
	d := newMatrix(n)
	for p, centre := range order {
		in := make([]bool, n)
		for k := 0; k < m; k++ {
			in[order[((p-m/2+k)%n+n)%n]] = true
		}
		for from := 0; from < n; from++ {
			d[from][centre] = !in[from]
		}
	}
	return d, nil
}

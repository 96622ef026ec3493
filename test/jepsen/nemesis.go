package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
)

// fault is one entry of the fault timeline.
type fault struct {
	At    time.Duration
	Kind  string
	Desc  string
	Error string
}

// nemesis injects faults at random intervals and heals each before the next.
type nemesis struct {
	c     *cluster
	rng   *rand.Rand
	kinds []string // the fault kinds to draw from

	mu       sync.Mutex // guards timeline
	timeline []fault
	start    time.Time
}

// kinds of fault, each healed by heal().
var faultKinds = []string{
	"partition-one", "partition-majority", "partition-leader", "partition-bridge",
	"partition-ring", "partition-asymmetric", "kill", "kill-leader", "pause", "transfer-leader", "membership",
}

func (n *nemesis) record(kind, desc string, err error) {
	f := fault{At: time.Since(n.start).Truncate(time.Millisecond), Kind: kind, Desc: desc}
	if err != nil {
		f.Error = err.Error()
	}
	n.mu.Lock()
	n.timeline = append(n.timeline, f)
	n.mu.Unlock()
}

// run injects one fault of every kind first (so a short run covers them all), then
// random ones, each lasting `hold`, with `gap` of calm between, until ctx ends.
func (n *nemesis) run(ctx context.Context, hold, gap time.Duration) {
	order := append([]string(nil), n.kinds...)
	n.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i := 0; ctx.Err() == nil; i++ {
		kind := n.kinds[n.rng.IntN(len(n.kinds))]
		if i < len(order) {
			kind = order[i]
		}
		undo := n.inject(ctx, kind)
		sleep(ctx, hold)
		undo()
		sleep(ctx, gap)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// inject starts a fault and returns what heals it.
func (n *nemesis) inject(ctx context.Context, kind string) (undo func()) {
	c := n.c
	np := len(c.peers)
	all := make([]int, np)
	for i := range all {
		all[i] = i
	}
	n.rng.Shuffle(np, func(i, j int) { all[i], all[j] = all[j], all[i] })
	heal := func() { n.record("heal", "", c.plat.Heal()) }
	switch kind {
	case "partition-one":
		err := c.plat.Isolate(all[0])
		n.record(kind, fmt.Sprintf("isolate p%d", all[0]+1), err)
		return heal
	case "partition-majority":
		minority := all[:np/2]
		majority := all[np/2:]
		err := c.plat.Partition(minority, majority)
		n.record(kind, fmt.Sprintf("minority %v | majority %v", ids(minority), ids(majority)), err)
		return heal
	case "partition-leader":
		l := c.leader(ctx)
		if l < 0 {
			l = all[0]
		}
		err := c.plat.Isolate(l)
		n.record(kind, fmt.Sprintf("isolate leader p%d", l+1), err)
		return heal
	case "partition-bridge":
		if np < 3 {
			return func() {}
		}
		b := all[0]
		rest := all[1:]
		a, z := rest[:len(rest)/2], rest[len(rest)/2:]
		err := c.plat.Bridge(a, z, b)
		n.record(kind, fmt.Sprintf("%v | %v, bridged by p%d", ids(a), ids(z), b+1), err)
		return heal
	case "partition-ring":
		err := c.plat.Ring()
		n.record(kind, "each peer sees only its neighbours", err)
		return heal
	case "partition-asymmetric":
		from, to := all[0], all[1]
		err := c.plat.Drop(from, to)
		n.record(kind, fmt.Sprintf("drop p%d -> p%d only", from+1, to+1), err)
		return heal
	case "kill":
		p := c.peers[all[0]]
		c.plat.kill(p.index)
		n.record(kind, "kill -9 "+p.id, nil)
		return func() { n.record("restart", p.id, c.start(p)) }
	case "kill-leader":
		l := c.leader(ctx)
		if l < 0 {
			l = all[0]
		}
		p := c.peers[l]
		c.plat.kill(p.index)
		n.record(kind, "kill -9 leader "+p.id, nil)
		return func() { n.record("restart", p.id, c.start(p)) }
	case "pause":
		p := c.peers[all[0]]
		c.plat.pause(p.index)
		n.record(kind, "SIGSTOP "+p.id, nil)
		return func() { c.plat.resume(p.index); n.record("resume", "SIGCONT "+p.id, nil) }
	case "transfer-leader":
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := clusterv1.NewClusterClient(c.conns[all[0]]).TransferLeadership(cctx, &clusterv1.TransferLeadershipRequest{})
		n.record(kind, "via p"+fmt.Sprint(all[0]+1), err)
		return func() {}
	case "membership":
		return n.membership(ctx, all[0])
	}
	return func() {}
}

// membership removes peer i, wipes its data dir, and (on undo) adds it back as a
// fresh voter that catches up by snapshot or log.
func (n *nemesis) membership(ctx context.Context, i int) func() {
	c := n.c
	p := c.peers[i]
	other := (i + 1) % len(c.peers)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := clusterv1.NewClusterClient(c.conns[other]).RemovePeer(cctx, &clusterv1.RemovePeerRequest{Id: p.id})
	n.record("membership", "remove "+p.id, err)
	if err != nil {
		// An indeterminate removal (leadership lost while committing) may
		// have happened all the same: look before leaving p running.
		if ids, merr := c.members(ctx, 10*time.Second); merr != nil || slices.Contains(ids, p.id) {
			return func() {}
		}
		n.record("membership", p.id+" was removed all the same", nil)
	}
	c.plat.kill(p.index)
	n.record("membership", "wipe "+p.id, c.plat.wipe(p.index))
	return func() {
		// Join as a new voter with an empty data dir.
		n.record("membership", "rejoin "+p.id, c.rejoin(p, other))
	}
}

// members returns the ids of the voters in the configuration a leader reports,
// asking until one answers or timeout passes.
func (c *cluster) members(ctx context.Context, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		var err error
		if l := c.leader(ctx); l >= 0 {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var resp *clusterv1.MembersResponse
			resp, err = clusterv1.NewClusterClient(c.conns[l]).Members(cctx, &clusterv1.MembersRequest{})
			cancel()
			if err == nil {
				var ids []string
				for _, m := range resp.GetMembers() {
					ids = append(ids, m.GetId())
				}
				return ids, nil
			}
		} else {
			err = fmt.Errorf("no leader")
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("members: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// repairMembership brings back, wiped, every peer the configuration lost (a
// removal that failed after it had in fact happened).
func (n *nemesis) repairMembership(ctx context.Context) {
	c := n.c
	ids, err := c.members(ctx, 30*time.Second)
	if err != nil {
		n.record("membership", "final check", err)
		return
	}
	for _, p := range c.peers {
		if slices.Contains(ids, p.id) {
			continue
		}
		via := (p.index + 1) % len(c.peers)
		c.plat.kill(p.index)
		n.record("membership", "wipe "+p.id+" (final)", c.plat.wipe(p.index))
		n.record("membership", "rejoin "+p.id+" (final)", c.rejoin(p, via))
	}
}

// leader returns the index of the peer the cluster reports as leader, or -1.
func (c *cluster) leader(ctx context.Context) int {
	for i, conn := range c.conns {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := clusterv1.NewPeerClient(conn).Status(cctx, &clusterv1.StatusRequest{})
		cancel()
		if err == nil && st.GetState() == "Leader" {
			return i
		}
	}
	return -1
}

func ids(idx []int) []string {
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = fmt.Sprintf("p%d", x+1)
	}
	return out
}

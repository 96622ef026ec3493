package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
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
	heal := func() { n.record("heal", "", c.net.Heal()) }
	switch kind {
	case "partition-one":
		err := c.net.Isolate(all[0])
		n.record(kind, fmt.Sprintf("isolate p%d", all[0]+1), err)
		return heal
	case "partition-majority":
		minority := all[:np/2]
		majority := all[np/2:]
		err := c.net.Partition(minority, majority)
		n.record(kind, fmt.Sprintf("minority %v | majority %v", ids(minority), ids(majority)), err)
		return heal
	case "partition-leader":
		l := c.leader(ctx)
		if l < 0 {
			l = all[0]
		}
		err := c.net.Isolate(l)
		n.record(kind, fmt.Sprintf("isolate leader p%d", l+1), err)
		return heal
	case "partition-bridge":
		if np < 3 {
			return func() {}
		}
		b := all[0]
		rest := all[1:]
		a, z := rest[:len(rest)/2], rest[len(rest)/2:]
		err := c.net.Bridge(a, z, b)
		n.record(kind, fmt.Sprintf("%v | %v, bridged by p%d", ids(a), ids(z), b+1), err)
		return heal
	case "partition-ring":
		err := c.net.Ring()
		n.record(kind, "each peer sees only its neighbours", err)
		return heal
	case "partition-asymmetric":
		from, to := all[0], all[1]
		err := c.net.Drop(from, to)
		n.record(kind, fmt.Sprintf("drop p%d -> p%d only", from+1, to+1), err)
		return heal
	case "kill":
		p := c.peers[all[0]]
		p.kill9()
		n.record(kind, "kill -9 "+p.id, nil)
		return func() { n.record("restart", p.id, c.start(p)) }
	case "kill-leader":
		l := c.leader(ctx)
		if l < 0 {
			l = all[0]
		}
		p := c.peers[l]
		p.kill9()
		n.record(kind, "kill -9 leader "+p.id, nil)
		return func() { n.record("restart", p.id, c.start(p)) }
	case "pause":
		p := c.peers[all[0]]
		p.signal(syscall.SIGSTOP)
		n.record(kind, "SIGSTOP "+p.id, nil)
		return func() { p.signal(syscall.SIGCONT); n.record("resume", "SIGCONT "+p.id, nil) }
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
		return func() {}
	}
	p.kill9()
	wipeErr := os.RemoveAll(p.dataDir)
	n.record("membership", "wipe "+p.id, wipeErr)
	return func() {
		// Join as a new voter with an empty data dir.
		args := append([]string(nil), p.args...)
		for j, a := range args {
			if len(a) > 12 && a[:12] == "--bootstrap=" {
				args[j] = "--join=" + c.grpcAddr(other)
			}
		}
		orig := p.args
		p.args = args
		err := c.start(p)
		p.args = orig
		n.record("membership", "rejoin "+p.id, err)
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

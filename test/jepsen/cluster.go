// Package jepsen is Rafter's Jepsen-style test: control-plane peers in their own
// network namespaces (or Docker containers), concurrent clients recording a
// history, injected faults, and checkers that read the whole history (see
// test/jepsen/check).
package jepsen

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Ports every peer uses on its own address.
const (
	raftPort = 7001
	grpcPort = 7443
	httpPort = 8080
)

// faults cuts the network between peers; netns.Rules implements it. Each call
// replaces the faults in place (Drop adds one direction); Heal removes them all.
type faults interface {
	Partition(groups ...[]int) error
	Isolate(i int) error
	Bridge(a, b []int, bridge int) error
	Ring(order ...int) error
	Drop(from, to int) error
	Heal() error
}

// platform runs the peers and breaks the network between them: processes in
// network namespaces on this host (netnsPlatform) or Docker containers
// (dockerPlatform). Peer indexes are 0-based.
type platform interface {
	faults
	// addr is peer i's IPv4 address, reachable from the test process.
	addr(i int) string
	// dataDir is peer i's data directory as its process sees it.
	dataDir(i int) string
	// start starts peer i with args, or restarts it after kill; its data dir
	// survives unless wipe removed it.
	start(i int, args []string) error
	// kill sends SIGKILL (resuming a paused peer first) and waits for the exit.
	kill(i int)
	pause(i int)
	resume(i int)
	running(i int) bool
	// wipe removes a stopped peer's data.
	wipe(i int) error
	// saveLogs copies every peer's output into dir.
	saveLogs(dir string)
	// close stops every peer and removes what the platform made.
	close()
}

// peer is one controlplane: its name and the arguments it runs with.
type peer struct {
	id    string
	index int
	args  []string
}

// cluster is the system under test.
type cluster struct {
	plat  platform
	peers []*peer
	conns []*grpc.ClientConn
}

func (c *cluster) raftAddr(i int) string { return fmt.Sprintf("%s:%d", c.plat.addr(i), raftPort) }
func (c *cluster) grpcAddr(i int) string { return fmt.Sprintf("%s:%d", c.plat.addr(i), grpcPort) }
func (c *cluster) httpAddr(i int) string { return fmt.Sprintf("%s:%d", c.plat.addr(i), httpPort) }

// startCluster starts n bootstrapped peers on plat; on error it closes plat.
func startCluster(plat platform, n int, extra []string) (*cluster, error) {
	c := &cluster{plat: plat}
	var boot []string
	for i := 0; i < n; i++ {
		boot = append(boot, fmt.Sprintf("p%d=%s", i+1, c.raftAddr(i)))
	}
	for i := 0; i < n; i++ {
		p := &peer{id: fmt.Sprintf("p%d", i+1), index: i}
		p.args = append([]string{"--id=" + p.id, "--data-dir=" + plat.dataDir(i),
			"--raft-addr=" + c.raftAddr(i), "--grpc-addr=" + c.grpcAddr(i), "--http-addr=" + c.httpAddr(i),
			"--bootstrap=" + strings.Join(boot, ","), "--log-level=warn"}, extra...)
		c.peers = append(c.peers, p)
		if err := c.start(p); err != nil {
			c.stop()
			return nil, err
		}
		// The final reads list every key of a long run in one response.
		conn, err := grpc.NewClient(c.grpcAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

func (c *cluster) start(p *peer) error { return c.plat.start(p.index, p.args) }

// rejoin starts the wiped peer p as a new voter that joins through peer via.
func (c *cluster) rejoin(p *peer, via int) error {
	args := make([]string, 0, len(p.args))
	for _, a := range p.args {
		if strings.HasPrefix(a, "--bootstrap=") {
			a = "--join=" + c.grpcAddr(via)
		}
		args = append(args, a)
	}
	return c.plat.start(p.index, args)
}

func (c *cluster) stop() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.plat.close()
}

// waitReady waits until every peer answers /readyz.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := range c.peers {
		for {
			if err := c.ready(ctx, i); err == nil {
				break
			} else if time.Now().After(deadline) {
				return fmt.Errorf("peer %s not ready: %w", c.peers[i].id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Package jepsen is Rafter's Jepsen-style test: control-plane peers in their own
// network namespaces, concurrent clients recording a history, injected faults,
// and checkers that read the whole history (see test/jepsen/check).
package jepsen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rafter-dev/rafter/test/jepsen/netns"
)

// Ports every peer uses on its own namespace's address.
const (
	raftPort = 7001
	grpcPort = 7443
	httpPort = 8080
)

// peer is one controlplane process in its namespace.
type peer struct {
	id      string
	index   int
	dataDir string
	args    []string

	mu     sync.Mutex // guards cmd, done, paused
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
	log    *bytes.Buffer
}

// cluster is the system under test.
type cluster struct {
	net   *netns.Network
	bin   string
	dir   string
	peers []*peer
	conns []*grpc.ClientConn
	extra []string
}

func (c *cluster) raftAddr(i int) string { return fmt.Sprintf("%s:%d", c.net.Addr(i), raftPort) }
func (c *cluster) grpcAddr(i int) string { return fmt.Sprintf("%s:%d", c.net.Addr(i), grpcPort) }
func (c *cluster) httpAddr(i int) string { return fmt.Sprintf("%s:%d", c.net.Addr(i), httpPort) }

// startCluster creates the network and starts n bootstrapped peers.
func startCluster(ctx context.Context, bin, dir, prefix string, n int, extra []string) (*cluster, error) {
	nw, err := netns.New(prefix, n)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	c := &cluster{net: nw, bin: bin, dir: dir, extra: extra}
	var boot []string
	for i := 0; i < n; i++ {
		boot = append(boot, fmt.Sprintf("p%d=%s", i+1, c.raftAddr(i)))
	}
	for i := 0; i < n; i++ {
		p := &peer{id: fmt.Sprintf("p%d", i+1), index: i, dataDir: filepath.Join(dir, fmt.Sprintf("p%d", i+1))}
		p.args = append([]string{"--id=" + p.id, "--data-dir=" + p.dataDir,
			"--raft-addr=" + c.raftAddr(i), "--grpc-addr=" + c.grpcAddr(i), "--http-addr=" + c.httpAddr(i),
			"--bootstrap=" + strings.Join(boot, ","), "--log-level=warn"}, extra...)
		c.peers = append(c.peers, p)
		if err := c.start(p); err != nil {
			c.stop()
			return nil, err
		}
		conn, err := grpc.NewClient(c.grpcAddr(i), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// start runs p inside its namespace.
func (c *cluster) start(p *peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := c.net.Command(p.index, c.bin, p.args...)
	p.log = &bytes.Buffer{}
	f, err := os.OpenFile(filepath.Join(c.dir, p.id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done, p.paused = cmd, done, false
	return nil
}

// signal sends sig to p's process (the controlplane itself, not `ip netns exec`,
// which execs into it).
func (p *peer) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
}

// kill9 kills p and waits for it to exit.
func (p *peer) kill9() {
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGKILL)
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (c *cluster) stop() {
	for _, p := range c.peers {
		p.kill9()
	}
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	if c.net != nil {
		_ = c.net.Close()
	}
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

const sigcont = syscall.SIGCONT

// running reports whether p's process is alive.
func (p *peer) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

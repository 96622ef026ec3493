// Package testcluster runs a whole Rafter control plane inside one test process:
// N peers with real FSMs, Raft over raft.InmemTransport (so tests can partition
// them) and real gRPC API servers on loopback ports.
package testcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rafter-dev/rafter/gen/openapiv2"
	"github.com/rafter-dev/rafter/internal/apiserver"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/peer"
)

// Peer is one in-process control-plane peer.
type Peer struct {
	ID        string
	FSM       *fsm.FSM
	Raft      *peer.Peer
	API       *apiserver.Server
	GRPCAddr  string
	HTTPAddr  string           // the REST gateway, health and metrics
	Conn      *grpc.ClientConn // a client connection to this peer's API
	transport *raft.InmemTransport
	addr      raft.ServerAddress
	gate      *gate
}

// HoldApplies stops this peer's FSM from applying committed entries until
// ReleaseApplies: Raft goes on replicating and committing, so the peer can win
// an election with a log ahead of its state, as a slow FSM would leave it.
func (p *Peer) HoldApplies() { p.gate.hold() }

// ReleaseApplies lets the FSM catch up.
func (p *Peer) ReleaseApplies() { p.gate.release() }

// gate is a raft.BatchingFSM that passes everything on to an *fsm.FSM, except
// that applies wait while it is held.
type gate struct {
	f    *fsm.FSM
	mu   sync.Mutex
	open chan struct{} // closed when not held
}

func newGate(f *fsm.FSM) *gate {
	g := &gate{f: f, open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) wait() {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	<-ch
}

func (g *gate) Apply(l *raft.Log) interface{}           { g.wait(); return g.f.Apply(l) }
func (g *gate) ApplyBatch(ls []*raft.Log) []interface{} { g.wait(); return g.f.ApplyBatch(ls) }
func (g *gate) Snapshot() (raft.FSMSnapshot, error)     { return g.f.Snapshot() }
func (g *gate) Restore(r io.ReadCloser) error           { return g.f.Restore(r) }

// Cluster is a set of peers; Close (registered with t.Cleanup) stops them all.
type Cluster struct {
	Peers  []*Peer
	t      testing.TB
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // guards cut
	cut    map[[2]int]bool
}

// New starts n bootstrapped peers and waits until one is leader and the system
// namespaces exist. Options adjust every peer's API server configuration.
func New(t testing.TB, n int, options ...func(*apiserver.Config)) *Cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{t: t, cancel: cancel, cut: map[[2]int]bool{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var bootstrap []peer.Server
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransportWithTimeout("", 500*time.Millisecond)
		c.Peers = append(c.Peers, &Peer{ID: fmt.Sprintf("p%d", i+1), transport: tr, addr: addr})
		bootstrap = append(bootstrap, peer.Server{ID: fmt.Sprintf("p%d", i+1), RaftAddr: string(addr)})
	}
	c.connectAll()
	for _, p := range c.Peers {
		f, err := fsm.New(fsm.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		pc := peer.DefaultConfig()
		pc.ID, pc.RaftAddr, pc.Bootstrap, pc.Logger = p.ID, string(p.addr), bootstrap, logger
		p.gate = newGate(f)
		rp, err := peer.Open(pc, f, peer.Deps{Transport: p.transport, Logs: raft.NewInmemStore(),
			Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore(), FSM: p.gate})
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.FSM, p.Raft, p.GRPCAddr = f, rp, lis.Addr().String()
		ac := apiserver.DefaultConfig()
		ac.Self = fsm.Member{ID: p.ID, RaftAddress: string(p.addr), GRPCAddress: p.GRPCAddr}
		ac.Logger, ac.LeaderWait, ac.ReadTimeout = logger, 2*time.Second, 2*time.Second
		for _, o := range options {
			o(&ac)
		}
		api, err := apiserver.New(ac, rp, f)
		if err != nil {
			t.Fatal(err)
		}
		p.API = api
		gs := grpc.NewServer()
		if err := api.RegisterGRPC(gs); err != nil {
			t.Fatal(err)
		}
		c.wg.Add(3)
		go func() { defer c.wg.Done(); _ = gs.Serve(lis) }()
		go func() { defer c.wg.Done(); _ = rp.Run(ctx) }()
		go func() { defer c.wg.Done(); _ = api.Run(ctx) }()
		go func() { <-ctx.Done(); api.Stopping(); gs.Stop() }()
		p.Conn, err = grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		handler, err := api.HTTPHandler(ctx, p.Conn, nil, openapiv2.JSON)
		if err != nil {
			t.Fatal(err)
		}
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.HTTPAddr = hl.Addr().String()
		hs := &http.Server{Handler: handler}
		c.wg.Add(1)
		go func() { defer c.wg.Done(); _ = hs.Serve(hl) }()
		go func() { <-ctx.Done(); _ = hs.Close() }()
	}
	t.Cleanup(c.Close)
	c.WaitFor(10*time.Second, "system namespaces", func() bool {
		for _, p := range c.Peers {
			if _, ok := p.FSM.View().Get("Namespace", "", "kube-node-lease"); !ok {
				return false
			}
			if _, ok := p.FSM.View().Member(p.ID); !ok {
				return false
			}
		}
		return true
	})
	return c
}

// Close stops every peer and waits for their goroutines.
func (c *Cluster) Close() {
	for _, p := range c.Peers {
		p.gate.release()
	}
	c.cancel()
	c.wg.Wait()
	for _, p := range c.Peers {
		_ = p.Conn.Close()
	}
}

func (c *Cluster) connectAll() {
	for i, a := range c.Peers {
		for j, b := range c.Peers {
			if i != j && !c.cut[[2]int{i, j}] {
				a.transport.Connect(b.addr, b.transport)
			}
		}
	}
}

// Partition cuts the Raft links between the peers at the given indexes and all
// the others, in both directions.
func (c *Cluster) Partition(isolated ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := map[int]bool{}
	for _, i := range isolated {
		in[i] = true
	}
	for i, a := range c.Peers {
		for j, b := range c.Peers {
			if i != j && in[i] != in[j] {
				c.cut[[2]int{i, j}] = true
				a.transport.Disconnect(b.addr)
			}
		}
	}
}

// Heal restores every Raft link.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = map[[2]int]bool{}
	c.connectAll()
}

// Leader returns the index of the peer that believes it leads, or -1.
func (c *Cluster) Leader() int {
	for i, p := range c.Peers {
		if p.Raft.IsLeader() {
			return i
		}
	}
	return -1
}

// Do sends one REST request to peer i and returns the status code, body and
// headers; a transport error fails the test.
func (c *Cluster) Do(i int, method, path, body string) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://"+c.Peers[i].HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b, resp.Header
}

// WaitFor polls cond every 10ms until it holds, failing the test after timeout.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Package apiserver serves Rafter's API over gRPC (and, through grpc-gateway, REST):
// authentication and validation in front of the replicated store, written once for
// every kind. Writes reaching a follower are forwarded to the leader; reads are
// linearizable by default through the read-index recipe.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/peer"
)

// Clock tells the time; tests inject a fixed one.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config configures the API server of one peer.
type Config struct {
	// Self is how other peers and clients reach this peer.
	Self fsm.Member
	// ServiceCIDR is where ClusterIPs come from.
	ServiceCIDR netip.Prefix
	// NodePortMin and NodePortMax bound NodePort allocation.
	NodePortMin, NodePortMax int
	// LeaderWait is how long a request waits for a leader to be known before it
	// fails with 503 (covers an election in progress).
	LeaderWait time.Duration
	// ReadTimeout bounds the read-index wait of a linearizable read.
	ReadTimeout time.Duration
	// UnsafeStaleReads serves default reads from local state without the read
	// index, and UnsafeAckBeforeCommit acknowledges writes before Raft commits
	// them. Both break the guarantees on purpose: they exist so the Jepsen-style
	// suite can show its checkers catch stale reads and lost writes.
	UnsafeStaleReads, UnsafeAckBeforeCommit bool
	// DialOptions are used for connections to other peers.
	DialOptions []grpc.DialOption
	Clock       Clock
	Logger      *slog.Logger
}

// DefaultConfig returns Kubernetes' defaults: 10.96.0.0/12 and 30000-32767.
func DefaultConfig() Config {
	return Config{
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		NodePortMin: 30000, NodePortMax: 32767,
		LeaderWait:  5 * time.Second,
		ReadTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Clock:       systemClock{},
		Logger:      slog.Default(),
	}
}

// Validate checks the fields against each other.
func (c Config) Validate() error {
	var errs []error
	if c.Self.ID == "" || c.Self.GRPCAddress == "" {
		errs = append(errs, errors.New("self id and gRPC address are required"))
	}
	if !c.ServiceCIDR.IsValid() {
		errs = append(errs, errors.New("service CIDR is required"))
	} else if c.ServiceCIDR.Addr().BitLen()-c.ServiceCIDR.Bits() < 2 {
		errs = append(errs, fmt.Errorf("service CIDR %s is too small", c.ServiceCIDR))
	}
	if c.NodePortMin < 1 || c.NodePortMax > 65535 || c.NodePortMin > c.NodePortMax {
		errs = append(errs, fmt.Errorf("node port range %d-%d is not valid", c.NodePortMin, c.NodePortMax))
	}
	if c.Clock == nil || c.Logger == nil {
		errs = append(errs, errors.New("clock and logger are required"))
	}
	return errors.Join(errs...)
}

// Server is the API of one peer. Register it on a gRPC server with RegisterGRPC
// and run it with Run.
type Server struct {
	cfg     Config
	peer    *peer.Peer
	fsm     *fsm.FSM
	reg     *registry
	support map[string]*fieldSupport
	alloc   *allocator

	connsMu sync.Mutex // guards conns
	conns   map[string]*grpc.ClientConn

	// stopping is closed when the server starts shutting down; watches end.
	stopping chan struct{}
	stopOnce sync.Once
}

// New returns a Server over a peer and its FSM.
func New(cfg Config, p *peer.Peer, f *fsm.FSM) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("apiserver config: %w", err)
	}
	reg, err := newRegistry()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, peer: p, fsm: f, reg: reg, support: map[string]*fieldSupport{},
		alloc:    newAllocator(cfg.ServiceCIDR, cfg.NodePortMin, cfg.NodePortMax),
		conns:    map[string]*grpc.ClientConn{},
		stopping: make(chan struct{}),
	}
	for _, k := range reg.ordered {
		s.support[k.Kind.Kind] = newFieldSupport(k.strategy.supported)
	}
	p.OnLeader(s.leaderWork)
	return s, nil
}

// Stopping ends every watch stream; call it before a graceful gRPC stop.
func (s *Server) Stopping() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Run keeps this peer's member record registered until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeConns()
	delay := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		if err := s.ensureRegistered(ctx); err != nil {
			s.cfg.Logger.Debug("register member", "err", err)
			delay = 200 * time.Millisecond
			continue
		}
		delay = 2 * time.Second
	}
}

func (s *Server) ensureRegistered(ctx context.Context) error {
	if m, ok := s.fsm.View().Member(s.cfg.Self.ID); ok && m == s.cfg.Self {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s.peer.IsLeader() {
		_, _, err := s.peer.Propose(ctx, setMember(s.cfg.Self))
		return err
	}
	conn, err := s.leaderConn(ctx)
	if err != nil {
		return err
	}
	_, err = clusterv1.NewPeerClient(conn).Register(ctx, memberProto(s.cfg.Self))
	return err
}

func setMember(m fsm.Member) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_SetMember{SetMember: &fsmv1.SetMember{Member: &fsmv1.Member{
		Id: m.ID, RaftAddress: m.RaftAddress, GrpcAddress: m.GRPCAddress, HttpAddress: m.HTTPAddress,
	}}}}
}

func memberProto(m fsm.Member) *clusterv1.Member {
	return &clusterv1.Member{Id: m.ID, RaftAddress: m.RaftAddress, GrpcAddress: m.GRPCAddress, HttpAddress: m.HTTPAddress}
}

// leaderWork runs for each leadership term: it creates the system namespaces and
// forgets member records of peers no longer in the Raft configuration.
func (s *Server) leaderWork(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ensureNamespaces(ctx) })
	g.Go(func() error { return s.pruneMembers(ctx) })
	return g.Wait()
}

func (s *Server) ensureNamespaces(ctx context.Context) error {
	k := s.reg.byKind["Namespace"]
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		for {
			if _, ok := s.fsm.View().Get("Namespace", "", name); ok {
				break
			}
			req := &corev1.CreateNamespaceRequest{Body: &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: name}}}
			_, err := s.create(ctx, k, req)
			if err == nil || isReason(err, ReasonAlreadyExists) {
				break
			}
			s.cfg.Logger.Warn("create system namespace", "namespace", name, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *Server) pruneMembers(ctx context.Context) error {
	for {
		if servers, err := s.peer.Servers(); err == nil {
			in := map[string]bool{}
			for _, sv := range servers {
				in[string(sv.ID)] = true
			}
			for _, m := range s.fsm.View().Members() {
				if !in[m.ID] {
					cmd := &fsmv1.Command{Op: &fsmv1.Command_RemoveMember{RemoveMember: &fsmv1.RemoveMember{Id: m.ID}}}
					if _, _, err := s.peer.Propose(ctx, cmd); err != nil {
						s.cfg.Logger.Debug("prune member", "member", m.ID, "err", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

func isReason(err error, reason string) bool {
	return statusOf(err).GetReason() == reason
}

// forwardedKey marks a request a follower forwarded, so that it is never forwarded
// twice (a stale leader answers Unavailable instead).
const forwardedKey = "x-rafter-forwarded"

func forwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

// forward sends a write to the leader and relays its response and warnings. When
// the leader cannot be reached at all (it died and no new one is known yet) it
// retries until LeaderWait passes.
func (s *Server) forward(ctx context.Context, fullMethod string, req, resp any) error {
	if forwarded(ctx) {
		return apiError(ReasonServiceUnavailable, "this peer is no longer the raft leader; retry", nil)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, s.cfg.Self.ID)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			out = metadata.AppendToOutgoingContext(out, "authorization", v)
		}
	}
	deadline := time.Now().Add(s.cfg.LeaderWait)
	for {
		conn, err := s.leaderConn(ctx)
		if err != nil {
			return err
		}
		var header metadata.MD
		err = conn.Invoke(out, fullMethod, req, resp, grpc.Header(&header), grpc.WaitForReady(false))
		for _, key := range []string{"warning", httpCodeHeader} {
			if v := header.Get(key); len(v) > 0 {
				_ = grpc.SetHeader(ctx, metadata.MD{key: v})
			}
		}
		if !unreachable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forwardUnlessLeader forwards a leader-only call when this peer is a follower. It
// reports whether it did (the caller then returns resp and *err); false means this
// peer is, or just became, the leader and must serve the call itself.
func (s *Server) forwardUnlessLeader(ctx context.Context, fullMethod string, req, resp any, err *error) bool {
	if s.peer.IsLeader() {
		return false
	}
	ferr := s.forward(ctx, fullMethod, req, resp)
	if errors.Is(ferr, errSelfLeader) {
		return false
	}
	*err = ferr
	return true
}

// unreachable reports a failure to reach the leader at all: the connection could
// not be made, so the request was certainly not delivered and may be retried.
// Any other failure (a connection lost mid-call, a timeout) leaves the outcome
// unknown: retrying then could apply one write twice, so it goes back to the client.
func unreachable(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	st, _ := status.FromError(err)
	if len(st.Details()) > 0 {
		return false // the server answered
	}
	msg := st.Message()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "Error while dialing") ||
		strings.Contains(msg, "no route to host")
}

// errSelfLeader: while waiting for a leader, this peer became it; the caller
// serves the request itself.
var errSelfLeader = errors.New("this peer is the leader")

// leaderConn returns a connection to the current leader, waiting up to LeaderWait
// for an election to finish and the leader's address to be known.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(s.cfg.LeaderWait)
	for {
		if s.peer.IsLeader() {
			return nil, errSelfLeader
		}
		if id, ok := s.peer.Leader(); ok && id != s.cfg.Self.ID {
			if m, ok := s.fsm.View().Member(id); ok && m.GRPCAddress != "" {
				return s.conn(m.GRPCAddress)
			}
		}
		if time.Now().After(deadline) {
			return nil, apiError(ReasonServiceUnavailable, "no raft leader is known to this peer; retry", nil)
		}
		select {
		case <-ctx.Done():
			return nil, apiError(ReasonTimeout, "waiting for a raft leader: "+ctx.Err().Error(), nil)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// conn returns a cached client connection to another peer.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	opts := append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}, s.cfg.DialOptions...)
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial peer %s: %w", addr, err)
	}
	s.conns[addr] = c
	return c, nil
}

func (s *Server) closeConns() {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for addr, c := range s.conns {
		_ = c.Close()
		delete(s.conns, addr)
	}
}

// readBarrier makes a read see what it must. rv "" is a linearizable read (read
// index from the leader, then wait until applied locally); "0" is any local state;
// a number N waits until this peer has applied at least N.
func (s *Server) readBarrier(ctx context.Context, rv string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	defer cancel()
	var index uint64
	switch {
	case rv == "0", rv == "" && s.cfg.UnsafeStaleReads:
		return nil
	case rv == "":
		var err error
		if index, err = s.readIndex(ctx); err != nil {
			return err
		}
	default:
		n, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			return badRequest("resourceVersion %q is not valid: must be a decimal Raft index", rv)
		}
		index = n
	}
	if err := s.peer.WaitApplied(ctx, index); err != nil {
		return apiError(ReasonTimeout, fmt.Sprintf("this peer has not yet applied resourceVersion %d: %v", index, err), nil)
	}
	return nil
}

// readIndex asks the leader (itself, or over gRPC) for a read index.
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	for {
		if s.peer.IsLeader() {
			idx, err := s.peer.ReadIndex(ctx)
			if err == nil {
				return idx, nil
			}
			if !errors.Is(err, peer.ErrNotLeader) {
				return 0, apiError(ReasonServiceUnavailable, "confirming leadership for a linearizable read: "+err.Error(), nil)
			}
		}
		conn, err := s.leaderConn(ctx)
		if errors.Is(err, errSelfLeader) {
			select {
			case <-ctx.Done():
				return 0, apiError(ReasonTimeout, "waiting for a read index: "+ctx.Err().Error(), nil)
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		resp, err := clusterv1.NewPeerClient(conn).ReadIndex(ctx, &clusterv1.ReadIndexRequest{})
		if err != nil {
			// Asking again is always safe for a read: the leader may just have died
			// (or stepped down) and a new one not be known yet.
			if c := status.Code(err); (c == codes.Unavailable || c == codes.FailedPrecondition) && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			return 0, apiError(ReasonServiceUnavailable, "the leader could not serve a read index: "+err.Error(), nil)
		}
		return resp.GetIndex(), nil
	}
}

package apiserver

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/peer"
)

// clusterServer implements the operator-facing Cluster service.
type clusterServer struct {
	clusterv1.UnimplementedClusterServer
	s *Server
}

// Members lists every peer of the Raft configuration with its own live view;
// peers that do not answer within a second are reported Unreachable.
func (c *clusterServer) Members(ctx context.Context, _ *clusterv1.MembersRequest) (*clusterv1.MembersResponse, error) {
	servers, err := c.s.peer.Servers()
	if err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	view := c.s.fsm.View()
	out := make([]*clusterv1.Member, len(servers))
	var wg sync.WaitGroup
	for i, sv := range servers {
		m := &clusterv1.Member{Id: string(sv.ID), RaftAddress: string(sv.Address), Suffrage: sv.Suffrage.String()}
		if rec, ok := view.Member(m.Id); ok {
			m.GrpcAddress, m.HttpAddress = rec.GRPCAddress, rec.HTTPAddress
		}
		out[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.s.fillStatus(ctx, m)
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return &clusterv1.MembersResponse{Members: out}, nil
}

// fillStatus asks a peer for its own Raft state.
func (s *Server) fillStatus(ctx context.Context, m *clusterv1.Member) {
	var st *clusterv1.Member
	if m.Id == s.cfg.Self.ID {
		st = s.localStatus()
	} else if m.GrpcAddress != "" {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if conn, err := s.conn(m.GrpcAddress); err == nil {
			st, err = clusterv1.NewPeerClient(conn).Status(ctx, &clusterv1.StatusRequest{})
			if err != nil {
				m.Error = err.Error()
			}
		}
	} else {
		m.Error = "address not yet registered"
	}
	if st == nil {
		m.State = "Unreachable"
		return
	}
	m.State, m.Term, m.LastIndex, m.AppliedIndex, m.CommitIndex, m.Leader =
		st.State, st.Term, st.LastIndex, st.AppliedIndex, st.CommitIndex, st.Leader
}

func (s *Server) localStatus() *clusterv1.Member {
	st := s.peer.Status()
	return &clusterv1.Member{
		Id: s.cfg.Self.ID, RaftAddress: s.cfg.Self.RaftAddress, GrpcAddress: s.cfg.Self.GRPCAddress,
		HttpAddress: s.cfg.Self.HTTPAddress, State: st.State, Term: st.Term, LastIndex: st.LastIndex,
		AppliedIndex: st.AppliedIndex, CommitIndex: st.CommitIndex, Leader: st.Leader,
	}
}

// AddVoter adds a peer as a voter and records its addresses.
func (c *clusterServer) AddVoter(ctx context.Context, req *clusterv1.AddVoterRequest) (_ *clusterv1.MembersResponse, err error) {
	if req.GetId() == "" || req.GetRaftAddress() == "" {
		return nil, badRequest("id and raftAddress are required")
	}
	if resp := (&clusterv1.MembersResponse{}); c.s.forwardUnlessLeader(ctx, clusterv1.Cluster_AddVoter_FullMethodName, req, resp, &err) {
		return resp, err
	}
	m := fsm.Member{ID: req.GetId(), RaftAddress: req.GetRaftAddress(), GRPCAddress: req.GetGrpcAddress(), HTTPAddress: req.GetHttpAddress()}
	if _, _, err := c.s.peer.Propose(ctx, setMember(m)); err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	if err := c.s.peer.AddVoter(ctx, m.ID, m.RaftAddress); err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	return c.Members(ctx, &clusterv1.MembersRequest{})
}

// RemovePeer removes a peer from the configuration and forgets its addresses.
func (c *clusterServer) RemovePeer(ctx context.Context, req *clusterv1.RemovePeerRequest) (_ *clusterv1.MembersResponse, err error) {
	if req.GetId() == "" {
		return nil, badRequest("id is required")
	}
	if resp := (&clusterv1.MembersResponse{}); c.s.forwardUnlessLeader(ctx, clusterv1.Cluster_RemovePeer_FullMethodName, req, resp, &err) {
		return resp, err
	}
	servers, err := c.s.peer.Servers()
	if err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	found := false
	for _, sv := range servers {
		found = found || string(sv.ID) == req.GetId()
	}
	if !found {
		return nil, apiError(ReasonNotFound, "no peer "+req.GetId()+" in the raft configuration", nil)
	}
	cmd := &fsmv1.Command{Op: &fsmv1.Command_RemoveMember{RemoveMember: &fsmv1.RemoveMember{Id: req.GetId()}}}
	if _, _, err := c.s.peer.Propose(ctx, cmd); err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	if err := c.s.peer.RemoveServer(ctx, req.GetId()); err != nil {
		return nil, statusFromStore(kindInfo{}, "", err)
	}
	if req.GetId() == c.s.cfg.Self.ID {
		return &clusterv1.MembersResponse{}, nil
	}
	return c.Members(ctx, &clusterv1.MembersRequest{})
}

// TransferLeadership hands leadership over and waits until a new leader is known.
func (c *clusterServer) TransferLeadership(ctx context.Context, req *clusterv1.TransferLeadershipRequest) (_ *clusterv1.TransferLeadershipResponse, err error) {
	if resp := (&clusterv1.TransferLeadershipResponse{}); c.s.forwardUnlessLeader(ctx, clusterv1.Cluster_TransferLeadership_FullMethodName, req, resp, &err) {
		return resp, err
	}
	if req.GetId() == c.s.cfg.Self.ID {
		return &clusterv1.TransferLeadershipResponse{Leader: req.GetId()}, nil
	}
	if req.GetId() != "" {
		servers, err := c.s.peer.Servers()
		if err != nil {
			return nil, statusFromStore(kindInfo{}, "", err)
		}
		if !slices.ContainsFunc(servers, func(sv raft.Server) bool { return string(sv.ID) == req.GetId() }) {
			return nil, apiError(ReasonNotFound, "no peer "+req.GetId()+" in the raft configuration", nil)
		}
	}
	if err := c.s.peer.TransferLeadership(ctx, req.GetId()); err != nil {
		return nil, apiError(ReasonServiceUnavailable, err.Error(), nil)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if id, ok := c.s.peer.Leader(); ok && id != c.s.cfg.Self.ID {
			return &clusterv1.TransferLeadershipResponse{Leader: id}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, apiError(ReasonTimeout, "no new leader within 5s", nil)
}

// SnapshotSave streams a backup taken at a linearizable point.
func (c *clusterServer) SnapshotSave(_ *clusterv1.SnapshotSaveRequest, stream grpc.ServerStreamingServer[httpbody.HttpBody]) error {
	w := &chunkWriter{send: func(b []byte) error {
		return stream.Send(&httpbody.HttpBody{ContentType: "application/octet-stream", Data: b})
	}}
	if err := c.s.writeBackup(stream.Context(), w); err != nil {
		return err
	}
	return w.flush()
}

// writeBackup writes the whole state, as of a linearizable read, in the snapshot
// format that `controlplane --restore` reads.
func (s *Server) writeBackup(ctx context.Context, w io.Writer) error {
	if err := s.readBarrier(ctx, ""); err != nil {
		return statusFromStore(kindInfo{}, "", err)
	}
	if err := s.fsm.View().Save(w); err != nil {
		return status.Errorf(codes.Internal, "write snapshot: %v", err)
	}
	return nil
}

// chunkWriter turns writes into messages of at most 256 KiB.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := 256<<10 - len(c.buf)
		take := min(room, len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == 256<<10 {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = nil
	return err
}

// peerServer implements the peer-to-peer service.
type peerServer struct {
	clusterv1.UnimplementedPeerServer
	s *Server
}

func (p *peerServer) ReadIndex(ctx context.Context, _ *clusterv1.ReadIndexRequest) (*clusterv1.ReadIndexResponse, error) {
	idx, err := p.s.peer.ReadIndex(ctx)
	if err != nil {
		if errorsIsNotLeader(err) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &clusterv1.ReadIndexResponse{Index: idx, Term: p.s.peer.Status().Term}, nil
}

func (p *peerServer) Status(context.Context, *clusterv1.StatusRequest) (*clusterv1.Member, error) {
	return p.s.localStatus(), nil
}

func (p *peerServer) Register(ctx context.Context, m *clusterv1.Member) (*clusterv1.Member, error) {
	if !p.s.peer.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, "not the leader")
	}
	rec := fsm.Member{ID: m.GetId(), RaftAddress: m.GetRaftAddress(), GRPCAddress: m.GetGrpcAddress(), HTTPAddress: m.GetHttpAddress()}
	if cur, ok := p.s.fsm.View().Member(rec.ID); !ok || cur != rec {
		if _, _, err := p.s.peer.Propose(ctx, setMember(rec)); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	return m, nil
}

func errorsIsNotLeader(err error) bool { return errors.Is(err, peer.ErrNotLeader) }

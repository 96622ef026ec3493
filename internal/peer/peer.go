// Package peer runs one control-plane peer's Raft node: it owns the hashicorp/raft
// instance, its stores and transport, and offers the few operations the API server
// needs — Propose, ReadIndex, membership and leadership — with context cancellation
// and the FSM's own errors.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// Errors returned by Peer methods.
var (
	// ErrNotLeader: the operation needs the leader and this peer is not (or stopped
	// being) it. For a Propose the write may still have been applied.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrTimeout: raft did not finish in time; the outcome is unknown.
	ErrTimeout = errors.New("raft operation timed out")
)

// Deps overrides the stores and transport (in-process clusters in tests). Nil fields
// get the production defaults: TCP transport, raft-boltdb, file snapshots.
type Deps struct {
	Transport raft.Transport
	Logs      raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
	// FSM, when set, is what Raft drives instead of the *fsm.FSM given to Open;
	// it must pass every call on to that FSM (tests wrap it to hold applies back).
	FSM raft.FSM
}

// Peer is one Raft member. Methods are safe for concurrent use.
type Peer struct {
	cfg  Config
	raft *raft.Raft
	fsm  *fsm.FSM

	closers  []io.Closer
	leaderCh chan bool

	// onLeader holds work run for the duration of each leadership term.
	onLeader []func(context.Context) error

	barrierMu   sync.Mutex // guards barrierTerm
	barrierTerm uint64

	logs raft.LogStore

	fsmIndexMu   sync.Mutex // guards lastCommit and lastFSMIndex
	lastCommit   uint64     // the commit index fsmIndex last looked at
	lastFSMIndex uint64     // and what it mapped it to

	verifyMu      sync.Mutex // guards verifyWaiters and verifyRunning
	verifyWaiters []chan error
	verifyRunning bool
}

// Open creates the stores and the Raft node and bootstraps it when cfg.Bootstrap is
// set and the data directory holds no state (otherwise Bootstrap is ignored).
func Open(cfg Config, f *fsm.FSM, deps Deps) (*Peer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peer config: %w", err)
	}
	p := &Peer{cfg: cfg, fsm: f, leaderCh: make(chan bool, 16)}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft " + cfg.ID, Level: hclog.Warn, Output: os.Stderr})
	if err := p.openStores(&deps, hl); err != nil {
		p.closeStores()
		return nil, err
	}
	p.logs = deps.Logs

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.NotifyCh = p.leaderCh
	rc.Logger = hl
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true

	existing, err := raft.HasExistingState(deps.Logs, deps.Stable, deps.Snapshots)
	if err != nil {
		p.closeStores()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	var rf raft.FSM = f
	if deps.FSM != nil {
		rf = deps.FSM
	}
	r, err := raft.NewRaft(rc, rf, deps.Logs, deps.Stable, deps.Snapshots, deps.Transport)
	if err != nil {
		p.closeStores()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	p.raft = r
	if !existing && len(cfg.Bootstrap) > 0 {
		var servers []raft.Server
		for _, s := range cfg.Bootstrap {
			servers = append(servers, raft.Server{ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr), Suffrage: raft.Voter})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = r.Shutdown().Error()
			p.closeStores()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	} else if existing && len(cfg.Bootstrap) > 0 {
		cfg.Logger.Info("existing raft state found; ignoring bootstrap set", "peer", cfg.ID)
	}
	return p, nil
}

func (p *Peer) openStores(d *Deps, hl hclog.Logger) error {
	if d.Transport == nil {
		t, err := raft.NewTCPTransportWithLogger(p.cfg.RaftAddr, nil, 5, 10*time.Second, hl)
		if err != nil {
			return fmt.Errorf("raft transport on %s: %w", p.cfg.RaftAddr, err)
		}
		d.Transport = t
		p.closers = append(p.closers, t)
	}
	if d.Logs == nil || d.Stable == nil || d.Snapshots == nil {
		if p.cfg.DataDir == "" {
			return errors.New("data dir is required without injected stores")
		}
		if err := os.MkdirAll(p.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	if d.Logs == nil || d.Stable == nil {
		bs, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(p.cfg.DataDir, "raft.db"), NoSync: p.cfg.NoSync,
			// The freelist is rebuilt on open instead of being written on every commit.
			BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
		})
		if err != nil {
			return fmt.Errorf("open raft log: %w", err)
		}
		p.closers = append(p.closers, bs)
		if d.Logs == nil {
			// Followers and the read-index lookback read recent entries from memory,
			// not from bolt.
			cached, err := raft.NewLogCache(4096, bs)
			if err != nil {
				return fmt.Errorf("raft log cache: %w", err)
			}
			d.Logs = cached
		}
		if d.Stable == nil {
			d.Stable = bs
		}
	}
	if d.Snapshots == nil {
		ss, err := raft.NewFileSnapshotStoreWithLogger(p.cfg.DataDir, 2, hl)
		if err != nil {
			return fmt.Errorf("open snapshot store: %w", err)
		}
		d.Snapshots = ss
	}
	return nil
}

func (p *Peer) closeStores() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		_ = p.closers[i].Close()
	}
	p.closers = nil
}

// OnLeader registers fn to run for each leadership term of this peer, under a
// context cancelled the moment leadership is lost; Run waits for fn to return before
// it handles the next change. Call before Run.
func (p *Peer) OnLeader(fn func(ctx context.Context) error) {
	p.onLeader = append(p.onLeader, fn)
}

// Run follows leadership changes until ctx ends, then shuts raft down and closes the
// stores. It returns nil on a clean shutdown.
func (p *Peer) Run(ctx context.Context) error {
	var term *leaderTerm
	defer func() {
		term.stop()
		if err := p.raft.Shutdown().Error(); err != nil {
			p.cfg.Logger.Warn("raft shutdown", "err", err)
		}
		p.closeStores()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case leader := <-p.leaderCh:
			term.stop()
			term = nil
			if leader {
				term = p.startTerm(ctx)
			}
		}
	}
}

// leaderTerm is the leader work of one term.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the term's work and waits for it; a nil term is a no-op.
func (t *leaderTerm) stop() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}

func (p *Peer) startTerm(ctx context.Context) *leaderTerm {
	ctx, cancel := context.WithCancel(ctx)
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		p.leaderTerm(ctx)
	}()
	return t
}

// leaderTerm runs for one leadership term: it first makes sure the FSM has applied
// every entry of earlier terms, then runs the registered leader work.
func (p *Peer) leaderTerm(ctx context.Context) {
	term := p.raft.CurrentTerm()
	p.cfg.Logger.Info("became raft leader", "term", term)
	if err := p.ensureBarrier(ctx, term); err != nil {
		p.cfg.Logger.Warn("leader barrier", "err", err)
		return
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, fn := range p.onLeader {
		g.Go(func() error { return fn(gctx) })
	}
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		p.cfg.Logger.Error("leader work failed", "err", err)
	}
}

// ensureBarrier waits, once per term, until the FSM has applied everything committed
// before this peer's term began.
func (p *Peer) ensureBarrier(ctx context.Context, term uint64) error {
	p.barrierMu.Lock()
	defer p.barrierMu.Unlock()
	if p.barrierTerm == term {
		return nil
	}
	if err := wait(ctx, p.raft.Barrier(p.cfg.ApplyTimeout)); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	p.barrierTerm = term
	return nil
}

// LeaderReady blocks until this leader's FSM has applied every entry of earlier
// terms (once per term; then it returns at once), so that what the leader reads
// before proposing is not older than what previous leaders acknowledged.
func (p *Peer) LeaderReady(ctx context.Context) error {
	if p.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return p.ensureBarrier(ctx, p.raft.CurrentTerm())
}

// LeaderCaughtUp is LeaderReady, then waits until this leader's FSM has applied
// everything committed when it was called. A leader's FSM applies committed
// entries asynchronously and may trail a follower that already applied (and
// showed in a watch) an entry; a write validated against the leader's state must
// not be older than what any client could have seen. No quorum round is needed:
// the commit index is the leader's own.
func (p *Peer) LeaderCaughtUp(ctx context.Context) error {
	if err := p.LeaderReady(ctx); err != nil {
		return err
	}
	return p.WaitApplied(ctx, p.fsmIndex(p.raft.CommitIndex()))
}

// Propose replicates cmd and returns its log index and the FSM's result. It fails with
// ErrNotLeader on a follower. When ctx ends first the write may still be applied.
func (p *Peer) Propose(ctx context.Context, cmd *fsmv1.Command) (uint64, *fsm.Result, error) {
	data, err := proto.Marshal(cmd)
	if err != nil {
		return 0, nil, fmt.Errorf("encode command: %w", err)
	}
	fut := p.raft.Apply(data, p.cfg.ApplyTimeout)
	if err := wait(ctx, fut); err != nil {
		return 0, nil, err
	}
	res, _ := fut.Response().(*fsm.Result)
	if res == nil {
		return fut.Index(), nil, fmt.Errorf("%w: no result", fsm.ErrInvalidCommand)
	}
	return fut.Index(), res, res.Err
}

// ReadIndex returns an index such that a read served once the FSM has applied it sees
// every write acknowledged before the call (the Raft read-index recipe). Leader only.
// It blocks for one heartbeat round to a quorum, shared with concurrent callers.
func (p *Peer) ReadIndex(ctx context.Context) (uint64, error) {
	if p.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	term := p.raft.CurrentTerm()
	if err := p.ensureBarrier(ctx, term); err != nil {
		return 0, err
	}
	index := p.fsmIndex(p.raft.CommitIndex())
	if err := p.verifyLeader(ctx); err != nil {
		return 0, err
	}
	if p.raft.CurrentTerm() != term {
		return 0, ErrNotLeader
	}
	return index, nil
}

// fsmIndex returns the highest index at or below index of an entry the FSM sees.
// Raft never hands noop and barrier entries to the FSM, so a reader waiting for
// their index would wait for the next write; the state at the entry below them is
// the same.
func (p *Peer) fsmIndex(index uint64) uint64 {
	p.fsmIndexMu.Lock()
	defer p.fsmIndexMu.Unlock()
	if index == p.lastCommit {
		return p.lastFSMIndex
	}
	out := index
	var l raft.Log
	for out > 0 && out > p.lastCommit {
		if err := p.logs.GetLog(out, &l); err != nil {
			break // compacted into a snapshot: the snapshot covers it
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			break
		}
		out--
	}
	if out == p.lastCommit {
		out = p.lastFSMIndex
	}
	p.lastCommit, p.lastFSMIndex = index, out
	return out
}

// verifyLeader confirms leadership with a quorum round. Concurrent callers share a
// round, but only one that started after they asked.
func (p *Peer) verifyLeader(ctx context.Context) error {
	ch := make(chan error, 1)
	p.verifyMu.Lock()
	p.verifyWaiters = append(p.verifyWaiters, ch)
	start := !p.verifyRunning
	p.verifyRunning = true
	p.verifyMu.Unlock()
	if start {
		go p.verifyLoop()
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Peer) verifyLoop() {
	for {
		p.verifyMu.Lock()
		batch := p.verifyWaiters
		p.verifyWaiters = nil
		if len(batch) == 0 {
			p.verifyRunning = false
			p.verifyMu.Unlock()
			return
		}
		p.verifyMu.Unlock()
		err := translate(p.raft.VerifyLeader().Error())
		for _, ch := range batch {
			ch <- err
		}
	}
}

// WaitApplied blocks until the local FSM has applied index or ctx ends.
func (p *Peer) WaitApplied(ctx context.Context, index uint64) error {
	if !p.fsm.WaitApplied(ctx.Done(), index) {
		return ctx.Err()
	}
	return nil
}

// IsLeader reports whether this peer currently believes it is the leader.
func (p *Peer) IsLeader() bool { return p.raft.State() == raft.Leader }

// Leader returns the current leader's id as this peer knows it.
func (p *Peer) Leader() (string, bool) {
	_, id := p.raft.LeaderWithID()
	return string(id), id != ""
}

// ID returns this peer's id.
func (p *Peer) ID() string { return p.cfg.ID }

// Servers returns the current Raft configuration.
func (p *Peer) Servers() ([]raft.Server, error) {
	fut := p.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	return fut.Configuration().Servers, nil
}

// Status is this peer's own view of Raft.
type Status struct {
	State        string
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	Leader       string
}

// Status reports this peer's Raft state; AppliedIndex is the FSM's.
func (p *Peer) Status() Status {
	leader, _ := p.Leader()
	return Status{
		State: p.raft.State().String(), Term: p.raft.CurrentTerm(), LastIndex: p.raft.LastIndex(),
		CommitIndex: p.raft.CommitIndex(), AppliedIndex: p.fsm.Applied(), Leader: leader,
	}
}

// AddVoter adds (or re-addresses) a voter. Leader only.
func (p *Peer) AddVoter(ctx context.Context, id, raftAddr string) error {
	return wait(ctx, p.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, p.cfg.ApplyTimeout))
}

// RemoveServer removes a peer from the configuration. Leader only.
func (p *Peer) RemoveServer(ctx context.Context, id string) error {
	return wait(ctx, p.raft.RemoveServer(raft.ServerID(id), 0, p.cfg.ApplyTimeout))
}

// TransferLeadership hands leadership to id, or to the most up-to-date voter when id
// is empty. Leader only.
func (p *Peer) TransferLeadership(ctx context.Context, id string) error {
	if id == "" {
		return wait(ctx, p.raft.LeadershipTransfer())
	}
	servers, err := p.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return wait(ctx, p.raft.LeadershipTransferToServer(s.ID, s.Address))
		}
	}
	return fmt.Errorf("transfer leadership: no peer %q in the configuration", id)
}

// RestoreBackup replaces the whole replicated state with a backup in the snapshot
// format (from View.Save). Leader only; every peer ends up with the backup's state
// and log indexes continue above the backup's resourceVersions.
func (p *Peer) RestoreBackup(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open backup: %w", err)
	}
	index, err := fsm.CheckSnapshot(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("read backup %s: %w", path, err)
	}
	if err := p.ensureBarrier(ctx, p.raft.CurrentTerm()); err != nil {
		return err
	}
	f, err = os.Open(path)
	if err != nil {
		return fmt.Errorf("open backup: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat backup: %w", err)
	}
	servers, err := p.Servers()
	if err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Term: p.raft.CurrentTerm(), Size: info.Size(),
		Configuration: raft.Configuration{Servers: servers}, ConfigurationIndex: 1}
	if err := p.raft.Restore(meta, f, p.cfg.ApplyTimeout); err != nil {
		return fmt.Errorf("restore backup: %w", translate(err))
	}
	// Raft follows the restored snapshot with a noop the FSM never sees; a command
	// after it gives reads an index to wait for.
	if _, _, err := p.Propose(ctx, &fsmv1.Command{Op: &fsmv1.Command_Noop{Noop: &fsmv1.Noop{}}}); err != nil {
		return fmt.Errorf("after restore: %w", err)
	}
	return nil
}

// wait waits for a raft future or ctx, translating raft's errors.
func wait(ctx context.Context, fut raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	select {
	case err := <-done:
		return translate(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	default:
		return err
	}
}

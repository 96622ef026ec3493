package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures one control-plane peer's Raft node.
type Config struct {
	ID       string
	DataDir  string // raft.db (raft-boltdb) and snapshots/ live here; "" = in memory (tests)
	RaftAddr string // host:port to listen on and advertise for Raft traffic
	GRPCAddr string // advertised in the member record so peers can forward to us
	HTTPAddr string

	// Bootstrap is the initial voter set, used only when DataDir holds no state.
	Bootstrap []Server

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot trigger a new
	// one; TrailingLogs is how many entries stay in the log after it, so that a slow
	// follower can catch up without a snapshot install.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// ApplyTimeout bounds how long Propose waits for raft to accept an entry.
	ApplyTimeout time.Duration
	// NoSync skips fsync of the log (benchmarks only; unsafe on power loss).
	NoSync bool

	Logger *slog.Logger
}

// Server is one member of the bootstrap set.
type Server struct {
	ID       string
	RaftAddr string
}

// DefaultConfig returns settings tuned for a LAN: failover within about 2 seconds.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotInterval:   30 * time.Second,
		ApplyTimeout:       10 * time.Second,
		Logger:             slog.Default(),
	}
}

// Validate checks the fields against each other.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("raft address is required"))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader lease timeout %s must not exceed heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("election timeout %s must be at least the heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("snapshot threshold must be positive"))
	}
	seen := map[string]bool{}
	for _, s := range c.Bootstrap {
		if s.ID == "" || s.RaftAddr == "" {
			errs = append(errs, fmt.Errorf("bootstrap server %q: id and raft address are required", s.ID))
		}
		if seen[s.ID] {
			errs = append(errs, fmt.Errorf("bootstrap server %q listed twice", s.ID))
		}
		seen[s.ID] = true
	}
	if len(c.Bootstrap) > 0 && !seen[c.ID] {
		errs = append(errs, fmt.Errorf("bootstrap set does not include this peer %q", c.ID))
	}
	return errors.Join(errs...)
}

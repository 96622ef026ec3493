// Command controlplane runs one Rafter control-plane peer: the Raft-replicated store
// and the API (gRPC, and REST through grpc-gateway).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/rafter-dev/rafter/gen/openapiv2"
	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	"github.com/rafter-dev/rafter/internal/apiserver"
	"github.com/rafter-dev/rafter/internal/ctrl"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/peer"
)

type flags struct {
	id, dataDir, raftAddr, grpcAddr, httpAddr string
	bootstrap, join, restore                  string
	serviceCIDR, nodePorts, logLevel          string
	snapshotThreshold, trailingLogs           uint64
	heartbeat, election, snapshotInterval     time.Duration
	watchWindow, gcPercent                    int
	memoryLimit                               int64
	noSync, pprof, staleReads, ackEarly       bool
	clusterCIDR                               string
	nodeCIDRMaskSize                          int
	loops                                     bool
	nodeGrace, podEviction                    time.Duration
	loopsQPS                                  float64
	loopsBurst                                int
}

func main() {
	var f flags
	fs := flag.NewFlagSet("controlplane", flag.ExitOnError)
	fs.StringVar(&f.id, "id", "", "this peer's id (required)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required)")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7001", "address for Raft traffic between peers")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7443", "address of the gRPC API")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "address of the REST API, health and metrics")
	fs.StringVar(&f.bootstrap, "bootstrap", "", "initial voters id=raftaddr,...; ignored when the data dir holds state")
	fs.StringVar(&f.join, "join", "", "gRPC address(es) of existing peers to join as a voter")
	fs.StringVar(&f.restore, "restore", "", "start a new single-peer cluster from this backup (fresh data dir only)")
	fs.StringVar(&f.serviceCIDR, "service-cidr", "10.96.0.0/12", "range ClusterIPs are allocated from")
	fs.StringVar(&f.nodePorts, "service-node-port-range", "30000-32767", "range NodePorts are allocated from")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", peer.DefaultConfig().SnapshotThreshold, "log entries between Raft snapshots")
	fs.Uint64Var(&f.trailingLogs, "trailing-logs", peer.DefaultConfig().TrailingLogs, "log entries kept after a snapshot")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", peer.DefaultConfig().SnapshotInterval, "how often to check whether a snapshot is due")
	fs.DurationVar(&f.heartbeat, "heartbeat-timeout", peer.DefaultConfig().HeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&f.election, "election-timeout", peer.DefaultConfig().ElectionTimeout, "Raft election timeout")
	fs.IntVar(&f.watchWindow, "watch-window", fsm.DefaultConfig().WatchWindow, "changes kept for watches to resume from")
	fs.IntVar(&f.gcPercent, "gc-percent", 400, "Go GC target percentage (GOGC); the store is long-lived, so collecting less often saves CPU")
	fs.Int64Var(&f.memoryLimit, "memory-limit", 0, "soft memory limit in bytes for the Go runtime (0: none); the GC runs harder near it")
	fs.BoolVar(&f.noSync, "unsafe-no-fsync", false, "do not fsync the Raft log (benchmarks only)")
	fs.BoolVar(&f.staleReads, "unsafe-stale-reads", false, "BROKEN ON PURPOSE, for checker tests: serve default reads without the read index")
	fs.BoolVar(&f.ackEarly, "unsafe-ack-before-commit", false, "BROKEN ON PURPOSE, for checker tests: acknowledge writes before Raft commits them")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiling endpoints under /debug/pprof/ on the HTTP address")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", ctrl.DefaultPodCIDRs().ClusterCIDR.String(), "range the nodes' pod CIDRs are cut from")
	fs.IntVar(&f.nodeCIDRMaskSize, "node-cidr-mask-size", ctrl.DefaultPodCIDRs().NodeMaskSize, "prefix length of each node's pod CIDR")
	fs.DurationVar(&f.nodeGrace, "node-grace-period", ctrl.DefaultNodeLifecycleConfig().NodeGracePeriod, "how long a node's Lease may go unrenewed before the node is marked unreachable (Ready=Unknown, tainted)")
	fs.DurationVar(&f.podEviction, "pod-eviction-timeout", ctrl.DefaultNodeLifecycleConfig().PodEvictionTimeout, "how long pods stay on an unreachable node before they are deleted (tolerationSeconds of the unreachable NoExecute taint overrides)")
	fs.Float64Var(&f.loopsQPS, "controller-api-qps", 0, "calls per second the scheduler and controllers may make to the API (0: no limit), like kube-controller-manager's --kube-api-qps")
	fs.IntVar(&f.loopsBurst, "controller-api-burst", 30, "burst allowed above --controller-api-qps")
	fs.BoolVar(&f.loops, "controllers", true, "run the scheduler and controllers while this peer leads")
	_ = fs.Parse(os.Args[1:])

	if err := run(f); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func run(f flags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("peer", f.id)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(f.gcPercent)
	}
	if f.memoryLimit > 0 {
		debug.SetMemoryLimit(f.memoryLimit)
	}
	if f.id == "" || f.dataDir == "" {
		return errors.New("--id and --data-dir are required")
	}
	fresh := !fileExists(filepath.Join(f.dataDir, "raft.db"))
	if f.restore != "" && !fresh {
		return fmt.Errorf("--restore needs a fresh data dir, and %s already holds raft state", f.dataDir)
	}

	fcfg := fsm.DefaultConfig()
	fcfg.WatchWindow, fcfg.Logger = f.watchWindow, logger
	store, err := fsm.New(fcfg)
	if err != nil {
		return err
	}
	pcfg := peer.DefaultConfig()
	pcfg.ID, pcfg.DataDir, pcfg.RaftAddr = f.id, f.dataDir, f.raftAddr
	pcfg.GRPCAddr, pcfg.HTTPAddr, pcfg.Logger = f.grpcAddr, f.httpAddr, logger
	pcfg.SnapshotThreshold, pcfg.TrailingLogs, pcfg.NoSync = f.snapshotThreshold, f.trailingLogs, f.noSync
	pcfg.HeartbeatTimeout, pcfg.ElectionTimeout = f.heartbeat, f.election
	pcfg.SnapshotInterval = f.snapshotInterval
	if f.election < f.heartbeat {
		pcfg.ElectionTimeout = f.heartbeat
	}
	if pcfg.LeaderLeaseTimeout > pcfg.HeartbeatTimeout {
		pcfg.LeaderLeaseTimeout = pcfg.HeartbeatTimeout
	}
	switch {
	case f.restore != "":
		pcfg.Bootstrap = []peer.Server{{ID: f.id, RaftAddr: f.raftAddr}}
	case f.bootstrap != "":
		if pcfg.Bootstrap, err = parseBootstrap(f.bootstrap); err != nil {
			return err
		}
	}
	p, err := peer.Open(pcfg, store, peer.Deps{})
	if err != nil {
		return err
	}

	acfg := apiserver.DefaultConfig()
	acfg.Self = fsm.Member{ID: f.id, RaftAddress: f.raftAddr, GRPCAddress: f.grpcAddr, HTTPAddress: f.httpAddr}
	acfg.Logger = logger
	acfg.UnsafeStaleReads, acfg.UnsafeAckBeforeCommit = f.staleReads, f.ackEarly
	if f.staleReads || f.ackEarly {
		logger.Warn("running with deliberately broken guarantees", "unsafe-stale-reads", f.staleReads, "unsafe-ack-before-commit", f.ackEarly)
	}
	if acfg.ServiceCIDR, err = netip.ParsePrefix(f.serviceCIDR); err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	if acfg.NodePortMin, acfg.NodePortMax, err = parseRange(f.nodePorts); err != nil {
		return fmt.Errorf("--service-node-port-range: %w", err)
	}
	api, err := apiserver.New(acfg, p, store)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := api.NewMetrics(reg)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20),
		grpc.ChainUnaryInterceptor(metrics.UnaryInterceptor), grpc.ChainStreamInterceptor(metrics.StreamInterceptor))
	if err := api.RegisterGRPC(gs); err != nil {
		return err
	}
	reflection.Register(gs)
	grpcLis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.grpcAddr, err)
	}
	httpLis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.httpAddr, err)
	}
	self, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("dial own gRPC address: %w", err)
	}
	defer self.Close()

	if f.loops {
		lcfg := ctrl.DefaultLoopsConfig()
		lcfg.Logger = logger
		if lcfg.PodCIDRs.ClusterCIDR, err = netip.ParsePrefix(f.clusterCIDR); err != nil {
			return fmt.Errorf("--cluster-cidr: %w", err)
		}
		lcfg.PodCIDRs.NodeMaskSize = f.nodeCIDRMaskSize
		lcfg.NodeLifecycle.NodeGracePeriod, lcfg.NodeLifecycle.PodEvictionTimeout = f.nodeGrace, f.podEviction
		if err := lcfg.Validate(); err != nil {
			return err
		}
		loopsConn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(64<<20)),
			grpc.WithUnaryInterceptor(ctrl.RateLimit(f.loopsQPS, f.loopsBurst)))
		if err != nil {
			return fmt.Errorf("dial own gRPC address: %w", err)
		}
		defer loopsConn.Close()
		p.OnLeader(func(ctx context.Context) error { return ctrl.RunLoops(ctx, loopsConn, lcfg) })
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	handler, err := api.HTTPHandler(sigCtx, self, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), openapiv2.JSON)
	if err != nil {
		return err
	}
	if f.pprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/", handler)
		handler = mux
	}
	httpSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	// Raft outlives the API: it stops only after the listeners have drained.
	raftCtx, stopRaft := context.WithCancel(context.Background())
	defer stopRaft()
	raftDone := make(chan error, 1)
	go func() { raftDone <- p.Run(raftCtx) }()

	g, ctx := errgroup.WithContext(sigCtx)
	g.Go(func() error { return api.Run(ctx) })
	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		logger.Info("shutting down")
		api.Stopping()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(shutCtx)
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-shutCtx.Done():
			gs.Stop()
		}
		return nil
	})
	if f.join != "" && fresh {
		g.Go(func() error { return joinCluster(ctx, f, logger) })
	}
	if f.restore != "" {
		g.Go(func() error { return restoreWhenLeader(ctx, p, f.restore, logger) })
	}
	logger.Info("serving", "raft", f.raftAddr, "grpc", f.grpcAddr, "http", f.httpAddr)
	err = g.Wait()
	stopRaft()
	if rerr := <-raftDone; rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// joinCluster asks the given peers, in turn, to add this peer as a voter.
func joinCluster(ctx context.Context, f flags, logger *slog.Logger) error {
	addrs := strings.Split(f.join, ",")
	req := &clusterv1.AddVoterRequest{Id: f.id, RaftAddress: f.raftAddr, GrpcAddress: f.grpcAddr, HttpAddress: f.httpAddr}
	for attempt := 0; ; attempt++ {
		addr := strings.TrimSpace(addrs[attempt%len(addrs)])
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = clusterv1.NewClusterClient(conn).AddVoter(cctx, req)
			cancel()
			conn.Close()
			if err == nil {
				logger.Info("joined cluster", "via", addr)
				return nil
			}
		}
		logger.Warn("join failed; retrying", "via", addr, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// restoreWhenLeader installs a backup once this single-peer cluster has elected
// itself.
func restoreWhenLeader(ctx context.Context, p *peer.Peer, path string, logger *slog.Logger) error {
	for !p.IsLeader() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := p.RestoreBackup(ctx, path); err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	logger.Info("restored backup", "file", path)
	return nil
}

func parseBootstrap(s string) ([]peer.Server, error) {
	var out []peer.Server
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--bootstrap: %q is not id=raftaddr", part)
		}
		out = append(out, peer.Server{ID: id, RaftAddr: addr})
	}
	return out, nil
}

func parseRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not MIN-MAX", s)
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not MIN-MAX", s)
	}
	return a, b, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

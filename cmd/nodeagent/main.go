// Command nodeagent runs a Rafter node: it registers the Node, renews its Lease,
// runs the pods bound to it and reports their status. For now only --hollow mode
// exists: N simulated nodes in one process, with no containers (see
// internal/agent/hollow).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rafter-dev/rafter/internal/agent/hollow"
)

// errNotHollow is returned when --hollow is not given.
var errNotHollow = errors.New("only --hollow mode is implemented yet")

type flags struct {
	servers  []string
	logLevel slog.Level
	hollow   hollow.Config
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	f, err := parseFlags(os.Args[1:], os.Stderr)
	if err == nil {
		err = run(ctx, f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeagent:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, output io.Writer) (flags, error) {
	def := hollow.DefaultConfig()
	var (
		f                 flags
		count             int
		servers, logLevel string
		nodeCIDR, podCIDR string
	)
	c := &f.hollow
	*c = def
	fs := flag.NewFlagSet("nodeagent", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&count, "hollow", 0, "run this many hollow (simulated) nodes, which start no containers")
	fs.StringVar(&c.Prefix, "name", def.Prefix, "node name; with --hollow, the prefix of PREFIX-0..PREFIX-(N-1)")
	fs.StringVar(&servers, "server", "127.0.0.1:7441,127.0.0.1:7442,127.0.0.1:7443", "gRPC addresses of control-plane peers, comma-separated; any reachable one will do")
	fs.StringVar(&c.CPU, "hollow-cpu", def.CPU, "CPU capacity of each hollow node (a Kubernetes quantity)")
	fs.StringVar(&c.Memory, "hollow-memory", def.Memory, "memory capacity of each hollow node (a Kubernetes quantity)")
	fs.StringVar(&c.Pods, "hollow-pods", def.Pods, "pod capacity of each hollow node")
	fs.DurationVar(&c.StartDelay, "hollow-start-delay", def.StartDelay, "how long a pod bound to a hollow node takes to start")
	fs.DurationVar(&c.LeaseInterval, "hollow-lease-interval", def.LeaseInterval, "how often each hollow node renews its Lease (less up to 20% jitter)")
	fs.DurationVar(&c.LeaseDuration, "hollow-lease-duration", def.LeaseDuration, "leaseDurationSeconds the hollow nodes declare")
	fs.DurationVar(&c.StatusInterval, "hollow-status-interval", def.StatusInterval, "how often each hollow node posts its status when nothing changed")
	fs.StringVar(&nodeCIDR, "hollow-node-cidr", def.NodeCIDR.String(), "range of the hollow nodes' fake InternalIPs (disjoint per nodeagent process)")
	fs.StringVar(&podCIDR, "hollow-pod-cidr", "", "assign each hollow node a podCIDR from this range when it has none (default: wait for the podCIDR controller)")
	fs.IntVar(&c.NodePodCIDRBits, "hollow-node-pod-cidr-size", def.NodePodCIDRBits, "prefix length of each self-assigned podCIDR")
	fs.IntVar(&c.Workers, "hollow-workers", def.Workers, "API calls in flight at once, for all hollow nodes")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() > 0 {
		return flags{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if count <= 0 {
		return flags{}, errNotHollow
	}
	c.Count = count
	if err := f.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return flags{}, fmt.Errorf("--log-level: %w", err)
	}
	var err error
	if c.NodeCIDR, err = netip.ParsePrefix(nodeCIDR); err != nil {
		return flags{}, fmt.Errorf("--hollow-node-cidr: %w", err)
	}
	if podCIDR != "" {
		if c.PodCIDR, err = netip.ParsePrefix(podCIDR); err != nil {
			return flags{}, fmt.Errorf("--hollow-pod-cidr: %w", err)
		}
	}
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			f.servers = append(f.servers, s)
		}
	}
	if len(f.servers) == 0 {
		return flags{}, errors.New("--server: no control-plane peers given")
	}
	if err := c.Validate(); err != nil {
		return flags{}, err
	}
	return f, nil
}

func run(ctx context.Context, f flags) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: f.logLevel}))
	var conns []grpc.ClientConnInterface
	for _, s := range f.servers {
		conn, err := grpc.NewClient(s, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return fmt.Errorf("connect to %s: %w", s, err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	cfg := f.hollow
	cfg.Logger = logger
	agent, err := hollow.New(cfg, conns...)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return agent.Run(ctx) })
	g.Go(func() error {
		select {
		case <-agent.Registered():
			logger.Info("hollow nodes registered", "count", cfg.Count, "prefix", cfg.Prefix)
		case <-ctx.Done():
		}
		return nil
	})
	logger.Info("starting hollow nodes", "count", cfg.Count, "prefix", cfg.Prefix, "servers", strings.Join(f.servers, ","))
	return g.Wait()
}

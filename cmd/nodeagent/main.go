// Command nodeagent runs a Rafter node: it registers the Node, renews its Lease,
// runs the pods bound to it with libcontainer and CNI, and reports their
// status (internal/agent/node). With --hollow=N it runs N simulated nodes in
// one process instead, with no containers (internal/agent/hollow).
//
// The binary is also its containers' shim and init: the runtime re-executes it
// as "nodeagent shim ..." and libcontainer as "nodeagent init".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rafter-dev/rafter/internal/agent/hollow"
	"github.com/rafter-dev/rafter/internal/agent/node"
	"github.com/rafter-dev/rafter/internal/agent/runtime"
	"github.com/rafter-dev/rafter/internal/cni"
)

type flags struct {
	servers  []string
	logLevel slog.Level
	hollow   hollow.Config
	real     bool
	node     node.Config
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			runtime.Init() // does not return
		case "shim":
			if err := runtime.RunShim(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "nodeagent shim:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
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
		f                           flags
		count                       int
		servers, logLevel           string
		nodeCIDR, podCIDR           string
		nodeIP, cniDirs, insecureRg string
		clusterDNS                  string
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
	fs.StringVar(&f.node.DataDir, "data-dir", "/var/lib/rafter/node", "where images, pod volumes, logs and network state live")
	fs.StringVar(&nodeIP, "node-ip", "", "the node's InternalIP (default: the address of the default route's interface)")
	fs.StringVar(&f.node.RuntimeRoot, "runtime-root", "", "container shim state and sockets (default /run/rafter/NAME); keep it short")
	fs.StringVar(&cniDirs, "cni-bin-dir", cni.DefaultPluginDir, "directories holding the CNI plugins (bridge, host-local, portmap), comma-separated")
	fs.StringVar(&f.node.Bridge, "bridge", cni.DefaultBridge, "the Linux bridge the node's pods attach to")
	fs.StringVar(&insecureRg, "insecure-registry", "", "registries (host[:port] or CIDR) that may be reached over plain HTTP, comma-separated")
	fs.StringVar(&clusterDNS, "cluster-dns", "", "cluster DNS server IPs for pods' resolv.conf, comma-separated (default: the host's resolv.conf)")
	fs.StringVar(&f.node.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	fs.DurationVar(&f.node.LeaseInterval, "lease-interval", 10*time.Second, "how often the node renews its Lease")
	fs.BoolVar(&f.node.ServiceProxy, "service-proxy", true, "program ClusterIP and NodePort rules (nftables table ip rafter-svc) for the cluster's Services")
	fs.IntVar(&f.node.AgentPort, "agent-port", 10250, "port on --node-ip where the API reaches this node for logs, exec and image loads (0: any free port)")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() > 0 {
		return flags{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := f.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return flags{}, fmt.Errorf("--log-level: %w", err)
	}
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			f.servers = append(f.servers, s)
		}
	}
	if len(f.servers) == 0 {
		return flags{}, errors.New("--server: no control-plane peers given")
	}
	if count <= 0 {
		name := c.Prefix
		if !flagSet(fs, "name") {
			// A kubelet is named after its host by default.
			host, err := os.Hostname()
			if err != nil {
				return flags{}, fmt.Errorf("--name not given and %w", err)
			}
			name = strings.ToLower(host)
		}
		return realFlags(f, name, nodeIP, cniDirs, insecureRg, clusterDNS)
	}
	c.Count = count
	var err error
	if c.NodeCIDR, err = netip.ParsePrefix(nodeCIDR); err != nil {
		return flags{}, fmt.Errorf("--hollow-node-cidr: %w", err)
	}
	if podCIDR != "" {
		if c.PodCIDR, err = netip.ParsePrefix(podCIDR); err != nil {
			return flags{}, fmt.Errorf("--hollow-pod-cidr: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return flags{}, err
	}
	return f, nil
}

// realFlags finishes the flags of a real node.
func realFlags(f flags, name, nodeIP, cniDirs, insecureRg, clusterDNS string) (flags, error) {
	f.real = true
	f.node.Name = name
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return flags{}, fmt.Errorf("--name %q: %s", name, strings.Join(errs, "; "))
	}
	if !filepath.IsAbs(f.node.DataDir) {
		return flags{}, fmt.Errorf("--data-dir %q must be an absolute path", f.node.DataDir)
	}
	if nodeIP == "" {
		ip, err := defaultRouteIP()
		if err != nil {
			return flags{}, fmt.Errorf("--node-ip not given and %w", err)
		}
		f.node.NodeIP = ip
	} else {
		ip, err := netip.ParseAddr(nodeIP)
		if err != nil {
			return flags{}, fmt.Errorf("--node-ip: %w", err)
		}
		f.node.NodeIP = ip
	}
	f.node.CNIPluginDirs = splitList(cniDirs)
	f.node.InsecureRegistries = splitList(insecureRg)
	for _, s := range splitList(clusterDNS) {
		if _, err := netip.ParseAddr(s); err != nil {
			return flags{}, fmt.Errorf("--cluster-dns %q: %w", s, err)
		}
		f.node.ClusterDNS = append(f.node.ClusterDNS, s)
	}
	if f.node.LeaseInterval <= 0 {
		return flags{}, errors.New("--lease-interval must be positive")
	}
	return f, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// defaultRouteIP is the source address the kernel picks towards the default
// route (no packet is sent: a UDP socket is only connected).
func defaultRouteIP() (netip.Addr, error) {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no default route: %w", err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr(), nil
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
	if f.real {
		cfg := f.node
		cfg.Logger = logger
		logger.Info("starting node", "name", cfg.Name, "nodeIP", cfg.NodeIP, "servers", strings.Join(f.servers, ","))
		return node.Run(ctx, cfg, conns...)
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

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

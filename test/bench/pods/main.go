// Command pods measures pod startup latency on one real node: 3 controlplane
// peers and one nodeagent (libcontainer, CNI, the image store) run on this
// machine, the podapp image (internal/testimage) is served from a registry on
// 127.0.0.1 and cached on the node, and a burst of bare Pods is created by a
// few concurrent clients. For each pod it reports the time from just before
// its Create call is issued until a watch shows it Running (p50, p99, max and
// the wall time of the burst), with the stages seen in the same watch, beside
// the time `runc run -d` takes to start the same root filesystem, and the
// ratio. Kubernetes' SLO is p99 <= 5 s; Rafter's target is p99 <= 1 s. A missed
// target is printed, never an error. Run it as root with `make bench-pods`.
//
// The command runs in two processes. The first builds what needs the network
// (the podapp binary, the CNI plugins, Debian's runc when missing), then runs
// itself again in a new network namespace, where everything else happens: the
// node's bridge, veths and nftables rules live and die with that namespace,
// so the bench neither meets nor leaves behind the e2e tests' rafter0 bridge.
// Everything else it makes (pods, containers and their shims, pod netns,
// cgroups, mounts, directories) it removes, and checks that it did.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// config is the command line.
type config struct {
	controlplane, nodeagent string
	pods                    int           // pods in the burst
	clients                 int           // concurrent Create (and Delete) calls
	serial                  int           // pods started one at a time before the burst
	rate                    float64       // pods per second of the paced run (0: none)
	runcRuns                int           // sequential `runc run -d`
	clusterCIDR             string        // --cluster-cidr of the peers
	cpuRequest              string        // each pod's requests.cpu
	timeout                 time.Duration // the whole run
	agentLogLevel           string
	logDir                  string // keep the peers' and the agent's logs here
	target                  time.Duration
	perf                    string // perf record -a -g of the burst into this file
	times                   string // each burst pod's times, as CSV, into this file

	// Set by the first process for the second (in the new netns).
	child   bool
	workDir string
	podapp  string
	cniDir  string
	runc    string
}

// Where the node keeps its shims and runc its state: short (unix sockets),
// and apart from `make run`'s and the e2e tests' nodes.
const (
	runtimeParent = "/run/rafter-bench"
	nodeName      = "bench-node"
)

func main() {
	var c config
	flag.StringVar(&c.controlplane, "controlplane", "bin/controlplane", "controlplane binary")
	flag.StringVar(&c.nodeagent, "nodeagent", "bin/nodeagent", "nodeagent binary")
	flag.IntVar(&c.pods, "pods", 100, "pods created in the burst")
	flag.IntVar(&c.clients, "clients", 4, "concurrent API calls creating (and deleting) the burst's pods")
	flag.Float64Var(&c.rate, "rate", 10, "also create the pods at this steady rate per second before the burst, as Kubernetes measures its pod-startup SLO (0: skip)")
	flag.IntVar(&c.serial, "serial", 10, "pods started one at a time, each alone on the node, before the burst (0: none)")
	flag.IntVar(&c.runcRuns, "runc-runs", 100, "sequential `runc run -d` of the same rootfs")
	flag.StringVar(&c.clusterCIDR, "cluster-cidr", "10.252.0.0/16", "the peers' --cluster-cidr (private; apart from the e2e tests' 10.251.0.0/16)")
	flag.StringVar(&c.cpuRequest, "cpu-request", "10m", "requests.cpu of each pod (the node's capacity is the host's cpus and 110 pods)")
	flag.DurationVar(&c.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.StringVar(&c.agentLogLevel, "agent-log-level", "debug", "the nodeagent's --log-level (at debug it logs when each container's shim is ready, which splits the node's stage)")
	flag.StringVar(&c.logDir, "log-dir", "", "keep the peers' and the nodeagent's logs in this directory (default: thrown away)")
	flag.DurationVar(&c.target, "target", time.Second, "the p99 target printed beside the result")
	flag.StringVar(&c.perf, "perf", "", "record the whole machine with `perf record -a -g` during the burst into this file (then: perf report -i FILE --sort comm)")
	flag.StringVar(&c.times, "times", "", "write each burst pod's times (issued, created, bound, shim ready, started, seen Running; Unix ns) as CSV to this file")
	flag.BoolVar(&c.child, "in-netns", false, "internal: this is the second process, in its own network namespace")
	flag.StringVar(&c.workDir, "work-dir", "", "internal: the first process's scratch directory")
	flag.StringVar(&c.podapp, "podapp", "", "internal: the podapp binary")
	flag.StringVar(&c.cniDir, "cni-dir", "", "internal: the CNI plugins")
	flag.StringVar(&c.runc, "runc", "", "internal: the runc binary")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail(errors.New("must run as root (real containers, CNI, cgroups)"))
	}
	if c.pods < 1 || c.clients < 1 || c.serial < 0 || c.runcRuns < 1 {
		fail(errors.New("--pods, --clients and --runc-runs must be positive, --serial not negative"))
	}
	if c.logDir != "" {
		abs, err := filepath.Abs(c.logDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fail(fmt.Errorf("--log-dir: %w", err))
		}
		c.logDir = abs
	}
	for _, p := range []*string{&c.perf, &c.times} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				fail(err)
			}
			*p = abs
		}
	}
	if c.child {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := runChild(ctx, c)
		stop()
		if err != nil {
			fail(err)
		}
		return
	}
	if err := runParent(c); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-pods:", err)
	os.Exit(1)
}

// runChild is the bench proper, in its own network namespace.
func runChild(ctx context.Context, c config) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bring lo up in the bench's network namespace: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	rafter, err := benchRafter(ctx, c)
	if err != nil {
		return err
	}
	runc, err := benchRunc(ctx, c)
	if err != nil {
		return err
	}
	printSummary(c, rafter, runc)
	return nil
}

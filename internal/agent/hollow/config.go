package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Clock tells the time and makes timers. It drives everything the simulated
// nodes schedule: lease renewals, status heartbeats, pod start delays and retries
// after failed calls. Tests inject a fake one and advance it.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed. The
	// channel must have room for that one value: nobody may be reading it.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the system clock.
var RealClock Clock = realClock{}

// Config configures a set of hollow nodes run by one Agent.
type Config struct {
	// Prefix names the nodes: Prefix-0 .. Prefix-(Count-1).
	Prefix string
	Count  int
	// CPU, Memory and Pods are Kubernetes quantities ("4", "16Gi", "110") that
	// every node reports as its capacity and allocatable.
	CPU, Memory, Pods string
	// Labels are added to the kubelet's own labels (kubernetes.io/hostname, os,
	// arch) on every node.
	Labels map[string]string
	// NodeCIDR is where the nodes' fake InternalIPs come from: node i gets the
	// (i+1)th address. Nothing is ever sent to them. Agents in different
	// processes need disjoint ranges to keep the addresses unique.
	NodeCIDR netip.Prefix
	// PodCIDR, when valid, makes the nodes assign their own spec.podCIDR (node i
	// takes the i-th subnet of size NodePodCIDRBits) when it is empty, for clusters
	// without a podCIDR controller. When not valid, nodes wait for a controller to
	// set spec.podCIDR before they start pods that need an IP.
	PodCIDR         netip.Prefix
	NodePodCIDRBits int
	// StartDelay is how long a pod bound to a node waits before it is reported
	// running, standing in for image pulls and container starts.
	StartDelay time.Duration
	// LeaseInterval is how often a node renews its Lease (less up to 20% jitter);
	// LeaseDuration is the leaseDurationSeconds it declares.
	LeaseInterval, LeaseDuration time.Duration
	// StatusInterval is how often a node posts its status when nothing changed
	// (less up to 20% jitter).
	StatusInterval time.Duration
	// RetryInterval is the wait before a failed call is tried again.
	RetryInterval time.Duration
	// CallTimeout bounds each API call; a peer that does not answer in time is
	// failed over from.
	CallTimeout time.Duration
	// Workers is how many API calls may be in flight at once, for all nodes.
	Workers int
	// ExactName makes the single node (Count 1) be named Prefix itself, as a
	// real node agent's --name.
	ExactName bool
	// Address, when valid, is the InternalIP of the single node instead of one
	// from NodeCIDR (a real node's own address).
	Address netip.Addr
	// NodeInfo, when set, replaces the hollow node's system info.
	NodeInfo *corev1.NodeSystemInfo
	// KubeletPort is the port the nodes report in
	// status.daemonEndpoints.kubeletEndpoint, where the API reaches a node's
	// agent for logs, exec and image loads (a real node serves it; hollow
	// nodes only report it).
	KubeletPort int
	// Runner, when set, runs the pods for real: the agent keeps registration,
	// Leases and node status, and hands every pod bound to its node to Runner
	// instead of reporting it running itself. A pod that disappears from the
	// API arrives once more with a deletionTimestamp. After the first full
	// list, Sweep is told which pods exist so it can remove what is left of
	// others.
	Runner PodRunner
	Clock  Clock
	Logger *slog.Logger
}

// PodRunner runs pods for a real node (internal/agent.Pods).
type PodRunner interface {
	Update(pod *corev1.Pod)
	Sweep(ctx context.Context, keep map[string]bool) error
}

// DefaultConfig returns the kubelet's defaults (lease every 10s for 40s, status
// every minute) and a kubemark-sized node: 4 CPUs, 16Gi, 110 pods.
func DefaultConfig() Config {
	return Config{
		Prefix: "hollow", Count: 1,
		CPU: "4", Memory: "16Gi", Pods: "110",
		NodeCIDR:        netip.MustParsePrefix("10.200.0.0/16"),
		NodePodCIDRBits: 24,
		KubeletPort:     10250,
		LeaseInterval:   10 * time.Second,
		LeaseDuration:   40 * time.Second,
		StatusInterval:  time.Minute,
		RetryInterval:   time.Second,
		CallTimeout:     10 * time.Second,
		Workers:         32,
		Clock:           RealClock,
		Logger:          slog.Default(),
	}
}

// Validate checks the fields against each other.
func (c Config) Validate() error {
	var errs []error
	if c.Count < 1 {
		errs = append(errs, fmt.Errorf("node count must be at least 1, got %d", c.Count))
	} else if (c.ExactName || c.Address.IsValid()) && c.Count != 1 {
		errs = append(errs, errors.New("an exact name or address needs exactly one node"))
	} else {
		last := c.nodeName(c.Count - 1)
		for _, msg := range validation.IsDNS1123Subdomain(last) {
			errs = append(errs, fmt.Errorf("node name %q: %s", last, msg))
		}
	}
	for name, q := range map[string]string{"cpu": c.CPU, "memory": c.Memory, "pods": c.Pods} {
		v, err := resource.ParseQuantity(q)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, q, err))
		} else if v.Sign() <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, q))
		}
	}
	if !c.NodeCIDR.IsValid() {
		errs = append(errs, errors.New("node CIDR is required"))
	} else if hosts := hostCount(c.NodeCIDR); hosts.Cmp(big.NewInt(int64(c.Count))) < 0 {
		errs = append(errs, fmt.Errorf("node CIDR %s has %s host addresses, fewer than %d nodes", c.NodeCIDR, hosts, c.Count))
	}
	if c.PodCIDR.IsValid() {
		bits := c.PodCIDR.Addr().BitLen()
		switch {
		case c.NodePodCIDRBits < c.PodCIDR.Bits() || c.NodePodCIDRBits > bits-2:
			errs = append(errs, fmt.Errorf("node podCIDR size /%d must lie between /%d and /%d", c.NodePodCIDRBits, c.PodCIDR.Bits(), bits-2))
		case c.NodePodCIDRBits-c.PodCIDR.Bits() < 63 && 1<<(c.NodePodCIDRBits-c.PodCIDR.Bits()) < c.Count:
			errs = append(errs, fmt.Errorf("pod CIDR %s holds %d /%d subnets, fewer than %d nodes", c.PodCIDR, 1<<(c.NodePodCIDRBits-c.PodCIDR.Bits()), c.NodePodCIDRBits, c.Count))
		}
	}
	if c.KubeletPort < 1 || c.KubeletPort > 65535 {
		errs = append(errs, fmt.Errorf("kubelet port %d is not a valid port", c.KubeletPort))
	}
	if c.StartDelay < 0 {
		errs = append(errs, fmt.Errorf("start delay must not be negative, got %s", c.StartDelay))
	}
	if c.LeaseInterval <= 0 || c.StatusInterval <= 0 || c.RetryInterval <= 0 || c.CallTimeout <= 0 {
		errs = append(errs, errors.New("lease, status and retry intervals and the call timeout must be positive"))
	}
	if c.LeaseDuration < 2*c.LeaseInterval || c.LeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("lease duration %s must be whole seconds and at least twice the lease interval %s", c.LeaseDuration, c.LeaseInterval))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers must be at least 1, got %d", c.Workers))
	}
	if c.Clock == nil || c.Logger == nil {
		errs = append(errs, errors.New("clock and logger are required"))
	}
	return errors.Join(errs...)
}

// NodeName is the name of the i-th node of prefix.
func NodeName(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// nodeName is the name of node i.
func (c Config) nodeName(i int) string {
	if c.ExactName {
		return c.Prefix
	}
	return NodeName(c.Prefix, i)
}

// nodeAddress is node i's InternalIP: Address, or a fake one from NodeCIDR.
func (c Config) nodeAddress(i int) netip.Addr {
	if c.Address.IsValid() {
		return c.Address
	}
	return addrAdd(c.NodeCIDR.Masked().Addr(), big.NewInt(int64(i)+1))
}

// selfPodCIDR is the podCIDR node i assigns itself, or an invalid prefix when
// the nodes wait for a controller.
func (c Config) selfPodCIDR(i int) netip.Prefix {
	if !c.PodCIDR.IsValid() {
		return netip.Prefix{}
	}
	step := new(big.Int).Lsh(big.NewInt(int64(i)), uint(c.PodCIDR.Addr().BitLen()-c.NodePodCIDRBits))
	return netip.PrefixFrom(addrAdd(c.PodCIDR.Masked().Addr(), step), c.NodePodCIDRBits)
}

// hostCount is how many host addresses p holds (IPv4 leaves out the network and
// broadcast addresses).
func hostCount(p netip.Prefix) *big.Int {
	n := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
	if p.Addr().Is4() {
		return n.Sub(n, big.NewInt(2))
	}
	return n.Sub(n, big.NewInt(1))
}

// addrAdd returns a+n; the caller keeps it inside the address family.
func addrAdd(a netip.Addr, n *big.Int) netip.Addr {
	v := new(big.Int).SetBytes(a.AsSlice())
	v.Add(v, n)
	b := make([]byte, a.BitLen()/8)
	v.FillBytes(b)
	out, _ := netip.AddrFromSlice(b)
	return out
}

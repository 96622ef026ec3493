package cni_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rafter-dev/rafter/internal/cni"
	"github.com/rafter-dev/rafter/internal/cni/cnitest"
)

// pluginDir holds the plugins the package runs (bridge, host-local,
// portmap), linked from the ones TestMain built; no loopback, so every root
// test shows lo comes up without it. Empty when not root.
var pluginDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	built, err := cnitest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build CNI plugins:", err)
		os.Exit(1)
	}
	if pluginDir, err = os.MkdirTemp("", "rafter-cni-test-plugins-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if err := os.Symlink(filepath.Join(built, p), filepath.Join(pluginDir, p)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(pluginDir)
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, bridges and nftables")
	}
}

// TestPodNetworking runs two pods on a node whose "root" netns is a netns
// the test makes (Config.HostNetns), so the bridge, the NAT rules and all
// traffic stay inside namespaces the test owns, whatever the machine's own
// firewall does.
func TestPodNetworking(t *testing.T) {
	requireRoot(t)
	testPods(t, podTest{
		isolated: true,
		cidr:     netip.MustParsePrefix("10.250.1.0/24"),
		bridge:   "rft1",
	})
}

// TestAddFailureUndone makes portmap fail after bridge and host-local have
// done their part: Add must undo them, leaving no IP, veth or rule.
func TestAddFailureUndone(t *testing.T) {
	requireRoot(t)
	failing := t.TempDir()
	script := `#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
	echo '{"cniVersion":"1.0.0","code":999,"msg":"injected portmap failure"}'
	exit 1
fi
exec "$REAL_PORTMAP"
`
	if err := os.WriteFile(filepath.Join(failing, "portmap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REAL_PORTMAP", filepath.Join(pluginDir, "portmap"))
	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.3.0/24"), bridge: "rft3"}
	n, host := newNode(t, tc, failing)
	path, err := n.NewNetns("pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mustDeleteNetns(t, n, "pod") })
	ref := cni.PodRef{Namespace: "default", Name: "f", UID: "uid-f"}
	ports := []cni.PortMapping{{HostPort: 30090, ContainerPort: containerPort}}
	_, err = n.Add(context.Background(), ref, path, ports)
	var cniErr *cnitypes.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 999 || cniErr.Msg != "injected portmap failure" {
		t.Fatalf("Add = %v, want the injected *types.Error", err)
	}
	if got := allocated(t, n); len(got) != 0 {
		t.Errorf("Allocated after failed Add = %v, want none", got)
	}
	if got := bridgePorts(t, host, tc.bridge); got != 0 {
		t.Errorf("bridge has %d ports after failed Add, want 0", got)
	}
	if got := natRules(t, host, ref.UID); got != (ruleCount{}) {
		t.Errorf("%+v nftables rules after failed Add, want none", got)
	}
	withNetlink(t, path, func(h *netlink.Handle) {
		if _, err := h.LinkByName(cni.PodInterface); err == nil {
			t.Errorf("pod still has %s after failed Add", cni.PodInterface)
		}
	})
}

// TestRestartAndGC: after a reboot NetnsDir is empty but DataDir (the
// cache, host-local's files) is not. Add through a fresh netns at the same
// path must attach anew, not trust the cache; GC must release pods that are
// gone, including an allocation an interrupted Add left without a cache entry.
func TestRestartAndGC(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.4.0/24"), bridge: "rft4"}
	n, host := newNode(t, tc)
	a := &pod{ref: cni.PodRef{Namespace: "default", Name: "a", UID: "uid-gc-a"}, name: "pod-a"}
	b := &pod{ref: cni.PodRef{Namespace: "default", Name: "b", UID: "uid-gc-b"}, name: "pod-b",
		ports: []cni.PortMapping{{HostPort: 30100, ContainerPort: containerPort}}}
	addPods(ctx, t, n, a, b)

	// "Reboot" a: its netns is replaced by a fresh one at the same path.
	mustDeleteNetns(t, n, a.name)
	if _, err := n.NewNetns(a.name); err != nil {
		t.Fatal(err)
	}
	res, err := n.Add(ctx, a.ref, a.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.res = res
	checkPodNetns(t, a, tc.cidr.Bits(), tc.cidr.Addr().Next())
	if got := allocated(t, n); len(got) != 2 || got[a.res.IP] != a.ref.UID || got[b.res.IP] != b.ref.UID {
		t.Fatalf("Allocated after re-Add = %v, want one address each for a and b", got)
	}
	if got := natRules(t, host, a.ref.UID); got != (ruleCount{}) {
		t.Fatalf("pod a: %+v rules after re-Add without ports, want none", got)
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after re-Add, want 1", got)
	}
	a.lis = listenIn(t, a.path, fmt.Sprintf(":%d", containerPort), "hello from a")
	requireRoutedVia(t, host, a.res.IP, tc.bridge)
	expectGreeting(t, host, netip.AddrPortFrom(a.res.IP, containerPort), "hello from a")

	// An allocation without a cache entry, as an Add interrupted between
	// host-local and libcni's cache write leaves it.
	ghost := tc.cidr.Addr().Next().Next().Next().Next().Next() // .5
	ghostFile := filepath.Join(n.Config().DataDir, "ipam", cni.NetworkName, ghost.String())
	if err := os.WriteFile(ghostFile, []byte("uid-ghost\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := n.GC(ctx, map[string]bool{a.ref.UID: true}); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, n); len(got) != 1 || got[a.res.IP] != a.ref.UID {
		t.Fatalf("Allocated after GC(a) = %v, want only a's %s", got, a.res.IP)
	}
	if got := natRules(t, host, b.ref.UID); got != (ruleCount{}) {
		t.Errorf("pod b: %+v rules after GC, want none", got)
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Errorf("%d node masquerade rules after GC kept pod a, want 1", got)
	}
	expectGreeting(t, host, netip.AddrPortFrom(a.res.IP, containerPort), "hello from a")

	if err := n.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := allocated(t, n); len(got) != 0 {
		t.Fatalf("Allocated after GC(none) = %v, want none", got)
	}
	if got := natRules(t, host, a.ref.UID); got != (ruleCount{}) {
		t.Errorf("pod a: %+v rules after GC, want none", got)
	}
}

// TestConcurrentPods attaches and detaches pods from parallel goroutines,
// as the agent's per-pod goroutines do.
func TestConcurrentPods(t *testing.T) {
	requireRoot(t)
	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.5.0/24"), bridge: "rft5"}
	n, host := newNode(t, tc)
	const pods = 6
	ips := make([]netip.Addr, pods)
	errs := make(chan error, pods)
	for i := range pods {
		ref := cni.PodRef{Namespace: "default", Name: fmt.Sprintf("p%d", i), UID: fmt.Sprintf("uid-c-%d", i)}
		t.Cleanup(func() {
			if err := n.Del(context.Background(), ref, n.NetnsPath(ref.Name)); err != nil {
				t.Error(err)
			}
			mustDeleteNetns(t, n, ref.Name)
		})
		go func() {
			path, err := n.NewNetns(ref.Name)
			if err != nil {
				errs <- err
				return
			}
			res, err := n.Add(context.Background(), ref, path, []cni.PortMapping{{HostPort: uint16(30200 + i), ContainerPort: containerPort}})
			ips[i] = res.IP
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		if seen[ip] || !tc.cidr.Contains(ip) {
			t.Fatalf("addresses %v: want %d distinct ones in %s", ips, pods, tc.cidr)
		}
		seen[ip] = true
	}
	if got := len(allocated(t, n)); got != pods {
		t.Fatalf("%d allocations, want %d", got, pods)
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after %d concurrent Adds, want 1", got, pods)
	}
	for i := range pods {
		go func() {
			ref := cni.PodRef{Namespace: "default", Name: fmt.Sprintf("p%d", i), UID: fmt.Sprintf("uid-c-%d", i)}
			err := n.Del(context.Background(), ref, n.NetnsPath(ref.Name))
			errs <- errors.Join(err, n.DeleteNetns(ref.Name))
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := allocated(t, n); len(got) != 0 {
		t.Fatalf("Allocated after Del = %v, want none", got)
	}
	if got := bridgePorts(t, host, tc.bridge); got != 0 {
		t.Fatalf("bridge has %d ports after Del, want 0", got)
	}
}

// TestRootNetns runs the same pods with the bridge and rules in the
// machine's root netns, as the node agent does.
func TestRootNetns(t *testing.T) {
	requireRoot(t)
	testPods(t, podTest{
		cidr:   netip.MustParsePrefix("10.250.2.0/24"),
		bridge: fmt.Sprintf("rft2-%d", os.Getpid()%100000),
	})
}

type podTest struct {
	isolated bool // host = a netns of the test's; else the root netns
	cidr     netip.Prefix
	bridge   string
}

type pod struct {
	ref   cni.PodRef
	name  string // netns name
	path  string // netns path
	res   cni.Result
	lis   net.Listener
	ports []cni.PortMapping
}

const containerPort = 8080

// newNode makes a Network whose host is a fresh netns with lo up (isolated)
// or the root netns, and returns it with the host netns path ("" for root).
// pluginDirs come before the built plugins.
func newNode(t testing.TB, tc podTest, pluginDirs ...string) (n *cni.Network, host string) {
	t.Helper()
	netnsDir := t.TempDir() // removed last: fails on a leaked bind mount
	cfg := cni.Config{
		PluginDirs: append(pluginDirs, pluginDir),
		NetnsDir:   netnsDir,
		Bridge:     tc.bridge,
		PodCIDR:    tc.cidr,
		DataDir:    t.TempDir(),
	}
	if tc.isolated {
		cfg.HostNetns = filepath.Join(netnsDir, "host")
	} else {
		requireRootFree(t, tc.cidr, tc.bridge)
		t.Cleanup(func() { deleteLink(t, tc.bridge) })
	}
	n, err := cni.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.isolated {
		if _, err := n.NewNetns("host"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mustDeleteNetns(t, n, "host") })
		withNetlink(t, cfg.HostNetns, func(h *netlink.Handle) {
			lo, err := h.LinkByName("lo")
			if err == nil {
				err = h.LinkSetUp(lo)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// Runs after the pods' cleanups (registered later) and before the host
	// netns goes: the node-wide rule is the one thing Del leaves.
	t.Cleanup(func() {
		if err := n.RemoveNodeRules(); err != nil {
			t.Error(err)
		}
		if got := nodeMasqRules(t, cfg.HostNetns, tc.bridge); got != -1 {
			t.Errorf("the bridge's masquerade chain is left after RemoveNodeRules, with %d rules", got)
		}
	})
	return n, cfg.HostNetns
}

func testPods(t *testing.T, tc podTest) {
	ctx := context.Background()
	n, host := newNode(t, tc)
	cfg := n.Config()
	gateway := tc.cidr.Addr().Next()
	var err error

	// Mappings: pod a on 127.0.0.1 only, pod b on the gateway (in the
	// isolated host: on every local address). In the root netns the ports
	// are picked free and bound to one address each, so the rules cannot
	// catch anybody else's traffic.
	a := &pod{ref: cni.PodRef{Namespace: "default", Name: "a", UID: fmt.Sprintf("uid-a-%d", os.Getpid())}, name: "pod-a"}
	b := &pod{ref: cni.PodRef{Namespace: "default", Name: "b", UID: fmt.Sprintf("uid-b-%d", os.Getpid())}, name: "pod-b"}
	loopback := netip.MustParseAddr("127.0.0.1")
	if tc.isolated {
		a.ports = []cni.PortMapping{{HostPort: 30080, ContainerPort: containerPort, HostIP: loopback}}
		b.ports = []cni.PortMapping{{HostPort: 30081, ContainerPort: containerPort, Protocol: cni.ProtocolTCP}}
	} else {
		a.ports = []cni.PortMapping{{HostPort: freePort(t), ContainerPort: containerPort, HostIP: loopback}}
		b.ports = []cni.PortMapping{{HostPort: freePort(t), ContainerPort: containerPort, HostIP: gateway}}
	}

	for _, p := range []*pod{a, b} {
		p.path, err = n.NewNetns(p.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// A safety net for a test that failed half-way; both are idempotent.
			if err := n.Del(context.Background(), p.ref, p.path); err != nil {
				t.Error(err)
			}
			mustDeleteNetns(t, n, p.name)
		})
		again, err := n.NewNetns(p.name)
		if err != nil || again != p.path {
			t.Fatalf("NewNetns again = %q, %v; want %q", again, err, p.path)
		}
		if got := nsfsMounts(t, p.path); got != 1 {
			t.Fatalf("%s mounted %d times, want once", p.path, got)
		}
		p.res, err = n.Add(ctx, p.ref, p.path, p.ports)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod %s: %+v", p.ref, p.res)
	}

	// Addresses: distinct, in PodCIDR, gateway first address, on eth0; lo up.
	if a.res.IP == b.res.IP {
		t.Fatalf("both pods got %s", a.res.IP)
	}
	for _, p := range []*pod{a, b} {
		if !tc.cidr.Contains(p.res.IP) || p.res.IP == gateway || p.res.IP == tc.cidr.Addr() {
			t.Errorf("pod %s IP %s: want a host address of %s other than the gateway", p.ref, p.res.IP, tc.cidr)
		}
		if p.res.Gateway != gateway || p.res.Interface != cni.PodInterface {
			t.Errorf("pod %s: gateway %s interface %q, want %s %q", p.ref, p.res.Gateway, p.res.Interface, gateway, cni.PodInterface)
		}
		checkPodNetns(t, p, tc.cidr.Bits(), gateway)
	}
	alloc := allocated(t, n)
	if len(alloc) != 2 || alloc[a.res.IP] != a.ref.UID || alloc[b.res.IP] != b.ref.UID {
		t.Fatalf("Allocated() = %v, want %s->%s and %s->%s", alloc, a.res.IP, a.ref.UID, b.res.IP, b.ref.UID)
	}

	// Add again through the same netns returns the same result and
	// allocates nothing; through another netns it is refused.
	if again, err := n.Add(ctx, a.ref, a.path, a.ports); err != nil || again != a.res {
		t.Fatalf("Add again = %+v, %v; want %+v", again, err, a.res)
	}
	if _, err := n.Add(ctx, a.ref, b.path, nil); !errors.Is(err, cni.ErrAttached) {
		t.Fatalf("Add through another netns: %v, want ErrAttached", err)
	}
	if got := len(allocated(t, n)); got != 2 {
		t.Fatalf("%d allocations after repeated Add, want 2", got)
	}

	for _, p := range []*pod{a, b} {
		p.lis = listenIn(t, p.path, fmt.Sprintf(":%d", containerPort), "hello from "+p.ref.Name)
		requireRoutedVia(t, host, p.res.IP, tc.bridge)
	}

	// Host to pod, straight to the pod IP.
	for _, p := range []*pod{a, b} {
		expectGreeting(t, host, netip.AddrPortFrom(p.res.IP, containerPort), "hello from "+p.ref.Name)
	}

	// Pod to pod across the bridge.
	if !tc.isolated && rootDropsForwarded(t) {
		t.Log("pod to pod not checked in the root netns: its firewall drops forwarded " +
			"packets (Docker's FORWARD policy) and br_netfilter makes bridged frames cross " +
			"that hook; TestPodNetworking checks it in an isolated host netns")
	} else {
		expectGreeting(t, a.path, netip.AddrPortFrom(b.res.IP, containerPort), "hello from b")
		expectGreeting(t, b.path, netip.AddrPortFrom(a.res.IP, containerPort), "hello from a")
	}

	// hostPorts, from the host netns.
	expectGreeting(t, host, netip.AddrPortFrom(loopback, a.ports[0].HostPort), "hello from a")
	expectGreeting(t, host, netip.AddrPortFrom(gateway, b.ports[0].HostPort), "hello from b")
	if tc.isolated {
		// No HostIP: every local address, 127.0.0.1 included.
		expectGreeting(t, host, netip.AddrPortFrom(loopback, b.ports[0].HostPort), "hello from b")
	}
	// a's mapping is bound to 127.0.0.1: the gateway address has no such
	// port, so nothing answers there.
	expectRefused(t, host, netip.AddrPortFrom(gateway, a.ports[0].HostPort))

	for _, p := range []*pod{a, b} {
		if got := natRules(t, host, p.ref.UID); got.masq != 0 || got.hostport == 0 {
			t.Fatalf("pod %s: %+v nftables rules, want hostport rules and no per-pod masquerade rule", p.ref, got)
		}
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules for two pods, want 1", got)
	}

	// Del releases the IP, removes the veth and the pod's rules; twice is fine.
	for range 2 {
		if err := n.Del(ctx, a.ref, a.path); err != nil {
			t.Fatal(err)
		}
	}
	if got := allocated(t, n); len(got) != 1 || got[b.res.IP] != b.ref.UID {
		t.Fatalf("after Del(a) Allocated() = %v, want only %s", got, b.res.IP)
	}
	withNetlink(t, a.path, func(h *netlink.Handle) {
		if _, err := h.LinkByName(cni.PodInterface); err == nil {
			t.Errorf("pod a still has %s after Del", cni.PodInterface)
		}
	})
	if got := bridgePorts(t, host, tc.bridge); got != 1 {
		t.Errorf("bridge has %d ports after Del(a), want 1", got)
	}
	if got := natRules(t, host, a.ref.UID); got != (ruleCount{}) {
		t.Errorf("pod a: %+v nftables rules left after Del", got)
	}

	// Del after the netns is gone still releases everything.
	b.lis.Close() // its socket would keep the netns alive
	mustDeleteNetns(t, n, b.name)
	if _, err := os.Stat(b.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("netns b still at %s: %v", b.path, err)
	}
	for range 2 {
		if err := n.Del(ctx, b.ref, b.path); err != nil {
			t.Fatal(err)
		}
	}
	if got := allocated(t, n); len(got) != 0 {
		t.Fatalf("after Del(b) Allocated() = %v, want none", got)
	}
	if got := natRules(t, host, b.ref.UID); got != (ruleCount{}) {
		t.Errorf("pod b: %+v nftables rules left after Del", got)
	}
	// b's veth goes when the kernel frees its netns, asynchronously (one
	// cleanup worker for every namespace being removed on the machine).
	waitFor(t, 30*time.Second, "no ports on the bridge", func() bool { return bridgePorts(t, host, tc.bridge) == 0 })

	a.lis.Close()
	mustDeleteNetns(t, n, a.name)
	mustDeleteNetns(t, n, a.name)
	for _, p := range []*pod{a, b} {
		if got := nsfsMounts(t, p.path); got != 0 {
			t.Errorf("%s still mounted %d times", p.path, got)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(cfg.DataDir, "cache", "results")); err != nil || len(ents) != 0 {
		t.Errorf("libcni cache after Del: %v, %v; want empty", ents, err)
	}
}

// addPods gives each pod a netns and adds it to the network; the test's
// cleanup deletes it and its netns.
func addPods(ctx context.Context, t *testing.T, n *cni.Network, pods ...*pod) {
	t.Helper()
	for _, p := range pods {
		var err error
		if p.path, err = n.NewNetns(p.name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Del(context.Background(), p.ref, p.path); err != nil {
				t.Error(err)
			}
			mustDeleteNetns(t, n, p.name)
		})
		if p.res, err = n.Add(ctx, p.ref, p.path, p.ports); err != nil {
			t.Fatal(err)
		}
	}
}

func mustDeleteNetns(t testing.TB, n *cni.Network, name string) {
	t.Helper()
	if err := n.DeleteNetns(name); err != nil {
		t.Error(err)
	}
}

func allocated(t *testing.T, n *cni.Network) map[netip.Addr]string {
	t.Helper()
	m, err := n.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkPodNetns: eth0 carries the IP, the default route goes to the
// gateway, lo is up with 127.0.0.1.
func checkPodNetns(t *testing.T, p *pod, bits int, gateway netip.Addr) {
	t.Helper()
	withNetlink(t, p.path, func(h *netlink.Handle) {
		eth, err := h.LinkByName(cni.PodInterface)
		if err != nil {
			t.Fatalf("pod %s: %v", p.ref, err)
		}
		if !hasAddr(t, h, eth, netip.PrefixFrom(p.res.IP, bits)) {
			t.Errorf("pod %s: %s lacks %s/%d", p.ref, cni.PodInterface, p.res.IP, bits)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatalf("pod %s: %v", p.ref, err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 || !hasAddr(t, h, lo, netip.MustParsePrefix("127.0.0.1/8")) {
			t.Errorf("pod %s: lo is not up with 127.0.0.1 (flags %v)", p.ref, lo.Attrs().Flags)
		}
		routes, err := h.RouteList(eth, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range routes {
			gw, _ := netip.AddrFromSlice(r.Gw)
			if gw.Unmap() == gateway && (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") {
				found = true
			}
		}
		if !found {
			t.Errorf("pod %s: no default route via %s in %v", p.ref, gateway, routes)
		}
	})
}

func hasAddr(t *testing.T, h *netlink.Handle, l netlink.Link, want netip.Prefix) bool {
	t.Helper()
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ip.Unmap(), ones) == want {
			return true
		}
	}
	return false
}

// withNetlink runs fn with a netlink handle in the netns at nsPath ("" = the
// test's own). The handle is closed before returning: an open one would keep
// a deleted netns alive.
func withNetlink(t testing.TB, nsPath string, fn func(*netlink.Handle)) {
	t.Helper()
	var h *netlink.Handle
	var err error
	if nsPath == "" {
		h, err = netlink.NewHandle()
	} else {
		var ns vnetns.NsHandle
		ns, err = vnetns.GetFromPath(nsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fn(h)
}

// inNS runs fn on a goroutine locked to a thread in the netns at nsPath (""
// = the calling goroutine). Sockets made by fn stay in that netns whichever
// thread uses them later. The thread goes back to its own netns before it is
// unlocked: a goroutine locked to the main thread does not end that thread
// when it exits, and a pod netns left on it would never be freed.
func inNS(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer own.Close()
		ns, err := vnetns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := vnetns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := vnetns.Set(own); err != nil {
			errc <- errors.Join(ferr, err) // stays locked: Go discards the thread
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listenIn serves greeting to every TCP connection on addr inside nsPath
// until the listener is closed (by the test or at cleanup).
func listenIn(t *testing.T, nsPath, addr, greeting string) net.Listener {
	t.Helper()
	return serveIn(t, nsPath, addr, func(net.Conn) string { return greeting })
}

// serveIn answers every TCP connection on addr inside nsPath with the line
// reply makes for it, until the listener is closed (by the test or at
// cleanup).
func serveIn(t *testing.T, nsPath, addr string, reply func(net.Conn) string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := inNS(nsPath, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(reply(c) + "\n"))
			c.Close()
		}
	}()
	return l
}

func dialIn(nsPath string, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := inNS(nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp4", to.String(), 3*time.Second)
		return err
	})
	return c, err
}

func expectGreeting(t *testing.T, nsPath string, to netip.AddrPort, want string) {
	t.Helper()
	c, err := dialIn(nsPath, to)
	if err != nil {
		t.Fatalf("from %s dial %s: %v", nsName(nsPath), to, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("from %s read %s: %v", nsName(nsPath), to, err)
	}
	if strings.TrimSpace(got) != want {
		t.Fatalf("from %s, %s said %q, want %q", nsName(nsPath), to, got, want)
	}
}

func expectRefused(t *testing.T, nsPath string, to netip.AddrPort) {
	t.Helper()
	c, err := dialIn(nsPath, to)
	if err == nil {
		c.Close()
		t.Fatalf("from %s dial %s succeeded, want refused", nsName(nsPath), to)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("from %s dial %s: %v, want connection refused", nsName(nsPath), to, err)
	}
}

func nsName(nsPath string) string {
	if nsPath == "" {
		return "root netns"
	}
	return filepath.Base(nsPath)
}

// requireRoutedVia fails the test unless ip is routed through bridge in the
// host netns: a dial must never fall through to a default route and leave
// the machine.
func requireRoutedVia(t *testing.T, host string, ip netip.Addr, bridge string) {
	t.Helper()
	withNetlink(t, host, func(h *netlink.Handle) {
		br, err := h.LinkByName(bridge)
		if err != nil {
			t.Fatal(err)
		}
		routes, err := h.RouteGet(ip.AsSlice())
		if err != nil {
			t.Fatal(err)
		}
		if len(routes) == 0 || routes[0].LinkIndex != br.Attrs().Index {
			t.Fatalf("%s is not routed via %s (%v): not dialing it", ip, bridge, routes)
		}
	})
}

// bridgePorts counts the links enslaved to bridge.
func bridgePorts(t *testing.T, host, bridge string) int {
	t.Helper()
	count := 0
	withNetlink(t, host, func(h *netlink.Handle) {
		br, err := h.LinkByName(bridge)
		if err != nil {
			t.Fatal(err)
		}
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				count++
			}
		}
	})
	return count
}

// ruleCount counts a pod's rules in the bridge plugin's masquerade table and
// in portmap's table.
type ruleCount struct{ masq, hostport int }

// natRules counts the nftables rules whose comment names uid: the bridge
// plugin's masquerade rules (comment "<hash>, net: rafter, if: eth0, id:
// <uid>"), which no pod has now that its ipMasq is off, and portmap's DNAT
// and masquerade rules (comment "<uid>").
func natRules(t testing.TB, host, uid string) ruleCount {
	t.Helper()
	var n ruleCount
	withNft(t, host, func(c *nftables.Conn) {
		chains, err := c.ListChains()
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			table := ch.Table.Name
			if table != "cni_plugins_masquerade" && table != "cni_hostport" {
				continue
			}
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				switch {
				case table == "cni_plugins_masquerade" && strings.HasSuffix(comment, "id: "+uid):
					n.masq++
				case table == "cni_hostport" && comment == uid:
					n.hostport++
				}
			}
		}
	})
	return n
}

// nodeMasqRules counts the rules in the bridge's chain of the node-wide
// masquerade table (table ip rafter-nat, chain masq-<bridge>); -1 when there
// is no such chain.
func nodeMasqRules(t testing.TB, host, bridge string) int {
	t.Helper()
	n := -1
	withNft(t, host, func(c *nftables.Conn) {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name == "rafter-nat" && ch.Name == "masq-"+bridge {
				rules, err := c.GetRules(ch.Table, ch)
				if err != nil {
					t.Fatal(err)
				}
				n = len(rules)
			}
		}
	})
	return n
}

// withNft runs fn with an nftables connection to the netns at host ("" =
// the test's own). The netns fd is closed when fn returns: an open one
// would keep a deleted netns alive.
func withNft(t testing.TB, host string, fn func(*nftables.Conn)) {
	t.Helper()
	var opts []nftables.ConnOption
	if host != "" {
		ns, err := vnetns.GetFromPath(host)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	fn(c)
}

// rootDropsForwarded reports whether the root netns drops forwarded IPv4
// packets by policy (Docker sets its FORWARD chain's policy to drop) while
// br_netfilter passes bridged frames through that hook.
func rootDropsForwarded(t *testing.T) bool {
	t.Helper()
	v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil || strings.TrimSpace(string(v)) != "1" {
		return false
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		fam := ch.Table.Family
		if (fam == nftables.TableFamilyIPv4 || fam == nftables.TableFamilyINet) &&
			ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookForward &&
			ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			return true
		}
	}
	return false
}

// nsfsMounts counts the mounts at path in /proc/self/mountinfo.
func nsfsMounts(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

// requireRootFree fails unless the root netns has no link named bridge and
// no route overlapping cidr, so the test neither disturbs nor is disturbed
// by anything else on the machine.
func requireRootFree(t testing.TB, cidr netip.Prefix, bridge string) {
	t.Helper()
	if _, err := netlink.LinkByName(bridge); err == nil {
		t.Fatalf("link %s already exists in the root netns", bridge)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ones > 0 && netip.PrefixFrom(ip.Unmap(), ones).Overlaps(cidr) {
			t.Fatalf("the root netns already routes %s, which overlaps %s", r.Dst, cidr)
		}
	}
}

func deleteLink(t testing.TB, name string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			t.Error(err)
		}
		return
	}
	if err := netlink.LinkDel(l); err != nil {
		t.Error(err)
	}
}

// freePort is a TCP port nothing listens on at 127.0.0.1 right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// waitFor polls cond until it holds or d passes: for the kernel's
// asynchronous netns teardown, which has no event to wait on.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

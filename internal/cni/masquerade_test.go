package cni_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/rafter-dev/rafter/internal/cni"
)

// TestNodeMasquerade checks the node-wide masquerade rule that replaces the
// bridge plugin's per-pod ones. Everything happens in namespaces the test
// makes: an isolated host netns, and an "outside" netns joined to it by a
// veth on 192.0.2.0/24 (TEST-NET-1, documentation only). The outside netns
// routes PodCIDR back to the host, so a connection that is not NATed still
// works and shows the pod's address: the test sees the rule's effect, not
// a dropped reply.
func TestNodeMasquerade(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.6.0/24"), bridge: "rft6"}
	n, host := newNode(t, tc)
	hostAddr, outsideAddr := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	outside := newOutside(t, n, host, tc, hostAddr, outsideAddr)
	listenPeer(t, outside, fmt.Sprintf("%s:%d", outsideAddr, containerPort))
	dst := netip.AddrPortFrom(outsideAddr, containerPort)

	if got := nodeMasqRules(t, host, tc.bridge); got != -1 {
		t.Fatalf("masquerade chain with %d rules before any Add, want none (New writes nothing)", got)
	}
	a := addPod(t, n, cni.PodRef{Namespace: "default", Name: "a", UID: "uid-masq-a"}, "pod-a")
	b := addPod(t, n, cni.PodRef{Namespace: "default", Name: "b", UID: "uid-masq-b"}, "pod-b")
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after two Adds, want 1", got)
	}
	want := fmt.Sprintf("ip saddr %s ip daddr != %s ip daddr != 224.0.0.0/4 masquerade", tc.cidr, tc.cidr)
	if got := nftList(t, host, "chain", "ip", "rafter-nat", "masq-"+tc.bridge); !strings.Contains(got, want) ||
		!strings.Contains(got, "type nat hook postrouting priority srcnat") {
		t.Fatalf("nft list chain:\n%s\nwant a postrouting srcnat chain with %q", got, want)
	}

	// A second Network on the same node (an agent restart) adds no rule.
	n2, err := cni.New(n.Config())
	if err != nil {
		t.Fatal(err)
	}
	addPod(t, n2, cni.PodRef{Namespace: "default", Name: "c", UID: "uid-masq-c"}, "pod-c")
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after an Add through a second Network, want 1", got)
	}

	// Leaving PodCIDR: the outside sees the host's address. Inside
	// PodCIDR (pod to pod): the pod's own.
	expectGreeting(t, a.path, dst, hostAddr.String())
	listenPeer(t, b.path, fmt.Sprintf(":%d", containerPort))
	expectGreeting(t, a.path, netip.AddrPortFrom(b.res.IP, containerPort), a.res.IP.String())

	// Another pod network in the same host netns gets its own chain, which
	// our RemoveNodeRules leaves alone.
	otherCfg := n.Config()
	otherCfg.Bridge, otherCfg.PodCIDR, otherCfg.DataDir = "rft9", netip.MustParsePrefix("10.250.9.0/24"), t.TempDir()
	other, err := cni.New(otherCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := other.RemoveNodeRules(); err != nil {
			t.Error(err)
		}
	})
	addPod(t, other, cni.PodRef{Namespace: "default", Name: "d", UID: "uid-masq-d"}, "pod-d")

	// Del leaves the node's rule; RemoveNodeRules removes it with its chain
	// (twice is fine), and then the pod's address goes out as it is.
	if err := n.Del(ctx, b.ref, b.path); err != nil {
		t.Fatal(err)
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after Del, want 1", got)
	}
	for range 2 {
		if err := n.RemoveNodeRules(); err != nil {
			t.Fatal(err)
		}
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != -1 {
		t.Fatalf("masquerade chain with %d rules after RemoveNodeRules, want no chain", got)
	}
	if got := nodeMasqRules(t, host, otherCfg.Bridge); got != 1 {
		t.Fatalf("the other network's chain has %d rules after our RemoveNodeRules, want 1", got)
	}
	expectGreeting(t, a.path, dst, a.res.IP.String())

	// Add of an attached pod (the agent re-Adding its pods after a restart)
	// puts a flushed rule back.
	if _, err := n.Add(ctx, a.ref, a.path, nil); err != nil {
		t.Fatal(err)
	}
	if got := nodeMasqRules(t, host, tc.bridge); got != 1 {
		t.Fatalf("%d node masquerade rules after re-Add, want 1", got)
	}
	expectGreeting(t, a.path, dst, hostAddr.String())
}

// addPod makes the pod's netns and adds it without ports; cleanup deletes
// both.
func addPod(t *testing.T, n *cni.Network, ref cni.PodRef, netns string) *pod {
	t.Helper()
	p := &pod{ref: ref, name: netns}
	var err error
	if p.path, err = n.NewNetns(netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Del(context.Background(), p.ref, p.path); err != nil {
			t.Error(err)
		}
		mustDeleteNetns(t, n, p.name)
	})
	if p.res, err = n.Add(context.Background(), p.ref, p.path, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// newOutside makes a netns joined to host by a veth pair: hostAddr/24 on
// the host side, outsideAddr/24 on the other, and in the outside netns a
// route to tc.cidr via hostAddr. Deleting the outside netns (cleanup)
// deletes the pair.
func newOutside(t *testing.T, n *cni.Network, host string, tc podTest, hostAddr, outsideAddr netip.Addr) string {
	t.Helper()
	path, err := n.NewNetns("outside")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mustDeleteNetns(t, n, "outside") })
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	hostSide, outSide := tc.bridge+"-out", tc.bridge+"-in"
	withNetlink(t, host, func(h *netlink.Handle) {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: hostSide},
			PeerName:      outSide,
			PeerNamespace: netlink.NsFd(int(ns)),
		}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		upWithAddr(t, h, hostSide, netip.PrefixFrom(hostAddr, 24))
	})
	withNetlink(t, path, func(h *netlink.Handle) {
		upWithAddr(t, h, "lo", netip.Prefix{})
		upWithAddr(t, h, outSide, netip.PrefixFrom(outsideAddr, 24))
		err := h.RouteAdd(&netlink.Route{
			Dst: &net.IPNet{IP: tc.cidr.Addr().AsSlice(), Mask: net.CIDRMask(tc.cidr.Bits(), 32)},
			Gw:  hostAddr.AsSlice(),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	return path
}

// upWithAddr gives link the address (if valid) and sets it up.
func upWithAddr(t *testing.T, h *netlink.Handle, link string, addr netip.Prefix) {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// listenPeer answers every TCP connection on addr inside nsPath with the
// source address it came from, until the test ends.
func listenPeer(t *testing.T, nsPath, addr string) {
	t.Helper()
	serveIn(t, nsPath, addr, func(c net.Conn) string {
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		return ap.Addr().Unmap().String()
	})
}

// nftList runs `nft list args...` in the netns at nsPath and returns its
// output.
func nftList(t *testing.T, nsPath string, args ...string) string {
	t.Helper()
	var out []byte
	err := inNS(nsPath, func() (err error) {
		out, err = exec.Command("nft", append([]string{"list"}, args...)...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("nft list %v: %v\n%s", args, err, out)
	}
	return string(out)
}

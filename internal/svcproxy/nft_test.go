package svcproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNode is a "node" netns with a bridge (10.77.0.1/24) and pod netns on it,
// each serving HTTP on :8080 with its own name. Everything lives in
// namespaces the test made; a veth with nothing behind it holds the node's default route,
// so a packet no rule catches goes nowhere.
type testNode struct {
	t    *testing.T
	node netns.NsHandle
	pods map[string]netns.NsHandle
	ips  map[string]netip.Addr
}

const bridgeIP = "10.77.0.1"

// inNS runs fn on a thread in ns (and puts the thread back).
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	return ferr
}

func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	h, err = netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
	orig.Close()
	t.Cleanup(func() { h.Close() })
	return h
}

func newTestNode(t *testing.T, pods ...string) *testNode {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	n := &testNode{t: t, node: newNS(t), pods: map[string]netns.NsHandle{}, ips: map[string]netip.Addr{}}
	nh, err := netlink.NewHandleAt(n.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	lo, _ := nh.LinkByName("lo")
	must(nh.LinkSetUp(lo))
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must(nh.LinkAdd(br))
	must(nh.AddrAdd(br, &netlink.Addr{IPNet: mustCIDR(bridgeIP + "/24")}))
	must(nh.LinkSetUp(br))
	// No dummy module on every kernel: a veth pair whose peer stays here.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "out0"}, PeerName: "out1"}
	must(nh.LinkAdd(dummy))
	must(nh.AddrAdd(dummy, &netlink.Addr{IPNet: mustCIDR("192.0.2.1/24")}))
	must(nh.LinkSetUp(dummy))
	must(nh.RouteAdd(&netlink.Route{Gw: net.ParseIP("192.0.2.254"), LinkIndex: dummy.Attrs().Index}))
	must(inNS(n.node, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }))
	for i, name := range pods {
		ns := newNS(t)
		ip := netip.AddrFrom4([4]byte{10, 77, 0, byte(2 + i)})
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth" + name, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
		must(nh.LinkAdd(veth))
		// As the CNI bridge plugin's hairpinMode: a pod's packet DNATed
		// back to itself is bridged out of the port it came in by.
		must(nh.LinkSetHairpin(veth, true))
		must(nh.LinkSetUp(veth))
		ph, err := netlink.NewHandleAt(ns)
		must(err)
		eth0, err := ph.LinkByName("eth0")
		must(err)
		must(ph.AddrAdd(eth0, &netlink.Addr{IPNet: mustCIDR(ip.String() + "/24")}))
		must(ph.LinkSetUp(eth0))
		plo, _ := ph.LinkByName("lo")
		must(ph.LinkSetUp(plo))
		must(ph.RouteAdd(&netlink.Route{Gw: net.ParseIP(bridgeIP), LinkIndex: eth0.Attrs().Index}))
		ph.Close()
		var lis net.Listener
		must(inNS(ns, func() (err error) { lis, err = net.Listen("tcp", ":8080"); return err }))
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })}
		go srv.Serve(lis)
		t.Cleanup(func() { srv.Close() })
		n.pods[name], n.ips[name] = ns, ip
	}
	return n
}

func mustCIDR(s string) *net.IPNet {
	ip, ipn, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	ipn.IP = ip
	return ipn
}

// get does one HTTP GET from ns (a new connection each time).
func get(ns netns.NsHandle, url string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = inNS(ns, func() error {
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// spread does n GETs and counts the answers (and errors).
func (n *testNode) spread(from netns.NsHandle, url string, count int) map[string]int {
	n.t.Helper()
	got := map[string]int{}
	for range count {
		body, err := get(from, url)
		if err != nil {
			body = "error: " + err.Error()
		}
		got[body]++
	}
	return got
}

func (n *testNode) applier() *Applier {
	a := NewApplier(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(n.node)), "")
	n.t.Cleanup(func() {
		if err := a.Remove(); err != nil {
			n.t.Error(err)
		}
	})
	return a
}

func webRuleset(n *testNode, backends ...string) Ruleset {
	p := ServicePort{Name: "default/web/tcp/http", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: TCP, NodePort: 30080}
	for _, b := range backends {
		p.Endpoints = append(p.Endpoints, Endpoint{IP: n.ips[b], Port: 8080})
	}
	empty := ServicePort{Name: "default/empty/tcp/80", ClusterIP: netip.MustParseAddr("10.96.0.11"), Port: 80, Protocol: TCP, NodePort: 30081}
	return Ruleset{Ports: []ServicePort{p, empty}}
}

// tableState lists the table's chains with their rule handles (a rebuild
// changes them).
func tableState(t *testing.T, a *Applier) (string, bool) {
	t.Helper()
	c, done, err := a.conn()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tb := range tables {
		found = found || tb.Name == a.table.Name
	}
	if !found {
		return "", false
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ch := range chains {
		if ch.Table.Name != a.table.Name {
			continue
		}
		rules, err := c.GetRules(a.table, ch)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:", ch.Name)
		for _, r := range rules {
			fmt.Fprintf(&b, " %d", r.Handle)
		}
		b.WriteString("\n")
	}
	return b.String(), true
}

func TestClusterIPAndNodePort(t *testing.T) {
	n := newTestNode(t, "a", "b")
	a := n.applier()
	t.Cleanup(func() {
		if t.Failed() {
			dumpRuleset(t, n.node)
		}
	})
	if changed, err := a.Apply(webRuleset(n, "a", "b")); err != nil || !changed {
		t.Fatalf("Apply = %v, %v; want changed", changed, err)
	}
	before, ok := tableState(t, a)
	if !ok {
		t.Fatal("no table after Apply")
	}
	// Applying the same ruleset again writes nothing.
	if changed, err := a.Apply(webRuleset(n, "a", "b")); err != nil || changed {
		t.Fatalf("second Apply = %v, %v; want unchanged", changed, err)
	}
	if after, _ := tableState(t, a); after != before {
		t.Fatalf("second Apply changed the table:\n%s\nto\n%s", before, after)
	}

	for name, ip := range n.ips {
		if body, err := get(n.node, "http://"+ip.String()+":8080/"); err != nil || body != name {
			t.Fatalf("pod %s direct: %q, %v", name, body, err)
		}
	}
	const N = 40
	cip := "http://10.96.0.10/"
	for _, from := range []struct {
		name string
		ns   netns.NsHandle
	}{{"node", n.node}, {"pod a (hairpin to itself)", n.pods["a"]}, {"pod b", n.pods["b"]}} {
		got := n.spread(from.ns, cip, N)
		if got["a"] == 0 || got["b"] == 0 || got["a"]+got["b"] != N {
			t.Errorf("from %s, %s answered %v; want both a and b", from.name, cip, got)
		}
	}
	// NodePort on the node's (bridge) address, from the node and from a pod.
	np := "http://" + bridgeIP + ":30080/"
	for _, from := range []netns.NsHandle{n.node, n.pods["a"]} {
		if got := n.spread(from, np, N); got["a"] == 0 || got["b"] == 0 {
			t.Errorf("%s answered %v; want both a and b", np, got)
		}
	}
	// A Service without endpoints is refused at once, from the node and a pod,
	// on its ClusterIP and its NodePort.
	for _, from := range []netns.NsHandle{n.node, n.pods["a"]} {
		for _, addr := range []string{"10.96.0.11:80", bridgeIP + ":30081"} {
			start := time.Now()
			err := inNS(from, func() error {
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err == nil {
					c.Close()
				}
				return err
			})
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
				t.Errorf("dial %s = %v after %v; want connection refused at once", addr, err, time.Since(start))
			}
		}
	}
	// Removing endpoint b stops traffic to it.
	if changed, err := a.Apply(webRuleset(n, "a")); err != nil || !changed {
		t.Fatalf("Apply(a only) = %v, %v", changed, err)
	}
	if got := n.spread(n.node, cip, N); got["a"] != N {
		t.Errorf("after removing b, %s answered %v; want only a", cip, got)
	}
	// Remove deletes the table, twice without error.
	for range 2 {
		if err := a.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := tableState(t, a); ok {
		t.Fatal("table left after Remove")
	}
	if _, err := get(n.node, cip); err == nil {
		t.Error("ClusterIP still answers after Remove")
	}
}

// dumpRuleset logs `nft list ruleset` of ns when the nft binary is there.
func dumpRuleset(t *testing.T, ns netns.NsHandle) {
	var out []byte
	_ = inNS(ns, func() (err error) { out, err = exec.Command("nft", "list", "ruleset").CombinedOutput(); return err })
	t.Logf("nft list ruleset:\n%s", out)
}

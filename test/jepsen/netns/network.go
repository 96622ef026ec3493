// Package netns builds a throwaway test network for the Jepsen-style suite: N
// control-plane peers, each in its own network namespace, joined by a bridge,
// with partitions made of nftables drop rules inside the peers' namespaces.
//
// Layout for New("jp", 3) with the subnet 10.231.y.0/24:
//
//	root namespace (test process, clients)
//	  jp-host 10.231.y.254/24 ──veth──┐
//	namespace jp-hub                  │
//	  bridge jp-br: jp-root ──────────┘, jp-p1, jp-p2, jp-p3
//	namespace jp-1: lo, eth0 10.231.y.1/24 ──veth── jp-p1
//	namespace jp-2: lo, eth0 10.231.y.2/24 ──veth── jp-p2
//	namespace jp-3: lo, eth0 10.231.y.3/24 ──veth── jp-p3
//
// The bridge lives in its own hub namespace rather than in the root one, so the
// root namespace's firewall (Docker sets the FORWARD policy to DROP, and with
// br_netfilter bridged frames cross it) never sees traffic between peers, and
// removing the hub namespace removes the bridge and all its ports at once. The
// root namespace reaches the peers through one veth pair into the hub, so test
// clients run in the test process and dial Addr(i) directly. Peers have only
// the connected /24 route: nothing they send can leave the test network.
//
// Everything needs root and the `ip` command (iproute2): namespaces are made and
// removed with `ip netns add/delete`, so they are bind-mounted under
// /var/run/netns exactly as iproute2 does it, and Command starts processes with
// `ip netns exec`. Links and addresses are configured over netlink, rules over
// nftables netlink (no nft binary).
package netns

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// NSDir is where `ip netns` bind-mounts named namespaces.
const NSDir = "/var/run/netns"

// MaxPrefixLen is the longest prefix New accepts: the longest interface name
// is the prefix plus "-p253" or "-host", and Linux allows 15 bytes.
const MaxPrefixLen = 10

// MaxPeers is the largest network: peers use .1 to .253 of the /24 and the
// root namespace .254.
const MaxPeers = 253

var (
	// ErrInvalidConfig means New was given a prefix, peer count or subnet it
	// cannot use.
	ErrInvalidConfig = errors.New("invalid network config")
	// ErrSubnetInUse means the root namespace already routes part of the
	// subnet through a link this network does not own.
	ErrSubnetInUse = errors.New("subnet already routed in the root namespace")
	// ErrInvalidFault means a partition named a peer out of range, named one
	// twice, or left one out.
	ErrInvalidFault = errors.New("invalid fault")
	// ErrClosed means the Network was used after Close.
	ErrClosed = errors.New("network closed")
)

// Config says what New builds.
type Config struct {
	// Prefix names everything: namespaces "<Prefix>-1".."<Prefix>-N" and
	// "<Prefix>-hub", the bridge "<Prefix>-br", the root link "<Prefix>-host".
	// Lowercase letters, digits and '-', starting with a letter, at most
	// MaxPrefixLen long. Two networks that exist at once need different
	// prefixes: New removes whatever an earlier network of the same prefix
	// left behind.
	Prefix string
	// Peers is the number of peer namespaces, 1 to MaxPeers.
	Peers int
	// Subnet is the IPv4 /24 the network uses: peer i gets .i+1 and the root
	// namespace .254. The zero value picks 10.231.y.0/24 with y derived from
	// Prefix, so networks with different prefixes usually differ.
	Subnet netip.Prefix
}

// DefaultConfig returns the config New uses for prefix and n peers.
func DefaultConfig(prefix string, n int) Config {
	return Config{Prefix: prefix, Peers: n, Subnet: DefaultSubnet(prefix)}
}

// DefaultSubnet is the /24 in 10.231.0.0/16 chosen for prefix.
func DefaultSubnet(prefix string) netip.Prefix {
	h := fnv.New32a()
	h.Write([]byte(prefix))
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 231, byte(h.Sum32()), 0}), 24)
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Validate checks the config; a zero Subnet is allowed and means the default.
func (c Config) Validate() error {
	if len(c.Prefix) == 0 || len(c.Prefix) > MaxPrefixLen || !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("%w: prefix %q must be 1 to %d of [a-z0-9-], starting with a letter",
			ErrInvalidConfig, c.Prefix, MaxPrefixLen)
	}
	if c.Peers < 1 || c.Peers > MaxPeers {
		return fmt.Errorf("%w: %d peers, want 1 to %d", ErrInvalidConfig, c.Peers, MaxPeers)
	}
	if c.Subnet.IsValid() && (!c.Subnet.Addr().Is4() || c.Subnet.Bits() != 24 || c.Subnet.Masked() != c.Subnet) {
		return fmt.Errorf("%w: subnet %s is not an IPv4 network address with /24", ErrInvalidConfig, c.Subnet)
	}
	return nil
}

// Network is a running test network. Addr, NSPath, Name, HostAddr and Command
// may be called from any goroutine at any time; the fault methods (Partition,
// Drop, Isolate, Bridge, Ring, Heal) are serialized by the Network and may
// also be called concurrently, the last one winning. Peer indexes are 0-based;
// an index out of range panics, except in the fault methods, which return an
// error wrapping ErrInvalidFault.
type Network struct {
	prefix string
	subnet netip.Prefix
	n      int

	*Rules
}

// New builds a network of n peers with DefaultConfig(prefix, n).
func New(prefix string, n int) (*Network, error) {
	return NewWithConfig(DefaultConfig(prefix, n))
}

// NewWithConfig builds the network cfg describes, first removing anything left
// by an earlier network with the same prefix (a crashed run). On error nothing
// it made is left behind. It takes a few tens of milliseconds per peer.
func NewWithConfig(cfg Config) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = DefaultSubnet(cfg.Prefix)
	}
	n := &Network{prefix: cfg.Prefix, subnet: cfg.Subnet, n: cfg.Peers}
	n.Rules = NewRules(cfg.Peers, n.IP, func(i int) (string, error) { return n.NSPath(i), nil })
	if err := removeStale(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("remove leftovers of %s: %w", cfg.Prefix, err)
	}
	if err := checkSubnetFree(cfg.Subnet); err != nil {
		return nil, err
	}
	if err := n.build(); err != nil {
		return nil, errors.Join(fmt.Errorf("build network %s: %w", cfg.Prefix, err), n.teardown())
	}
	return n, nil
}

// Peers is the number of peers.
func (n *Network) Peers() int { return n.n }

// Name is peer i's namespace name, "<prefix>-<i+1>" (i is 0-based).
func (n *Network) Name(i int) string {
	n.check(i)
	return n.peerNS(i)
}

// NSPath is the bind mount of peer i's namespace, /var/run/netns/<name>.
func (n *Network) NSPath(i int) string { return filepath.Join(NSDir, n.Name(i)) }

// Addr is peer i's IPv4 address as a string, reachable from every peer and
// from the root namespace.
func (n *Network) Addr(i int) string { return n.IP(i).String() }

// IP is peer i's address as a netip.Addr.
func (n *Network) IP(i int) netip.Addr {
	n.check(i)
	return n.addr(byte(i + 1))
}

// HostAddr is the root namespace's address on the network (.254); peers reach
// listeners in the test process there.
func (n *Network) HostAddr() string { return n.addr(254).String() }

// HostLink is the root namespace's interface into the network.
func (n *Network) HostLink() string { return n.prefix + "-host" }

// Subnet is the network's /24.
func (n *Network) Subnet() netip.Prefix { return n.subnet }

// Close removes the namespaces and links. Processes still running in a peer's
// namespace keep it alive (unnamed) until they exit, but its link to the
// bridge goes away with the hub, so stop them first. Close is idempotent.
func (n *Network) Close() error {
	if !n.shut() {
		return nil
	}
	return n.teardown()
}

func (n *Network) addr(host byte) netip.Addr {
	a := n.subnet.Addr().As4()
	a[3] = host
	return netip.AddrFrom4(a)
}

func (n *Network) peerNS(i int) string { return n.prefix + "-" + strconv.Itoa(i+1) }
func (n *Network) hubNS() string       { return n.prefix + "-hub" }

// build makes the namespaces, the bridge and the links, and installs the
// (empty) jepsen table in every peer.
func (n *Network) build() error {
	names := []string{n.hubNS()}
	for i := 0; i < n.n; i++ {
		names = append(names, n.peerNS(i))
	}
	for _, name := range names {
		if err := ipNetns("add", name); err != nil {
			return err
		}
	}

	hubNS, err := vnetns.GetFromPath(filepath.Join(NSDir, n.hubNS()))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", n.hubNS(), err)
	}
	defer hubNS.Close()
	hub, err := netlink.NewHandleAt(hubNS)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.hubNS(), err)
	}
	defer hub.Close()
	root, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink in root namespace: %w", err)
	}
	defer root.Close()

	la := netlink.NewLinkAttrs()
	la.Name = n.prefix + "-br"
	br := &netlink.Bridge{LinkAttrs: la}
	if err := hub.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", la.Name, err)
	}
	if err := hub.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", la.Name, err)
	}

	// Root namespace <-> hub.
	if err := addVeth(root, n.HostLink(), n.prefix+"-root", hubNS); err != nil {
		return err
	}
	if err := attach(hub, n.prefix+"-root", br); err != nil {
		return err
	}
	if err := configure(root, n.HostLink(), netip.PrefixFrom(n.addr(254), 24)); err != nil {
		return err
	}

	// Peers <-> hub.
	for i := 0; i < n.n; i++ {
		if err := n.buildPeer(i, hub, br); err != nil {
			return err
		}
	}
	return n.waitUp(root)
}

func (n *Network) buildPeer(i int, hub *netlink.Handle, br *netlink.Bridge) error {
	name := n.peerNS(i)
	ns, err := vnetns.GetFromPath(filepath.Join(NSDir, name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", name, err)
	}
	defer h.Close()

	port := n.prefix + "-p" + strconv.Itoa(i+1)
	if err := addVeth(hub, port, "eth0", ns); err != nil {
		return err
	}
	if err := attach(hub, port, br); err != nil {
		return err
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("%s: find lo: %w", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("%s: lo up: %w", name, err)
	}
	if err := configure(h, "eth0", netip.PrefixFrom(n.addr(byte(i+1)), 24)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := applyDrops(n.NSPath(i), nil); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// waitUp waits until the root link and every peer's eth0 report carrier, so a
// dial right after New does not race the veths coming up.
func (n *Network) waitUp(root *netlink.Handle) error {
	deadline := time.Now().Add(5 * time.Second)
	up := func(h *netlink.Handle, name string) error {
		for {
			l, err := h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("find %s: %w", name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("link %s still %s", name, l.Attrs().OperState)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := up(root, n.HostLink()); err != nil {
		return err
	}
	for i := 0; i < n.n; i++ {
		ns, err := vnetns.GetFromPath(n.NSPath(i))
		if err != nil {
			return fmt.Errorf("open namespace %s: %w", n.peerNS(i), err)
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			ns.Close()
			return fmt.Errorf("netlink in %s: %w", n.peerNS(i), err)
		}
		err = up(h, "eth0")
		h.Close()
		ns.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.peerNS(i), err)
		}
	}
	return nil
}

// teardown removes everything this network's names refer to, ignoring what is
// already gone. The root link goes first and synchronously; deleting a
// namespace frees its links asynchronously in the kernel.
func (n *Network) teardown() error {
	var errs []error
	if err := delRootLink(n.HostLink()); err != nil {
		errs = append(errs, err)
	}
	names := []string{n.hubNS()}
	for i := 0; i < n.n; i++ {
		names = append(names, n.peerNS(i))
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(NSDir, name)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := ipNetns("delete", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeStale deletes the namespaces "<prefix>-hub" and "<prefix>-<digits>"
// and the root link "<prefix>-host" left by an earlier network.
func removeStale(prefix string) error {
	var errs []error
	if err := delRootLink(prefix + "-host"); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(NSDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list %s: %w", NSDir, err)
	}
	stale := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-(hub|[0-9]+)$`)
	for _, e := range entries {
		if stale.MatchString(e.Name()) {
			if err := ipNetns("delete", e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkSubnetFree fails if a root-namespace route other than the default
// overlaps subnet: the root could not tell which link reaches the peers.
func checkSubnetFree(subnet netip.Prefix) error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		if netip.PrefixFrom(a, ones).Overlaps(subnet) {
			link := strconv.Itoa(r.LinkIndex)
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				link = l.Attrs().Name
			}
			return fmt.Errorf("%w: %s overlaps route %s dev %s", ErrSubnetInUse, subnet, r.Dst, link)
		}
	}
	return nil
}

func delRootLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// addVeth creates the pair local (in h's namespace) <-> peer (in peerNS).
func addVeth(h *netlink.Handle, local, peer string, peerNS vnetns.NsHandle) error {
	la := netlink.NewLinkAttrs()
	la.Name = local
	v := netlink.NewVeth(la)
	v.PeerName = peer
	v.PeerNamespace = netlink.NsFd(peerNS)
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s <-> %s: %w", local, peer, err)
	}
	return nil
}

// attach makes the link name a port of br and brings it up.
func attach(h *netlink.Handle, name string, br *netlink.Bridge) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", name, br.Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// configure gives the link name the address addr and brings it up.
func configure(h *netlink.Handle, name string, addr netip.Prefix) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		return fmt.Errorf("parse %s: %w", addr, err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// ipNetns runs `ip netns <verb> <name>`.
func ipNetns(verb, name string) error {
	out, err := exec.Command("ip", "netns", verb, name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns %s %s: %w: %s", verb, name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Package cni attaches pods to the node's network with libcni and the CNI
// reference plugins (bridge, host-local, portmap), as a kubelet does through
// its container runtime, plus a node-wide nftables masquerade rule and lo
// brought up over netlink. See DESIGN.md.
package cni

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	// ErrInvalidConfig means Config.Validate rejected the config.
	ErrInvalidConfig = errors.New("invalid cni config")
	// ErrMissingDependency means a plugin binary is not in Config.PluginDirs,
	// or the nft binary (which portmap's nftables backend runs) is not in
	// PATH.
	ErrMissingDependency = errors.New("missing cni dependency")
	// ErrInvalidArgument means a PodRef, netns path or name, or port mapping
	// cannot be used.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAttached means Add was called for a pod that is already attached
	// through another netns; Del it first.
	ErrAttached = errors.New("pod already attached")
)

// PodRef names the pod being attached. UID is the CNI container ID: libcni's
// cache and host-local's allocation files are keyed by it.
type PodRef struct {
	Namespace string
	Name      string
	UID       string
}

// Protocol is a port mapping's protocol, spelled as in the Kubernetes API.
type Protocol string

// The protocols portmap handles. The zero Protocol means TCP.
const (
	ProtocolTCP  Protocol = "TCP"
	ProtocolUDP  Protocol = "UDP"
	ProtocolSCTP Protocol = "SCTP"
)

// PortMapping is a pod's hostPort: traffic to HostIP:HostPort in the host
// netns is DNATed to the pod's IP:ContainerPort.
type PortMapping struct {
	HostPort      uint16
	ContainerPort uint16
	Protocol      Protocol
	// HostIP limits the mapping to one local IPv4 address (127.0.0.1
	// included); the zero Addr maps every local address of the host netns.
	HostIP netip.Addr
}

// Result is what Add configured in the pod's netns.
type Result struct {
	IP        netip.Addr // the pod's address on Interface, inside PodCIDR
	Gateway   netip.Addr // the bridge's address, the pod's default route
	Interface string     // always PodInterface
}

// Network attaches pods to one node's pod network. Its methods may be called
// from any goroutine, and Add, Del, NewNetns and DeleteNetns for different
// pods may run concurrently (the plugins take their own locks). Calls for one
// pod must be serialized by the caller, as the agent's per-pod goroutine does.
// Each call blocks until its plugins have exited.
type Network struct {
	cfg     Config
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList // bridge, host-local, portmap
	noPorts *libcni.NetworkConfigList // bridge, host-local: for pods without port mappings
}

// New checks cfg and that the plugins and nft can be found. It writes
// nothing: the bridge, the data dirs and the nftables tables (the node-wide
// masquerade rule included) appear on the first Add. Errors wrap
// ErrInvalidConfig or ErrMissingDependency.
func New(cfg Config) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, t := range pluginTypes {
		if _, err := invoke.FindInPath(t, cfg.PluginDirs); err != nil {
			return nil, fmt.Errorf("%w: plugin %s in %v: %v", ErrMissingDependency, t, cfg.PluginDirs, err)
		}
	}
	// portmap's nftables backend runs `nft` through sigs.k8s.io/knftables;
	// without it the first Add with a port mapping would fail.
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("%w: nft (Debian package nftables) not in PATH: %v", ErrMissingDependency, err)
	}
	main, err := cfg.conflistJSON()
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	list, err := libcni.NetworkConfFromBytes(main)
	if err != nil {
		return nil, fmt.Errorf("parse conflist: %w", err)
	}
	bare, err := cfg.noPortsConflistJSON()
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	noPorts, err := libcni.NetworkConfFromBytes(bare)
	if err != nil {
		return nil, fmt.Errorf("parse conflist: %w", err)
	}
	return &Network{
		cfg: cfg,
		// An explicit exec: with nil, libcni sets a default lazily on each
		// call, a data race between concurrent Adds. Plugins' stderr (debug
		// output; their errors come back on stdout) goes to ours, as kubelet's.
		cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cfg.cacheDir(), &invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: os.Stderr},
			PluginDecoder: version.PluginDecoder{},
		}),
		list:    list,
		noPorts: noPorts,
	}, nil
}

// Config returns the config in use, defaults filled in.
func (n *Network) Config() Config {
	c := n.cfg
	c.PluginDirs = append([]string(nil), c.PluginDirs...)
	return c
}

// Add attaches the pod whose network namespace is netnsPath. It first makes
// sure the host netns has the node-wide masquerade rule (ensureNodeRules),
// brings lo up in the pod's netns over netlink, then runs CNI ADD of the
// "rafter" conflist with IfName eth0, CNI_CONTAINERID = pod.UID and
// kubelet's CNI_ARGS, and ports as portmap's portMappings runtime config.
// Without ports the list has no portmap.
//
// Add is idempotent for a pod already attached through the same netnsPath:
// it returns the cached result without running plugins. A pod attached
// through another live netns gets ErrAttached. A cached attachment whose
// netns no longer has the pod's address (a reboot emptied NetnsDir, or the
// netns was replaced) is torn down first and the pod attached afresh, so a
// restarted agent may call NewNetns and Add again for every pod it runs.
//
// If a plugin fails, Add runs the same teardown as Del before returning, so
// a failed Add holds no IP, veth or rule; the error then carries both
// failures if the teardown failed too. Errors for bad arguments wrap
// ErrInvalidArgument; plugin errors wrap libcni's (*types.Error).
func (n *Network) Add(ctx context.Context, pod PodRef, netnsPath string, ports []PortMapping) (Result, error) {
	if err := validPod(pod); err != nil {
		return Result{}, err
	}
	if mounted, err := isNetnsMount(netnsPath); err != nil || !mounted {
		return Result{}, fmt.Errorf("%w: pod %s netns %q is not a network namespace (%v)", ErrInvalidArgument, pod, netnsPath, err)
	}
	mappings, err := n.portMappings(ports)
	if err != nil {
		return Result{}, fmt.Errorf("pod %s: %w", pod, err)
	}
	rt := n.runtimeConf(pod, netnsPath, PodInterface)
	rt.CapabilityArgs = map[string]any{"portMappings": mappings}

	list := n.list
	if len(mappings) == 0 {
		list = n.noPorts
	}

	// Before the cache check, so that re-Adding every pod after a restart
	// puts back a rule that something flushed.
	if err := inNetns(n.cfg.HostNetns, n.cfg.ensureNodeRules); err != nil {
		return Result{}, fmt.Errorf("pod %s: %w", pod, err)
	}
	if res, ok, err := n.existing(ctx, pod, netnsPath); err != nil || ok {
		return res, err
	}
	if err := loopbackUp(netnsPath); err != nil {
		return Result{}, fmt.Errorf("pod %s: %w", pod, err)
	}

	var out Result
	err = inNetns(n.cfg.HostNetns, func() error {
		r, err := n.cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		out, err = parseResult(r, netnsPath)
		return err
	})
	if err != nil {
		err = fmt.Errorf("cni add pod %s: %w", pod, err)
		// A fresh context: the caller's may be what made Add fail.
		if derr := n.del(context.WithoutCancel(ctx), pod, netnsPath, rt, list); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo failed add: %w", derr))
		}
		return Result{}, err
	}
	return out, nil
}

// Del detaches the pod: CNI DEL of the conflist (in reverse: portmap if the
// pod's list had it, then bridge, which deletes the veth and releases the IP
// through host-local). It uses the config and port mappings cached by Add,
// so rules are removed as they were made even if Config changed since (a
// pod attached by an older version also loses its per-pod masquerade rule
// and its loopback cache entry). It leaves lo and the node-wide masquerade
// rule alone.
//
// Del is idempotent and works whatever state the pod is in: netnsPath (the
// one given to Add) may be empty, already deleted, or never attached. When the netns is gone, the
// plugins are handed an empty throwaway netns instead, because the bridge
// plugin skips its masquerade teardown when CNI_NETNS does not exist; the IP
// is released either way. A veth whose netns is gone went with it.
func (n *Network) Del(ctx context.Context, pod PodRef, netnsPath string) error {
	if err := validPod(pod); err != nil {
		return err
	}
	rt := n.runtimeConf(pod, netnsPath, PodInterface)
	if err := n.del(ctx, pod, netnsPath, rt, nil); err != nil {
		return fmt.Errorf("cni del pod %s: %w", pod, err)
	}
	return nil
}

// del runs DEL of the list cached for the pod's ADD. Without a cache entry
// it runs DEL of undo with rt's port mappings (Add's undo passes the list
// and mappings it tried), or, with a nil undo, of the full list with a
// placeholder mapping.
func (n *Network) del(ctx context.Context, pod PodRef, netnsPath string, rt *libcni.RuntimeConf, undo *libcni.NetworkConfigList) error {
	list := n.list
	if undo != nil {
		list = undo
	}
	cachedConf, cachedRt, err := n.cni.GetNetworkListCachedConfig(list, rt)
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	if cachedConf != nil {
		l, err := libcni.NetworkConfFromBytes(cachedConf)
		if err != nil {
			return fmt.Errorf("parse cached conflist: %w", err)
		}
		list = l
		rt.CapabilityArgs = cachedRt.CapabilityArgs
	} else if undo == nil {
		// Nothing cached: an Add that failed and whose undo failed too, or
		// a Del already done. portmap's DEL returns early without mappings,
		// and removes rules by container ID, not by mapping, so any one
		// entry makes it remove whatever this pod left.
		rt.CapabilityArgs = map[string]any{"portMappings": []portMapEntry{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}
	}

	run := func(nsPath string) error {
		rt.NetNS = nsPath
		return inNetns(n.cfg.HostNetns, func() error {
			return n.cni.DelNetworkList(ctx, list, rt)
		})
	}
	mounted := false
	if netnsPath != "" {
		if mounted, err = isNetnsMount(netnsPath); err != nil {
			return err
		}
	}
	if mounted {
		err = run(netnsPath)
	} else {
		err = withEmptyNetns(run)
	}
	if err != nil {
		return err
	}
	return n.removeLegacyLoopback(pod)
}

// removeLegacyLoopback removes the libcni cache entry of the loopback list
// that older versions ran for the pod, as libcni's own DEL would (the file
// DataDir/cache/results/rafter-loopback-<uid>-lo). The loopback plugin's
// DEL would only set lo down in a netns that is going away, and it need not
// be installed any more.
func (n *Network) removeLegacyLoopback(pod PodRef) error {
	path := filepath.Join(n.cfg.cacheDir(), "results", loopbackNetworkName+"-"+pod.UID+"-lo")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove loopback cache entry: %w", err)
	}
	return nil
}

// loopbackUp sets lo up in the netns at nsPath, which is what the loopback
// plugin's ADD did: the kernel gives every netns a lo with 127.0.0.1/8 and
// ::1, down.
func loopbackUp(nsPath string) error {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("lo up in %s: %w", nsPath, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo up in %s: %w", nsPath, err)
	}
	return nil
}

// existing looks for an earlier Add of pod in libcni's cache. A live one
// through netnsPath (its eth0 still has the cached address) is returned as
// is. A live one through another netns is ErrAttached. A stale one (its
// netns gone or replaced, e.g. /var/run/netns emptied by a reboot while
// DataDir survived) is torn down as Del would, and Add starts afresh.
func (n *Network) existing(ctx context.Context, pod PodRef, netnsPath string) (Result, bool, error) {
	atts, err := n.cni.GetCachedAttachments(pod.UID)
	if err != nil {
		return Result{}, false, fmt.Errorf("pod %s: read cache: %w", pod, err)
	}
	for _, a := range atts {
		if a.Network != NetworkName || a.IfName != PodInterface {
			continue
		}
		rt := n.runtimeConf(pod, a.NetNS, PodInterface)
		r, err := n.cni.GetNetworkListCachedResult(n.list, rt)
		if err != nil {
			return Result{}, false, fmt.Errorf("pod %s: read cached result: %w", pod, err)
		}
		var res Result
		live := false
		if r != nil {
			if res, err = parseResult(r, a.NetNS); err == nil {
				live = hasAddr(a.NetNS, res.IP)
			}
		}
		switch {
		case live && a.NetNS == netnsPath:
			return res, true, nil
		case live:
			return Result{}, false, fmt.Errorf("%w: pod %s through netns %s", ErrAttached, pod, a.NetNS)
		}
		if err := n.del(ctx, pod, a.NetNS, rt, nil); err != nil {
			return Result{}, false, fmt.Errorf("pod %s: tear down stale attachment: %w", pod, err)
		}
	}
	return Result{}, false, nil
}

// hasAddr reports whether PodInterface in the netns at nsPath carries ip.
// Any failure to look (no such netns, no such link) is a no.
func hasAddr(nsPath string, ip netip.Addr) bool {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return false
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return false
	}
	defer h.Close()
	link, err := h.LinkByName(PodInterface)
	if err != nil {
		return false
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			return true
		}
	}
	return false
}

// GC detaches every pod this node's CNI state knows of whose UID is not in
// live: pods with a cached attachment (of either list) and owners of
// host-local allocations without one (an Add that died half-way). It is
// for the agent after a restart, when pods may have been deleted while it
// was down. live must hold every pod an Add or Del may be running for;
// GC's Dels are those of Del, so the same guarantees hold. It returns the
// joined errors of the pods it could not detach and tries all of them.
func (n *Network) GC(ctx context.Context, live map[string]bool) error {
	atts, err := n.cni.GetCachedAttachments("")
	if err != nil {
		return fmt.Errorf("gc: read cache: %w", err)
	}
	type stale struct {
		pod   PodRef
		netns string
	}
	var order []string
	byUID := map[string]*stale{}
	note := func(uid string) *stale {
		s, ok := byUID[uid]
		if !ok {
			// Del needs no real names: they only travel in CNI_ARGS.
			s = &stale{pod: PodRef{Namespace: "unknown", Name: "unknown", UID: uid}}
			byUID[uid] = s
			order = append(order, uid)
		}
		return s
	}
	for _, a := range atts {
		if live[a.ContainerID] || (a.Network != NetworkName && a.Network != loopbackNetworkName) {
			continue
		}
		s := note(a.ContainerID)
		for _, kv := range a.CniArgs {
			switch kv[0] {
			case "K8S_POD_NAMESPACE":
				s.pod.Namespace = kv[1]
			case "K8S_POD_NAME":
				s.pod.Name = kv[1]
			}
		}
		if a.Network == NetworkName {
			s.netns = a.NetNS
		}
	}
	alloc, err := n.Allocated()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, uid := range alloc {
		if !live[uid] {
			note(uid)
		}
	}
	var errs []error
	for _, uid := range order {
		s := byUID[uid]
		if err := n.del(ctx, s.pod, s.netns, n.runtimeConf(s.pod, s.netns, PodInterface), nil); err != nil {
			errs = append(errs, fmt.Errorf("gc pod %s (uid %s): %w", s.pod, uid, err))
		}
	}
	return errors.Join(errs...)
}

// Allocated lists the addresses host-local holds, each with the container ID
// (pod UID) it was allocated to. It reads host-local's files without its
// lock, so an allocation racing with it may or may not be listed.
func (n *Network) Allocated() (map[netip.Addr]string, error) {
	dir := filepath.Join(n.cfg.ipamDir(), NetworkName)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[netip.Addr]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read allocations: %w", err)
	}
	out := make(map[netip.Addr]string, len(entries))
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue // the lock and last_reserved_ip.N files
		}
		id, err := readOwner(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read allocation %s: %w", ip, err)
		}
		out[ip] = id
	}
	return out, nil
}

// readOwner reads a host-local reservation: "<containerID>\r\n<ifname>".
func readOwner(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("empty reservation %s: %w", path, err)
	}
	return strings.TrimSpace(line), nil
}

func validPod(pod PodRef) error {
	if pod.UID == "" || pod.Name == "" || pod.Namespace == "" {
		return fmt.Errorf("%w: pod %s needs namespace, name and UID", ErrInvalidArgument, pod)
	}
	// CNI_ARGS is "K=V;K=V": a ';' or '=' in a value would corrupt it.
	for _, s := range []string{pod.Namespace, pod.Name, pod.UID} {
		if strings.ContainsAny(s, ";=") {
			return fmt.Errorf("%w: pod %s: ';' or '=' in %q", ErrInvalidArgument, pod, s)
		}
	}
	return nil
}

// String is "namespace/name".
func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// runtimeConf is what kubelet passes: the pod UID as container ID and its
// CNI_ARGS (IgnoreUnknown first, so plugins that parse CNI_ARGS into a struct
// accept the K8S_ keys).
func (n *Network) runtimeConf(pod PodRef, netnsPath, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: pod.UID,
		NetNS:       netnsPath,
		IfName:      ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", pod.UID},
			{"K8S_POD_UID", pod.UID},
		},
	}
}

// portMapEntry is portmap's runtime config entry (CNI CONVENTIONS.md).
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func (n *Network) portMappings(ports []PortMapping) ([]portMapEntry, error) {
	out := make([]portMapEntry, 0, len(ports))
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = ProtocolTCP
		}
		switch proto {
		case ProtocolTCP, ProtocolUDP, ProtocolSCTP:
		default:
			return nil, fmt.Errorf("%w: port mapping protocol %q", ErrInvalidArgument, p.Protocol)
		}
		if p.HostPort == 0 || p.ContainerPort == 0 {
			return nil, fmt.Errorf("%w: port mapping %d->%d: ports must be non-zero", ErrInvalidArgument, p.HostPort, p.ContainerPort)
		}
		e := portMapEntry{HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: strings.ToLower(string(proto))}
		if p.HostIP.IsValid() {
			// portmap silently skips a hostIP of the other family.
			if !p.HostIP.Is4() {
				return nil, fmt.Errorf("%w: port mapping host IP %s is not IPv4", ErrInvalidArgument, p.HostIP)
			}
			e.HostIP = p.HostIP.String()
		}
		out = append(out, e)
	}
	return out, nil
}

// parseResult picks the IPv4 address that bridge put on the pod's interface
// (the one whose interface is PodInterface inside netnsPath).
func parseResult(r types.Result, netnsPath string) (Result, error) {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return Result{}, fmt.Errorf("convert result: %w", err)
	}
	for _, ipc := range res.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(res.Interfaces) {
			continue
		}
		intf := res.Interfaces[*ipc.Interface]
		if intf.Name != PodInterface || intf.Sandbox != netnsPath {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		gw, _ := netip.AddrFromSlice(ipc.Gateway)
		return Result{IP: ip.Unmap(), Gateway: gw.Unmap(), Interface: intf.Name}, nil
	}
	return Result{}, fmt.Errorf("result has no IPv4 address on %s in %s: %s", PodInterface, netnsPath, res)
}

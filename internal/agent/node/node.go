// Package node puts a real node agent together: the hollow agent's
// registration, Leases and pod watch (one node, its real address), with the
// pod workers of internal/agent running pods through libcontainer
// (internal/agent/runtime), the image store (internal/agent/images) and CNI
// (internal/cni).
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/agent"
	"github.com/rafter-dev/rafter/internal/agent/hollow"
	"github.com/rafter-dev/rafter/internal/agent/images"
	"github.com/rafter-dev/rafter/internal/agent/runtime"
	"github.com/rafter-dev/rafter/internal/agent/stream"
	"github.com/rafter-dev/rafter/internal/cni"
	"github.com/rafter-dev/rafter/internal/svcproxy"
)

// Config is a real node's setup.
type Config struct {
	Name    string
	DataDir string     // images, pod volumes, logs, CNI state
	NodeIP  netip.Addr // the node's InternalIP; pods' hostIP
	// RuntimeRoot holds the container shims' state and sockets; it must be
	// short (unix socket paths). Default /run/rafter/<name>.
	RuntimeRoot        string
	CNIPluginDirs      []string
	Bridge             string // the pods' Linux bridge; default cni.DefaultBridge
	InsecureRegistries []string
	ClusterDNS         []string
	ClusterDomain      string
	// Capacity overrides what is read from the host (cpu, memory).
	CPU, Memory, Pods string
	LeaseInterval     time.Duration
	// AgentPort is where the node serves the NodeAgent service (logs, exec,
	// image loads) on NodeIP, and the port its Node reports as
	// daemonEndpoints.kubeletEndpoint; 0 picks a free one.
	AgentPort int
	// ServiceProxy runs internal/svcproxy: ClusterIP and NodePort rules in
	// the host netns's nftables table ip rafter-svc.
	ServiceProxy bool
	Logger       *slog.Logger
}

// Run runs the node until ctx ends.
func Run(ctx context.Context, cfg Config, conns ...grpc.ClientConnInterface) error {
	if cfg.Name == "" || cfg.DataDir == "" || !cfg.NodeIP.IsValid() {
		return errors.New("node: name, data dir and node IP are required")
	}
	if cfg.AgentPort < 0 || cfg.AgentPort > 65535 {
		return fmt.Errorf("node: agent port %d is not a valid port", cfg.AgentPort)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RuntimeRoot == "" {
		cfg.RuntimeRoot = filepath.Join("/run/rafter", cfg.Name)
	}
	if cfg.CPU == "" {
		cfg.CPU = strconv.Itoa(goruntime.NumCPU())
	}
	if cfg.Memory == "" {
		cfg.Memory = hostMemory()
	}
	if cfg.Pods == "" {
		cfg.Pods = "110"
	}
	rcfg := runtime.DefaultConfig()
	rcfg.Root, rcfg.Logger = cfg.RuntimeRoot, cfg.Logger.With("part", "runtime")
	rt, err := runtime.New(rcfg)
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	store, err := images.NewStore(filepath.Join(cfg.DataDir, "images"), images.Options{Insecure: cfg.InsecureRegistries, Logger: cfg.Logger.With("part", "images")})
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	clock := realClock{}
	api := agent.NewAPIClient(clock, conns...)
	network := &cniNetwork{cfg: cfg, conns: conns}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	allocatable := map[string]*structpb.Value{"cpu": structpb.NewStringValue(cfg.CPU), "memory": structpb.NewStringValue(cfg.Memory)}
	pods := agent.NewPods(agent.PodsConfig{
		Root: cfg.DataDir, NodeName: cfg.Name, NodeIP: cfg.NodeIP,
		DNS:         agent.DNSConfig{Servers: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, HostResolv: string(hostResolv)},
		Allocatable: allocatable, LogMaxBytes: 10 << 20, Clock: clock, Logger: cfg.Logger,
	}, runtimeAdapter{rt, rcfg.CgroupRoot}, imageAdapter{store}, network, api, api, api)

	hcfg := hollow.DefaultConfig()
	hcfg.Prefix, hcfg.Count, hcfg.ExactName, hcfg.Address = cfg.Name, 1, true, cfg.NodeIP
	hcfg.CPU, hcfg.Memory, hcfg.Pods = cfg.CPU, cfg.Memory, cfg.Pods
	hcfg.Runner, hcfg.Logger = pods, cfg.Logger
	hcfg.NodeInfo = nodeInfo()
	if cfg.LeaseInterval > 0 {
		hcfg.LeaseInterval = cfg.LeaseInterval
		hcfg.LeaseDuration = max(hcfg.LeaseDuration, 4*cfg.LeaseInterval).Round(time.Second)
	}
	streams, err := stream.New(stream.Config{Containers: pods, Exec: execAdapter{rt}, Images: loadAdapter{store},
		Logger: cfg.Logger.With("part", "stream")})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", netip.AddrPortFrom(cfg.NodeIP, uint16(cfg.AgentPort)).String())
	if err != nil {
		return fmt.Errorf("agent port: %w", err)
	}
	hcfg.KubeletPort = lis.Addr().(*net.TCPAddr).Port
	a, err := hollow.New(hcfg, conns...)
	if err != nil {
		lis.Close()
		return err
	}
	var proxy *svcproxy.Proxy
	if cfg.ServiceProxy {
		pcfg := svcproxy.DefaultConfig()
		pcfg.Logger = cfg.Logger.With("part", "svcproxy")
		if proxy, err = svcproxy.New(pcfg, conns...); err != nil {
			lis.Close()
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pods.Run(ctx) })
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return streams.Run(ctx, lis) })
	if proxy != nil {
		g.Go(func() error { return proxy.Run(ctx) })
	}
	return g.Wait()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// hostMemory is MemTotal from /proc/meminfo as a quantity ("16331756Ki").
func hostMemory() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "1Gi"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			return f[1] + "Ki"
		}
	}
	return "1Gi"
}

func nodeInfo() *corev1.NodeSystemInfo {
	var u unix.Utsname
	_ = unix.Uname(&u)
	machineID, _ := os.ReadFile("/etc/machine-id")
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return &corev1.NodeSystemInfo{
		MachineID: strings.TrimSpace(string(machineID)), BootID: strings.TrimSpace(string(bootID)),
		KernelVersion: unix.ByteSliceToString(u.Release[:]), OsImage: osImage(),
		ContainerRuntimeVersion: "rafter://libcontainer", KubeletVersion: "v1.37.2-rafter",
		OperatingSystem: "linux", Architecture: goruntime.GOARCH,
	}
}

func osImage() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// runtimeAdapter is internal/agent's Runtime over libcontainer; pod cgroups go
// under the runtime's cgroup root.
type runtimeAdapter struct {
	rt         *runtime.Libcontainer
	cgroupRoot string
}

func (r runtimeAdapter) Create(ctx context.Context, s agent.ContainerSpec) error {
	spec := runtime.ContainerSpec{ID: s.ID, Rootfs: s.Rootfs, Args: s.Args, Env: s.Env, Cwd: s.Cwd, Hostname: s.Hostname,
		User: runtime.User{UID: s.UID, GID: s.GID}, NetnsPath: s.NetnsPath,
		Resources:    runtime.Resources{MemoryLimit: s.MemoryLimit, CPUQuota: s.CPUQuota, CPUPeriod: s.CPUPeriod, CPUShares: s.CPUShares},
		CgroupParent: r.cgroupRoot + "/" + s.CgroupParent, LogPath: s.LogPath, LogMaxBytes: s.LogMaxBytes}
	for _, m := range s.Mounts {
		spec.Mounts = append(spec.Mounts, runtime.Mount{Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly, Type: "bind"})
	}
	return r.rt.Create(ctx, spec)
}

func (r runtimeAdapter) Start(ctx context.Context, id string) error { return r.rt.Start(ctx, id) }

func (r runtimeAdapter) Stop(ctx context.Context, id string, grace time.Duration) error {
	return notFound(r.rt.Stop(ctx, id, grace), true)
}

func (r runtimeAdapter) Remove(ctx context.Context, id string) error {
	return notFound(r.rt.Remove(ctx, id), true)
}

func (r runtimeAdapter) State(ctx context.Context, id string) (agent.ContainerState, error) {
	st, err := r.rt.State(ctx, id)
	if err != nil {
		return agent.ContainerState{}, notFound(err, false)
	}
	return convertState(st), nil
}

func (r runtimeAdapter) List(ctx context.Context) ([]agent.ContainerState, error) {
	list, err := r.rt.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]agent.ContainerState, 0, len(list))
	for _, st := range list {
		out = append(out, convertState(st))
	}
	return out, nil
}

func (r runtimeAdapter) Exec(ctx context.Context, id string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return r.rt.Exec(ctx, id, runtime.ExecOptions{Args: args, Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// execAdapter is the stream server's Execer over libcontainer, with a
// terminal when asked for one.
type execAdapter struct{ rt *runtime.Libcontainer }

func (e execAdapter) Exec(ctx context.Context, id string, o stream.ExecOptions) (int, error) {
	return e.rt.Exec(ctx, id, runtime.ExecOptions{Args: o.Args, TTY: o.TTY, Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr})
}

// loadAdapter is the stream server's ImageLoader over the image store.
type loadAdapter struct{ s *images.Store }

func (l loadAdapter) Load(r io.Reader) ([]string, error) {
	imgs, err := l.s.Load(r)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, img := range imgs {
		if img.Ref != "" {
			refs = append(refs, img.Ref)
		} else {
			refs = append(refs, img.ID)
		}
	}
	return refs, nil
}

// notFound maps the runtime's ErrNotFound to internal/agent's (or to nil for
// idempotent calls).
func notFound(err error, ignore bool) error {
	if errors.Is(err, runtime.ErrNotFound) {
		if ignore {
			return nil
		}
		return fmt.Errorf("%w: %w", agent.ErrNotFound, err)
	}
	return err
}

func convertState(st runtime.State) agent.ContainerState {
	s := agent.ContainerState{ID: st.ID, Pid: st.Pid, ExitCode: st.ExitCode, Reason: st.Reason, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt}
	switch st.Status {
	case runtime.Created:
		s.Status = agent.StateCreated
	case runtime.Running:
		s.Status = agent.StateRunning
	case runtime.Exited:
		s.Status = agent.StateExited
	default:
		s.Status = agent.StateUnknown
	}
	return s
}

// imageAdapter is internal/agent's Images over the image store.
type imageAdapter struct{ s *images.Store }

func (a imageAdapter) Pull(ctx context.Context, ref, policy string, secrets [][]byte) (agent.Image, error) {
	creds := images.Credentials{}
	for _, d := range secrets {
		if c, err := images.CredentialsFromDockerConfigJSON(d); err == nil {
			for k, v := range c {
				creds[k] = v
			}
		}
	}
	img, err := a.s.Ensure(ctx, ref, images.PullPolicy(policy), creds)
	if err != nil {
		var pe *images.PullError
		if errors.As(err, &pe) || errors.Is(err, images.ErrNeverPull) {
			return agent.Image{}, &agent.PullError{Message: err.Error(), Never: errors.Is(err, images.ErrNeverPull)}
		}
		return agent.Image{}, err
	}
	return agent.Image{Ref: ref, ID: img.RepoDigest(), Config: agent.ImageConfig{Entrypoint: img.Config.Entrypoint,
		Cmd: img.Config.Cmd, Env: img.Config.Env, WorkingDir: img.Config.WorkingDir}}, nil
}

func (a imageAdapter) Rootfs(id, ref string) (string, error) {
	img, ok := a.s.Get(ref)
	if !ok {
		return "", fmt.Errorf("image %q is not in the store", ref)
	}
	return a.s.Mount(id, img)
}

func (a imageAdapter) ReleaseRootfs(id string) error { return a.s.Unmount(id) }

// cniNetwork is internal/agent's Network over CNI. The pod network needs the
// node's podCIDR, which the control plane assigns after registration: it is
// read from the Node on first use.
type cniNetwork struct {
	cfg   Config
	conns []grpc.ClientConnInterface

	mu sync.Mutex
	n  *cni.Network
}

func (c *cniNetwork) network(ctx context.Context) (*cni.Network, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n != nil {
		return c.n, nil
	}
	var node *corev1.Node
	var err error
	for _, conn := range c.conns {
		node, err = corev1.NewNodesClient(conn).Get(ctx, &metav1.GetRequest{Name: c.cfg.Name})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read node %s: %w", c.cfg.Name, err)
	}
	cidr, err := netip.ParsePrefix(node.GetSpec().GetPodCIDR())
	if err != nil {
		return nil, fmt.Errorf("node %s has no podCIDR yet", c.cfg.Name)
	}
	ncfg := cni.DefaultConfig()
	ncfg.PodCIDR, ncfg.DataDir = cidr.Masked(), filepath.Join(c.cfg.DataDir, "cni")
	if c.cfg.Bridge != "" {
		ncfg.Bridge = c.cfg.Bridge
	}
	if len(c.cfg.CNIPluginDirs) > 0 {
		ncfg.PluginDirs = c.cfg.CNIPluginDirs
	}
	n, err := cni.New(ncfg)
	if err != nil {
		return nil, err
	}
	c.n = n
	return n, nil
}

func podRef(pod *corev1.Pod) cni.PodRef {
	md := pod.GetMetadata()
	return cni.PodRef{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid()}
}

func (c *cniNetwork) SetUp(ctx context.Context, pod *corev1.Pod) (string, netip.Addr, error) {
	n, err := c.network(ctx)
	if err != nil {
		return "", netip.Addr{}, err
	}
	path, err := n.NewNetns(pod.GetMetadata().GetUid())
	if err != nil {
		return "", netip.Addr{}, err
	}
	var ports []cni.PortMapping
	for _, ctr := range pod.GetSpec().GetContainers() {
		for _, p := range ctr.GetPorts() {
			if p.GetHostPort() <= 0 {
				continue
			}
			pm := cni.PortMapping{HostPort: uint16(p.GetHostPort()), ContainerPort: uint16(p.GetContainerPort()), Protocol: cni.Protocol(p.GetProtocol())}
			if ip, err := netip.ParseAddr(p.GetHostIP()); err == nil {
				pm.HostIP = ip
			}
			ports = append(ports, pm)
		}
	}
	res, err := n.Add(ctx, podRef(pod), path, ports)
	if err != nil {
		return "", netip.Addr{}, err
	}
	return path, res.IP, nil
}

func (c *cniNetwork) TearDown(ctx context.Context, pod *corev1.Pod) error {
	n, err := c.network(ctx)
	if err != nil {
		return err
	}
	uid := pod.GetMetadata().GetUid()
	return errors.Join(n.Del(ctx, podRef(pod), n.NetnsPath(uid)), n.DeleteNetns(uid))
}

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// proc is a process the bench started: a controlplane peer or the nodeagent.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	grpc string // peers only
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the process with its output in logPath; it is killed if the
// bench dies (Pdeathsig), and reaped in the background.
func start(name, logPath string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM and waits up to grace before SIGKILL.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startCluster starts 3 bootstrapped controlplane peers on free loopback
// ports. freePort closes its listener before a peer binds the port, so
// another process may take it meanwhile and the peer then exits at once: such
// a cluster is stopped and started again on new ports (at most 3 times).
func startCluster(c config, logDir string) ([]*proc, error) {
	for attempt := 1; ; attempt++ {
		peers, err := startPeers(c, logDir, attempt)
		if err != nil {
			stopAll(peers)
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
		var exited *proc
		for _, p := range peers {
			if p.exited() {
				exited = p
			}
		}
		if exited == nil {
			return peers, nil
		}
		stopAll(peers)
		if attempt == 3 {
			return nil, fmt.Errorf("peer %s exited at start three times:\n%s", exited.name, tailFile(exited.log, 10))
		}
	}
}

func stopAll(procs []*proc) {
	for _, p := range procs {
		p.stop(10 * time.Second)
	}
}

// startPeers starts 3 bootstrapped controlplane peers on free loopback ports.
func startPeers(c config, logDir string, attempt int) ([]*proc, error) {
	var raft, boot []string
	for i := range 3 {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		raft = append(raft, a)
		boot = append(boot, fmt.Sprintf("p%d=%s", i+1, a))
	}
	var peers []*proc
	for i := range 3 {
		g, err1 := freePort()
		h, err2 := freePort()
		if err1 != nil || err2 != nil {
			return peers, fmt.Errorf("free port: %v %v", err1, err2)
		}
		id := fmt.Sprintf("p%d", i+1)
		p, err := start(id, filepath.Join(logDir, id+".log"), c.controlplane, "--id="+id,
			"--data-dir="+filepath.Join(c.workDir, fmt.Sprintf("%s-%d", id, attempt)), "--raft-addr="+raft[i], "--grpc-addr="+g, "--http-addr="+h,
			"--bootstrap="+strings.Join(boot, ","), "--cluster-cidr="+c.clusterCIDR, "--log-level=warn")
		if err != nil {
			return peers, err
		}
		p.grpc = g
		peers = append(peers, p)
	}
	return peers, nil
}

func dial(peers []*proc) ([]*grpc.ClientConn, error) {
	var conns []*grpc.ClientConn
	for _, p := range peers {
		c, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// waitServing waits until every peer serves a linearizable read.
func waitServing(ctx context.Context, peers []*proc, conns []*grpc.ClientConn) error {
	for i, conn := range conns {
		ns := corev1.NewNamespacesClient(conn)
		for {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := ns.Get(rctx, &metav1.GetRequest{Name: "default"})
			cancel()
			if err == nil {
				break
			}
			if peers[i].exited() {
				return fmt.Errorf("peer %s exited (a port taken?):\n%s", peers[i].name, tailFile(peers[i].log, 10))
			}
			if ctx.Err() != nil {
				return fmt.Errorf("peer %s never served reads: %v", peers[i].name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// startNode runs the real node agent, as e2e's startRealNode does.
func startNode(c config, peers []*proc, logDir string) (*proc, error) {
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.grpc)
	}
	return start(nodeName, filepath.Join(logDir, "nodeagent.log"), c.nodeagent, "--name="+nodeName,
		"--server="+strings.Join(addrs, ","), "--data-dir="+nodeDataDir(c), "--node-ip=127.0.0.1",
		"--cni-bin-dir="+c.cniDir, "--runtime-root="+nodeRuntimeRoot(), "--lease-interval=1s",
		"--log-level="+c.agentLogLevel)
}

func nodeDataDir(c config) string { return filepath.Join(c.workDir, "node") }
func nodeRuntimeRoot() string     { return filepath.Join(runtimeParent, nodeName) }

// waitNodeReady waits until the node is Ready and has a podCIDR.
func waitNodeReady(ctx context.Context, conn grpc.ClientConnInterface, agent *proc) error {
	nodes := corev1.NewNodesClient(conn)
	var last string
	for {
		n, err := nodes.Get(ctx, &metav1.GetRequest{Name: nodeName})
		if err == nil {
			ready := false
			for _, cond := range n.GetStatus().GetConditions() {
				ready = ready || (cond.GetType() == "Ready" && cond.GetStatus() == "True")
			}
			if ready && n.GetSpec().GetPodCIDR() != "" {
				return nil
			}
			last = fmt.Sprintf("ready=%v podCIDR=%q", ready, n.GetSpec().GetPodCIDR())
		} else {
			last = err.Error()
		}
		if agent.exited() {
			return fmt.Errorf("nodeagent exited:\n%s", tailFile(agent.log, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready with a podCIDR: %s", nodeName, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cpuSeconds is the user+system CPU time of a process so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// hostCPU is the machine's busy and total CPU time so far (/proc/stat).
func hostCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy / 100, total / 100
}

// tailFile returns the last n lines of a file, leaving out those that
// contain any of skip.
func tailFile(path string, n int, skip ...string) string {
	b, _ := os.ReadFile(path)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		keep := true
		for _, s := range skip {
			keep = keep && !strings.Contains(l, s)
		}
		if keep {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// readyTimeout bounds how long a fresh cluster may take to serve its first write.
const readyTimeout = 60 * time.Second

// proc is one child process whose stdout and stderr go to a log file.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and err is set
	err     error
}

// startProc starts bin with args. The child gets its own process group, so a Ctrl-C
// on the terminal reaches only this driver, which then stops the child itself; it is
// also killed by the kernel if the driver dies without cleaning up.
func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited returns a non-nil error when the process has already ended.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (%v); last log lines:\n%s", p.name, p.err, p.tail(20))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group. It blocks
// until the process has exited.
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
		progress(fmt.Sprintf("%s did not exit within %s of SIGTERM; killing it", p.name, grace))
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// cluster is a set of processes started and stopped together.
type cluster struct {
	procs []*proc
}

// healthy returns the first early exit among the processes, if any.
func (c *cluster) healthy() error {
	for _, p := range c.procs {
		if err := p.exited(); err != nil {
			return err
		}
	}
	return nil
}

// cpuTime returns the user+sys CPU time the process has used so far, or 0 when
// it cannot be read (the process has exited).
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat, in clock ticks
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuTime returns the CPU time used so far by all the cluster's processes.
func (c *cluster) cpuTime() time.Duration {
	var sum time.Duration
	for _, p := range c.procs {
		sum += p.cpuTime()
	}
	return sum
}

// stop stops the processes one after another and waits for each. One at a time,
// because an etcd leader stopped after its followers keeps trying to hand over
// leadership for several seconds.
func (c *cluster) stop() {
	for _, p := range c.procs {
		p.stop(10 * time.Second)
	}
}

// freePorts asks the kernel for n distinct free loopback ports. Every listener is
// held until all are chosen so no port repeats; another process could still take
// one before the cluster binds it, which then shows up as a startup failure.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// rafterCluster is three controlplane peers.
type rafterCluster struct {
	cluster
	grpcAddrs []string
	httpAddrs []string
}

// startRafter starts three peers bootstrapped together, with data dirs under dir,
// and waits until every peer accepts a ConfigMap create.
func startRafter(ctx context.Context, bin, dir string, extra []string) (*rafterCluster, error) {
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	c := &rafterCluster{}
	var boot []string
	for i := range 3 {
		boot = append(boot, fmt.Sprintf("p%d=%s", i+1, loopback(ports[3*i])))
	}
	for i := range 3 {
		id := fmt.Sprintf("p%d", i+1)
		raftAddr, grpcAddr, httpAddr := loopback(ports[3*i]), loopback(ports[3*i+1]), loopback(ports[3*i+2])
		data := filepath.Join(dir, "rafter-"+id)
		args := append([]string{"--id=" + id, "--data-dir=" + data, "--raft-addr=" + raftAddr, "--grpc-addr=" + grpcAddr,
			"--http-addr=" + httpAddr, "--bootstrap=" + strings.Join(boot, ","), "--log-level=warn"}, extra...)
		p, err := startProc("rafter "+id, filepath.Join(dir, "rafter-"+id+".log"), bin, args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.grpcAddrs = append(c.grpcAddrs, grpcAddr)
		c.httpAddrs = append(c.httpAddrs, httpAddr)
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *rafterCluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	ok := func(url string) bool {
		resp, err := hc.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for i, addr := range c.httpAddrs {
		err := poll(ctx, &c.cluster, func() error {
			if !ok("http://" + addr + "/readyz") {
				return errors.New("/readyz is not 200")
			}
			if !ok("http://" + addr + "/api/v1/namespaces/default") {
				return errors.New("namespace default is not there yet")
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rafter peer p%d (%s) not ready: %w", i+1, addr, err)
		}
	}
	// One write through each peer proves forwarding to the leader works too.
	for i, addr := range c.grpcAddrs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("dial rafter p%d: %w", i+1, err)
		}
		cm := corev1.NewConfigMapsClient(conn)
		err = poll(ctx, &c.cluster, func() error {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := cm.Create(octx, &corev1.CreateConfigMapRequest{Namespace: "default", Body: &corev1.ConfigMap{
				Metadata: &metav1.ObjectMeta{Name: fmt.Sprintf("bench-ready-p%d", i+1)},
			}})
			if err != nil && strings.Contains(err.Error(), "already exists") {
				return nil
			}
			return err
		})
		conn.Close()
		if err != nil {
			return fmt.Errorf("rafter peer p%d (%s) does not accept writes: %w", i+1, addr, err)
		}
	}
	return nil
}

// etcdCluster is three etcd members.
type etcdCluster struct {
	cluster
	clientURLs []string
}

// startEtcd starts three members with data dirs under dir and waits until every
// member accepts a put. Ports are fresh ones from the kernel, so an etcd already
// serving 2379/2380 on this machine is never involved.
func startEtcd(ctx context.Context, bin, dir string) (*etcdCluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	c := &etcdCluster{}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, loopback(ports[2*i+1])))
	}
	token := fmt.Sprintf("rafter-bench-%d", time.Now().UnixNano())
	for i := range 3 {
		name := fmt.Sprintf("e%d", i+1)
		clientURL, peerURL := "http://"+loopback(ports[2*i]), "http://"+loopback(ports[2*i+1])
		p, err := startProc("etcd "+name, filepath.Join(dir, "etcd-"+name+".log"), bin,
			"--name="+name, "--data-dir="+filepath.Join(dir, "etcd-"+name),
			"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new",
			"--initial-cluster-token="+token, "--logger=zap", "--log-outputs=stderr", "--log-level=warn")
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.clientURLs = append(c.clientURLs, clientURL)
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *etcdCluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for i, ep := range c.clientURLs {
		cli, err := newEtcdClient(ep)
		if err != nil {
			return err
		}
		err = poll(ctx, &c.cluster, func() error {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := cli.Put(octx, fmt.Sprintf("/bench-ready/e%d", i+1), "")
			return err
		})
		cli.Close()
		if err != nil {
			return fmt.Errorf("etcd member e%d (%s) does not accept writes: %w", i+1, ep, err)
		}
	}
	return nil
}

// newEtcdClient returns a client pinned to one endpoint.
func newEtcdClient(endpoint string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", endpoint, err)
	}
	return cli, nil
}

// poll calls check every 100ms until it succeeds, ctx ends or a process of c exits.
func poll(ctx context.Context, c *cluster, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		if herr := c.healthy(); herr != nil {
			return herr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// etcdVersion returns the output of `etcd --version`.
func etcdVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, out)
	}
	return string(bytes.TrimSpace(out)), nil
}

// Command sched measures the scheduler and controllers on a 3-peer cluster of real
// controlplane processes with hollow nodes (internal/agent/hollow, in this
// process): for each scenario it creates Deployments totalling the given number of
// pods and reports pods bound per second and the p50/p99 time from a pod's
// creation (seen in a watch) to its binding (seen in the same watch), with the CPU
// time each peer used. Run it with `make bench-sched`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/agent/hollow"
)

func main() {
	bin := flag.String("controlplane", "bin/controlplane", "controlplane binary")
	scenarios := flag.String("scenarios", "1000x10000,5000x30000", "comma-separated NODESxPODS runs")
	perDeployment := flag.Int("replicas", 100, "replicas per Deployment")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up on a scenario after this long")
	flag.StringVar(&profileDir, "profile", "", "write a CPU profile of each peer, taken while pods are being bound, to this directory (NODESxPODS-pN.cpu)")
	flag.Parse()
	fmt.Printf("%-7s %-7s %-10s %-9s %-9s %-9s %s\n", "NODES", "PODS", "PODS/S", "P50", "P99", "WALL", "PEER CPU (s)")
	for _, sc := range strings.Split(*scenarios, ",") {
		n, p, ok := strings.Cut(sc, "x")
		nodes, err1 := strconv.Atoi(n)
		pods, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil {
			fmt.Fprintf(os.Stderr, "bench-sched: bad scenario %q (want NODESxPODS)\n", sc)
			os.Exit(2)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		line, err := run(ctx, *bin, nodes, pods, *perDeployment)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-sched: %dx%d: %v\n", nodes, pods, err)
			os.Exit(1)
		}
		fmt.Println(line)
	}
}

// profileDir, when set, makes peers serve pprof and the run save their CPU
// profiles there.
var profileDir string

type peerProc struct {
	cmd  *exec.Cmd
	grpc string
	http string
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startPeers(dir, bin string) ([]*peerProc, error) {
	var boot []string
	raft := make([]string, 3)
	for i := range raft {
		raft[i] = freePort()
		boot = append(boot, fmt.Sprintf("p%d=%s", i+1, raft[i]))
	}
	var peers []*peerProc
	for i := range 3 {
		p := &peerProc{grpc: freePort(), http: freePort()}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("p%d.log", i+1)))
		if err != nil {
			return peers, err
		}
		p.cmd = exec.Command(bin, fmt.Sprintf("--id=p%d", i+1), "--data-dir="+filepath.Join(dir, fmt.Sprintf("p%d", i+1)),
			"--raft-addr="+raft[i], "--grpc-addr="+p.grpc, "--http-addr="+p.http, "--bootstrap="+strings.Join(boot, ","), "--log-level=warn")
		if profileDir != "" {
			p.cmd.Args = append(p.cmd.Args, "--pprof")
		}
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			return peers, err
		}
		peers = append(peers, p)
	}
	return peers, nil
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

func run(ctx context.Context, bin string, nodes, pods, perDep int) (string, error) {
	dir, err := os.MkdirTemp("", "rafter-bench-sched-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	peers, err := startPeers(dir, bin)
	defer func() {
		for _, p := range peers {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	if err != nil {
		return "", err
	}
	var conns []grpc.ClientConnInterface
	for _, p := range peers {
		c, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			return "", err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Wait for a leader that serves writes.
	ns := corev1.NewNamespacesClient(conns[0])
	for {
		if _, err := ns.Get(ctx, &metav1.GetRequest{Name: "default"}); err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("cluster never served reads")
		}
		time.Sleep(200 * time.Millisecond)
	}

	hcfg := hollow.DefaultConfig()
	hcfg.Prefix, hcfg.Count, hcfg.Logger = "hollow", nodes, slog.New(slog.DiscardHandler)
	agent, err := hollow.New(hcfg, conns...)
	if err != nil {
		return "", err
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	go func() { _ = agent.Run(actx) }()
	select {
	case <-agent.Registered():
	case <-ctx.Done():
		return "", fmt.Errorf("hollow nodes never registered")
	}

	// Follow every pod: first seen, first seen bound.
	var mu sync.Mutex
	seen, bound := map[string]time.Time{}, map[string]time.Time{}
	allBound := make(chan struct{})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	podsClient := corev1.NewPodsClient(conns[1])
	stream, err := podsClient.Watch(wctx, &metav1.ListRequest{Namespace: "bench"})
	if err != nil {
		return "", err
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			name := ev.GetObject().GetMetadata().GetName()
			mu.Lock()
			if _, ok := seen[name]; !ok {
				seen[name] = now
			}
			if _, ok := bound[name]; !ok && ev.GetObject().GetSpec().GetNodeName() != "" {
				bound[name] = now
				if len(bound) == pods {
					close(allBound)
				}
			}
			mu.Unlock()
		}
	}()
	if _, err := ns.Create(ctx, &corev1.CreateNamespaceRequest{Body: &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "bench"}}}); err != nil {
		return "", err
	}
	cpu0 := make([]float64, len(peers))
	for i, p := range peers {
		cpu0[i] = cpuSeconds(p.cmd.Process.Pid)
	}
	start := time.Now()
	if profileDir != "" {
		for i, p := range peers {
			go saveProfile(ctx, p.http, filepath.Join(profileDir, fmt.Sprintf("%dx%d-p%d.cpu", nodes, pods, i+1)))
		}
	}
	deps := appsv1.NewDeploymentsClient(conns[2])
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := 0; i*perDep < pods; i++ {
		replicas := int32(min(perDep, pods-i*perDep))
		name := fmt.Sprintf("d%04d", i)
		g.Go(func() error {
			_, err := deps.Create(gctx, &appsv1.CreateDeploymentRequest{Namespace: "bench", Body: deployment(name, replicas)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", fmt.Errorf("create deployments: %w", err)
	}
	select {
	case <-allBound:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return "", fmt.Errorf("only %d of %d pods bound (%d created)", len(bound), pods, len(seen))
	}
	wall := time.Since(start)
	var cpu []string
	for i, p := range peers {
		cpu = append(cpu, fmt.Sprintf("p%d=%.1f", i+1, cpuSeconds(p.cmd.Process.Pid)-cpu0[i]))
	}
	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	first, last := time.Time{}, time.Time{}
	for name, b := range bound {
		s := seen[name]
		lat = append(lat, b.Sub(s))
		if first.IsZero() || s.Before(first) {
			first = s
		}
		if b.After(last) {
			last = b
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rate := float64(len(bound)) / last.Sub(first).Seconds()
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("%-7d %-7d %-10.0f %-9s %-9s %-9s %s", nodes, pods, rate, pct(0.5), pct(0.99), wall.Round(100*time.Millisecond), strings.Join(cpu, " ")), nil
}

func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "bench"},
		Spec: &appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: labels},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "registry.local/bench:1",
					Resources: &corev1.ResourceRequirements{Requests: map[string]*structpb.Value{
						"cpu": structpb.NewStringValue("10m"), "memory": structpb.NewStringValue("16Mi")}}}}}}},
	}
}

// saveProfile writes a 10-second CPU profile of the peer serving HTTP at addr.
func saveProfile(ctx context.Context, addr, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/profile?seconds=10", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-sched: profile:", err)
		return
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

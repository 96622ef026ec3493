package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testimage"
)

const benchNamespace = "bench"

// bench is one run against the cluster.
type bench struct {
	cfg   config
	conns []grpc.ClientConnInterface
	image string
	t     *tracker
	uids  map[string]bool // every pod UID the bench made, for the leftover checks
	mu    sync.Mutex      // guards uids
}

func (b *bench) pods(i int) corev1.PodsClient {
	return corev1.NewPodsClient(b.conns[i%len(b.conns)])
}

func (b *bench) podSpec(name string) *corev1.Pod {
	grace := int64(5)
	return &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: benchNamespace, Labels: map[string]string{"app": "bench"}},
		Spec: &corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []*corev1.Container{{Name: "app", Image: b.image, ImagePullPolicy: "IfNotPresent",
				Resources: &corev1.ResourceRequirements{Requests: map[string]*structpb.Value{
					"cpu": structpb.NewStringValue(b.cfg.cpuRequest), "memory": structpb.NewStringValue("16Mi")}}}},
		},
	}
}

// create creates the named pods with at most cfg.clients calls in flight,
// spread over the peers.
func (b *bench) create(ctx context.Context, names []string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.clients)
	for i, name := range names {
		g.Go(func() error {
			b.t.setIssued(name, time.Now())
			pod, err := b.pods(i).Create(gctx, &corev1.CreatePodRequest{Namespace: benchNamespace, Body: b.podSpec(name)})
			if err != nil {
				return fmt.Errorf("create pod %s: %w", name, err)
			}
			b.t.setCreated(name, pod.GetMetadata().GetUid(), time.Now())
			b.mu.Lock()
			b.uids[pod.GetMetadata().GetUid()] = true
			b.mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// waitRunning waits until the watch has shown every named pod Running.
func (b *bench) waitRunning(ctx context.Context, names []string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := b.t.wait(wctx, fmt.Sprintf("%d pods Running", len(names)), func() bool {
		for _, n := range names {
			if b.t.get(n).running.IsZero() {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("%w; %s", err, b.describe())
	}
	return nil
}

// describe summarizes the bench namespace's pods by phase and waiting reason.
// It runs on its own short context: it explains why ctx ended.
func (b *bench) describe() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := b.pods(0).List(ctx, &metav1.ListRequest{Namespace: benchNamespace})
	if err != nil {
		return "list pods: " + err.Error()
	}
	count := map[string]int{}
	for _, p := range list.GetItems() {
		k := p.GetStatus().GetPhase()
		if p.GetSpec().GetNodeName() == "" {
			k = "unbound"
		}
		for _, cs := range p.GetStatus().GetContainerStatuses() {
			if w := cs.GetState().GetWaiting(); w != nil {
				k += "/" + w.GetReason() + " " + w.GetMessage()
			}
		}
		count[k]++
	}
	var parts []string
	for k, n := range count {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return "pods: " + strings.Join(parts, "; ")
}

// deleteAll deletes every pod of the bench namespace and waits until the API
// has none and no container of the bench's pods runs. It returns both waits.
func (b *bench) deleteAll(ctx context.Context) (api, procs time.Duration, err error) {
	start := time.Now()
	list, err := b.pods(0).List(ctx, &metav1.ListRequest{Namespace: benchNamespace})
	if err != nil {
		return 0, 0, fmt.Errorf("list pods: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.clients)
	for i, p := range list.GetItems() {
		g.Go(func() error {
			_, err := b.pods(i).Delete(gctx, &metav1.DeleteRequest{Namespace: benchNamespace, Name: p.GetMetadata().GetName()})
			if err != nil && !strings.Contains(err.Error(), "NotFound") && !strings.Contains(err.Error(), "not found") {
				return fmt.Errorf("delete pod %s: %w", p.GetMetadata().GetName(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		l, err := b.pods(0).List(dctx, &metav1.ListRequest{Namespace: benchNamespace})
		if err == nil && len(l.GetItems()) == 0 {
			break
		}
		if dctx.Err() != nil {
			return 0, 0, fmt.Errorf("pods not gone from the API after 3m: %s", b.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
	api = time.Since(start)
	for {
		left := b.nodeLeftovers()
		if len(left) == 0 {
			break
		}
		if dctx.Err() != nil {
			return 0, 0, fmt.Errorf("the node did not release the deleted pods within 3m: %s", strings.Join(left, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return api, time.Since(start), nil
}

func (b *bench) podUIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.uids))
	for uid := range b.uids {
		out = append(out, uid)
	}
	return out
}

// nodeLeftovers lists what the node still holds of the bench's pods: their
// processes and shims, network namespaces, cgroups, root filesystem mounts,
// pod directories and IP allocations. The API forgets a pod as soon as it is
// deleted (no graceful deletion), and the node tears it down afterwards.
func (b *bench) nodeLeftovers() []string {
	left := leftovers(b.podUIDs(), b.cfg.workDir)
	if d, _ := os.ReadDir(filepath.Join(nodeDataDir(b.cfg), "pods")); len(d) > 0 {
		left = append(left, fmt.Sprintf("%d pod directories", len(d)))
	}
	ips, _ := os.ReadDir(filepath.Join(nodeDataDir(b.cfg), "cni", "ipam", "rafter"))
	n := 0
	for _, e := range ips {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			n++
		}
	}
	if n > 0 {
		left = append(left, fmt.Sprintf("%d IP allocations", n))
	}
	return left
}

type rafterResult struct {
	burst, serial, paced   *runResult
	deleteAPI, deleteProcs time.Duration
}

// benchRafter runs the cluster and the node and measures the pods' startup.
// Whatever happens, it deletes the pods, stops the processes and checks that
// nothing is left.
func benchRafter(ctx context.Context, c config) (res *rafterResult, err error) {
	logDir := c.logDir
	if logDir == "" {
		logDir = filepath.Join(c.workDir, "logs")
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return nil, err
		}
	}
	img, err := testimage.Image(c.podapp)
	if err != nil {
		return nil, err
	}
	reg := testimage.NewRegistry()
	defer reg.Close()
	ref, err := reg.Push(img, "rafter/podapp:1")
	if err != nil {
		return nil, err
	}

	peers, err := startCluster(c, logDir)
	if err != nil {
		return nil, err
	}
	defer stopAll(peers)
	conns, err := dial(peers)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = waitServing(sctx, peers, conns)
	cancel()
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: c, image: ref, t: newTracker(), uids: map[string]bool{}}
	for _, conn := range conns {
		b.conns = append(b.conns, conn)
	}
	if _, err := corev1.NewNamespacesClient(conns[0]).Create(ctx, &corev1.CreateNamespaceRequest{
		Body: &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: benchNamespace}}}); err != nil {
		return nil, fmt.Errorf("create namespace: %w", err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := b.t.follow(wctx, b.pods(1)); err != nil {
		return nil, err
	}

	agent, err := startNode(c, peers, logDir)
	if err != nil {
		return nil, err
	}
	// Containers outlive their agent by design: the pods go first, then the
	// agent, then the check that nothing is left (deferred calls run last
	// first, so this runs before the peers stop).
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if _, _, derr := b.deleteAll(cctx); derr != nil && err == nil {
			err = fmt.Errorf("clean up: %w", derr)
		}
		agent.stop(15 * time.Second)
		if left := leftovers(b.podUIDs(), c.workDir); len(left) > 0 {
			forceCleanup(b.podUIDs(), c.workDir)
			if err == nil {
				err = fmt.Errorf("left behind (now removed by force): %s", strings.Join(left, "; "))
			}
		}
		if rerr := removeRuntimeRoot(); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			err = fmt.Errorf("%w\nnodeagent log (%s), last lines above debug level:\n%s", err, agent.log, tailFile(agent.log, 20, "level=DEBUG"))
		}
	}()
	nctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = waitNodeReady(nctx, conns[0], agent)
	cancel()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench-pods: node %s Ready; warming the image cache\n", nodeName)

	// The image goes into the node's store once.
	if err := b.create(ctx, []string{"warm"}); err != nil {
		return nil, err
	}
	if err := b.waitRunning(ctx, []string{"warm"}, 2*time.Minute); err != nil {
		return nil, err
	}
	if _, _, err := b.deleteAll(ctx); err != nil {
		return nil, err
	}
	res = &rafterResult{}

	if c.serial > 0 {
		fmt.Fprintf(os.Stderr, "bench-pods: %d pods one at a time\n", c.serial)
		var names []string
		var busy float64
		for i := range c.serial {
			name := fmt.Sprintf("one-%02d", i)
			names = append(names, name)
			busy0, _ := hostCPU()
			if err := b.create(ctx, []string{name}); err != nil {
				return nil, err
			}
			if err := b.waitRunning(ctx, []string{name}, time.Minute); err != nil {
				return nil, err
			}
			busy1, _ := hostCPU()
			busy += busy1 - busy0
			if _, _, err := b.deleteAll(ctx); err != nil {
				return nil, err
			}
		}
		res.serial = summarize(b.t.snapshot(names), shimsReady(agent.log))
		res.serial.hostCPU = perPod(busy, c.serial)
	}

	if c.rate > 0 {
		// Kubernetes' pod-startup SLO is measured this way: pods created at a
		// steady rate (the density test's latency phase), not all at once.
		fmt.Fprintf(os.Stderr, "bench-pods: %d pods paced at %g/s\n", c.pods, c.rate)
		var names []string
		every := time.Duration(float64(time.Second) / c.rate)
		busy0, _ := hostCPU()
		for i := range c.pods {
			name := fmt.Sprintf("paced-%03d", i)
			names = append(names, name)
			if err := b.create(ctx, []string{name}); err != nil {
				return nil, err
			}
			if i < c.pods-1 {
				time.Sleep(every)
			}
		}
		if err := b.waitRunning(ctx, names, 5*time.Minute); err != nil {
			return nil, err
		}
		busy1, _ := hostCPU()
		res.paced = summarize(b.t.snapshot(names), shimsReady(agent.log))
		res.paced.hostCPU = perPod(busy1-busy0, c.pods)
		if _, _, err := b.deleteAll(ctx); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(os.Stderr, "bench-pods: creating %d pods (%d clients)\n", c.pods, c.clients)
	var names []string
	for i := range c.pods {
		names = append(names, fmt.Sprintf("pod-%03d", i))
	}
	stopPerf, err := startPerf(c.perf)
	if err != nil {
		return nil, err
	}
	cpu0 := cpuOf(peers, agent)
	busy0, total0 := hostCPU()
	if err := b.create(ctx, names); err != nil {
		stopPerf()
		return nil, err
	}
	err = b.waitRunning(ctx, names, 5*time.Minute)
	stopPerf()
	if err != nil {
		return nil, err
	}
	cpu1 := cpuOf(peers, agent)
	busy1, total1 := hostCPU()
	burst := b.t.snapshot(names)
	res.burst = summarize(burst, shimsReady(agent.log))
	if err := writeTimes(c.times, burst); err != nil {
		return nil, err
	}
	res.burst.hostCPU = perPod(busy1-busy0, c.pods)
	var cpu []string
	for i, name := range []string{"p1", "p2", "p3", "nodeagent"} {
		cpu = append(cpu, fmt.Sprintf("%s=%.1fs", name, cpu1[i]-cpu0[i]))
	}
	if total1 > total0 {
		cpu = append(cpu, fmt.Sprintf("host busy %.0f%%", 100*(busy1-busy0)/(total1-total0)))
	}
	res.burst.cpu = strings.Join(cpu, " ")

	fmt.Fprintf(os.Stderr, "bench-pods: deleting the pods\n")
	if res.deleteAPI, res.deleteProcs, err = b.deleteAll(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

func cpuOf(peers []*proc, agent *proc) []float64 {
	var out []float64
	for _, p := range append(append([]*proc(nil), peers...), agent) {
		out = append(out, cpuSeconds(p.cmd.Process.Pid))
	}
	return out
}

// removeRuntimeRoot removes the node's runtime root once it holds no
// container, and its parent when empty.
func removeRuntimeRoot() error {
	root := nodeRuntimeRoot()
	entries, _ := os.ReadDir(root)
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return fmt.Errorf("runtime root %s still holds %s", root, strings.Join(names, ", "))
	}
	if err := os.Remove(root); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(runtimeParent) // only when empty
	return nil
}

// startPerf starts `perf record -a -g` into path (nothing when path is
// empty); the function it returns stops it and waits for the file.
func startPerf(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	cmd := exec.Command("perf", "record", "-a", "-g", "-F", "997", "-o", path)
	logf, err := os.Create(path + ".log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // let it start sampling
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		logf.Close()
	}, nil
}

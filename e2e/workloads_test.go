package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// startHollow runs `nodeagent --hollow=n` against every peer until the test ends
// (or the returned process is killed).
func (c *cluster) startHollow(n int, prefix string, extra ...string) *exec.Cmd {
	c.t.Helper()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.grpcAddr)
	}
	log := &syncBuffer{}
	args := append([]string{fmt.Sprintf("--hollow=%d", n), "--name=" + prefix, "--server=" + strings.Join(addrs, ","),
		"--hollow-lease-interval=1s", "--hollow-cpu=4", "--hollow-memory=16Gi", "--log-level=warn"}, extra...)
	cmd := exec.Command(nodeagentBin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if c.t.Failed() {
			c.t.Logf("nodeagent log:\n%s", tail(log.String(), 40))
		}
	})
	return cmd
}

// waitNodes waits until n nodes are Ready and have a pod CIDR, so that what the
// test creates next is scheduled over all of them.
func (c *cluster) waitNodes(n int) {
	c.t.Helper()
	nodes := corev1.NewNodesClient(c.conn(0))
	c.eventually(60*time.Second, fmt.Sprintf("%d Ready nodes", n), func() error {
		list, err := nodes.List(context.Background(), &metav1.ListRequest{})
		if err != nil {
			return err
		}
		ready := 0
		for _, nd := range list.GetItems() {
			if readyOf(nd) == "True" && nd.GetSpec().GetPodCIDR() != "" {
				ready++
			}
		}
		if ready != n {
			return fmt.Errorf("%d of %d", ready, n)
		}
		return nil
	})
}

func (c *cluster) conn(i int) *grpc.ClientConn {
	c.t.Helper()
	conn, err := grpc.NewClient(c.procs[i].grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// rolloutChecker follows the pods of one app through a watch and records every
// moment the rolling-update bounds were broken.
type rolloutChecker struct {
	mu         sync.Mutex // guards pods, violations, seen
	pods       map[string]*corev1.Pod
	violations []string
	seen       int
	maxTotal   int
	minAvail   int
	armed      bool
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

func (r *rolloutChecker) run(ctx context.Context, pods corev1.PodsClient, app string) {
	stream, err := pods.Watch(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=" + app})
	if err != nil {
		return
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return
		}
		p := ev.GetObject()
		r.mu.Lock()
		if ev.GetType() == "DELETED" {
			delete(r.pods, p.GetMetadata().GetName())
		} else {
			r.pods[p.GetMetadata().GetName()] = p
		}
		r.seen++
		if r.armed {
			total, avail := 0, 0
			for _, q := range r.pods {
				if q.GetMetadata().GetDeletionTimestamp() != nil {
					continue
				}
				total++
				if podReady(q) {
					avail++
				}
			}
			if total > r.maxTotal || avail < r.minAvail {
				r.violations = append(r.violations, fmt.Sprintf("event %d (%s %s): %d pods, %d available", r.seen, ev.GetType(), p.GetMetadata().GetName(), total, avail))
			}
		}
		r.mu.Unlock()
	}
}

func deploymentImages(t *testing.T, ctx context.Context, pods corev1.PodsClient, app string) (map[string]int, map[string]int, int) {
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=" + app})
	if err != nil {
		return nil, nil, 0
	}
	images, nodes := map[string]int{}, map[string]int{}
	ready := 0
	for _, p := range list.GetItems() {
		if p.GetStatus().GetPhase() != "Running" || !podReady(p) {
			continue
		}
		ready++
		images[p.GetSpec().GetContainers()[0].GetImage()]++
		nodes[p.GetSpec().GetNodeName()]++
	}
	return images, nodes, ready
}

// TestDeploymentRollsOutOnHollowNodes: real peers over TCP, the scheduler and
// controllers on the leader, three hollow nodes. A Deployment of 5 replicas
// spreads over the nodes; an image change rolls out without ever breaking
// maxSurge/maxUnavailable (checked on every watch event); `ctl rollout undo`
// brings the previous template back.
func TestDeploymentRollsOutOnHollowNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.startHollow(3, "hn")
	c.waitNodes(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(1))
	deps := appsv1.NewDeploymentsClient(c.conn(2))

	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "registry.local/web:v1", resources: {requests: {cpu: 100m}}}]
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	c.eventually(90*time.Second, "5 Running pods of v1 on 3 nodes", func() error {
		images, nodes, ready := deploymentImages(t, ctx, pods, "web")
		if ready != 5 || images["registry.local/web:v1"] != 5 || len(nodes) != 3 {
			return fmt.Errorf("ready %d, images %v, nodes %v", ready, images, nodes)
		}
		return nil
	})

	checker := &rolloutChecker{pods: map[string]*corev1.Pod{}, maxTotal: 6, minAvail: 4}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go checker.run(wctx, pods, "web")
	c.eventually(10*time.Second, "the checker's initial state", func() error {
		checker.mu.Lock()
		defer checker.mu.Unlock()
		if len(checker.pods) != 5 {
			return fmt.Errorf("checker sees %d pods", len(checker.pods))
		}
		checker.armed = true
		return nil
	})

	d, err := deps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = "registry.local/web:v2"
	if _, err := deps.Update(ctx, &appsv1.UpdateDeploymentRequest{Namespace: "default", Name: "web", Body: d}); err != nil {
		t.Fatal(err)
	}
	c.eventually(90*time.Second, "5 Running pods of v2", func() error {
		images, _, ready := deploymentImages(t, ctx, pods, "web")
		if ready != 5 || images["registry.local/web:v2"] != 5 {
			return fmt.Errorf("ready %d, images %v", ready, images)
		}
		return nil
	})
	c.eventually(30*time.Second, "deployment status", func() error {
		d, err := deps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
		if err != nil {
			return err
		}
		st := d.GetStatus()
		if st.GetUpdatedReplicas() != 5 || st.GetAvailableReplicas() != 5 || st.GetReplicas() != 5 {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	checker.mu.Lock()
	if len(checker.violations) > 0 {
		t.Errorf("rolling update broke its bounds (total <= 6, available >= 4):\n%s", strings.Join(checker.violations, "\n"))
	}
	if checker.seen < 10 {
		t.Errorf("the checker saw only %d events: it checked nothing", checker.seen)
	}
	checker.mu.Unlock()

	out := c.ctl("rollout", "undo", "deployment/web")
	if !strings.Contains(out, "deployment.apps/web rolled back") {
		t.Fatalf("rollout undo: %q", out)
	}
	c.eventually(90*time.Second, "5 Running pods of v1 again", func() error {
		images, _, ready := deploymentImages(t, ctx, pods, "web")
		if ready != 5 || images["registry.local/web:v1"] != 5 {
			return fmt.Errorf("ready %d, images %v", ready, images)
		}
		return nil
	})

	// Deleting the Deployment takes its ReplicaSets and their pods with it.
	if _, err := deps.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	rsets := appsv1.NewReplicaSetsClient(c.conn(0))
	c.eventually(60*time.Second, "ReplicaSets and pods of the deleted Deployment gone", func() error {
		rl, err := rsets.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return err
		}
		pl, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if n, m := len(rl.GetItems()), len(pl.GetItems()); n+m > 0 {
			return fmt.Errorf("%d ReplicaSets and %d pods left", n, m)
		}
		return nil
	})
}

// runningPods returns the Running and Ready pods with the label app=app by name,
// with their nodes.
func runningPods(ctx context.Context, pods corev1.PodsClient, app string) (map[string]string, error) {
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range list.GetItems() {
		if p.GetStatus().GetPhase() == "Running" && podReady(p) {
			out[p.GetMetadata().GetName()] = p.GetSpec().GetNodeName()
		}
	}
	return out, nil
}

// TestLostPodsAndNodesAreReplaced: a deleted pod is replaced; a node whose agent
// dies (its Lease stops) becomes NotReady and tainted, and after the (short)
// eviction timeout its pods run on the other nodes.
func TestLostPodsAndNodesAreReplaced(t *testing.T) {
	c := newCluster(t, 3, "--node-grace-period=3s", "--pod-eviction-timeout=3s")
	c.startHollow(2, "ha")
	doomed := c.startHollow(1, "hb", "--hollow-node-cidr=10.201.0.0/16")
	c.waitNodes(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: heal}
spec:
  replicas: 6
  selector: {matchLabels: {app: heal}}
  template:
    metadata: {labels: {app: heal}}
    spec:
      containers: [{name: c, image: "registry.local/heal:v1"}]
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	var running map[string]string
	c.eventually(60*time.Second, "6 pods on 3 nodes", func() error {
		var err error
		running, err = runningPods(ctx, pods, "heal")
		nodes := map[string]bool{}
		for _, n := range running {
			nodes[n] = true
		}
		if err != nil || len(running) != 6 || len(nodes) != 3 {
			return fmt.Errorf("%v %v", running, err)
		}
		return nil
	})
	var victim string
	for name := range running {
		victim = name
		break
	}
	if _, err := pods.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: victim}); err != nil {
		t.Fatal(err)
	}
	c.eventually(30*time.Second, "the deleted pod replaced", func() error {
		now, err := runningPods(ctx, pods, "heal")
		if _, still := now[victim]; err != nil || still || len(now) != 6 {
			return fmt.Errorf("%v %v", now, err)
		}
		return nil
	})

	_ = doomed.Process.Signal(syscall.SIGKILL)
	nodes := corev1.NewNodesClient(c.conn(1))
	c.eventually(30*time.Second, "hb-0 NotReady and tainted", func() error {
		n, err := nodes.Get(ctx, &metav1.GetRequest{Name: "hb-0"})
		if err != nil {
			return err
		}
		tainted := false
		for _, tn := range n.GetSpec().GetTaints() {
			tainted = tainted || (tn.GetKey() == "node.kubernetes.io/unreachable" && tn.GetEffect() == "NoExecute")
		}
		if readyOf(n) != "Unknown" || !tainted {
			return fmt.Errorf("ready %q, taints %v", readyOf(n), n.GetSpec().GetTaints())
		}
		return nil
	})
	c.eventually(60*time.Second, "6 pods on the two live nodes", func() error {
		now, err := runningPods(ctx, pods, "heal")
		if err != nil || len(now) != 6 {
			return fmt.Errorf("%v %v", now, err)
		}
		for name, n := range now {
			if n == "hb-0" {
				return fmt.Errorf("pod %s still on hb-0", name)
			}
		}
		return nil
	})
}

func readyOf(n *corev1.Node) string {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus()
		}
	}
	return ""
}

// TestLeaderKilledDuringScaleUp: kill -9 the leader while a ReplicaSet scales
// from 0 to 50; the new leader finishes, and a watch never sees more than 50 pods
// of it at once.
func TestLeaderKilledDuringScaleUp(t *testing.T) {
	// The loops' API calls are rate-limited (as kube-controller-manager's are by
	// default) so that the scale-up lasts long enough to be interrupted.
	c := newCluster(t, 3, "--controller-api-qps=25", "--controller-api-burst=5")
	c.startHollow(3, "hk")
	c.waitNodes(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leader := c.leader()
	var watchPeer int
	for i, p := range c.procs {
		if p != leader {
			watchPeer = i
			break
		}
	}
	pods := corev1.NewPodsClient(c.conn(watchPeer))
	var mu sync.Mutex
	live := map[string]bool{}
	maxSeen := 0
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := pods.Watch(wctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=burst"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			name := ev.GetObject().GetMetadata().GetName()
			if ev.GetType() == "DELETED" {
				delete(live, name)
			} else {
				live[name] = true
			}
			maxSeen = max(maxSeen, len(live))
			mu.Unlock()
		}
	}()
	manifest := `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: burst}
spec:
  replicas: 50
  selector: {matchLabels: {app: burst}}
  template:
    metadata: {labels: {app: burst}}
    spec:
      containers: [{name: c, image: "registry.local/burst:v1"}]
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	c.eventually(30*time.Second, "the scale-up under way", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(live) < 5 {
			return fmt.Errorf("%d pods", len(live))
		}
		return nil
	})
	c.kill9(leader)
	mu.Lock()
	atKill := len(live)
	mu.Unlock()
	c.eventually(90*time.Second, "50 running pods", func() error {
		now, err := runningPods(ctx, pods, "burst")
		if err != nil || len(now) != 50 {
			return fmt.Errorf("%d running, %v", len(now), err)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a late duplicate would show up now
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=burst"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("pods when the leader was killed: %d; most at once: %d", atKill, maxSeen)
	if maxSeen > 50 || len(list.GetItems()) != 50 {
		t.Fatalf("at most 50 pods allowed: the watch saw %d at once, %d exist now", maxSeen, len(list.GetItems()))
	}
	if atKill >= 50 {
		t.Fatalf("the leader was killed only after the scale-up had finished (%d pods): nothing was tested", atKill)
	}
}

// TestUnschedulablePodWaitsForABigEnoughNode: a pod asking for more cpu than any
// node has stays Pending with kube-scheduler's FailedScheduling text; a node big
// enough arriving schedules it.
func TestUnschedulablePodWaitsForABigEnoughNode(t *testing.T) {
	c := newCluster(t, 3)
	c.startHollow(3, "hs") // 4 cpu each
	c.waitNodes(3)
	pod := `apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers: [{name: c, image: "registry.local/big:v1", resources: {requests: {cpu: "6"}}}]
`
	if out, errOut, err := c.ctlRun(pod, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	want := "0/3 nodes are available: 3 Insufficient cpu."
	c.eventually(30*time.Second, "FailedScheduling event", func() error {
		out := c.ctl("get", "events")
		if !strings.Contains(out, "FailedScheduling") || !strings.Contains(out, want) {
			return fmt.Errorf("events:\n%s", out)
		}
		return nil
	})
	pods := corev1.NewPodsClient(c.conn(1))
	ctx := context.Background()
	p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
	if err != nil || p.GetSpec().GetNodeName() != "" || p.GetStatus().GetPhase() != "Pending" {
		t.Fatalf("big: node %q phase %q (%v)", p.GetSpec().GetNodeName(), p.GetStatus().GetPhase(), err)
	}
	c.startHollow(1, "hbig", "--hollow-cpu=8", "--hollow-node-cidr=10.202.0.0/16")
	c.eventually(60*time.Second, "big scheduled on the big node", func() error {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
		if err != nil || p.GetSpec().GetNodeName() != "hbig-0" {
			return fmt.Errorf("node %q (%v)", p.GetSpec().GetNodeName(), err)
		}
		return nil
	})
}

// TestNamespaceDeletionEmptiesItFirst: deleting a namespace shows it Terminating,
// deletes what is in it, then the namespace.
func TestNamespaceDeletionEmptiesItFirst(t *testing.T) {
	c := newCluster(t, 3)
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: team}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: c, image: "registry.local/api:v1"}]
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	c.eventually(30*time.Second, "the Deployment's pods", func() error {
		out := c.ctl("get", "pods", "-n", "team")
		if strings.Count(out, "api-") != 2 {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	out := c.ctl("delete", "namespace", "team")
	if out != "namespace \"team\" deleted\n" { // kubectl's words
		t.Fatalf("delete: %q", out)
	}
	c.eventually(60*time.Second, "namespace team gone", func() error {
		code, b, _ := c.do(c.procs[0], "GET", "/api/v1/namespaces/team", "")
		if code != 404 {
			return fmt.Errorf("%d %s", code, b)
		}
		return nil
	})
	for _, path := range []string{"/api/v1/namespaces/team/configmaps", "/api/v1/namespaces/team/pods", "/apis/apps/v1/namespaces/team/deployments"} {
		code, b, _ := c.do(c.procs[1], "GET", path, "")
		if code != 200 || !strings.Contains(string(b), `"items":[]`) {
			t.Errorf("%s after the namespace went: %d %s", path, code, b)
		}
	}
}

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

// startHollow runs `nodeagent --hollow=n` against every peer until the test ends.
func (c *cluster) startHollow(n int, prefix string) {
	c.t.Helper()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.grpcAddr)
	}
	log := &syncBuffer{}
	cmd := exec.Command(nodeagentBin, fmt.Sprintf("--hollow=%d", n), "--name="+prefix, "--server="+strings.Join(addrs, ","),
		"--hollow-lease-interval=2s", "--hollow-cpu=4", "--hollow-memory=16Gi", "--log-level=warn")
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

package ctrl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// startLoops runs every leader loop against peer 0's API (a follower forwards
// the writes) for the duration of the test.
func startLoops(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := DefaultLoopsConfig()
	cfg.Logger = discardLogger()
	cfg.Scheduler.RetryUnschedulable = 500 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- RunLoops(ctx, c.Peers[0].Conn, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loops: %v", err)
		}
	})
}

func schedNode(name, cpu string) *corev1.Node {
	q := func(s string) *structpb.Value { return structpb.NewStringValue(s) }
	res := map[string]*structpb.Value{"cpu": q(cpu), "memory": q("8Gi"), "pods": q("110")}
	return &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: &corev1.NodeStatus{Capacity: res, Allocatable: res,
			Conditions: []*corev1.NodeCondition{{Type: "Ready", Status: "True"}}}}
}

func schedPod(name, cpu string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "img",
			Resources: &corev1.ResourceRequirements{Requests: map[string]*structpb.Value{"cpu": structpb.NewStringValue(cpu)}}}}}}
}

func TestSchedulerBindsSpreadsAndExplains(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	nodes := corev1.NewNodesClient(c.Peers[1].Conn)
	pods := corev1.NewPodsClient(c.Peers[2].Conn)
	for i := range 3 {
		n := schedNode(fmt.Sprintf("n%d", i), "2")
		created, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: n})
		if err != nil {
			t.Fatal(err)
		}
		n.Metadata = created.Metadata
		if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: n.Metadata.Name, Body: n}); err != nil {
			t.Fatal(err)
		}
	}
	startLoops(t, c)
	for i := range 6 {
		if _, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: schedPod(fmt.Sprintf("p%d", i), "500m")}); err != nil {
			t.Fatal(err)
		}
	}
	perNode := map[string]int{}
	c.WaitFor(20*time.Second, "6 pods bound", func() bool {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return false
		}
		clear(perNode)
		for _, p := range list.GetItems() {
			if p.GetSpec().GetNodeName() == "" {
				return false
			}
			perNode[p.GetSpec().GetNodeName()]++
		}
		return len(list.GetItems()) == 6
	})
	for n, k := range perNode {
		if k != 2 {
			t.Errorf("node %s got %d pods, want 2 each: %v", n, k, perNode)
		}
	}

	// Too big for any node: a FailedScheduling event and PodScheduled=False.
	if _, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: schedPod("big", "3")}); err != nil {
		t.Fatal(err)
	}
	want := "0/3 nodes are available: 3 Insufficient cpu."
	events := corev1.NewEventsClient(c.Peers[0].Conn)
	c.WaitFor(20*time.Second, "FailedScheduling event", func() bool {
		list, err := events.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range list.GetItems() {
			if e.GetReason() == "FailedScheduling" && e.GetInvolvedObject().GetName() == "big" && e.GetMessage() == want && e.GetType() == "Warning" {
				return true
			}
		}
		return false
	})
	c.WaitFor(10*time.Second, "PodScheduled=False", func() bool {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
		if err != nil {
			return false
		}
		for _, cond := range p.GetStatus().GetConditions() {
			if cond.GetType() == "PodScheduled" && cond.GetStatus() == "False" && cond.GetReason() == "Unschedulable" && strings.Contains(cond.GetMessage(), "Insufficient cpu") {
				return true
			}
		}
		return false
	})

	// A node big enough arrives: the pod is placed there.
	n := schedNode("huge", "8")
	if _, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: n}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(20*time.Second, "big pod on the huge node", func() bool {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "big"})
		return err == nil && p.GetSpec().GetNodeName() == "huge"
	})

	// Every node got a pod CIDR from 10.244.0.0/16.
	c.WaitFor(10*time.Second, "pod CIDRs", func() bool {
		list, err := nodes.List(ctx, &metav1.ListRequest{})
		if err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, n := range list.GetItems() {
			cidr := n.GetSpec().GetPodCIDR()
			if !strings.HasPrefix(cidr, "10.244.") || !strings.HasSuffix(cidr, "/24") || seen[cidr] {
				return false
			}
			seen[cidr] = true
		}
		return len(seen) == 4
	})
}

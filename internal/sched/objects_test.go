package sched

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Builders for the objects the tests feed the scheduler. Each returns a fresh object;
// options edit it in place.

func q(s string) *structpb.Value { return structpb.NewStringValue(s) }

func list(kv ...string) map[string]*structpb.Value {
	m := make(map[string]*structpb.Value, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = q(kv[i+1])
	}
	return m
}

type nodeOpt func(*corev1.Node)

// newNode returns a ready node offering 4 cpu, 8Gi and 110 pods.
func newNode(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{
		Metadata: &metav1.ObjectMeta{Name: name},
		Spec:     &corev1.NodeSpec{},
		Status: &corev1.NodeStatus{
			Allocatable: list("cpu", "4", "memory", "8Gi", "pods", "110"),
			Conditions:  []*corev1.NodeCondition{{Type: "Ready", Status: "True"}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func allocatable(kv ...string) nodeOpt {
	return func(n *corev1.Node) { n.Status.Allocatable = list(kv...) }
}

func nodeLabels(kv ...string) nodeOpt {
	return func(n *corev1.Node) { n.Metadata.Labels = labels(kv...) }
}

func taints(ts ...*corev1.Taint) nodeOpt {
	return func(n *corev1.Node) { n.Spec.Taints = ts }
}

func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }

func ready(status string) nodeOpt {
	return func(n *corev1.Node) {
		if status == "" {
			n.Status.Conditions = nil
			return
		}
		n.Status.Conditions = []*corev1.NodeCondition{
			{Type: "MemoryPressure", Status: "False"},
			{Type: "Ready", Status: status},
		}
	}
}

type podOpt func(*corev1.Pod)

// newPod returns a pending pod, uid "uid-<name>", with one container requesting cpu
// and memory (either may be "").
func newPod(name, cpu, memory string, opts ...podOpt) *corev1.Pod {
	req := map[string]*structpb.Value{}
	if cpu != "" {
		req["cpu"] = q(cpu)
	}
	if memory != "" {
		req["memory"] = q(memory)
	}
	p := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Uid: "uid-" + name},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{
			{Name: "app", Resources: &corev1.ResourceRequirements{Requests: req}},
		}},
		Status: &corev1.PodStatus{Phase: "Pending"},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func on(node string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = node } }

func phase(ph string) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func ownedBy(uid string) podOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.Metadata.OwnerReferences = []*metav1.OwnerReference{
			{Kind: "ReplicaSet", Name: "rs-" + uid, Uid: uid, Controller: &yes},
		}
	}
}

func podLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) { p.Metadata.Labels = labels(kv...) }
}

func nodeSelector(kv ...string) podOpt {
	return func(p *corev1.Pod) { p.Spec.NodeSelector = labels(kv...) }
}

func required(terms ...*corev1.NodeSelectorTerm) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

func tolerations(ts ...*corev1.Toleration) podOpt {
	return func(p *corev1.Pod) { p.Spec.Tolerations = ts }
}

func hostPorts(ports ...*corev1.ContainerPort) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports = ports }
}

func labels(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func expr(key, op string, values ...string) *corev1.NodeSelectorRequirement {
	return &corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

// mustCache builds a cache and fails the test if any object is rejected.
func mustCache(t testing.TB, nodes []*corev1.Node, pods ...*corev1.Pod) *Cache {
	t.Helper()
	c, err := NewCache(nodes, pods)
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	return c
}

func mustScheduler(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

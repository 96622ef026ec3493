package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func nodes(n int, prefix string, opts ...nodeOpt) []*corev1.Node {
	out := make([]*corev1.Node, n)
	for i := range out {
		out[i] = newNode(fmt.Sprintf("%s%d", prefix, i), opts...)
	}
	return out
}

func concat[T any](lists ...[]T) []T {
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func TestFailureMessage(t *testing.T) {
	controlPlane := taints(&corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"})
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		existing []*corev1.Pod
		pod      *corev1.Pod
		want     string
	}{
		{
			name:  "taint and cpu",
			nodes: concat(nodes(1, "cp", controlPlane), nodes(2, "w")),
			pod:   newPod("p", "8", "1Gi"),
			want:  "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.",
		},
		{
			name:  "a node gives several reasons",
			nodes: nodes(2, "w"),
			pod:   newPod("p", "8", "16Gi"),
			want:  "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
		},
		{
			name:  "sorted as strings, count first",
			nodes: concat(nodes(10, "c", cordoned), nodes(2, "a")), // a* are scanned first
			pod:   newPod("p", "8", ""),
			want:  "0/12 nodes are available: 10 node(s) were unschedulable, 2 Insufficient cpu.",
		},
		{
			name: "every filter",
			nodes: concat(
				nodes(1, "cordoned", cordoned),
				nodes(1, "notready", ready("False")),
				nodes(1, "unreachable", ready("Unknown")),
				nodes(1, "elsewhere", nodeLabels("zone", "b")),
				nodes(1, "port", nodeLabels("zone", "a")),
				nodes(1, "full", nodeLabels("zone", "a"), allocatable("cpu", "4", "memory", "8Gi", "pods", "1")),
				nodes(1, "small", nodeLabels("zone", "a"), allocatable("cpu", "1", "memory", "8Gi", "pods", "110")),
			),
			existing: []*corev1.Pod{
				newPod("web", "", "", on("port0"), hostPorts(&corev1.ContainerPort{HostPort: 80, ContainerPort: 80})),
				newPod("other", "", "", on("full0")),
			},
			pod: newPod("p", "2", "", nodeSelector("zone", "a"), hostPorts(&corev1.ContainerPort{HostPort: 80, ContainerPort: 80})),
			want: "0/7 nodes are available: " +
				"1 Insufficient cpu, " +
				"1 Too many pods, " +
				"1 node(s) didn't have free ports for the requested pod ports, " +
				"1 node(s) didn't match Pod's node affinity/selector, " +
				"1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, " +
				"1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, " +
				"1 node(s) were unschedulable.",
		},
		{
			name: "no nodes",
			pod:  newPod("p", "1", ""),
			want: "no nodes available to schedule pods",
		},
		{
			name:     "nodes known only from their pods do not count",
			existing: []*corev1.Pod{newPod("orphan", "1", "", on("gone"))},
			pod:      newPod("p", "1", ""),
			want:     "no nodes available to schedule pods",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, tc.nodes, tc.existing...)
			d := mustScheduler(t, DefaultConfig()).Schedule(c, []*corev1.Pod{tc.pod})[0]
			if d.Message != tc.want || d.Node != "" || d.Err != nil {
				t.Errorf("decision = %+v\nwant message %q", d, tc.want)
			}
		})
	}
}

func TestFormatFailure(t *testing.T) {
	tests := []struct {
		all     int
		entries []string
		want    string
	}{
		{3, []string{"3 Insufficient cpu"}, "0/3 nodes are available: 3 Insufficient cpu."},
		{2, []string{"1 Insufficient cpu", "2 Insufficient memory"}, "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."},
		{5, nil, "0/5 nodes are available:"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := formatFailure(tc.all, tc.entries); got != tc.want {
				t.Errorf("formatFailure = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFillToCapacity(t *testing.T) {
	c := mustCache(t, nodes(3, "n"))
	s := mustScheduler(t, DefaultConfig())
	var batch []*corev1.Pod
	for i := range 13 {
		batch = append(batch, newPod(fmt.Sprintf("p%d", i), "1", "512Mi"))
	}
	ds := s.Schedule(c, batch)
	perNode := map[string]int{}
	for _, d := range ds[:12] {
		if d.Node == "" {
			t.Fatalf("%s not placed: %+v", d.Pod.Metadata.Name, d)
		}
		perNode[d.Node]++
	}
	for _, n := range []string{"n0", "n1", "n2"} {
		if perNode[n] != 4 {
			t.Errorf("%s got %d pods, want 4 (placements %v)", n, perNode[n], perNode)
		}
		if u, _ := c.Usage(n); u.RequestedMilliCPU != u.AllocatableMilliCPU {
			t.Errorf("%s: requested %dm of %dm, want full", n, u.RequestedMilliCPU, u.AllocatableMilliCPU)
		}
	}
	if want := "0/3 nodes are available: 3 Insufficient cpu."; ds[12].Message != want {
		t.Errorf("13th pod: %+v, want message %q", ds[12], want)
	}
}

func TestSpread(t *testing.T) {
	replicas := func(owner string, n int, opts ...podOpt) []*corev1.Pod {
		var out []*corev1.Pod
		for i := range n {
			out = append(out, newPod(fmt.Sprintf("%s-%d", owner, i), "100m", "128Mi", append(opts, ownedBy(owner))...))
		}
		return out
	}
	tests := []struct {
		name     string
		cfg      Config
		existing []*corev1.Pod
		pods     []*corev1.Pod
		want     map[string]int // replicas of "rs" per node after the batch
	}{
		{
			name: "six replicas on three nodes",
			cfg:  DefaultConfig(),
			pods: replicas("rs", 6),
			want: map[string]int{"n0": 2, "n1": 2, "n2": 2},
		},
		{
			name: "spreading alone",
			cfg:  Config{SpreadWeight: 1},
			pods: replicas("rs", 6),
			want: map[string]int{"n0": 2, "n1": 2, "n2": 2},
		},
		{
			name: "without spreading or least allocated, ties pile onto the first name",
			cfg:  Config{},
			pods: replicas("rs", 6),
			want: map[string]int{"n0": 6},
		},
		{
			name:     "replicas already running are counted",
			cfg:      Config{SpreadWeight: 1},
			existing: replicas("rs", 2, on("n0")),
			pods:     replicas("rs", 4, func(p *corev1.Pod) { p.Metadata.Name += "-new"; p.Metadata.Uid += "-new" }),
			want:     map[string]int{"n0": 2, "n1": 2, "n2": 2},
		},
		{
			name:     "other workloads do not count",
			cfg:      Config{SpreadWeight: 1},
			existing: replicas("other", 3, on("n0")),
			pods:     replicas("rs", 3),
			want:     map[string]int{"n0": 1, "n1": 1, "n2": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, nodes(3, "n"), tc.existing...)
			got := map[string]int{}
			for _, p := range tc.existing {
				if workloadKey(p) == workloadKey(tc.pods[0]) {
					got[p.Spec.NodeName]++
				}
			}
			for _, d := range mustScheduler(t, tc.cfg).Schedule(c, tc.pods) {
				if d.Node == "" {
					t.Fatalf("not placed: %+v", d)
				}
				got[d.Node]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("replicas per node = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNotConsidered(t *testing.T) {
	deleting := func(p *corev1.Pod) { p.Metadata.DeletionTimestamp = timestamppb.Now() }
	twice := newPod("twice", "1", "")
	tests := []struct {
		name string
		pods []*corev1.Pod
		want []error // per pod; nil: placed
	}{
		{"assigned", []*corev1.Pod{newPod("p", "1", "", on("n0"))}, []error{ErrNotPending}},
		{"being deleted", []*corev1.Pod{newPod("p", "1", "", deleting)}, []error{ErrNotPending}},
		{"already assumed", []*corev1.Pod{twice, twice}, []error{nil, ErrNotPending}},
		{"bound according to the cache", []*corev1.Pod{newPod("bound", "1", "")}, []error{ErrNotPending}},
		{"invalid request", []*corev1.Pod{newPod("p", "1x", "")}, []error{ErrInvalidQuantity}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, nodes(1, "n"), newPod("bound", "1", "", on("n0")))
			ds := mustScheduler(t, DefaultConfig()).Schedule(c, tc.pods)
			for i, d := range ds {
				if d.Pod != tc.pods[i] {
					t.Errorf("decision %d is for another pod", i)
				}
				switch {
				case tc.want[i] == nil && (d.Node == "" || d.Message != "" || d.Err != nil):
					t.Errorf("pod %d: %+v, want placed", i, d)
				case tc.want[i] != nil && (!errors.Is(d.Err, tc.want[i]) || d.Node != "" || d.Message != ""):
					t.Errorf("pod %d: %+v, want only error %v", i, d, tc.want[i])
				}
			}
		})
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	tests := []struct{ percentage, all, want int }{
		{0, 0, 0},
		{0, 50, 50},
		{0, 99, 99},
		{0, 100, 100},
		{0, 1000, 420},
		{0, 5000, 500},
		{0, 10000, 500},
		{0, 100000, 5000},
		{1, 5000, 100},
		{30, 5000, 1500},
		{100, 5000, 5000},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d%% of %d", tc.percentage, tc.all), func(t *testing.T) {
			if got := numFeasibleNodesToFind(tc.percentage, tc.all); got != tc.want {
				t.Errorf("numFeasibleNodesToFind = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSearchWindowRotates checks that with 1000 nodes each search stops after the 420
// feasible nodes it needs, and the next one starts where it stopped.
func TestSearchWindowRotates(t *testing.T) {
	ns := make([]*corev1.Node, 1000)
	for i := range ns {
		ns[i] = newNode(fmt.Sprintf("n%04d", i))
	}
	c := mustCache(t, ns)
	s := mustScheduler(t, DefaultConfig())
	tests := []struct {
		node string
		next int
	}{
		{"n0000", 420},
		{"n0420", 840},
		{"n0001", 260}, // wraps; n0000 is already busier than n0001
	}
	for i, tc := range tests {
		d := s.Schedule(c, []*corev1.Pod{newPod(fmt.Sprintf("p%d", i), "100m", "")})[0]
		if d.Node != tc.node || s.next != tc.next {
			t.Errorf("pod %d: node %q, next search at %d; want %q, %d", i, d.Node, s.next, tc.node, tc.next)
		}
	}
}

func TestRandomTieBreak(t *testing.T) {
	pick := func(seed uint64) string {
		c := mustCache(t, nodes(10, "n"))
		cfg := DefaultConfig()
		cfg.Rand = rand.New(rand.NewPCG(seed, 0))
		return mustScheduler(t, cfg).Schedule(c, []*corev1.Pod{newPod("p", "1", "")})[0].Node
	}
	seen := map[string]bool{}
	for seed := range uint64(20) {
		first := pick(seed)
		if again := pick(seed); again != first {
			t.Fatalf("seed %d picked %s then %s", seed, first, again)
		}
		seen[first] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 seeds picked only %v among 10 equal nodes", seen)
	}
}

func TestScores(t *testing.T) {
	t.Run("leastAllocated", func(t *testing.T) {
		n := &nodeInfo{alloc: resources{4000, 4 << 30}, nonZero: resources{1000, 1 << 30}}
		tests := []struct {
			pod  resources
			want int64
		}{
			{resources{0, 0}, 75},
			{resources{1000, 1 << 30}, 50},
			{resources{3000, 0}, 37}, // cpu 0, memory 75
			{resources{4000, 0}, 37}, // over capacity scores 0
		}
		for _, tc := range tests {
			p := &podInfo{state: podState{nonZero: tc.pod}}
			if got := leastAllocated(p, n); got != tc.want {
				t.Errorf("leastAllocated(%+v) = %d, want %d", tc.pod, got, tc.want)
			}
		}
	})
	t.Run("spreadScore", func(t *testing.T) {
		tests := []struct {
			count, most int32
			want        int64
		}{{0, 0, 100}, {0, 4, 100}, {1, 4, 75}, {4, 4, 0}, {1, 3, 66}}
		for _, tc := range tests {
			if got := spreadScore(tc.count, tc.most); got != tc.want {
				t.Errorf("spreadScore(%d, %d) = %d, want %d", tc.count, tc.most, got, tc.want)
			}
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"score every node", Config{PercentageOfNodesToScore: 100}, true},
		{"percentage above 100", Config{PercentageOfNodesToScore: 101}, false},
		{"negative percentage", Config{PercentageOfNodesToScore: -1}, false},
		{"negative weight", Config{SpreadWeight: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok = %v", err, tc.ok)
			}
		})
	}
}

// BenchmarkSchedule5000Nodes schedules 10,000 pods (100 workloads of 100 replicas, a
// tenth of them with a nodeSelector) in batches of 1,000 onto 5,000 nodes, 3 of them
// tainted control-plane nodes, starting from an empty cluster each iteration.
func BenchmarkSchedule5000Nodes(b *testing.B) {
	const numNodes, numPods, batch = 5000, 10000, 1000
	ns := make([]*corev1.Node, numNodes)
	for i := range ns {
		ns[i] = newNode(fmt.Sprintf("node-%05d", i),
			allocatable("cpu", "32", "memory", "128Gi", "pods", "110"),
			nodeLabels("zone", fmt.Sprintf("zone-%d", i%3)))
		if i < 3 {
			ns[i].Spec.Taints = []*corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}
		}
	}
	pods := make([]*corev1.Pod, numPods)
	for i := range pods {
		opts := []podOpt{ownedBy(fmt.Sprintf("rs-%d", i%100))}
		if i%10 == 0 {
			opts = append(opts, nodeSelector("zone", "zone-1"))
		}
		pods[i] = newPod(fmt.Sprintf("pod-%05d", i), "250m", "512Mi", opts...)
	}
	cfg := DefaultConfig()
	placed := 0
	for b.Loop() {
		b.StopTimer()
		c := mustCache(b, ns)
		s := mustScheduler(b, cfg)
		b.StartTimer()
		for i := 0; i < numPods; i += batch {
			for _, d := range s.Schedule(c, pods[i:i+batch]) {
				if d.Node != "" {
					placed++
				}
			}
		}
	}
	if placed != numPods*b.N {
		b.Fatalf("placed %d of %d pods", placed, numPods*b.N)
	}
	b.ReportMetric(float64(numPods*b.N)/b.Elapsed().Seconds(), "pods/s")
}

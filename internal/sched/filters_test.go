package sched

import (
	"slices"
	"testing"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// filterCase runs one filter for pod on node, with existing pods already on it.
type filterCase struct {
	name     string
	pod      *corev1.Pod
	node     *corev1.Node
	existing []*corev1.Pod
	want     []string // nil: the node passes
}

func runFilterCases(t *testing.T, f filter, cases []filterCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, []*corev1.Node{tc.node}, tc.existing...)
			p, err := newPodInfo(tc.pod)
			if err != nil {
				t.Fatalf("newPodInfo: %v", err)
			}
			got := f(p, c.nodes[tc.node.GetMetadata().GetName()], nil)
			if !slices.Equal(got, tc.want) {
				t.Errorf("reasons = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFilterUnschedulable(t *testing.T) {
	runFilterCases(t, filterUnschedulable, []filterCase{
		{name: "schedulable", pod: newPod("p", "", ""), node: newNode("n")},
		{name: "cordoned", pod: newPod("p", "", ""), node: newNode("n", cordoned),
			want: []string{"node(s) were unschedulable"}},
		{name: "cordoned, tolerated", node: newNode("n", cordoned),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{
				Key: "node.kubernetes.io/unschedulable", Operator: "Exists", Effect: "NoSchedule"}))},
		{name: "cordoned, tolerates everything", node: newNode("n", cordoned),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Operator: "Exists"}))},
		{name: "cordoned, toleration for another effect", node: newNode("n", cordoned),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{
				Key: "node.kubernetes.io/unschedulable", Operator: "Exists", Effect: "NoExecute"})),
			want: []string{"node(s) were unschedulable"}},
	})
}

func TestFilterTaints(t *testing.T) {
	controlPlane := &corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}
	gpu := &corev1.Taint{Key: "gpu", Value: "true", Effect: "NoExecute"}
	runFilterCases(t, filterTaints, []filterCase{
		{name: "no taints", pod: newPod("p", "", ""), node: newNode("n")},
		{name: "control plane", pod: newPod("p", "", ""), node: newNode("n", taints(controlPlane)),
			want: []string{"node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"}},
		{name: "value shown", pod: newPod("p", "", ""), node: newNode("n", taints(gpu)),
			want: []string{"node(s) had untolerated taint {gpu: true}"}},
		{name: "only the first untolerated taint", pod: newPod("p", "", ""), node: newNode("n", taints(gpu, controlPlane)),
			want: []string{"node(s) had untolerated taint {gpu: true}"}},
		{name: "PreferNoSchedule ignored", pod: newPod("p", "", ""),
			node: newNode("n", taints(&corev1.Taint{Key: "soft", Effect: "PreferNoSchedule"}))},
		{name: "Equal with value", node: newNode("n", taints(gpu)),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Operator: "Equal", Value: "true", Effect: "NoExecute"}))},
		{name: "empty operator means Equal", node: newNode("n", taints(gpu)),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Value: "true"}))},
		{name: "Equal with other value", node: newNode("n", taints(gpu)),
			pod:  newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Operator: "Equal", Value: "false"})),
			want: []string{"node(s) had untolerated taint {gpu: true}"}},
		{name: "Exists ignores value", node: newNode("n", taints(gpu)),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Operator: "Exists"}))},
		{name: "effect must match", node: newNode("n", taints(gpu)),
			pod:  newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Operator: "Exists", Effect: "NoSchedule"})),
			want: []string{"node(s) had untolerated taint {gpu: true}"}},
		{name: "empty key with Exists tolerates all", node: newNode("n", taints(gpu, controlPlane)),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Operator: "Exists"}))},
		{name: "one of two tolerated", node: newNode("n", taints(gpu, controlPlane)),
			pod:  newPod("p", "", "", tolerations(&corev1.Toleration{Key: "gpu", Operator: "Exists"})),
			want: []string{"node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"}},
		{name: "Ready False", pod: newPod("p", "", ""), node: newNode("n", ready("False")),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{name: "no Ready condition", pod: newPod("p", "", ""), node: newNode("n", ready("")),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{name: "Ready Unknown", pod: newPod("p", "", ""), node: newNode("n", ready("Unknown")),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/unreachable: }"}},
		{name: "not ready, tolerated", node: newNode("n", ready("False")),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: "Exists"}))},
		{name: "not ready, only the default NoExecute toleration", node: newNode("n", ready("False")),
			pod: newPod("p", "", "", tolerations(&corev1.Toleration{
				Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute"})),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{name: "node taints before readiness", pod: newPod("p", "", ""), node: newNode("n", ready("False"), taints(controlPlane)),
			want: []string{"node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"}},
	})
}

func TestFilterNodeAffinity(t *testing.T) {
	zoned := newNode("node-a", nodeLabels("zone", "a", "disktype", "ssd", "cores", "8"))
	term := func(exprs ...*corev1.NodeSelectorRequirement) *corev1.NodeSelectorTerm {
		return &corev1.NodeSelectorTerm{MatchExpressions: exprs}
	}
	fieldTerm := func(exprs ...*corev1.NodeSelectorRequirement) *corev1.NodeSelectorTerm {
		return &corev1.NodeSelectorTerm{MatchFields: exprs}
	}
	no := []string{"node(s) didn't match Pod's node affinity/selector"}
	runFilterCases(t, filterNodeAffinity, []filterCase{
		{name: "nothing asked", pod: newPod("p", "", ""), node: zoned},
		{name: "nodeSelector matches", pod: newPod("p", "", "", nodeSelector("zone", "a", "disktype", "ssd")), node: zoned},
		{name: "nodeSelector wrong value", pod: newPod("p", "", "", nodeSelector("zone", "b")), node: zoned, want: no},
		{name: "nodeSelector missing label", pod: newPod("p", "", "", nodeSelector("gpu", "")), node: zoned, want: no},
		{name: "In", pod: newPod("p", "", "", required(term(expr("zone", "In", "b", "a")))), node: zoned},
		{name: "In, no match", pod: newPod("p", "", "", required(term(expr("zone", "In", "b")))), node: zoned, want: no},
		{name: "In, missing label", pod: newPod("p", "", "", required(term(expr("gpu", "In", "x")))), node: zoned, want: no},
		{name: "NotIn", pod: newPod("p", "", "", required(term(expr("zone", "NotIn", "b")))), node: zoned},
		{name: "NotIn, excluded", pod: newPod("p", "", "", required(term(expr("zone", "NotIn", "a")))), node: zoned, want: no},
		{name: "NotIn, missing label matches", pod: newPod("p", "", "", required(term(expr("gpu", "NotIn", "x")))), node: zoned},
		{name: "Exists", pod: newPod("p", "", "", required(term(expr("disktype", "Exists")))), node: zoned},
		{name: "Exists, missing", pod: newPod("p", "", "", required(term(expr("gpu", "Exists")))), node: zoned, want: no},
		{name: "DoesNotExist", pod: newPod("p", "", "", required(term(expr("gpu", "DoesNotExist")))), node: zoned},
		{name: "DoesNotExist, present", pod: newPod("p", "", "", required(term(expr("zone", "DoesNotExist")))), node: zoned, want: no},
		{name: "Gt", pod: newPod("p", "", "", required(term(expr("cores", "Gt", "4")))), node: zoned},
		{name: "Gt, equal", pod: newPod("p", "", "", required(term(expr("cores", "Gt", "8")))), node: zoned, want: no},
		{name: "Lt", pod: newPod("p", "", "", required(term(expr("cores", "Lt", "16")))), node: zoned},
		{name: "Lt, larger", pod: newPod("p", "", "", required(term(expr("cores", "Lt", "2")))), node: zoned, want: no},
		{name: "Gt on a non-numeric label", pod: newPod("p", "", "", required(term(expr("zone", "Gt", "1")))), node: zoned, want: no},
		{name: "Gt with a non-numeric value is invalid", pod: newPod("p", "", "", required(term(expr("cores", "Gt", "x")))), node: zoned, want: no},
		{name: "In without values is invalid", pod: newPod("p", "", "", required(term(expr("zone", "In")))), node: zoned, want: no},
		{name: "Exists with values is invalid", pod: newPod("p", "", "", required(term(expr("zone", "Exists", "a")))), node: zoned, want: no},
		{name: "unknown operator is invalid", pod: newPod("p", "", "", required(term(expr("zone", "Like", "a")))), node: zoned, want: no},
		{name: "expressions are ANDed", node: zoned, want: no,
			pod: newPod("p", "", "", required(term(expr("zone", "In", "a"), expr("disktype", "In", "hdd"))))},
		{name: "terms are ORed", node: zoned,
			pod: newPod("p", "", "", required(term(expr("zone", "In", "b")), term(expr("disktype", "In", "ssd"))))},
		{name: "an invalid term does not spoil a valid one", node: zoned,
			pod: newPod("p", "", "", required(term(expr("zone", "In")), term(expr("zone", "In", "a"))))},
		{name: "empty term matches nothing", pod: newPod("p", "", "", required(&corev1.NodeSelectorTerm{})), node: zoned, want: no},
		{name: "no terms match nothing", pod: newPod("p", "", "", required()), node: zoned, want: no},
		{name: "nodeSelector and affinity both apply", node: zoned, want: no,
			pod: newPod("p", "", "", nodeSelector("zone", "b"), required(term(expr("zone", "In", "a"))))},
		{name: "matchFields metadata.name In", node: zoned,
			pod: newPod("p", "", "", required(fieldTerm(expr("metadata.name", "In", "node-a"))))},
		{name: "matchFields metadata.name In, other node", node: zoned, want: no,
			pod: newPod("p", "", "", required(fieldTerm(expr("metadata.name", "In", "node-b"))))},
		{name: "matchFields metadata.name NotIn", node: zoned,
			pod: newPod("p", "", "", required(fieldTerm(expr("metadata.name", "NotIn", "node-b"))))},
		{name: "matchFields with two values is invalid", node: zoned, want: no,
			pod: newPod("p", "", "", required(fieldTerm(expr("metadata.name", "In", "node-a", "node-b"))))},
		{name: "matchFields Exists is invalid", node: zoned, want: no,
			pod: newPod("p", "", "", required(fieldTerm(expr("metadata.name", "Exists"))))},
		{name: "matchFields and matchExpressions are ANDed", node: zoned, want: no,
			pod: newPod("p", "", "", required(&corev1.NodeSelectorTerm{
				MatchExpressions: []*corev1.NodeSelectorRequirement{expr("zone", "In", "a")},
				MatchFields:      []*corev1.NodeSelectorRequirement{expr("metadata.name", "In", "node-b")},
			}))},
	})
}

func TestFilterPorts(t *testing.T) {
	port := func(hostIP, protocol string, hostPort int32) *corev1.ContainerPort {
		return &corev1.ContainerPort{ContainerPort: 8080, HostPort: hostPort, HostIP: hostIP, Protocol: protocol}
	}
	using := func(ports ...*corev1.ContainerPort) []*corev1.Pod {
		return []*corev1.Pod{newPod("old", "", "", on("n"), hostPorts(ports...))}
	}
	no := []string{"node(s) didn't have free ports for the requested pod ports"}
	runFilterCases(t, filterPorts, []filterCase{
		{name: "no ports", pod: newPod("p", "", ""), node: newNode("n"), existing: using(port("", "", 80))},
		{name: "free", pod: newPod("p", "", "", hostPorts(port("", "TCP", 81))), node: newNode("n"), existing: using(port("", "TCP", 80))},
		{name: "container port only", pod: newPod("p", "", "", hostPorts(port("", "TCP", 0))), node: newNode("n"),
			existing: using(port("", "TCP", 0))},
		{name: "same port", pod: newPod("p", "", "", hostPorts(port("", "TCP", 80))), node: newNode("n"),
			existing: using(port("", "TCP", 80)), want: no},
		{name: "empty protocol is TCP", pod: newPod("p", "", "", hostPorts(port("", "", 80))), node: newNode("n"),
			existing: using(port("", "TCP", 80)), want: no},
		{name: "other protocol", pod: newPod("p", "", "", hostPorts(port("", "UDP", 80))), node: newNode("n"),
			existing: using(port("", "TCP", 80))},
		{name: "two addresses", pod: newPod("p", "", "", hostPorts(port("10.0.0.2", "TCP", 80))), node: newNode("n"),
			existing: using(port("10.0.0.1", "TCP", 80))},
		{name: "same address", pod: newPod("p", "", "", hostPorts(port("10.0.0.1", "TCP", 80))), node: newNode("n"),
			existing: using(port("10.0.0.1", "TCP", 80)), want: no},
		{name: "wildcard wanted, address used", pod: newPod("p", "", "", hostPorts(port("0.0.0.0", "TCP", 80))), node: newNode("n"),
			existing: using(port("10.0.0.1", "TCP", 80)), want: no},
		{name: "address wanted, wildcard used", pod: newPod("p", "", "", hostPorts(port("10.0.0.1", "TCP", 80))), node: newNode("n"),
			existing: using(port("", "TCP", 80)), want: no},
		{name: "hostNetwork binds container ports", node: newNode("n"), existing: using(port("", "TCP", 8080)), want: no,
			pod: newPod("p", "", "", hostPorts(port("", "TCP", 0)), func(p *corev1.Pod) { p.Spec.HostNetwork = true })},
		{name: "terminated pod frees its port", pod: newPod("p", "", "", hostPorts(port("", "TCP", 80))), node: newNode("n"),
			existing: []*corev1.Pod{newPod("old", "", "", on("n"), phase("Succeeded"), hostPorts(port("", "TCP", 80)))}},
	})
}

func TestFilterResources(t *testing.T) {
	small := newNode("n", allocatable("cpu", "1", "memory", "1Gi", "pods", "2"))
	runFilterCases(t, filterResources, []filterCase{
		{name: "fits", pod: newPod("p", "500m", "512Mi"), node: small},
		{name: "fits exactly", pod: newPod("p", "500m", "512Mi"), node: small,
			existing: []*corev1.Pod{newPod("a", "500m", "512Mi", on("n"))}},
		{name: "cpu", pod: newPod("p", "600m", "100Mi"), node: small,
			existing: []*corev1.Pod{newPod("a", "500m", "512Mi", on("n"))},
			want:     []string{"Insufficient cpu"}},
		{name: "memory", pod: newPod("p", "100m", "600Mi"), node: small,
			existing: []*corev1.Pod{newPod("a", "500m", "512Mi", on("n"))},
			want:     []string{"Insufficient memory"}},
		{name: "every resource short", pod: newPod("p", "2", "2Gi"), node: small,
			existing: []*corev1.Pod{newPod("a", "", "", on("n")), newPod("b", "", "", on("n"))},
			want:     []string{"Too many pods", "Insufficient cpu", "Insufficient memory"}},
		{name: "too many pods even without requests", pod: newPod("p", "", ""), node: small,
			existing: []*corev1.Pod{newPod("a", "", "", on("n")), newPod("b", "", "", on("n"))},
			want:     []string{"Too many pods"}},
		{name: "no requests fit a full node", pod: newPod("p", "", ""), node: small,
			existing: []*corev1.Pod{newPod("a", "1", "1Gi", on("n"))}},
		{name: "finished pods free their room", pod: newPod("p", "1", "1Gi"), node: small,
			existing: []*corev1.Pod{newPod("a", "1", "1Gi", on("n"), phase("Failed")), newPod("b", "1", "1Gi", on("n"), phase("Succeeded"))}},
		{name: "node without pods quantity", pod: newPod("p", "", ""), node: newNode("n", allocatable("cpu", "1", "memory", "1Gi")),
			want: []string{"Too many pods"}},
	})
}

func TestRunFiltersStopsAtFirstRejection(t *testing.T) {
	tests := []struct {
		name string
		node *corev1.Node
		want []string
	}{
		{"fits", newNode("n"), nil},
		{"cordoned wins over taint and resources", newNode("n", cordoned, ready("False"), allocatable("cpu", "1")),
			[]string{"node(s) were unschedulable"}},
		{"taint wins over resources", newNode("n", ready("False"), allocatable("cpu", "1")),
			[]string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{"resources give all their reasons", newNode("n", allocatable("cpu", "1")),
			[]string{"Too many pods", "Insufficient cpu", "Insufficient memory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, []*corev1.Node{tc.node})
			p, err := newPodInfo(newPod("p", "2", "1Gi"))
			if err != nil {
				t.Fatal(err)
			}
			if got := runFilters(p, c.nodes["n"], nil); !slices.Equal(got, tc.want) {
				t.Errorf("reasons = %q, want %q", got, tc.want)
			}
		})
	}
}

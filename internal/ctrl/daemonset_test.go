package ctrl

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Builders for the DaemonSet tests; names start with ds.

var dsLabels = map[string]string{"app": "agent"}

func dsTestSet(mut ...func(*appsv1.DaemonSetSpec)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		Metadata: &metav1.ObjectMeta{Name: "agent", Namespace: "ns", Uid: "ds-uid", ResourceVersion: "5", Generation: 2},
		Spec: &appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: cloneStringMap(dsLabels, "", "")},
			Template:       wlTemplate("agent:1", dsLabels),
			UpdateStrategy: &appsv1.DaemonSetUpdateStrategy{Type: "RollingUpdate"}},
	}
	for _, m := range mut {
		m(ds.Spec)
	}
	return ds
}

type dsNodeOpt func(*corev1.Node)

func dsTestNode(name string, opts ...dsNodeOpt) *corev1.Node {
	n := &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:   &corev1.NodeSpec{},
		Status: &corev1.NodeStatus{Conditions: []*corev1.NodeCondition{{Type: "Ready", Status: condTrue}}}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func dsLabel(k, v string) dsNodeOpt {
	return func(n *corev1.Node) { n.Metadata.Labels[k] = v }
}

func dsTaint(key, effect string) dsNodeOpt {
	return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, &corev1.Taint{Key: key, Effect: effect}) }
}

func dsReadyStatus(s string) dsNodeOpt {
	return func(n *corev1.Node) { n.Status.Conditions[0].Status = s }
}

func dsNodes(names ...string) []*corev1.Node {
	var out []*corev1.Node
	for _, n := range names {
		out = append(out, dsTestNode(n))
	}
	return out
}

func dsHashOf(ds *appsv1.DaemonSet) string { return PodTemplateHash(ds.GetSpec().GetTemplate(), nil) }

// dsPod is a Pending pod of ds bound to node, at ds's current revision.
func dsPod(ds *appsv1.DaemonSet, name, node string, opts ...wlPodOpt) *corev1.Pod {
	p := wlPod(name, cloneStringMap(dsLabels, ControllerRevisionHashLabel, dsHashOf(ds)), wlNode(node))
	p.Metadata.OwnerReferences = []*metav1.OwnerReference{NewControllerRef(ds.GetMetadata(), "apps/v1", "DaemonSet")}
	for _, o := range opts {
		o(p)
	}
	return p
}

func dsOldRev() wlPodOpt {
	return func(p *corev1.Pod) { p.Metadata.Labels[ControllerRevisionHashLabel] = "old" }
}

// dsReadyOn makes p Running and Ready (since wlT0) on its node.
func dsReadyOn() wlPodOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = podRunning
		p.Status.Conditions = []*corev1.PodCondition{{Type: "Ready", Status: condTrue, LastTransitionTime: timestamppb.New(wlT0)}}
	}
}

// dsCreateNodes lists the nodes the created pods target, in order.
func dsCreateNodes(pods []*corev1.Pod) string {
	var s []string
	for _, p := range pods {
		n, _ := dsTargetNode(p)
		s = append(s, n)
	}
	return strings.Join(s, ",")
}

func TestDaemonSetEligibility(t *testing.T) {
	tolerate := func(key, effect string) func(*appsv1.DaemonSetSpec) {
		return func(s *appsv1.DaemonSetSpec) {
			s.Template.Spec.Tolerations = append(s.Template.Spec.Tolerations, &corev1.Toleration{Key: key, Operator: "Exists", Effect: effect})
		}
	}
	selector := func(k, v string) func(*appsv1.DaemonSetSpec) {
		return func(s *appsv1.DaemonSetSpec) { s.Template.Spec.NodeSelector = map[string]string{k: v} }
	}
	affinity := func(reqs ...*corev1.NodeSelectorRequirement) func(*appsv1.DaemonSetSpec) {
		return func(s *appsv1.DaemonSetSpec) {
			s.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchExpressions: reqs}}}}}
		}
	}
	req := func(key, op string, values ...string) *corev1.NodeSelectorRequirement {
		return &corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		name  string
		nodes []*corev1.Node
		spec  []func(*appsv1.DaemonSetSpec)
		want  string // nodes that get a pod
	}{
		{"every ready node", dsNodes("n1", "n2", "n3"), nil, "n1,n2,n3"},
		{"nodeSelector", []*corev1.Node{dsTestNode("n1", dsLabel("disk", "ssd")), dsTestNode("n2"), dsTestNode("n3", dsLabel("disk", "hdd"))},
			[]func(*appsv1.DaemonSetSpec){selector("disk", "ssd")}, "n1"},
		{"required affinity In", []*corev1.Node{dsTestNode("n1", dsLabel("zone", "a")), dsTestNode("n2", dsLabel("zone", "b")), dsTestNode("n3")},
			[]func(*appsv1.DaemonSetSpec){affinity(req("zone", "In", "a", "c"))}, "n1"},
		{"required affinity NotIn and Gt", []*corev1.Node{dsTestNode("n1", dsLabel("cores", "8")), dsTestNode("n2", dsLabel("cores", "2")),
			dsTestNode("n3", dsLabel("cores", "16"), dsLabel("role", "db"))},
			[]func(*appsv1.DaemonSetSpec){affinity(req("role", "NotIn", "db"), req("cores", "Gt", "4"))}, "n1"},
		{"malformed affinity matches nothing", dsNodes("n1"), []func(*appsv1.DaemonSetSpec){affinity(req("zone", "In"))}, ""},
		{"untolerated NoSchedule taint", []*corev1.Node{dsTestNode("n1", dsTaint("dedicated", dsNoSchedule)), dsTestNode("n2")}, nil, "n2"},
		{"untolerated NoExecute taint", []*corev1.Node{dsTestNode("n1", dsTaint("dedicated", dsNoExecute)), dsTestNode("n2")}, nil, "n2"},
		{"PreferNoSchedule taints do not count", []*corev1.Node{dsTestNode("n1", dsTaint("dedicated", "PreferNoSchedule"))}, nil, "n1"},
		{"tolerated taint", []*corev1.Node{dsTestNode("n1", dsTaint("dedicated", dsNoSchedule)), dsTestNode("n2")},
			[]func(*appsv1.DaemonSetSpec){tolerate("dedicated", "")}, "n1,n2"},
		{"automatic tolerations", []*corev1.Node{
			dsTestNode("cordoned", dsTaint("node.kubernetes.io/unschedulable", dsNoSchedule)),
			dsTestNode("pressured", dsTaint("node.kubernetes.io/memory-pressure", dsNoSchedule), dsTaint("node.kubernetes.io/disk-pressure", dsNoSchedule),
				dsTaint("node.kubernetes.io/pid-pressure", dsNoSchedule)),
			dsTestNode("evicting", dsTaint(dsTaintNotReady, dsNoExecute), dsTaint(dsTaintUnreachable, dsNoExecute)),
			dsTestNode("cordoned-spec-only", func(n *corev1.Node) { n.Spec.Unschedulable = true }),
		}, nil, "cordoned,cordoned-spec-only,evicting,pressured"},
		{"no automatic toleration for NoSchedule not-ready", []*corev1.Node{dsTestNode("n1", dsTaint(dsTaintNotReady, dsNoSchedule))}, nil, ""},
		{"a node that is not Ready counts as tainted not-ready", []*corev1.Node{dsTestNode("down", dsReadyStatus(condFalse)),
			dsTestNode("unknown", dsReadyStatus(condUnknown)), dsTestNode("n1")}, nil, "n1"},
		{"tolerating not-ready reaches a NotReady node", []*corev1.Node{dsTestNode("down", dsReadyStatus(condFalse))},
			[]func(*appsv1.DaemonSetSpec){tolerate(dsTaintNotReady, dsNoSchedule)}, "down"},
		{"template nodeName", dsNodes("n1", "n2"), []func(*appsv1.DaemonSetSpec){func(s *appsv1.DaemonSetSpec) { s.Template.Spec.NodeName = "n2" }}, "n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := dsTestSet(tt.spec...)
			got := ReconcileDaemonSet(ds, tt.nodes, nil, wlT0)
			if s := dsCreateNodes(got.Create); s != tt.want {
				t.Fatalf("creates pods for %q, want %q", s, tt.want)
			}
			if n := got.Status.GetStatus().GetDesiredNumberScheduled(); int(n) != len(got.Create) {
				t.Fatalf("desiredNumberScheduled = %d, want %d", n, len(got.Create))
			}
		})
	}
}

func TestDaemonSetCreatedPod(t *testing.T) {
	ds := dsTestSet(func(s *appsv1.DaemonSetSpec) {
		s.Template.Spec.Tolerations = []*corev1.Toleration{{Key: "node.kubernetes.io/unschedulable", Operator: "Exists", Effect: dsNoSchedule}}
		s.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchExpressions: []*corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "Exists"}}}}}}}
	})
	before := proto.CloneOf(ds)
	got := ReconcileDaemonSet(ds, dsNodes("n1"), nil, wlT0)
	if !proto.Equal(ds, before) {
		t.Fatal("the DaemonSet read was modified")
	}
	if len(got.Create) != 1 {
		t.Fatalf("creates %d pods, want 1", len(got.Create))
	}
	p := got.Create[0]
	md := p.GetMetadata()
	if md.GetGenerateName() != "agent-" || md.GetName() != "" || md.GetNamespace() != "ns" ||
		md.GetLabels()["app"] != "agent" || md.GetLabels()[ControllerRevisionHashLabel] != dsHashOf(ds) {
		t.Fatalf("metadata = %v", md)
	}
	if ref := controllerRefOf(md); ref.GetKind() != "DaemonSet" || ref.GetUid() != "ds-uid" || ref.GetName() != "agent" {
		t.Fatalf("ownerReferences = %v", md.GetOwnerReferences())
	}
	if p.GetSpec().GetNodeName() != "" {
		t.Fatalf("pod is bound to %q; it must be left to the scheduler", p.GetSpec().GetNodeName())
	}
	want := &corev1.NodeSelector{NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchFields: []*corev1.NodeSelectorRequirement{
		{Key: "metadata.name", Operator: "In", Values: []string{"n1"}}}}}}
	if got := p.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution(); !proto.Equal(got, want) {
		t.Fatalf("required node affinity = %v, want %v", got, want)
	}
	var tols []string
	for _, tol := range p.GetSpec().GetTolerations() {
		tols = append(tols, tol.GetKey()+":"+tol.GetEffect())
	}
	wantTols := []string{"node.kubernetes.io/unschedulable:NoSchedule", "node.kubernetes.io/not-ready:NoExecute",
		"node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/disk-pressure:NoSchedule",
		"node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule"}
	if !slices.Equal(tols, wantTols) {
		t.Fatalf("tolerations = %v, want %v", tols, wantTols)
	}
}

func TestDaemonSetManage(t *testing.T) {
	ready := dsReadyOn()
	type mk = func(*appsv1.DaemonSet) *corev1.Pod
	mine := func(name, node string, opts ...wlPodOpt) mk {
		return func(ds *appsv1.DaemonSet) *corev1.Pod { return dsPod(ds, name, node, opts...) }
	}
	other := func(p *corev1.Pod) mk { return func(*appsv1.DaemonSet) *corev1.Pod { return p } }
	unbound := func(name, node string) mk {
		return func(ds *appsv1.DaemonSet) *corev1.Pod {
			p := dsPod(ds, name, "")
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchFields: []*corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: "In", Values: []string{node}}}}}}}}
			return p
		}
	}
	ssdOnly := func(s *appsv1.DaemonSetSpec) { s.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"} }
	tests := []struct {
		name        string
		spec        []func(*appsv1.DaemonSetSpec)
		nodes       []*corev1.Node
		pods        []mk
		wantCreate  string // target nodes
		wantDelete  string // pod names
		wantAdopt   string
		wantRelease string
	}{
		{"steady", nil, dsNodes("n1", "n2"), []mk{mine("a", "n1", ready), mine("b", "n2", ready)}, "", "", "", ""},
		{"a node that joins gets a pod", nil, dsNodes("n1", "n2", "n3"), []mk{mine("a", "n1", ready), mine("b", "n2", ready)}, "n3", "", "", ""},
		{"an unbound pod counts for the node it targets", nil, dsNodes("n1", "n2"), []mk{mine("a", "n1"), unbound("b", "n2")}, "", "", "", ""},
		{"a pod on a node that is gone is deleted", nil, dsNodes("n1"), []mk{mine("a", "n1"), mine("b", "gone")}, "", "b", "", ""},
		{"a pod without a target node is deleted", nil, dsNodes("n1"), []mk{mine("a", "n1"), mine("b", "")}, "", "b", "", ""},
		{"a node no longer matching loses its pod", []func(*appsv1.DaemonSetSpec){ssdOnly},
			[]*corev1.Node{dsTestNode("n1", dsLabel("disk", "ssd")), dsTestNode("n2")}, []mk{mine("a", "n1"), mine("b", "n2")}, "", "b", "", ""},
		{"an untolerated NoExecute taint evicts", nil, []*corev1.Node{dsTestNode("n1", dsTaint("x", dsNoExecute))}, []mk{mine("a", "n1", ready)}, "", "a", "", ""},
		{"an untolerated NoSchedule taint keeps the running pod", nil, []*corev1.Node{dsTestNode("n1", dsTaint("x", dsNoSchedule))},
			[]mk{mine("a", "n1", ready)}, "", "", "", ""},
		{"duplicates: all but the oldest go", nil, dsNodes("n1"), []mk{mine("new", "n1", wlCreated(wlT0.Add(time.Minute))), mine("old", "n1"),
			mine("newer", "n1", wlCreated(wlT0.Add(time.Hour)))}, "", "new,newer", "", ""},
		{"duplicates: a bound one is kept over an older unbound one", nil, dsNodes("n1"),
			[]mk{mine("bound", "n1", wlCreated(wlT0.Add(time.Minute))), unbound("unbound", "n1")}, "", "unbound", "", ""},
		{"a failed pod is deleted, replaced next time", nil, dsNodes("n1"), []mk{mine("a", "n1", wlPhase(podFailed))}, "", "a", "", ""},
		{"a matching orphan is adopted and counts", nil, dsNodes("n1", "n2"),
			[]mk{mine("a", "n1"), func(ds *appsv1.DaemonSet) *corev1.Pod {
				return wlPod("orphan", cloneStringMap(dsLabels, ControllerRevisionHashLabel, dsHashOf(ds)), wlNode("n2"))
			}}, "", "", "orphan", ""},
		{"another controller's pods are ignored", nil, dsNodes("n1"),
			[]mk{other(wlPod("theirs", dsLabels, wlNode("n1"), wlOwner("rs-uid")))}, "n1", "", "", ""},
		{"a relabeled pod is released and replaced", nil, dsNodes("n1"),
			[]mk{mine("a", "n1", func(p *corev1.Pod) { p.Metadata.Labels["app"] = "debug" })}, "n1", "", "", "a"},
		{"pods of other namespaces are ignored", nil, dsNodes("n1"),
			[]mk{mine("a", "n1", func(p *corev1.Pod) { p.Metadata.Namespace = "other" })}, "n1", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := dsTestSet(tt.spec...)
			var pods []*corev1.Pod
			for _, m := range tt.pods {
				pods = append(pods, m(ds))
			}
			got := ReconcileDaemonSet(ds, tt.nodes, pods, wlT0)
			if s := dsCreateNodes(got.Create); s != tt.wantCreate {
				t.Errorf("creates for %q, want %q", s, tt.wantCreate)
			}
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Errorf("deletes %q, want %q", s, tt.wantDelete)
			}
			if s := wlPodNames(got.Adopt); s != tt.wantAdopt {
				t.Errorf("adopts %q, want %q", s, tt.wantAdopt)
			}
			if s := wlPodNames(got.Release); s != tt.wantRelease {
				t.Errorf("releases %q, want %q", s, tt.wantRelease)
			}
		})
	}
}

func TestDaemonSetStatus(t *testing.T) {
	ds := dsTestSet(func(s *appsv1.DaemonSetSpec) { s.MinReadySeconds = 10 })
	nodes := []*corev1.Node{dsTestNode("n1"), dsTestNode("n2"), dsTestNode("n3"), dsTestNode("n4"),
		dsTestNode("tainted", dsTaint("x", dsNoSchedule))}
	now := wlT0.Add(5 * time.Second)
	pods := []*corev1.Pod{
		dsPod(ds, "a", "n1", dsReadyOn(), func(p *corev1.Pod) {
			p.Status.Conditions[0].LastTransitionTime = timestamppb.New(wlT0.Add(-time.Minute))
		}),
		dsPod(ds, "b", "n2", dsReadyOn()), // ready 5s, not yet available
		dsPod(ds, "c", "n3", dsOldRev()),
		dsPod(ds, "d", "tainted", dsReadyOn()),
	}
	got := ReconcileDaemonSet(ds, nodes, pods, now)
	want := &appsv1.DaemonSetStatus{DesiredNumberScheduled: 4, CurrentNumberScheduled: 3, NumberMisscheduled: 1, NumberReady: 2,
		NumberAvailable: 1, NumberUnavailable: 3, UpdatedNumberScheduled: 2, ObservedGeneration: 2}
	if !proto.Equal(got.Status.GetStatus(), want) {
		t.Fatalf("status = %v\nwant %v", got.Status.GetStatus(), want)
	}
	if want := 5*time.Second + time.Millisecond; got.RequeueAfter != want {
		t.Fatalf("requeue after %s, want %s (when b becomes available)", got.RequeueAfter, want)
	}
	if dsCreateNodes(got.Create) != "n4" {
		t.Fatalf("creates for %q, want n4", dsCreateNodes(got.Create))
	}
	again := proto.CloneOf(ds)
	again.Status = got.Status.GetStatus()
	if got := ReconcileDaemonSet(again, nodes, pods, now); got.Status != nil {
		t.Fatalf("an unchanged status is written again: %v", got.Status.GetStatus())
	}
}

func TestDaemonSetRollingUpdate(t *testing.T) {
	maxUnavailable := func(v *structpb.Value) func(*appsv1.DaemonSetSpec) {
		return func(s *appsv1.DaemonSetSpec) {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: v}
		}
	}
	onDelete := func(s *appsv1.DaemonSetSpec) { s.UpdateStrategy = &appsv1.DaemonSetUpdateStrategy{Type: "OnDelete"} }
	old := func(name, node string, opts ...wlPodOpt) func(*appsv1.DaemonSet) *corev1.Pod {
		return func(ds *appsv1.DaemonSet) *corev1.Pod {
			return dsPod(ds, name, node, append([]wlPodOpt{dsOldRev()}, opts...)...)
		}
	}
	cur := func(name, node string, opts ...wlPodOpt) func(*appsv1.DaemonSet) *corev1.Pod {
		return func(ds *appsv1.DaemonSet) *corev1.Pod { return dsPod(ds, name, node, opts...) }
	}
	ready := dsReadyOn()
	allOld := []func(*appsv1.DaemonSet) *corev1.Pod{old("a", "n1", ready), old("b", "n2", ready), old("c", "n3", ready), old("d", "n4", ready)}
	tests := []struct {
		name       string
		spec       []func(*appsv1.DaemonSetSpec)
		pods       []func(*appsv1.DaemonSet) *corev1.Pod
		wantCreate string
		wantDelete string
	}{
		{"default maxUnavailable 1", nil, allOld, "", "a"},
		{"maxUnavailable 2", []func(*appsv1.DaemonSetSpec){maxUnavailable(wlInt(2))}, allOld, "", "a,b"},
		{"maxUnavailable 50% of 4", []func(*appsv1.DaemonSetSpec){maxUnavailable(wlPct("50%"))}, allOld, "", "a,b"},
		{"maxUnavailable 0 still moves", []func(*appsv1.DaemonSetSpec){maxUnavailable(wlInt(0))}, allOld, "", "a"},
		{"an unavailable old pod is replaced outside the budget", nil,
			[]func(*appsv1.DaemonSet) *corev1.Pod{old("a", "n1", ready), old("b", "n2"), old("c", "n3", ready), old("d", "n4", ready)}, "", "b,a"},
		{"a new pod not yet available uses the budget", nil,
			[]func(*appsv1.DaemonSet) *corev1.Pod{cur("a", "n1"), old("b", "n2", ready), old("c", "n3", ready), old("d", "n4", ready)}, "", ""},
		{"next once the new pod is available", nil,
			[]func(*appsv1.DaemonSet) *corev1.Pod{cur("a", "n1", ready), old("b", "n2", ready), old("c", "n3", ready), old("d", "n4", ready)}, "", "b"},
		{"a deleted old pod is recreated first, nothing else deleted", nil,
			[]func(*appsv1.DaemonSet) *corev1.Pod{old("b", "n2", ready), old("c", "n3", ready), old("d", "n4", ready)}, "n1", ""},
		{"OnDelete leaves old pods", []func(*appsv1.DaemonSetSpec){onDelete}, allOld, "", ""},
		{"OnDelete recreates a deleted pod at the new revision", []func(*appsv1.DaemonSetSpec){onDelete},
			[]func(*appsv1.DaemonSet) *corev1.Pod{old("b", "n2", ready), old("c", "n3", ready), old("d", "n4", ready)}, "n1", ""},
		{"done", nil, []func(*appsv1.DaemonSet) *corev1.Pod{cur("a", "n1", ready), cur("b", "n2", ready), cur("c", "n3", ready), cur("d", "n4", ready)}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := dsTestSet(tt.spec...)
			var pods []*corev1.Pod
			for _, mk := range tt.pods {
				pods = append(pods, mk(ds))
			}
			got := ReconcileDaemonSet(ds, dsNodes("n1", "n2", "n3", "n4"), pods, wlT0.Add(time.Second))
			if s := dsCreateNodes(got.Create); s != tt.wantCreate {
				t.Errorf("creates for %q, want %q", s, tt.wantCreate)
			}
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Errorf("deletes %q, want %q", s, tt.wantDelete)
			}
			for _, p := range got.Create {
				if p.GetMetadata().GetLabels()[ControllerRevisionHashLabel] != dsHashOf(ds) {
					t.Errorf("created pod has revision %q, want %q", p.GetMetadata().GetLabels()[ControllerRevisionHashLabel], dsHashOf(ds))
				}
			}
		})
	}
}

func TestDaemonSetInvalidSelectorDoesNothing(t *testing.T) {
	ds := dsTestSet()
	ds.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
	if got := ReconcileDaemonSet(ds, dsNodes("n1"), nil, wlT0); !got.Empty() {
		t.Fatalf("a selector not matching the template acts: %+v", got)
	}
}

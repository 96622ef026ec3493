package ctrl

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

var wlWeb = map[string]string{"app": "web"}

func TestReconcileReplicaSetCounts(t *testing.T) {
	const uid = "rs-uid"
	mine := wlOwner(uid)
	tests := []struct {
		name        string
		replicas    int32
		pods        []*corev1.Pod
		wantCreate  int
		wantDelete  string // names, in order
		wantAdopt   string
		wantRelease string
	}{
		{"creates all from nothing", 3, nil, 3, "", "", ""},
		{"self-heals a deleted pod", 3, []*corev1.Pod{wlPod("a", wlWeb, mine), wlPod("b", wlWeb, mine)}, 1, "", "", ""},
		{"steady state", 2, []*corev1.Pod{wlPod("a", wlWeb, mine), wlPod("b", wlWeb, mine)}, 0, "", "", ""},
		{"creations capped at BurstReplicas", 700, nil, BurstReplicas, "", "", ""},
		{"terminal and terminating pods are replaced", 3, []*corev1.Pod{
			wlPod("a", wlWeb, mine), wlPod("b", wlWeb, mine, wlPhase(podSucceeded)),
			wlPod("c", wlWeb, mine, wlPhase(podFailed)), wlPod("d", wlWeb, mine, wlDeleting())}, 2, "", "", ""},
		{"adopts a matching orphan and counts it", 2, []*corev1.Pod{wlPod("a", wlWeb, mine), wlPod("orphan", wlWeb)}, 0, "", "orphan", ""},
		{"adopts no terminating or finished orphan", 1, []*corev1.Pod{wlPod("o1", wlWeb, wlDeleting()), wlPod("o2", wlWeb, wlPhase(podFailed))}, 1, "", "", ""},
		{"never touches another controller's pods", 1, []*corev1.Pod{wlPod("theirs", wlWeb, wlOwner("other"))}, 1, "", "", ""},
		{"ignores non-matching orphans", 1, []*corev1.Pod{wlPod("x", map[string]string{"app": "api"})}, 1, "", "", ""},
		{"releases an owned pod that stopped matching", 1, []*corev1.Pod{wlPod("a", wlWeb, mine), wlPod("relabeled", map[string]string{"app": "debug"}, mine)}, 0, "", "", "relabeled"},
		{"deletes the surplus", 1, []*corev1.Pod{wlPod("a", wlWeb, mine, wlReady(wlT0)), wlPod("b", wlWeb, mine)}, 0, "b", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := wlRS("web", uid, tt.replicas, wlWeb)
			got := ReconcileReplicaSet(rs, tt.pods, wlT0)
			if len(got.Create) != tt.wantCreate {
				t.Fatalf("creates %d pods, want %d", len(got.Create), tt.wantCreate)
			}
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Fatalf("deletes %q, want %q", s, tt.wantDelete)
			}
			if s := wlPodNames(got.Adopt); s != tt.wantAdopt {
				t.Fatalf("adopts %q, want %q", s, tt.wantAdopt)
			}
			if s := wlPodNames(got.Release); s != tt.wantRelease {
				t.Fatalf("releases %q, want %q", s, tt.wantRelease)
			}
		})
	}
}

func TestReconcileReplicaSetCreatedPods(t *testing.T) {
	rs := wlRS("web", "rs-uid", 2, wlWeb)
	rs.Spec.Template.Metadata.Labels["tier"] = "front"
	got := ReconcileReplicaSet(rs, nil, wlT0)
	if len(got.Create) != 2 {
		t.Fatalf("creates %d, want 2", len(got.Create))
	}
	for _, p := range got.Create {
		md := p.GetMetadata()
		if md.GetGenerateName() != "web-" || md.GetNamespace() != "ns" || md.GetLabels()["tier"] != "front" || md.GetResourceVersion() != "" {
			t.Fatalf("pod metadata = %v", md)
		}
		ref := controllerRefOf(md)
		if len(md.GetOwnerReferences()) != 1 || ref.GetUid() != "rs-uid" || ref.GetName() != "web" || ref.GetKind() != "ReplicaSet" ||
			ref.GetApiVersion() != "apps/v1" || !ref.GetBlockOwnerDeletion() {
			t.Fatalf("ownerReferences = %v", md.GetOwnerReferences())
		}
	}
	got.Create[0].Spec.Containers[0].Image = "changed"
	if rs.Spec.Template.Spec.Containers[0].Image != "img:1" || got.Create[1].Spec.Containers[0].Image != "img:1" {
		t.Fatal("created pods share memory with the template or each other")
	}
}

func TestReconcileReplicaSetAdoptAndRelease(t *testing.T) {
	rs := wlRS("web", "rs-uid", 2, wlWeb)
	orphan := wlPod("orphan", wlWeb)
	orphan.Metadata.OwnerReferences = []*metav1.OwnerReference{{Kind: "Thing", Uid: "not-a-controller", Name: "x"}}
	relabeled := wlPod("relabeled", map[string]string{"app": "debug"}, wlOwner("rs-uid"))
	before := proto.Clone(orphan)
	got := ReconcileReplicaSet(rs, []*corev1.Pod{orphan, relabeled, wlPod("a", wlWeb, wlOwner("rs-uid"))}, wlT0)
	if !proto.Equal(orphan, before) {
		t.Fatal("the input pod was modified")
	}
	if len(got.Adopt) != 1 {
		t.Fatalf("adopt = %v", got.Adopt)
	}
	a := got.Adopt[0]
	if a.GetMetadata().GetResourceVersion() != "3" || len(a.GetMetadata().GetOwnerReferences()) != 2 {
		t.Fatalf("adopted pod must be the pod as read plus one ownerReference: %v", a.GetMetadata())
	}
	if ref := controllerRefOf(a.GetMetadata()); ref.GetUid() != "rs-uid" || !ref.GetBlockOwnerDeletion() {
		t.Fatalf("controller ref = %v", ref)
	}
	if len(got.Release) != 1 || len(got.Release[0].GetMetadata().GetOwnerReferences()) != 0 || got.Release[0].GetMetadata().GetResourceVersion() != "3" {
		t.Fatalf("release = %v", got.Release)
	}
	if len(got.Create) != 0 || len(got.Delete) != 0 {
		t.Fatalf("adopted pod should complete the count: create %d delete %d", len(got.Create), len(got.Delete))
	}

	rs.Metadata.DeletionTimestamp = timestamppb.New(wlT0)
	got = ReconcileReplicaSet(rs, []*corev1.Pod{orphan, relabeled}, wlT0)
	if len(got.Adopt)+len(got.Release)+len(got.Create)+len(got.Delete) != 0 {
		t.Fatalf("a ReplicaSet being deleted must only update status: %+v", got)
	}
}

// TestReconcileReplicaSetDeletionOrder pins each rule of ActivePodsWithRanks:
// two pods, the first of which must be chosen for a scale-down by one.
func TestReconcileReplicaSetDeletionOrder(t *testing.T) {
	mine := wlOwner("rs-uid")
	tests := []struct {
		name        string
		first, then *corev1.Pod
	}{
		{"unscheduled before scheduled", wlPod("z", wlWeb, mine), wlPod("a", wlWeb, mine, wlNode("n1"))},
		{"pending before running", wlPod("z", wlWeb, mine, wlNode("n1")), wlPod("a", wlWeb, mine, wlRunning("n1"))},
		{"unknown before running", wlPod("z", wlWeb, mine, wlNode("n1"), wlPhase(podUnknown)), wlPod("a", wlWeb, mine, wlRunning("n1"))},
		{"not ready before ready", wlPod("z", wlWeb, mine, wlRunning("n1")), wlPod("a", wlWeb, mine, wlReady(wlT0))},
		{"lower deletion cost first", wlPod("z", wlWeb, mine, wlReady(wlT0), wlAnnotate(PodDeletionCostAnnotation, "-5")), wlPod("a", wlWeb, mine, wlReady(wlT0))},
		{"ready more recently first", wlPod("z", wlWeb, mine, wlReady(wlT0.Add(time.Minute))), wlPod("a", wlWeb, mine, wlReady(wlT0))},
		{"more restarts first", wlPod("z", wlWeb, mine, wlReady(wlT0), wlRestarts(3)), wlPod("a", wlWeb, mine, wlReady(wlT0), wlRestarts(1))},
		{"newer first", wlPod("z", wlWeb, mine, wlReady(wlT0), wlCreated(wlT0.Add(time.Second))), wlPod("a", wlWeb, mine, wlReady(wlT0))},
		{"then by name", wlPod("a", wlWeb, mine, wlReady(wlT0)), wlPod("b", wlWeb, mine, wlReady(wlT0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range [][]*corev1.Pod{{tt.first, tt.then}, {tt.then, tt.first}} {
				got := ReconcileReplicaSet(wlRS("web", "rs-uid", 1, wlWeb), order, wlT0)
				if s := wlPodNames(got.Delete); s != tt.first.GetMetadata().GetName() {
					t.Fatalf("deletes %q, want %q", s, tt.first.GetMetadata().GetName())
				}
			}
		})
	}
	t.Run("doubled-up node first", func(t *testing.T) {
		pods := []*corev1.Pod{
			wlPod("a", wlWeb, mine, wlReady(wlT0), wlNode("crowded")),
			wlPod("b", wlWeb, mine, wlReady(wlT0), wlNode("crowded")),
			wlPod("c", wlWeb, mine, wlReady(wlT0), wlNode("alone")),
		}
		got := ReconcileReplicaSet(wlRS("web", "rs-uid", 2, wlWeb), pods, wlT0)
		if s := wlPodNames(got.Delete); s != "a" {
			t.Fatalf("deletes %q, want a (one of the two on the crowded node)", s)
		}
	})
	t.Run("scale 5 to 2", func(t *testing.T) {
		pods := []*corev1.Pod{
			wlPod("ready-old", wlWeb, mine, wlReady(wlT0)),
			wlPod("ready-new", wlWeb, mine, wlReady(wlT0.Add(time.Hour))),
			wlPod("pending", wlWeb, mine),
			wlPod("notready", wlWeb, mine, wlRunning("n1")),
			wlPod("ready-mid", wlWeb, mine, wlReady(wlT0.Add(time.Minute))),
		}
		got := ReconcileReplicaSet(wlRS("web", "rs-uid", 2, wlWeb), pods, wlT0)
		if s := wlPodNames(got.Delete); s != "pending,notready,ready-new" {
			t.Fatalf("deletes %q", s)
		}
	})
}

func TestReconcileReplicaSetStatus(t *testing.T) {
	mine := wlOwner("rs-uid")
	tests := []struct {
		name        string
		minReady    int32
		pods        []*corev1.Pod
		oldStatus   *appsv1.ReplicaSetStatus
		want        *appsv1.ReplicaSetStatus // nil: no status write
		wantRequeue time.Duration
	}{
		{
			name: "counts replicas, labeled, ready and available",
			pods: []*corev1.Pod{wlPod("a", wlWeb, mine, wlReady(wlT0)), wlPod("b", map[string]string{"app": "web", "x": "y"}, mine),
				wlPod("gone", wlWeb, mine, wlDeleting())},
			want: &appsv1.ReplicaSetStatus{Replicas: 2, FullyLabeledReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1,
				TerminatingReplicas: proto.Int32(1), ObservedGeneration: 4},
		},
		{
			name:     "minReadySeconds: ready but not yet available, requeued",
			minReady: 30,
			pods:     []*corev1.Pod{wlPod("a", wlWeb, mine, wlReady(wlT0.Add(-10*time.Second))), wlPod("b", wlWeb, mine, wlReady(wlT0.Add(-time.Minute)))},
			want: &appsv1.ReplicaSetStatus{Replicas: 2, FullyLabeledReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 1,
				TerminatingReplicas: proto.Int32(0), ObservedGeneration: 4},
			wantRequeue: 20*time.Second + time.Millisecond,
		},
		{
			name: "unchanged status is not written",
			pods: []*corev1.Pod{wlPod("a", wlWeb, mine, wlReady(wlT0))},
			oldStatus: &appsv1.ReplicaSetStatus{Replicas: 1, FullyLabeledReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
				TerminatingReplicas: proto.Int32(0), ObservedGeneration: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := wlRS("web", "rs-uid", int32(len(tt.pods)), wlWeb)
			rs.Metadata.Generation = 4
			rs.Spec.MinReadySeconds = tt.minReady
			if tt.oldStatus != nil {
				rs.Status = tt.oldStatus
			}
			got := ReconcileReplicaSet(rs, tt.pods, wlT0)
			if tt.want == nil {
				if got.Status != nil {
					t.Fatalf("status written: %v", got.Status.Status)
				}
				return
			}
			if got.Status == nil || !proto.Equal(got.Status.Status, tt.want) {
				t.Fatalf("status = %v, want %v", got.Status.GetStatus(), tt.want)
			}
			if got.Status.GetMetadata().GetResourceVersion() != "7" || !proto.Equal(got.Status.Spec, rs.Spec) {
				t.Fatal("the status action must carry the ReplicaSet as read")
			}
			if got.RequeueAfter != tt.wantRequeue {
				t.Fatalf("RequeueAfter = %v, want %v", got.RequeueAfter, tt.wantRequeue)
			}
		})
	}
}

func TestReconcileReplicaSetInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(*appsv1.ReplicaSet)
	}{
		{"no selector", func(rs *appsv1.ReplicaSet) { rs.Spec.Selector = nil }},
		{"empty selector", func(rs *appsv1.ReplicaSet) { rs.Spec.Selector = &metav1.LabelSelector{} }},
		{"selector does not match template", func(rs *appsv1.ReplicaSet) { rs.Spec.Template.Metadata.Labels = map[string]string{"app": "x"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := wlRS("web", "rs-uid", 3, wlWeb)
			tt.edit(rs)
			if got := ReconcileReplicaSet(rs, []*corev1.Pod{wlPod("orphan", wlWeb)}, wlT0); !got.Empty() {
				t.Fatalf("actions = %+v, want none", got)
			}
		})
	}
}

func TestReconcileReplicaSetDeterministic(t *testing.T) {
	mine := wlOwner("rs-uid")
	var pods []*corev1.Pod
	for _, n := range []string{"e", "b", "d", "a", "c", "f"} {
		pods = append(pods, wlPod(n, wlWeb, mine, wlReady(wlT0)))
	}
	want := ReconcileReplicaSet(wlRS("web", "rs-uid", 2, wlWeb), pods, wlT0)
	slices.Reverse(pods)
	got := ReconcileReplicaSet(wlRS("web", "rs-uid", 2, wlWeb), pods, wlT0)
	if wlPodNames(got.Delete) != wlPodNames(want.Delete) {
		t.Fatalf("order depends on input order: %s vs %s", wlPodNames(got.Delete), wlPodNames(want.Delete))
	}
}

func TestSlowStartBatches(t *testing.T) {
	tests := []struct {
		n    int
		want []int
	}{
		{0, nil}, {1, []int{1}}, {3, []int{1, 2}}, {10, []int{1, 2, 4, 3}}, {500, []int{1, 2, 4, 8, 16, 32, 64, 128, 245}},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			if got := SlowStartBatches(tt.n); !slices.Equal(got, tt.want) {
				t.Fatalf("SlowStartBatches(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

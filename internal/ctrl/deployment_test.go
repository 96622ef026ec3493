package ctrl

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// wlDeployRS is a ReplicaSet of d as the controller makes it: owned by d,
// running image, revision rev, scaled for d's current replicas and surge, with
// available of its pods ready and available, created age after wlT0.
func wlDeployRS(d *appsv1.Deployment, image string, rev int, replicas, available int32, age time.Duration) *appsv1.ReplicaSet {
	t := proto.Clone(d.Spec.Template).(*corev1.PodTemplateSpec)
	t.Spec.Containers[0].Image = image
	hash := PodTemplateHash(t, nil)
	t.Metadata.Labels = cloneStringMap(t.Metadata.Labels, PodTemplateHashLabel, hash)
	rs := wlRS(d.Metadata.Name+"-"+hash, "uid-"+hash, replicas, t.Metadata.Labels)
	rs.Spec.Template = t
	rs.Metadata.CreationTimestamp = timestamppb.New(wlT0.Add(age))
	rs.Metadata.OwnerReferences = []*metav1.OwnerReference{NewControllerRef(d.Metadata, "apps/v1", "Deployment")}
	surge, _ := resolveFenceposts(d.Spec.Strategy.GetRollingUpdate().GetMaxSurge(), d.Spec.Strategy.GetRollingUpdate().GetMaxUnavailable(), d.Spec.GetReplicas())
	rs.Metadata.Annotations = map[string]string{RevisionAnnotation: strconv.Itoa(rev),
		DesiredReplicasAnnotation: strconv.Itoa(int(d.Spec.GetReplicas())), MaxReplicasAnnotation: strconv.Itoa(int(d.Spec.GetReplicas() + surge))}
	rs.Status = &appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: available, AvailableReplicas: available,
		FullyLabeledReplicas: replicas, ObservedGeneration: 1}
	return rs
}

func wlReplicas(rss []*appsv1.ReplicaSet) map[string]int32 {
	out := map[string]int32{}
	for _, rs := range rss {
		out[rs.GetMetadata().GetName()] = replicasOf(rs)
	}
	return out
}

func TestReconcileDeploymentCreatesNewReplicaSet(t *testing.T) {
	d := wlDeployment(10, nil, nil)
	d.Metadata.Annotations = map[string]string{ChangeCauseAnnotation: "initial", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
	before := proto.Clone(d)
	got := ReconcileDeployment(d, nil, nil, wlT0)
	if !proto.Equal(d, before) {
		t.Fatal("the input deployment was modified")
	}
	rs := got.CreateReplicaSet
	if rs == nil {
		t.Fatal("no ReplicaSet created")
	}
	hash := PodTemplateHash(d.Spec.Template, nil)
	md := rs.GetMetadata()
	if md.GetName() != "web-"+hash || md.GetNamespace() != "ns" || md.GetLabels()[PodTemplateHashLabel] != hash || md.GetLabels()["app"] != "web" {
		t.Fatalf("metadata = %v", md)
	}
	if rs.GetSpec().GetSelector().GetMatchLabels()[PodTemplateHashLabel] != hash || rs.GetSpec().GetSelector().GetMatchLabels()["app"] != "web" ||
		rs.GetSpec().GetTemplate().GetMetadata().GetLabels()[PodTemplateHashLabel] != hash {
		t.Fatalf("selector %v / template labels %v must carry the hash", rs.GetSpec().GetSelector(), rs.GetSpec().GetTemplate().GetMetadata().GetLabels())
	}
	if d.Spec.Template.Metadata.Labels[PodTemplateHashLabel] != "" || d.Spec.Selector.MatchLabels[PodTemplateHashLabel] != "" {
		t.Fatal("the deployment's template or selector got the hash label")
	}
	if ref := controllerRefOf(md); ref.GetUid() != "d-uid" || ref.GetKind() != "Deployment" || !ref.GetBlockOwnerDeletion() {
		t.Fatalf("owner = %v", md.GetOwnerReferences())
	}
	wantAnn := map[string]string{RevisionAnnotation: "1", DesiredReplicasAnnotation: "10", MaxReplicasAnnotation: "13", ChangeCauseAnnotation: "initial"}
	if len(md.GetAnnotations()) != len(wantAnn) {
		t.Fatalf("annotations = %v, want %v", md.GetAnnotations(), wantAnn)
	}
	for k, v := range wantAnn {
		if md.GetAnnotations()[k] != v {
			t.Fatalf("annotation %s = %q, want %q", k, md.GetAnnotations()[k], v)
		}
	}
	if replicasOf(rs) != 10 {
		t.Fatalf("replicas = %d, want 10", replicasOf(rs))
	}
	if got.Update == nil || got.Update.GetMetadata().GetAnnotations()[RevisionAnnotation] != "1" || got.Update.GetMetadata().GetResourceVersion() != "1" {
		t.Fatalf("deployment update = %v", got.Update.GetMetadata())
	}
	st := got.Status.GetStatus()
	if c := getCondition(st, condProgressing); c.GetReason() != ReasonNewReplicaSetCreated || c.GetStatus() != condTrue ||
		c.GetMessage() != `Created new replica set "web-`+hash+`"` || !c.GetLastUpdateTime().AsTime().Equal(wlT0) {
		t.Fatalf("Progressing = %v", c)
	}
	if c := getCondition(st, condAvailable); c.GetReason() != ReasonMinimumReplicasUnavailable || c.GetStatus() != condFalse {
		t.Fatalf("Available = %v", c)
	}
	if st.GetUnavailableReplicas() != 10 || st.GetObservedGeneration() != 1 {
		t.Fatalf("status = %v", st)
	}
	if len(got.Events) != 1 || got.Events[0].Reason != "ScalingReplicaSet" || got.Events[0].Message != "Scaled up replica set web-"+hash+" from 0 to 10" {
		t.Fatalf("events = %v", got.Events)
	}
	if got.RequeueAfter != 601*time.Second {
		t.Fatalf("RequeueAfter = %v, want the progress deadline + 1s", got.RequeueAfter)
	}
}

// TestReconcileDeploymentRollingSteps pins single steps of Kubernetes'
// arithmetic (replicas 10, maxSurge 3, maxUnavailable 2 unless stated).
func TestReconcileDeploymentRollingSteps(t *testing.T) {
	tests := []struct {
		name       string
		surge      *structpb.Value
		unavail    *structpb.Value
		old        [][2]int32 // per old ReplicaSet (oldest first): spec, available
		newRS      *[2]int32  // nil: none yet
		wantOld    []int32
		wantNew    int32
		wantCreate bool
	}{
		{name: "start: new gets the surge, old loses maxUnavailable", old: [][2]int32{{10, 10}},
			wantOld: []int32{8}, wantNew: 3, wantCreate: true},
		{name: "new scales up to the surge bound and nothing else moves", old: [][2]int32{{8, 8}}, newRS: &[2]int32{3, 3},
			wantOld: []int32{8}, wantNew: 5},
		{name: "at the bound: old scaled down by available beyond the minimum", old: [][2]int32{{8, 8}}, newRS: &[2]int32{5, 5},
			wantOld: []int32{3}, wantNew: 5},
		{name: "new pods not available: nothing moves", old: [][2]int32{{8, 8}}, newRS: &[2]int32{5, 0},
			wantOld: []int32{8}, wantNew: 5},
		{name: "unhealthy old replicas are cleaned up first", surge: wlInt(0), unavail: wlInt(1), old: [][2]int32{{10, 6}}, newRS: &[2]int32{0, 0},
			wantOld: []int32{9}, wantNew: 0},
		{name: "oldest old ReplicaSet first", surge: wlInt(0), unavail: wlInt(3), old: [][2]int32{{4, 4}, {6, 6}}, newRS: &[2]int32{0, 0},
			wantOld: []int32{1, 6}, wantNew: 0},
		{name: "new above replicas is scaled down", old: [][2]int32{{0, 0}}, newRS: &[2]int32{12, 12},
			wantOld: []int32{0}, wantNew: 10},
		// The old ReplicaSet was just scaled 10 -> 8 and its status still counts
		// 10 available: only 8 of them will remain, so 8 + 5 = 13 are available
		// and 5 may go, not 7 (found by the e2e rollout checker).
		{name: "stale status of a scaled-down old ReplicaSet counts what remains", old: [][2]int32{{8, 10}}, newRS: &[2]int32{5, 5},
			wantOld: []int32{3}, wantNew: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			surge, unavail := tt.surge, tt.unavail
			if surge == nil {
				surge, unavail = wlInt(3), wlInt(2)
			}
			d := wlDeployment(10, surge, unavail)
			d.Spec.Template = wlTemplate("img:new", wlWeb)
			var rss []*appsv1.ReplicaSet
			for i, o := range tt.old {
				rss = append(rss, wlDeployRS(d, "img:old"+strconv.Itoa(i), i+1, o[0], o[1], time.Duration(i)*time.Minute))
			}
			var newName string
			if tt.newRS != nil {
				n := wlDeployRS(d, "img:new", len(tt.old)+1, tt.newRS[0], tt.newRS[1], time.Hour)
				rss = append(rss, n)
				newName = n.GetMetadata().GetName()
			}
			got := ReconcileDeployment(d, rss, nil, wlT0)
			if (got.CreateReplicaSet != nil) != tt.wantCreate {
				t.Fatalf("create = %v, want %v", got.CreateReplicaSet != nil, tt.wantCreate)
			}
			after := wlReplicas(rss)
			for name, n := range wlReplicas(got.UpdateReplicaSets) {
				after[name] = n
			}
			if c := got.CreateReplicaSet; c != nil {
				newName = c.GetMetadata().GetName()
				after[newName] = replicasOf(c)
			}
			for i, want := range tt.wantOld {
				if n := after[rss[i].GetMetadata().GetName()]; n != want {
					t.Fatalf("old %d at %d, want %d", i, n, want)
				}
			}
			if after[newName] != tt.wantNew {
				t.Fatalf("new at %d, want %d", after[newName], tt.wantNew)
			}
			before := wlReplicas(rss)
			sawOther := false
			for _, rs := range got.UpdateReplicaSets {
				down := replicasOf(rs) < before[rs.GetMetadata().GetName()]
				if down && sawOther {
					t.Fatal("scale-downs must come first")
				}
				sawOther = sawOther || !down
				if rs.GetMetadata().GetResourceVersion() != "7" {
					t.Fatalf("update of %s does not carry the resourceVersion as read", rs.GetMetadata().GetName())
				}
			}
		})
	}
}

func TestReconcileDeploymentOwnership(t *testing.T) {
	d := wlDeployment(2, wlInt(1), wlInt(0))
	current := wlDeployRS(d, "img:1", 1, 2, 2, 0)
	current.Metadata.OwnerReferences = nil // an orphan running d's template: adopted, and it is the new one
	theirs := wlDeployRS(d, "img:other", 5, 3, 3, 0)
	theirs.Metadata.OwnerReferences[0].Uid = "someone-else"
	relabeled := wlDeployRS(d, "img:old", 2, 0, 0, 0)
	relabeled.Metadata.Labels = map[string]string{"app": "debug"}
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{theirs, current, relabeled}, nil, wlT0)
	if got.CreateReplicaSet != nil {
		t.Fatal("created a ReplicaSet although the adopted one runs the template")
	}
	byName := map[string]*appsv1.ReplicaSet{}
	for _, rs := range got.UpdateReplicaSets {
		byName[rs.GetMetadata().GetName()] = rs
	}
	if _, ok := byName[theirs.GetMetadata().GetName()]; ok {
		t.Fatal("touched another controller's ReplicaSet")
	}
	a := byName[current.GetMetadata().GetName()]
	if ref := controllerRefOf(a.GetMetadata()); ref.GetUid() != "d-uid" {
		t.Fatalf("orphan not adopted: %v", a.GetMetadata().GetOwnerReferences())
	}
	if r := byName[relabeled.GetMetadata().GetName()]; r == nil || len(r.GetMetadata().GetOwnerReferences()) != 0 {
		t.Fatalf("non-matching owned ReplicaSet not released: %v", r)
	}
	// The other controller's 3 pods do not count: status is the adopted one's.
	if st := got.Status.GetStatus(); st.GetReplicas() != 2 || st.GetAvailableReplicas() != 2 || st.GetUpdatedReplicas() != 2 {
		t.Fatalf("status = %v", st)
	}
}

func TestReconcileDeploymentHashCollision(t *testing.T) {
	d := wlDeployment(2, nil, nil)
	hash := PodTemplateHash(d.Spec.Template, nil)
	squatter := wlRS("web-"+hash, "other", 1, map[string]string{"app": "squatter"})
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{squatter}, nil, wlT0)
	if got.CreateReplicaSet != nil || got.Status.GetStatus().GetCollisionCount() != 1 {
		t.Fatalf("create %v, collisionCount %d: want no create and collisionCount 1", got.CreateReplicaSet != nil, got.Status.GetStatus().GetCollisionCount())
	}
	d.Status = got.Status.Status
	got = ReconcileDeployment(d, []*appsv1.ReplicaSet{squatter}, nil, wlT0)
	if c := got.CreateReplicaSet; c == nil || c.GetMetadata().GetName() != "web-"+PodTemplateHash(d.Spec.Template, proto.Int32(1)) || c.GetMetadata().GetName() == squatter.GetMetadata().GetName() {
		t.Fatalf("after the bump: create %v", c.GetMetadata())
	}
}

func TestReconcileDeploymentRecreate(t *testing.T) {
	recreate := func() *appsv1.Deployment {
		d := wlDeployment(3, nil, nil)
		d.Spec.Strategy = &appsv1.DeploymentStrategy{Type: "Recreate"}
		d.Spec.Template = wlTemplate("img:2", wlWeb)
		return d
	}
	tests := []struct {
		name       string
		oldSpec    int32
		oldStatus  int32
		oldPods    []*corev1.Pod
		wantOld    int32
		wantCreate bool
	}{
		{"old scaled to 0 first", 3, 3, nil, 0, false},
		{"waits while the old ReplicaSet still counts pods", 0, 2, nil, 0, false},
		{"waits for terminating old pods", 0, 0, []*corev1.Pod{wlPod("old-1", wlWeb, wlDeleting())}, 0, false},
		{"finished old pods do not block", 0, 0, []*corev1.Pod{wlPod("old-1", wlWeb, wlPhase(podSucceeded))}, 0, true},
		{"then the new one at full size", 0, 0, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := recreate()
			old := wlDeployRS(d, "img:1", 1, tt.oldSpec, tt.oldStatus, 0)
			old.Status.Replicas = tt.oldStatus
			var pods []*corev1.Pod
			for _, p := range tt.oldPods {
				p = proto.Clone(p).(*corev1.Pod)
				p.Metadata.Labels = old.Metadata.Labels
				wlOwner(old.Metadata.Uid)(p)
				pods = append(pods, p)
			}
			got := ReconcileDeployment(d, []*appsv1.ReplicaSet{old}, pods, wlT0)
			n := tt.oldSpec
			for _, rs := range got.UpdateReplicaSets {
				if rs.GetMetadata().GetName() == old.GetMetadata().GetName() {
					n = replicasOf(rs)
				}
			}
			if n != tt.wantOld {
				t.Fatalf("old at %d, want %d", n, tt.wantOld)
			}
			if (got.CreateReplicaSet != nil) != tt.wantCreate {
				t.Fatalf("create = %v, want %v", got.CreateReplicaSet != nil, tt.wantCreate)
			}
			if c := got.CreateReplicaSet; c != nil && (replicasOf(c) != 3 || c.GetMetadata().GetAnnotations()[MaxReplicasAnnotation] != "3") {
				t.Fatalf("new at %d (max-replicas %s), want 3 (3: no surge with Recreate)", replicasOf(c), c.GetMetadata().GetAnnotations()[MaxReplicasAnnotation])
			}
		})
	}
}

// TestReconcileDeploymentProportionalScaling is the example of Kubernetes'
// documentation: 10 replicas, maxSurge 3, a rollout stuck at 8 old + 5 new,
// then scaled to 15: of the 5 extra, 3 go to the old ReplicaSet and 2 to the
// new one.
func TestReconcileDeploymentProportionalScaling(t *testing.T) {
	d := wlDeployment(10, wlInt(3), wlInt(2))
	d.Spec.Template = wlTemplate("img:new", wlWeb)
	old := wlDeployRS(d, "img:old", 1, 8, 8, 0)
	newRS := wlDeployRS(d, "img:new", 2, 5, 0, time.Minute)
	d.Spec.Replicas = proto.Int32(15)
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{old, newRS}, nil, wlT0)
	after := wlReplicas(got.UpdateReplicaSets)
	if after[old.Metadata.Name] != 11 || after[newRS.Metadata.Name] != 7 {
		t.Fatalf("after scaling: %v, want old 11 new 7", after)
	}
	for _, rs := range got.UpdateReplicaSets {
		if a := rs.GetMetadata().GetAnnotations(); a[DesiredReplicasAnnotation] != "15" || a[MaxReplicasAnnotation] != "18" {
			t.Fatalf("%s annotations %v", rs.GetMetadata().GetName(), a)
		}
	}
	// Scaling back down to 10 returns to the same sizes, removing from the
	// larger ReplicaSet first.
	d.Spec.Replicas = proto.Int32(10)
	got = ReconcileDeployment(d, got.UpdateReplicaSets, nil, wlT0)
	after = wlReplicas(got.UpdateReplicaSets)
	if after[old.Metadata.Name] != 8 || after[newRS.Metadata.Name] != 5 {
		t.Fatalf("after scaling back: %v, want old 8 new 5", after)
	}
}

func TestReconcileDeploymentPaused(t *testing.T) {
	d := wlDeployment(3, nil, nil)
	current := wlDeployRS(d, "img:1", 1, 3, 3, 0)
	d.Spec.Paused = true
	d.Spec.Template = wlTemplate("img:2", wlWeb)
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{current}, nil, wlT0)
	if got.CreateReplicaSet != nil || len(got.UpdateReplicaSets) != 0 {
		t.Fatalf("a paused deployment rolled out: %+v", got)
	}
	if c := getCondition(got.Status.GetStatus(), condProgressing); c.GetStatus() != condUnknown || c.GetReason() != ReasonDeploymentPaused {
		t.Fatalf("Progressing = %v", c)
	}
	if got.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter = %v while paused", got.RequeueAfter)
	}
	// Still scales the current ReplicaSet.
	d.Spec.Replicas = proto.Int32(5)
	d.Status = got.Status.Status
	got = ReconcileDeployment(d, []*appsv1.ReplicaSet{current}, nil, wlT0)
	if after := wlReplicas(got.UpdateReplicaSets); after[current.Metadata.Name] != 5 || got.CreateReplicaSet != nil {
		t.Fatalf("paused scale: %v", after)
	}
	// Resuming records it and starts the rollout.
	d.Spec.Paused = false
	d.Spec.Replicas = proto.Int32(3)
	got = ReconcileDeployment(d, []*appsv1.ReplicaSet{current}, nil, wlT0.Add(time.Minute))
	if got.CreateReplicaSet == nil {
		t.Fatal("resumed deployment did not roll out")
	}
	if c := getCondition(got.Status.GetStatus(), condProgressing); c.GetReason() != ReasonNewReplicaSetCreated {
		t.Fatalf("Progressing = %v", c)
	}
}

func TestReconcileDeploymentRevisionHistoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit *int32
		// oldPods are the status.replicas of the old ReplicaSets (revisions
		// 1..n), all scaled to 0.
		oldPods     []int32
		complete    bool
		wantDeleted []int // revisions
	}{
		{"keeps limit", proto.Int32(2), []int32{0, 0, 0, 0}, true, []int{1, 2}},
		{"skips old ones that still have pods", proto.Int32(2), []int32{1, 0, 0, 0}, true, []int{2}},
		{"limit 0 keeps none", proto.Int32(0), []int32{0, 0}, true, []int{1, 2}},
		{"default 10", nil, []int32{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true, []int{1, 2}},
		{"not while the rollout is incomplete", proto.Int32(1), []int32{0, 0, 0}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := wlDeployment(2, wlInt(1), wlInt(0))
			d.Spec.RevisionHistoryLimit = tt.limit
			var rss []*appsv1.ReplicaSet
			for i, n := range tt.oldPods {
				rs := wlDeployRS(d, "img:old"+strconv.Itoa(i), i+1, 0, 0, time.Duration(i)*time.Minute)
				rs.Status.Replicas = n
				rss = append(rss, rs)
			}
			rss = append(rss, wlDeployRS(d, "img:1", len(tt.oldPods)+1, 2, 2, time.Hour))
			if tt.complete {
				d.Status = &appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
			}
			got := ReconcileDeployment(d, rss, nil, wlT0)
			var deleted []int
			for _, rs := range got.DeleteReplicaSets {
				deleted = append(deleted, int(revisionOf(rs)))
				if rs.GetMetadata().GetResourceVersion() != "7" {
					t.Fatal("delete must carry the ReplicaSet as read")
				}
			}
			if len(deleted) != len(tt.wantDeleted) {
				t.Fatalf("deleted revisions %v, want %v", deleted, tt.wantDeleted)
			}
			for i := range deleted {
				if deleted[i] != tt.wantDeleted[i] {
					t.Fatalf("deleted revisions %v, want %v", deleted, tt.wantDeleted)
				}
			}
		})
	}
}

func TestReconcileDeploymentRollback(t *testing.T) {
	d := wlDeployment(2, wlInt(1), wlInt(0))
	v1 := wlDeployRS(d, "img:1", 1, 0, 0, 0)
	v2 := wlDeployRS(d, "img:2", 2, 2, 2, time.Minute)
	d.Metadata.Annotations = map[string]string{RevisionAnnotation: "2"}
	// rollout undo: v1's template (without the hash label) back into d.
	d.Spec.Template = withoutHashLabel(v1.Spec.Template)
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{v1, v2}, nil, wlT0)
	if got.CreateReplicaSet != nil {
		t.Fatal("created a ReplicaSet instead of reusing the old one")
	}
	var nv1 *appsv1.ReplicaSet
	for _, rs := range got.UpdateReplicaSets {
		if rs.GetMetadata().GetName() == v1.GetMetadata().GetName() {
			nv1 = rs
		}
	}
	if nv1 == nil {
		t.Fatal("the old ReplicaSet was not updated")
	}
	if a := nv1.GetMetadata().GetAnnotations(); a[RevisionAnnotation] != "3" || a[RevisionHistoryAnnotation] != "1" {
		t.Fatalf("annotations %v: want revision 3, history 1", a)
	}
	if replicasOf(nv1) != 1 {
		t.Fatalf("rolled-back ReplicaSet at %d, want 1 (the surge)", replicasOf(nv1))
	}
	if got.Update.GetMetadata().GetAnnotations()[RevisionAnnotation] != "3" {
		t.Fatalf("deployment revision = %v", got.Update.GetMetadata().GetAnnotations())
	}
}

func TestAppendRevisionHistory(t *testing.T) {
	long := ""
	for i := 1; i <= 500; i++ {
		long = appendRevisionHistory(long, strconv.Itoa(i))
	}
	tests := []struct {
		history, rev, want string
	}{
		{"", "1", "1"},
		{"1", "3", "1,3"},
		{"1,3", "5", "1,3,5"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := appendRevisionHistory(tt.history, tt.rev); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if len(long) > maxRevisionHistoryChars || long[len(long)-4:] != ",500" {
		t.Fatalf("bounded history: %d chars, ends %q", len(long), long[len(long)-4:])
	}
}

func TestReconcileDeploymentConditions(t *testing.T) {
	d := wlDeployment(3, wlInt(1), wlInt(0))
	current := wlDeployRS(d, "img:1", 1, 3, 3, 0)
	d.Metadata.Annotations = map[string]string{RevisionAnnotation: "1"}
	long := timestamppb.New(wlT0.Add(-time.Hour))

	t.Run("complete", func(t *testing.T) {
		d := proto.Clone(d).(*appsv1.Deployment)
		d.Status = &appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2,
			UnavailableReplicas: 1, Conditions: []*appsv1.DeploymentCondition{
				{Type: condAvailable, Status: condTrue, Reason: ReasonMinimumReplicasAvailable, LastUpdateTime: long, LastTransitionTime: long},
				{Type: condProgressing, Status: condTrue, Reason: ReasonReplicaSetUpdated, LastUpdateTime: long, LastTransitionTime: long}}}
		got := ReconcileDeployment(d, []*appsv1.ReplicaSet{current}, nil, wlT0)
		st := got.Status.GetStatus()
		a, p := getCondition(st, condAvailable), getCondition(st, condProgressing)
		if !proto.Equal(a, d.Status.Conditions[0]) {
			t.Fatalf("Available changed: %v", a)
		}
		if p.GetReason() != ReasonNewReplicaSetAvailable || p.GetMessage() != `ReplicaSet "`+current.Metadata.Name+`" has successfully progressed.` ||
			!p.GetLastTransitionTime().AsTime().Equal(long.AsTime()) || !p.GetLastUpdateTime().AsTime().Equal(wlT0) {
			t.Fatalf("Progressing = %v", p)
		}
		if st.GetReplicas() != 3 || st.GetUpdatedReplicas() != 3 || st.GetAvailableReplicas() != 3 || st.GetUnavailableReplicas() != 0 {
			t.Fatalf("status = %v", st)
		}
		if got.RequeueAfter != 0 {
			t.Fatalf("RequeueAfter = %v for a complete rollout", got.RequeueAfter)
		}
		// Nothing new: no status write.
		d.Status = st
		if again := ReconcileDeployment(d, []*appsv1.ReplicaSet{current}, nil, wlT0.Add(time.Hour)); !again.Empty() {
			t.Fatalf("steady state writes: %+v", again)
		}
	})

	stuck := proto.Clone(d).(*appsv1.Deployment)
	stuck.Spec.Template = wlTemplate("img:2", wlWeb)
	stuck.Spec.ProgressDeadlineSeconds = proto.Int32(60)
	newRS := wlDeployRS(stuck, "img:2", 2, 1, 0, time.Minute)
	oldRS := wlDeployRS(stuck, "img:1", 1, 3, 3, 0)
	stuck.Metadata.Annotations[RevisionAnnotation] = "2"
	stuck.Status = &appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 4, UpdatedReplicas: 1, ReadyReplicas: 3, AvailableReplicas: 3,
		UnavailableReplicas: 1, Conditions: []*appsv1.DeploymentCondition{
			{Type: condAvailable, Status: condTrue, Reason: ReasonMinimumReplicasAvailable, LastUpdateTime: long, LastTransitionTime: long},
			{Type: condProgressing, Status: condTrue, Reason: ReasonReplicaSetUpdated, LastUpdateTime: timestamppb.New(wlT0), LastTransitionTime: long}}}
	tests := []struct {
		name        string
		now         time.Time
		wantReason  string
		wantStatus  string
		wantRequeue time.Duration
	}{
		{"within the deadline", wlT0.Add(30 * time.Second), ReasonReplicaSetUpdated, condTrue, 31 * time.Second},
		{"deadline exceeded", wlT0.Add(61 * time.Second), ReasonProgressDeadlineExceeded, condFalse, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReconcileDeployment(stuck, []*appsv1.ReplicaSet{oldRS, newRS}, nil, tt.now)
			st := stuck.Status
			if got.Status != nil {
				st = got.Status.Status
			}
			p := getCondition(st, condProgressing)
			if p.GetReason() != tt.wantReason || p.GetStatus() != tt.wantStatus {
				t.Fatalf("Progressing = %v", p)
			}
			if got.RequeueAfter != tt.wantRequeue {
				t.Fatalf("RequeueAfter = %v, want %v", got.RequeueAfter, tt.wantRequeue)
			}
		})
	}
}

func TestReconcileDeploymentDeleting(t *testing.T) {
	d := wlDeployment(3, nil, nil)
	d.Metadata.DeletionTimestamp = timestamppb.New(wlT0)
	orphan := wlDeployRS(d, "img:1", 1, 3, 3, 0)
	orphan.Metadata.OwnerReferences = nil
	got := ReconcileDeployment(d, []*appsv1.ReplicaSet{orphan}, nil, wlT0)
	if got.CreateReplicaSet != nil || len(got.UpdateReplicaSets) != 0 || len(got.DeleteReplicaSets) != 0 {
		t.Fatalf("a deployment being deleted acts: %+v", got)
	}
}

func TestReconcileDeploymentInvalidSelector(t *testing.T) {
	d := wlDeployment(3, nil, nil)
	d.Metadata.Generation = 2
	d.Spec.Selector = &metav1.LabelSelector{}
	got := ReconcileDeployment(d, nil, nil, wlT0)
	if got.CreateReplicaSet != nil || got.Status.GetStatus().GetObservedGeneration() != 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestResolveFenceposts(t *testing.T) {
	tests := []struct {
		name                       string
		surge, unavailable         *structpb.Value
		replicas                   int32
		wantSurge, wantUnavailable int32
	}{
		{"defaults 25% of 10", nil, nil, 10, 3, 2},
		{"ints", wlInt(2), wlInt(1), 10, 2, 1},
		{"surge rounds up, unavailable down", wlPct("10%"), wlPct("10%"), 5, 1, 0},
		{"both 0: unavailable 1", wlInt(0), wlInt(0), 10, 0, 1},
		{"both round to 0: unavailable 1", wlPct("0%"), wlPct("10%"), 5, 0, 1},
		{"100%", wlPct("100%"), wlPct("100%"), 7, 7, 7},
		{"garbage is the default", wlPct("lots"), wlPct("x%"), 10, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, u := resolveFenceposts(tt.surge, tt.unavailable, tt.replicas)
			if s != tt.wantSurge || u != tt.wantUnavailable {
				t.Fatalf("got surge %d unavailable %d, want %d %d", s, u, tt.wantSurge, tt.wantUnavailable)
			}
		})
	}
}

func TestRolloutHistory(t *testing.T) {
	d := wlDeployment(2, nil, nil)
	v1 := wlDeployRS(d, "img:1", 1, 0, 0, 0)
	v1.Metadata.Annotations[ChangeCauseAnnotation] = "first"
	v3 := wlDeployRS(d, "img:3", 3, 2, 2, 2*time.Minute)
	v2 := wlDeployRS(d, "img:2", 2, 0, 0, time.Minute)
	theirs := wlDeployRS(d, "img:9", 9, 0, 0, 0)
	theirs.Metadata.OwnerReferences[0].Uid = "other"
	norev := wlDeployRS(d, "img:x", 0, 0, 0, 0)
	delete(norev.Metadata.Annotations, RevisionAnnotation)
	rss := []*appsv1.ReplicaSet{v3, theirs, v1, norev, v2}

	h := RolloutHistory(d, rss)
	if len(h) != 3 || h[0].Revision != 1 || h[1].Revision != 2 || h[2].Revision != 3 || h[0].ChangeCause != "first" || h[0].ReplicaSet != v1.Metadata.Name {
		t.Fatalf("history = %+v", h)
	}
	if h[0].Template.GetMetadata().GetLabels()[PodTemplateHashLabel] != "" || h[0].Template.GetSpec().GetContainers()[0].GetImage() != "img:1" {
		t.Fatalf("template = %v", h[0].Template)
	}
	if _, ok := h[0].Annotations[RevisionAnnotation]; ok || h[0].Annotations[ChangeCauseAnnotation] != "first" {
		t.Fatalf("annotations to copy back = %v", h[0].Annotations)
	}

	tests := []struct {
		name    string
		rev     int64
		want    int64
		wantErr bool
	}{
		{"0 is the previous revision", 0, 2, false},
		{"explicit", 1, 1, false},
		{"current", 3, 3, false},
		{"missing", 4, 0, true},
		{"another controller's", 9, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := TemplateForRevision(d, rss, tt.rev)
			if tt.wantErr {
				if !errors.Is(err, ErrRevisionNotFound) {
					t.Fatalf("err = %v, want ErrRevisionNotFound", err)
				}
				return
			}
			if err != nil || r.Revision != tt.want {
				t.Fatalf("got %d, %v; want %d", r.Revision, err, tt.want)
			}
		})
	}
	if _, err := TemplateForRevision(d, []*appsv1.ReplicaSet{v3}, 0); !errors.Is(err, ErrRevisionNotFound) {
		t.Fatalf("no previous revision: err = %v", err)
	}
}

func TestReconcileDeploymentDoesNotModifyInputs(t *testing.T) {
	d := wlDeployment(10, nil, nil)
	d.Spec.Template = wlTemplate("img:new", wlWeb)
	rss := []*appsv1.ReplicaSet{wlDeployRS(d, "img:old", 1, 10, 10, 0)}
	rss[0].Metadata.OwnerReferences = nil // adoption must not write into the input either
	before := []proto.Message{proto.Clone(d), proto.Clone(rss[0])}
	got := ReconcileDeployment(d, rss, nil, wlT0)
	if got.Empty() {
		t.Fatal("expected actions")
	}
	if !proto.Equal(d, before[0]) || !proto.Equal(rss[0], before[1]) {
		t.Fatal("inputs were modified")
	}
}

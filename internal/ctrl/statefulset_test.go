package ctrl

import (
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

// Builders for the StatefulSet tests; names start with ss.

var ssLabels = map[string]string{"app": "db"}

func ssTestSet(replicas int32, mut ...func(*appsv1.StatefulSetSpec)) *appsv1.StatefulSet {
	claim := &corev1.PersistentVolumeClaim{Metadata: &metav1.ObjectMeta{Name: "data", Labels: map[string]string{"tier": "storage"}},
		Spec: &corev1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
			Resources: &corev1.VolumeResourceRequirements{Requests: map[string]*structpb.Value{"storage": structpb.NewStringValue("1Gi")}}}}
	ss := &appsv1.StatefulSet{
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "ns", Uid: "ss-uid", ResourceVersion: "9", Generation: 3},
		Spec: &appsv1.StatefulSetSpec{Replicas: proto.Int32(replicas), ServiceName: "web-svc",
			Selector:             &metav1.LabelSelector{MatchLabels: cloneStringMap(ssLabels, "", "")},
			Template:             wlTemplate("db:1", ssLabels),
			VolumeClaimTemplates: []*corev1.PersistentVolumeClaim{claim},
			PodManagementPolicy:  "OrderedReady",
			UpdateStrategy:       &appsv1.StatefulSetUpdateStrategy{Type: "RollingUpdate"}},
	}
	for _, m := range mut {
		m(ss.Spec)
	}
	return ss
}

func ssRevOf(ss *appsv1.StatefulSet) string {
	return "web-" + PodTemplateHash(ss.GetSpec().GetTemplate(), nil)
}

func ssParallelPolicy(s *appsv1.StatefulSetSpec) { s.PodManagementPolicy = "Parallel" }

// ssTestPod is ss's pod of ordinal ord at ss's update revision, Pending.
func ssTestPod(ss *appsv1.StatefulSet, ord int, opts ...wlPodOpt) *corev1.Pod {
	name := ssPodName("web", ord)
	p := wlPod(name, cloneStringMap(ssLabels, ControllerRevisionHashLabel, ssRevOf(ss)))
	p.Metadata.OwnerReferences = []*metav1.OwnerReference{NewControllerRef(ss.GetMetadata(), "apps/v1", "StatefulSet")}
	for _, o := range opts {
		o(p)
	}
	return p
}

// ssUp makes a pod Running and Ready since wlT0 on node n1.
func ssUp() wlPodOpt { return wlReady(wlT0) }

func ssRev(rev string) wlPodOpt {
	return func(p *corev1.Pod) { p.Metadata.Labels[ControllerRevisionHashLabel] = rev }
}

func ssTestClaim(name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "ns", Uid: "uid-" + name, ResourceVersion: "4"}}
}

func ssClaimNames(cs []*corev1.PersistentVolumeClaim) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.GetMetadata().GetName())
	}
	return strings.Join(s, ",")
}

// ssMk builds a pod from the set under test, so that revisions follow the
// set's template.
type ssMk = func(*appsv1.StatefulSet) *corev1.Pod

func ssP(ord int, opts ...wlPodOpt) ssMk {
	return func(ss *appsv1.StatefulSet) *corev1.Pod { return ssTestPod(ss, ord, opts...) }
}

func ssBuild(ss *appsv1.StatefulSet, mks []ssMk) []*corev1.Pod {
	var out []*corev1.Pod
	for _, m := range mks {
		out = append(out, m(ss))
	}
	return out
}

func TestStatefulSetCreation(t *testing.T) {
	up := ssUp()
	tests := []struct {
		name         string
		replicas     int32
		spec         []func(*appsv1.StatefulSetSpec)
		pods         []ssMk
		claims       []string
		wantCreate   string
		wantClaims   string
		wantDelete   string
		wantRequeue  time.Duration
		wantReplicas int32
	}{
		{"ordered: the first pod and its claim", 3, nil, nil, nil, "web-0", "data-web-0", "", 0, 0},
		{"ordered: waits while web-0 is Pending", 3, nil, []ssMk{ssP(0)}, []string{"data-web-0"}, "", "", "", 0, 1},
		{"ordered: waits while web-0 is Running but not Ready", 3, nil, []ssMk{ssP(0, wlRunning("n1"))}, []string{"data-web-0"}, "", "", "", 0, 1},
		{"ordered: web-1 once web-0 is Ready", 3, nil, []ssMk{ssP(0, up)}, []string{"data-web-0"}, "web-1", "data-web-1", "", 0, 1},
		{"ordered: web-2 once web-0 and web-1 are Ready", 3, nil, []ssMk{ssP(0, up), ssP(1, up)}, []string{"data-web-0", "data-web-1"}, "web-2", "data-web-2", "", 0, 2},
		{"ordered: waits for minReadySeconds", 3, []func(*appsv1.StatefulSetSpec){func(s *appsv1.StatefulSetSpec) { s.MinReadySeconds = 30 }},
			[]ssMk{ssP(0, up)}, []string{"data-web-0"}, "", "", "", 30*time.Second + time.Millisecond, 1},
		{"a deleted pod is recreated under its name, its claim kept", 3, nil, []ssMk{ssP(0, up), ssP(2, up)},
			[]string{"data-web-0", "data-web-1", "data-web-2"}, "web-1", "", "", 0, 2},
		{"ordered: a failed pod is deleted first", 3, nil, []ssMk{ssP(0, wlPhase(podFailed)), ssP(1, up)}, nil, "", "", "web-0", 0, 2},
		{"a Pending pod's missing claim is created", 1, nil, []ssMk{ssP(0)}, nil, "", "data-web-0", "", 0, 1},
		{"parallel: all at once", 3, []func(*appsv1.StatefulSetSpec){ssParallelPolicy}, nil, nil,
			"web-0,web-1,web-2", "data-web-0,data-web-1,data-web-2", "", 0, 0},
		{"parallel: does not wait for readiness", 3, []func(*appsv1.StatefulSetSpec){ssParallelPolicy}, []ssMk{ssP(0)},
			[]string{"data-web-0"}, "web-1,web-2", "data-web-1,data-web-2", "", 0, 1},
		{"parallel: a failed pod is deleted, the rest go on", 3, []func(*appsv1.StatefulSetSpec){ssParallelPolicy},
			[]ssMk{ssP(0, wlPhase(podFailed))}, []string{"data-web-0"}, "web-1,web-2", "data-web-1,data-web-2", "web-0", 0, 1},
		{"ordinals.start", 2, []func(*appsv1.StatefulSetSpec){func(s *appsv1.StatefulSetSpec) { s.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5} }},
			[]ssMk{ssP(5, up)}, []string{"data-web-5"}, "web-6", "data-web-6", "", 0, 1},
		{"orphans named like members are adopted; others ignored", 2, nil,
			[]ssMk{func(*appsv1.StatefulSet) *corev1.Pod { return wlPod("web-0", ssLabels, wlReady(wlT0)) },
				func(*appsv1.StatefulSet) *corev1.Pod { return wlPod("web-x", ssLabels) },
				func(*appsv1.StatefulSet) *corev1.Pod { return wlPod("web-1", ssLabels, wlOwner("other")) }},
			[]string{"data-web-0"}, "web-1", "data-web-1", "", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := ssTestSet(tt.replicas, tt.spec...)
			var claims []*corev1.PersistentVolumeClaim
			for _, c := range tt.claims {
				claims = append(claims, ssTestClaim(c))
			}
			got := ReconcileStatefulSet(ss, ssBuild(ss, tt.pods), claims, wlT0)
			if s := wlPodNames(got.Create); s != tt.wantCreate {
				t.Errorf("creates %q, want %q", s, tt.wantCreate)
			}
			if s := ssClaimNames(got.CreateClaims); s != tt.wantClaims {
				t.Errorf("creates claims %q, want %q", s, tt.wantClaims)
			}
			if s := wlPodNames(got.Adopt); strings.HasPrefix(tt.name, "orphans") != (s == "web-0") {
				t.Errorf("adopts %q", s)
			}
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Errorf("deletes %q, want %q", s, tt.wantDelete)
			}
			if got.RequeueAfter != tt.wantRequeue {
				t.Errorf("requeue after %s, want %s", got.RequeueAfter, tt.wantRequeue)
			}
			if r := got.Status.GetStatus().GetReplicas(); r != tt.wantReplicas {
				t.Errorf("status.replicas = %d, want %d", r, tt.wantReplicas)
			}
			if len(got.DeleteClaims) > 0 {
				t.Errorf("deletes claims %q", ssClaimNames(got.DeleteClaims))
			}
		})
	}
}

func TestStatefulSetCreatedPodAndClaim(t *testing.T) {
	ss := ssTestSet(1, func(s *appsv1.StatefulSetSpec) {
		s.Template.Spec.Volumes = []*corev1.Volume{{Name: "data", EmptyDir: &corev1.EmptyDirVolumeSource{}},
			{Name: "config", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "cfg"}}}
	})
	before := proto.CloneOf(ss)
	got := ReconcileStatefulSet(ss, nil, nil, wlT0)
	if !proto.Equal(ss, before) {
		t.Fatal("the StatefulSet read was modified")
	}
	if len(got.Create) != 1 || len(got.CreateClaims) != 1 {
		t.Fatalf("creates %d pods and %d claims, want 1 and 1", len(got.Create), len(got.CreateClaims))
	}
	p := got.Create[0]
	md := p.GetMetadata()
	wantLabels := map[string]string{"app": "db", StatefulSetPodNameLabel: "web-0", PodIndexLabel: "0", ControllerRevisionHashLabel: ssRevOf(ss)}
	if md.GetName() != "web-0" || md.GetGenerateName() != "" || md.GetNamespace() != "ns" || !mapsEqual(md.GetLabels(), wantLabels) {
		t.Fatalf("metadata = %v, want labels %v", md, wantLabels)
	}
	if ref := controllerRefOf(md); ref.GetKind() != "StatefulSet" || ref.GetUid() != "ss-uid" || ref.GetName() != "web" {
		t.Fatalf("ownerReferences = %v", md.GetOwnerReferences())
	}
	if p.GetSpec().GetHostname() != "web-0" || p.GetSpec().GetSubdomain() != "web-svc" {
		t.Fatalf("hostname %q subdomain %q, want web-0 web-svc", p.GetSpec().GetHostname(), p.GetSpec().GetSubdomain())
	}
	vols := p.GetSpec().GetVolumes()
	if len(vols) != 2 || vols[0].GetName() != "data" || vols[0].GetPersistentVolumeClaim().GetClaimName() != "data-web-0" ||
		vols[0].GetEmptyDir() != nil || vols[1].GetName() != "config" {
		t.Fatalf("volumes = %v, want data from claim data-web-0 (replacing the template's) and config", vols)
	}
	c := got.CreateClaims[0]
	cm := c.GetMetadata()
	if cm.GetName() != "data-web-0" || cm.GetNamespace() != "ns" || !mapsEqual(cm.GetLabels(), map[string]string{"app": "db", "tier": "storage"}) ||
		len(cm.GetOwnerReferences()) != 0 || !proto.Equal(c.GetSpec(), ss.Spec.VolumeClaimTemplates[0].GetSpec()) {
		t.Fatalf("claim = %v", c)
	}
	if st := got.Status.GetStatus(); st.GetUpdateRevision() != ssRevOf(ss) || st.GetCurrentRevision() != ssRevOf(ss) || st.GetObservedGeneration() != 3 {
		t.Fatalf("status = %v", st)
	}
}

func TestStatefulSetScaleDown(t *testing.T) {
	up := ssUp()
	whenScaledDelete := func(s *appsv1.StatefulSetSpec) {
		s.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: "Delete", WhenDeleted: "Retain"}
	}
	all := []string{"data-web-0", "data-web-1", "data-web-2"}
	tests := []struct {
		name        string
		spec        []func(*appsv1.StatefulSetSpec)
		pods        []ssMk
		wantDelete  string
		wantDelClms string
	}{
		{"highest ordinal first", nil, []ssMk{ssP(0, up), ssP(1, up), ssP(2, up)}, "web-2", ""},
		{"then the next, claims kept", nil, []ssMk{ssP(0, up), ssP(1, up)}, "web-1", ""},
		{"done", nil, []ssMk{ssP(0, up)}, "", ""},
		{"waits while a remaining pod is not Ready", nil, []ssMk{ssP(0, wlRunning("n1")), ssP(1, up), ssP(2, up)}, "", ""},
		{"waits while another condemned pod is not Ready", nil, []ssMk{ssP(0, up), ssP(1, wlRunning("n1")), ssP(2, up)}, "", ""},
		{"the first unhealthy pod may go", nil, []ssMk{ssP(0, up), ssP(1, up), ssP(2, wlRunning("n1"))}, "web-2", ""},
		{"a missing remaining pod is recreated before any deletion", nil, []ssMk{ssP(1, up), ssP(2, up)}, "", ""},
		{"parallel: all at once", []func(*appsv1.StatefulSetSpec){ssParallelPolicy}, []ssMk{ssP(0), ssP(1, up), ssP(2)}, "web-2,web-1", ""},
		{"whenScaled Delete: claims go once their pod is gone", []func(*appsv1.StatefulSetSpec){whenScaledDelete},
			[]ssMk{ssP(0, up), ssP(1, up)}, "web-1", "data-web-2"},
		{"whenScaled Delete: all scaled-away claims", []func(*appsv1.StatefulSetSpec){whenScaledDelete}, []ssMk{ssP(0, up)}, "", "data-web-1,data-web-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := ssTestSet(1, tt.spec...)
			var claims []*corev1.PersistentVolumeClaim
			for _, c := range all {
				claims = append(claims, ssTestClaim(c))
			}
			got := ReconcileStatefulSet(ss, ssBuild(ss, tt.pods), claims, wlT0)
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Errorf("deletes %q, want %q", s, tt.wantDelete)
			}
			if s := ssClaimNames(got.DeleteClaims); s != tt.wantDelClms {
				t.Errorf("deletes claims %q, want %q", s, tt.wantDelClms)
			}
			if tt.name == "a missing remaining pod is recreated before any deletion" && wlPodNames(got.Create) != "web-0" {
				t.Errorf("creates %q, want web-0", wlPodNames(got.Create))
			}
		})
	}
}

func TestStatefulSetWhenDeletedOwnsClaims(t *testing.T) {
	ss := ssTestSet(2, func(s *appsv1.StatefulSetSpec) {
		s.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Delete", WhenScaled: "Retain"}
	})
	got := ReconcileStatefulSet(ss, ssBuild(ss, []ssMk{ssP(0, ssUp())}), []*corev1.PersistentVolumeClaim{ssTestClaim("data-web-0"), ssTestClaim("other")}, wlT0)
	if len(got.UpdateClaims) != 1 || got.UpdateClaims[0].GetMetadata().GetName() != "data-web-0" ||
		got.UpdateClaims[0].GetMetadata().GetResourceVersion() != "4" {
		t.Fatalf("updates claims %q, want data-web-0 as read", ssClaimNames(got.UpdateClaims))
	}
	want := []*metav1.OwnerReference{{ApiVersion: "apps/v1", Kind: "StatefulSet", Name: "web", Uid: "ss-uid"}}
	for _, c := range append(got.UpdateClaims, got.CreateClaims...) {
		refs := c.GetMetadata().GetOwnerReferences()
		if len(refs) != 1 || !proto.Equal(refs[0], want[0]) {
			t.Fatalf("claim %s owners = %v, want %v", c.GetMetadata().GetName(), refs, want)
		}
	}
	// Back to Retain: the reference is removed again.
	owned := ssTestClaim("data-web-0")
	owned.Metadata.OwnerReferences = want
	ss.Spec.PersistentVolumeClaimRetentionPolicy = nil
	got = ReconcileStatefulSet(ss, ssBuild(ss, []ssMk{ssP(0, ssUp())}), []*corev1.PersistentVolumeClaim{owned}, wlT0)
	if len(got.UpdateClaims) != 1 || len(got.UpdateClaims[0].GetMetadata().GetOwnerReferences()) != 0 {
		t.Fatalf("updates claims %v, want data-web-0 without owners", got.UpdateClaims)
	}
	if len(owned.GetMetadata().GetOwnerReferences()) != 1 {
		t.Fatal("the claim read was modified")
	}
}

func TestStatefulSetRollingUpdate(t *testing.T) {
	up := ssUp()
	v1 := ssTestSet(3)
	oldRev := ssRevOf(v1)
	old := func(ord int, opts ...wlPodOpt) ssMk {
		return func(ss *appsv1.StatefulSet) *corev1.Pod {
			return ssTestPod(ss, ord, append([]wlPodOpt{ssRev(oldRev)}, opts...)...)
		}
	}
	partition := func(n int32) func(*appsv1.StatefulSetSpec) {
		return func(s *appsv1.StatefulSetSpec) {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: proto.Int32(n)}
		}
	}
	onDelete := func(s *appsv1.StatefulSetSpec) {
		s.UpdateStrategy = &appsv1.StatefulSetUpdateStrategy{Type: "OnDelete"}
	}
	tests := []struct {
		name        string
		spec        []func(*appsv1.StatefulSetSpec)
		pods        []ssMk
		wantCreate  string
		wantDelete  string
		wantCurrent int32
		wantUpdated int32
		wantCurRev  string // "old" or "new"
	}{
		{"highest ordinal first", nil, []ssMk{old(0, up), old(1, up), old(2, up)}, "", "web-2", 3, 0, "old"},
		{"the deleted pod comes back at the new revision", nil, []ssMk{old(0, up), old(1, up)}, "web-2", "", 2, 0, "old"},
		{"waits for it to be Ready", nil, []ssMk{old(0, up), old(1, up), ssP(2, wlRunning("n1"))}, "", "", 2, 1, "old"},
		{"then the next one down", nil, []ssMk{old(0, up), old(1, up), ssP(2, up)}, "", "web-1", 2, 1, "old"},
		{"waits for a lower pod that is not Ready", nil, []ssMk{old(0, wlRunning("n1")), old(1, up), ssP(2, up)}, "", "", 2, 1, "old"},
		{"the last one", nil, []ssMk{old(0, up), ssP(1, up), ssP(2, up)}, "", "web-0", 1, 2, "old"},
		{"complete: the current revision moves", nil, []ssMk{ssP(0, up), ssP(1, up), ssP(2, up)}, "", "", 3, 3, "new"},
		{"partition keeps lower ordinals", []func(*appsv1.StatefulSetSpec){partition(2)}, []ssMk{old(0, up), old(1, up), ssP(2, up)}, "", "", 2, 1, "old"},
		{"partition updates from the top", []func(*appsv1.StatefulSetSpec){partition(2)}, []ssMk{old(0, up), old(1, up), old(2, up)}, "", "web-2", 3, 0, "old"},
		{"OnDelete leaves old pods", []func(*appsv1.StatefulSetSpec){onDelete}, []ssMk{old(0, up), old(1, up), old(2, up)}, "", "", 3, 0, "old"},
		{"OnDelete recreates a deleted pod at the new revision", []func(*appsv1.StatefulSetSpec){onDelete},
			[]ssMk{old(0, up), old(1, up)}, "web-2", "", 2, 0, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := ssTestSet(3, tt.spec...)
			ss.Spec.Template.Spec.Containers[0].Image = "db:2"
			ss.Status = &appsv1.StatefulSetStatus{CurrentRevision: oldRev, UpdateRevision: oldRev}
			claims := []*corev1.PersistentVolumeClaim{ssTestClaim("data-web-0"), ssTestClaim("data-web-1"), ssTestClaim("data-web-2")}
			got := ReconcileStatefulSet(ss, ssBuild(ss, tt.pods), claims, wlT0)
			if s := wlPodNames(got.Create); s != tt.wantCreate {
				t.Errorf("creates %q, want %q", s, tt.wantCreate)
			}
			for _, p := range got.Create {
				if r := p.GetMetadata().GetLabels()[ControllerRevisionHashLabel]; r != ssRevOf(ss) || p.GetSpec().GetContainers()[0].GetImage() != "db:2" {
					t.Errorf("created %s at revision %q, want the new one %q", p.GetMetadata().GetName(), r, ssRevOf(ss))
				}
			}
			if s := wlPodNames(got.Delete); s != tt.wantDelete {
				t.Errorf("deletes %q, want %q", s, tt.wantDelete)
			}
			st := got.Status.GetStatus()
			wantCur := oldRev
			if tt.wantCurRev == "new" {
				wantCur = ssRevOf(ss)
			}
			if st.GetCurrentReplicas() != tt.wantCurrent || st.GetUpdatedReplicas() != tt.wantUpdated ||
				st.GetCurrentRevision() != wantCur || st.GetUpdateRevision() != ssRevOf(ss) {
				t.Errorf("status current %d updated %d currentRevision %q updateRevision %q, want %d %d %q %q",
					st.GetCurrentReplicas(), st.GetUpdatedReplicas(), st.GetCurrentRevision(), st.GetUpdateRevision(),
					tt.wantCurrent, tt.wantUpdated, wantCur, ssRevOf(ss))
			}
		})
	}
}

func TestStatefulSetStatus(t *testing.T) {
	ss := ssTestSet(3, func(s *appsv1.StatefulSetSpec) { s.MinReadySeconds = 10 })
	longAgo := func(p *corev1.Pod) { p.Status.Conditions[0].LastTransitionTime = timestamppb.New(wlT0.Add(-time.Hour)) }
	pods := ssBuild(ss, []ssMk{ssP(0, ssUp(), longAgo), ssP(1, ssUp()), ssP(2, wlRunning("n1")), ssP(4, ssUp(), longAgo)})
	got := ReconcileStatefulSet(ss, pods, nil, wlT0.Add(time.Second))
	st := got.Status.GetStatus()
	if st.GetReplicas() != 4 || st.GetReadyReplicas() != 3 || st.GetAvailableReplicas() != 2 || st.GetObservedGeneration() != 3 {
		t.Fatalf("status = %v, want 4 replicas (one condemned), 3 ready, 2 available", st)
	}
	if want := 9*time.Second + time.Millisecond; got.RequeueAfter != want {
		t.Fatalf("requeue after %s, want %s", got.RequeueAfter, want)
	}
}

func TestStatefulSetOrdinalNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		ord  int
		ok   bool
	}{{"web-0", 0, true}, {"web-12", 12, true}, {"web-01", 0, false}, {"web--1", 0, false}, {"web-", 0, false},
		{"webx-1", 0, false}, {"web-1-2", 0, false}, {"web", 0, false}} {
		ord, ok := ssOrdinal("web", tt.name)
		if ok != tt.ok || (ok && ord != tt.ord) {
			t.Errorf("ssOrdinal(web, %q) = %d, %v; want %d, %v", tt.name, ord, ok, tt.ord, tt.ok)
		}
	}
}

package ctrl

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
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

// wlWorld is a tiny in-memory cluster for the Deployment and ReplicaSet
// controllers: it applies their actions with the API server's preconditions
// (a stale resourceVersion or UID fails the test: the actions must carry the
// objects as read), runs a fake kubelet that makes pods ready some steps after
// they are created and removes deleted pods one step later (graceful
// termination), and calls check after every write.
type wlWorld struct {
	t    *testing.T
	now  time.Time
	rv   int
	seq  int
	step int

	d    *appsv1.Deployment
	rss  map[string]*appsv1.ReplicaSet
	pods map[string]*corev1.Pod
	born map[string]int // pod -> step it was created

	// readyAfter is how many kubelet steps a new pod takes to become ready;
	// negative: never.
	readyAfter func(pod string) int
	// check runs after every write; where names the write.
	check func(where string)

	rsCreates int
}

func newWLWorld(t *testing.T, d *appsv1.Deployment) *wlWorld {
	w := &wlWorld{t: t, now: wlT0, rv: 100, d: proto.Clone(d).(*appsv1.Deployment),
		rss: map[string]*appsv1.ReplicaSet{}, pods: map[string]*corev1.Pod{}, born: map[string]int{},
		readyAfter: func(string) int { return 1 }, check: func(string) {}}
	w.d.Metadata.ResourceVersion = w.nextRV()
	return w
}

func (w *wlWorld) nextRV() string { w.rv++; return strconv.Itoa(w.rv) }

func (w *wlWorld) rsList() []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, n := range sortedKeys(w.rss) {
		out = append(out, proto.Clone(w.rss[n]).(*appsv1.ReplicaSet))
	}
	return out
}

func (w *wlWorld) podList() []*corev1.Pod {
	var out []*corev1.Pod
	for _, n := range sortedKeys(w.pods) {
		out = append(out, proto.Clone(w.pods[n]).(*corev1.Pod))
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// precondition fails the test unless obj is the stored version.
func (w *wlWorld) precondition(what string, got, stored *metav1.ObjectMeta) {
	w.t.Helper()
	if stored == nil {
		w.t.Fatalf("step %d: %s %s: not found", w.step, what, got.GetName())
	}
	if got.GetResourceVersion() != stored.GetResourceVersion() || (got.GetUid() != "" && got.GetUid() != stored.GetUid()) {
		w.t.Fatalf("step %d: %s %s: conflict: resourceVersion %s (uid %s), stored %s (uid %s)", w.step, what, got.GetName(),
			got.GetResourceVersion(), got.GetUid(), stored.GetResourceVersion(), stored.GetUid())
	}
}

// --- the Deployment controller's writes ---

func (w *wlWorld) syncDeployment() DeploymentActions {
	w.t.Helper()
	a := ReconcileDeployment(proto.Clone(w.d).(*appsv1.Deployment), w.rsList(), w.podList(), w.now)
	for _, rs := range a.UpdateReplicaSets {
		stored := w.rss[rs.GetMetadata().GetName()]
		w.precondition("update replicaset", rs.GetMetadata(), stored.GetMetadata())
		next := proto.Clone(rs).(*appsv1.ReplicaSet)
		next.Status = stored.Status
		next.Metadata.Generation = stored.Metadata.Generation
		if !proto.Equal(next.Spec, stored.Spec) {
			next.Metadata.Generation++
		}
		next.Metadata.ResourceVersion = w.nextRV()
		w.rss[rs.GetMetadata().GetName()] = next
		w.check("update replicaset " + rs.GetMetadata().GetName())
	}
	if c := a.CreateReplicaSet; c != nil {
		name := c.GetMetadata().GetName()
		if _, ok := w.rss[name]; ok || c.GetMetadata().GetResourceVersion() != "" {
			w.t.Fatalf("step %d: create replicaset %s: already exists", w.step, name)
		}
		rs := proto.Clone(c).(*appsv1.ReplicaSet)
		w.seq++
		rs.Metadata.Uid = fmt.Sprintf("rs-uid-%d", w.seq)
		rs.Metadata.ResourceVersion = w.nextRV()
		rs.Metadata.Generation = 1
		rs.Metadata.CreationTimestamp = timestamppb.New(w.now)
		rs.Status = nil
		w.rss[name] = rs
		w.rsCreates++
		w.check("create replicaset " + name)
	}
	for _, rs := range a.DeleteReplicaSets {
		if replicasOf(rs) != 0 {
			w.t.Fatalf("step %d: deletes replicaset %s with %d replicas", w.step, rs.GetMetadata().GetName(), replicasOf(rs))
		}
		w.precondition("delete replicaset", rs.GetMetadata(), w.rss[rs.GetMetadata().GetName()].GetMetadata())
		delete(w.rss, rs.GetMetadata().GetName())
	}
	if a.Update != nil {
		w.precondition("update deployment", a.Update.GetMetadata(), w.d.GetMetadata())
		next := proto.Clone(a.Update).(*appsv1.Deployment)
		next.Status = w.d.Status
		next.Metadata.Generation = w.d.Metadata.Generation
		if !proto.Equal(next.Spec, w.d.Spec) {
			w.t.Fatalf("step %d: the controller changed the deployment's spec", w.step)
		}
		next.Metadata.ResourceVersion = w.nextRV()
		w.d = next
	}
	if a.Status != nil {
		st := a.Status
		if a.Update != nil {
			st = proto.Clone(w.d).(*appsv1.Deployment)
			st.Status = a.Status.Status
		}
		w.precondition("update deployment status", st.GetMetadata(), w.d.GetMetadata())
		w.d.Status = proto.Clone(st.Status).(*appsv1.DeploymentStatus)
		w.d.Metadata.ResourceVersion = w.nextRV()
	}
	return a
}

// --- the ReplicaSet controller's writes ---

// syncReplicaSets reconciles every ReplicaSet until none has anything to do.
func (w *wlWorld) syncReplicaSets() {
	w.t.Helper()
	for range 50 {
		busy := false
		for _, name := range sortedKeys(w.rss) {
			a := ReconcileReplicaSet(proto.Clone(w.rss[name]).(*appsv1.ReplicaSet), w.podList(), w.now)
			if a.Empty() {
				continue
			}
			busy = true
			for _, p := range slices.Concat(a.Adopt, a.Release) {
				w.precondition("update pod", p.GetMetadata(), w.pods[p.GetMetadata().GetName()].GetMetadata())
				next := proto.Clone(p).(*corev1.Pod)
				next.Metadata.ResourceVersion = w.nextRV()
				w.pods[p.GetMetadata().GetName()] = next
			}
			for _, p := range a.Create {
				c := proto.Clone(p).(*corev1.Pod)
				w.seq++
				c.Metadata.Name = fmt.Sprintf("%s%d", c.Metadata.GenerateName, w.seq)
				c.Metadata.Uid = "pod-uid-" + c.Metadata.Name
				c.Metadata.ResourceVersion = w.nextRV()
				c.Metadata.CreationTimestamp = timestamppb.New(w.now)
				c.Status = &corev1.PodStatus{Phase: podPending}
				w.pods[c.Metadata.Name] = c
				w.born[c.Metadata.Name] = w.step
				w.check("create pod " + c.Metadata.Name)
			}
			for _, p := range a.Delete {
				stored := w.pods[p.GetMetadata().GetName()]
				if stored == nil || stored.GetMetadata().GetUid() != p.GetMetadata().GetUid() {
					w.t.Fatalf("step %d: delete pod %s: uid precondition failed", w.step, p.GetMetadata().GetName())
				}
				stored.Metadata.DeletionTimestamp = timestamppb.New(w.now)
				stored.Metadata.ResourceVersion = w.nextRV()
				w.check("delete pod " + p.GetMetadata().GetName())
			}
			if a.Status != nil {
				w.precondition("update replicaset status", a.Status.GetMetadata(), w.rss[name].GetMetadata())
				w.rss[name].Status = proto.Clone(a.Status.Status).(*appsv1.ReplicaSetStatus)
				w.rss[name].Metadata.ResourceVersion = w.nextRV()
			}
		}
		if !busy {
			return
		}
	}
	w.t.Fatalf("step %d: replica sets do not settle", w.step)
}

// kubelet advances time by a second: pods deleted earlier are gone, pods
// whose time has come are ready, and the others are running on n1, not ready.
func (w *wlWorld) kubelet() {
	w.now = w.now.Add(time.Second)
	w.step++
	for _, name := range sortedKeys(w.pods) {
		p := w.pods[name]
		if p.GetMetadata().GetDeletionTimestamp() != nil {
			delete(w.pods, name)
			continue
		}
		if IsPodReady(p) {
			continue
		}
		if after := w.readyAfter(name); after >= 0 && w.step-w.born[name] >= after {
			wlReady(w.now)(p)
			p.Metadata.ResourceVersion = w.nextRV()
		} else if p.GetStatus().GetPhase() == podPending {
			wlRunning("n1")(p) // started, not ready yet
			p.Metadata.ResourceVersion = w.nextRV()
		}
	}
	w.check("kubelet")
}

// stepOnce is one round: the Deployment controller, the ReplicaSet
// controller until idle, a kubelet tick, the ReplicaSet controller again (so
// ReplicaSet status is fresh when the Deployment controller next looks).
func (w *wlWorld) stepOnce() {
	w.t.Helper()
	w.syncDeployment()
	w.syncReplicaSets()
	w.kubelet()
	w.syncReplicaSets()
}

// editSpec changes the Deployment's spec as a user would (generation bumps).
func (w *wlWorld) editSpec(f func(*appsv1.DeploymentSpec)) {
	next := proto.Clone(w.d).(*appsv1.Deployment)
	f(next.Spec)
	next.Metadata.Generation++
	next.Metadata.ResourceVersion = w.nextRV()
	w.d = next
}

// newRS is the ReplicaSet running the Deployment's template, or nil.
func (w *wlWorld) newRS() *appsv1.ReplicaSet {
	for _, n := range sortedKeys(w.rss) {
		if TemplatesEqual(w.rss[n].GetSpec().GetTemplate(), w.d.GetSpec().GetTemplate()) {
			return w.rss[n]
		}
	}
	return nil
}

// settled: the rollout is complete and everything observed it.
func (w *wlWorld) settled() bool {
	replicas := w.d.GetSpec().GetReplicas()
	n := w.newRS()
	if n == nil || replicasOf(n) != replicas || n.GetStatus().GetAvailableReplicas() != replicas {
		return false
	}
	for _, rs := range w.rss {
		if rs != n && (replicasOf(rs) != 0 || rs.GetStatus().GetReplicas() != 0) {
			return false
		}
	}
	if len(w.pods) != int(replicas) {
		return false // terminating pods left
	}
	st := w.d.GetStatus()
	return st.GetObservedGeneration() == w.d.GetMetadata().GetGeneration() && st.GetUpdatedReplicas() == replicas &&
		st.GetReplicas() == replicas && st.GetAvailableReplicas() == replicas &&
		getCondition(st, condProgressing).GetReason() == ReasonNewReplicaSetAvailable &&
		getCondition(st, condAvailable).GetStatus() == condTrue
}

func (w *wlWorld) runToSettled(maxSteps int) {
	w.t.Helper()
	for i := 0; i < maxSteps; i++ {
		w.stepOnce()
		if w.settled() {
			// The reconcile that sees the completed status may still trim the
			// history; the one after it must change nothing.
			w.syncDeployment()
			if a := w.syncDeployment(); !a.Empty() {
				w.t.Fatalf("step %d: settled but the deployment controller still acts: %+v", w.step, a)
			}
			return
		}
	}
	w.t.Fatalf("not settled after %d steps:\n%s", maxSteps, w.dump())
}

func (w *wlWorld) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deployment gen %d status %v\n", w.d.GetMetadata().GetGeneration(), w.d.GetStatus())
	for _, n := range sortedKeys(w.rss) {
		rs := w.rss[n]
		fmt.Fprintf(&b, "rs %s replicas %d rev %s status %v\n", n, replicasOf(rs), rs.GetMetadata().GetAnnotations()[RevisionAnnotation], rs.GetStatus())
	}
	for _, n := range sortedKeys(w.pods) {
		p := w.pods[n]
		fmt.Fprintf(&b, "pod %s ready %v deleting %v\n", n, IsPodReady(p), p.GetMetadata().GetDeletionTimestamp() != nil)
	}
	return b.String()
}

// counts returns the active pods and how many of them are available now.
func (w *wlWorld) counts() (active, available int32) {
	minReady := w.d.GetSpec().GetMinReadySeconds()
	for _, p := range w.pods {
		if !podIsActive(p) {
			continue
		}
		active++
		if IsPodAvailable(p, minReady, w.now) {
			available++
		}
	}
	return active, available
}

func wlDeployment(replicas int32, surge, unavailable *structpb.Value) *appsv1.Deployment {
	return &appsv1.Deployment{
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "ns", Uid: "d-uid", Generation: 1, ResourceVersion: "1",
			CreationTimestamp: timestamppb.New(wlT0)},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: cloneStringMap(wlWeb, "", "")},
			Template: wlTemplate("img:1", wlWeb),
			Strategy: &appsv1.DeploymentStrategy{Type: "RollingUpdate",
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: surge, MaxUnavailable: unavailable}}}}
}

func wlInt(n int) *structpb.Value    { return structpb.NewNumberValue(float64(n)) }
func wlPct(s string) *structpb.Value { return structpb.NewStringValue(s) }
func wlImage(s *appsv1.DeploymentSpec, image string) {
	s.Template.Spec.Containers[0].Image = image
}

// wlSlowReady makes about a third of the pods take 2-4 steps to become ready,
// chosen by a hash of the name so that runs repeat exactly.
func wlSlowReady(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	if v := h.Sum32(); v%3 == 0 {
		return 2 + int(v/3%3)
	}
	return 1
}

// TestDeploymentRollingUpdateSimulation runs rolling updates to completion and
// checks Kubernetes' guarantees after every single write: active pods <=
// replicas + maxSurge, available pods >= replicas - maxUnavailable.
func TestDeploymentRollingUpdateSimulation(t *testing.T) {
	tests := []struct {
		name                       string
		replicas                   int32
		surge, unavailable         *structpb.Value
		wantSurge, wantUnavailable int32 // resolved, checked independently
		minReadySeconds            int32
		slow                       bool // some pods take several steps to become ready
		rolloverAfter              int  // > 0: a third template arrives after this many steps
	}{
		{name: "25%/25% of 10", replicas: 10, surge: wlPct("25%"), unavailable: wlPct("25%"), wantSurge: 3, wantUnavailable: 2},
		{name: "defaults", replicas: 10, wantSurge: 3, wantUnavailable: 2},
		{name: "surge 0 unavailable 1", replicas: 10, surge: wlInt(0), unavailable: wlInt(1), wantSurge: 0, wantUnavailable: 1},
		{name: "surge 1 unavailable 0", replicas: 10, surge: wlInt(1), unavailable: wlInt(0), wantSurge: 1, wantUnavailable: 0},
		{name: "3 replicas surge 1", replicas: 3, surge: wlInt(1), unavailable: wlInt(0), wantSurge: 1, wantUnavailable: 0},
		{name: "1 replica unavailable 1", replicas: 1, surge: wlInt(0), unavailable: wlInt(1), wantSurge: 0, wantUnavailable: 1},
		{name: "1 replica surge 1", replicas: 1, surge: wlInt(1), unavailable: wlInt(0), wantSurge: 1, wantUnavailable: 0},
		{name: "10% of 5 rounds surge up, unavailable down", replicas: 5, surge: wlPct("10%"), unavailable: wlPct("10%"), wantSurge: 1, wantUnavailable: 0},
		{name: "both resolve to 0: unavailable 1", replicas: 5, surge: wlPct("0%"), unavailable: wlPct("10%"), wantSurge: 0, wantUnavailable: 1},
		{name: "surge 3 unavailable 2 of 7", replicas: 7, surge: wlInt(3), unavailable: wlInt(2), wantSurge: 3, wantUnavailable: 2},
		{name: "blue-green: surge 100%", replicas: 10, surge: wlPct("100%"), unavailable: wlInt(0), wantSurge: 10, wantUnavailable: 0},
		{name: "unavailable 100%", replicas: 4, surge: wlInt(0), unavailable: wlPct("100%"), wantSurge: 0, wantUnavailable: 4},
		{name: "minReadySeconds", replicas: 6, surge: wlInt(2), unavailable: wlInt(2), wantSurge: 2, wantUnavailable: 2, minReadySeconds: 3},
		{name: "slow pods 25%", replicas: 10, surge: wlPct("25%"), unavailable: wlPct("25%"), wantSurge: 3, wantUnavailable: 2, slow: true},
		{name: "slow pods surge 0", replicas: 8, surge: wlInt(0), unavailable: wlInt(3), wantSurge: 0, wantUnavailable: 3, slow: true},
		{name: "slow pods, minReadySeconds, surge 2 unavailable 1", replicas: 9, surge: wlInt(2), unavailable: wlInt(1), wantSurge: 2, wantUnavailable: 1, minReadySeconds: 2, slow: true},
		{name: "rollover 25%", replicas: 10, surge: wlPct("25%"), unavailable: wlPct("25%"), wantSurge: 3, wantUnavailable: 2, rolloverAfter: 3},
		{name: "rollover slow surge 1 unavailable 0", replicas: 6, surge: wlInt(1), unavailable: wlInt(0), wantSurge: 1, wantUnavailable: 0, slow: true, rolloverAfter: 3},
		{name: "rollover slow minReadySeconds surge 0", replicas: 8, surge: wlInt(0), unavailable: wlInt(2), wantSurge: 0, wantUnavailable: 2, minReadySeconds: 3, slow: true, rolloverAfter: 8},
		{name: "rollover slow minReadySeconds surge 2", replicas: 8, surge: wlInt(2), unavailable: wlInt(1), wantSurge: 2, wantUnavailable: 1, minReadySeconds: 4, slow: true, rolloverAfter: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := wlDeployment(tt.replicas, tt.surge, tt.unavailable)
			d.Spec.MinReadySeconds = tt.minReadySeconds
			w := newWLWorld(t, d)
			if tt.slow {
				w.readyAfter = wlSlowReady
			}
			checkAvailable := false
			var maxActive, minAvailable int32 = 0, tt.replicas
			w.check = func(where string) {
				t.Helper()
				active, available := w.counts()
				if active > tt.replicas+tt.wantSurge {
					t.Fatalf("step %d after %s: %d active pods > replicas %d + maxSurge %d\n%s", w.step, where, active, tt.replicas, tt.wantSurge, w.dump())
				}
				maxActive = max(maxActive, active)
				if checkAvailable {
					if available < tt.replicas-tt.wantUnavailable {
						t.Fatalf("step %d after %s: %d available pods < replicas %d - maxUnavailable %d\n%s", w.step, where, available, tt.replicas, tt.wantUnavailable, w.dump())
					}
					minAvailable = min(minAvailable, available)
				}
			}
			w.runToSettled(100)
			first := w.newRS().GetMetadata().GetName()

			checkAvailable = true
			maxActive, minAvailable = 0, tt.replicas
			w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:2") })
			if tt.rolloverAfter > 0 {
				for range tt.rolloverAfter {
					w.stepOnce()
				}
				w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:3") })
			}
			w.runToSettled(300)

			final := w.newRS()
			if final.GetMetadata().GetName() == first {
				t.Fatal("no new ReplicaSet")
			}
			for _, p := range w.pods {
				if ref := controllerRefOf(p.GetMetadata()); ref.GetUid() != final.GetMetadata().GetUid() ||
					p.GetMetadata().GetLabels()[PodTemplateHashLabel] != final.GetMetadata().GetLabels()[PodTemplateHashLabel] ||
					p.GetSpec().GetContainers()[0].GetImage() != w.d.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage() {
					t.Fatalf("pod %s is not on the new template", p.GetMetadata().GetName())
				}
			}
			wantRev := "2"
			if tt.rolloverAfter > 0 {
				wantRev = "3"
			}
			if got := final.GetMetadata().GetAnnotations()[RevisionAnnotation]; got != wantRev {
				t.Fatalf("new ReplicaSet revision %q, want %q", got, wantRev)
			}
			if got := w.d.GetMetadata().GetAnnotations()[RevisionAnnotation]; got != wantRev {
				t.Fatalf("deployment revision %q, want %q", got, wantRev)
			}
			// The bounds must also be reached, not only respected, when they
			// allow anything: a rollout that never surged or never went below
			// full availability would pass the checks above while being slower.
			if tt.wantSurge > 0 && maxActive <= tt.replicas {
				t.Fatalf("never surged: max %d active", maxActive)
			}
			if tt.wantSurge == 0 && tt.wantUnavailable > 0 && minAvailable >= tt.replicas {
				t.Fatalf("never used maxUnavailable: min %d available", minAvailable)
			}
		})
	}
}

// TestDeploymentRollingUpdateStuck: new pods never become ready. The rollout
// must stop within its bounds, keep the old pods serving, and report the
// progress deadline exceeded once it passes.
func TestDeploymentRollingUpdateStuck(t *testing.T) {
	d := wlDeployment(10, wlPct("25%"), wlPct("25%"))
	d.Spec.ProgressDeadlineSeconds = proto.Int32(20)
	w := newWLWorld(t, d)
	w.runToSettled(50)
	old := w.newRS().GetMetadata().GetName()
	w.readyAfter = func(string) int { return -1 }
	check := func(where string) {
		active, available := w.counts()
		if active > 13 || available < 8 {
			t.Fatalf("step %d after %s: active %d available %d\n%s", w.step, where, active, available, w.dump())
		}
	}
	w.check = check
	w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:broken") })
	var last DeploymentActions
	for range 40 {
		w.stepOnce()
		last = w.syncDeployment()
	}
	if got := replicasOf(w.rss[old]); got != 8 {
		t.Fatalf("old ReplicaSet at %d replicas, want 8 (10 - maxUnavailable)", got)
	}
	if got := replicasOf(w.newRS()); got != 5 {
		t.Fatalf("new ReplicaSet at %d replicas, want 5 (13 - 8)", got)
	}
	c := getCondition(w.d.GetStatus(), condProgressing)
	if c.GetStatus() != condFalse || c.GetReason() != ReasonProgressDeadlineExceeded {
		t.Fatalf("Progressing = %v, want False/ProgressDeadlineExceeded", c)
	}
	if a := getCondition(w.d.GetStatus(), condAvailable); a.GetStatus() != condTrue {
		t.Fatalf("Available = %v, want True (8 >= 10 - 2)", a)
	}
	if last.RequeueAfter != 0 {
		t.Fatalf("RequeueAfter = %v after the deadline was reported", last.RequeueAfter)
	}
	if w.d.GetStatus().GetUnavailableReplicas() != 5 || w.d.GetStatus().GetUpdatedReplicas() != 5 {
		t.Fatalf("status = %v", w.d.GetStatus())
	}

	// Fixing the template rolls over to a third ReplicaSet and completes.
	w.readyAfter = func(string) int { return 1 }
	w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:fixed") })
	w.runToSettled(100)
}

// TestDeploymentRecreateSimulation: old pods are all gone (terminating ones
// included) before any new pod exists.
func TestDeploymentRecreateSimulation(t *testing.T) {
	d := wlDeployment(4, nil, nil)
	d.Spec.Strategy = &appsv1.DeploymentStrategy{Type: "Recreate"}
	w := newWLWorld(t, d)
	w.check = func(where string) {
		hashes := map[string]bool{}
		for _, p := range w.pods {
			hashes[p.GetMetadata().GetLabels()[PodTemplateHashLabel]] = true
		}
		if len(hashes) > 1 {
			t.Fatalf("step %d after %s: pods of %d templates at once\n%s", w.step, where, len(hashes), w.dump())
		}
	}
	w.runToSettled(50)
	if w.rsCreates != 1 || replicasOf(w.newRS()) != 4 {
		t.Fatalf("creates %d, new at %d", w.rsCreates, replicasOf(w.newRS()))
	}
	w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:2") })
	sawEmpty := false
	for i := 0; i < 50 && !w.settled(); i++ {
		w.stepOnce()
		if len(w.pods) == 0 {
			sawEmpty = true
		}
	}
	if !w.settled() || !sawEmpty || w.rsCreates != 2 {
		t.Fatalf("settled %v, saw no pods %v, creates %d\n%s", w.settled(), sawEmpty, w.rsCreates, w.dump())
	}
}

// TestDeploymentRollbackSimulation: going back to an earlier template reuses
// its ReplicaSet, which gets the next revision; history follows.
func TestDeploymentRollbackSimulation(t *testing.T) {
	d := wlDeployment(3, wlInt(1), wlInt(0))
	d.Metadata.Annotations = map[string]string{ChangeCauseAnnotation: "first"}
	w := newWLWorld(t, d)
	w.runToSettled(50)
	v1 := w.newRS().GetMetadata().GetName()
	w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, "img:2") })
	w.d.Metadata.Annotations[ChangeCauseAnnotation] = "second"
	w.runToSettled(50)
	v2 := w.newRS().GetMetadata().GetName()

	h := RolloutHistory(w.d, w.rsList())
	if len(h) != 2 || h[0].Revision != 1 || h[0].ReplicaSet != v1 || h[0].ChangeCause != "first" || h[1].Revision != 2 || h[1].ChangeCause != "second" {
		t.Fatalf("history = %+v", h)
	}
	prev, err := TemplateForRevision(w.d, w.rsList(), 0)
	if err != nil || prev.Revision != 1 {
		t.Fatalf("TemplateForRevision(0) = %+v, %v", prev, err)
	}
	// What `rollout undo` does: copy the template and annotations back.
	w.editSpec(func(s *appsv1.DeploymentSpec) { s.Template = prev.Template })
	for k, v := range prev.Annotations {
		w.d.Metadata.Annotations[k] = v
	}
	creates := w.rsCreates
	w.runToSettled(50)
	if w.rsCreates != creates {
		t.Fatal("rollback created a ReplicaSet instead of reusing the old one")
	}
	n := w.newRS()
	if n.GetMetadata().GetName() != v1 || n.GetMetadata().GetAnnotations()[RevisionAnnotation] != "3" ||
		n.GetMetadata().GetAnnotations()[RevisionHistoryAnnotation] != "1" {
		t.Fatalf("new ReplicaSet %s annotations %v", n.GetMetadata().GetName(), n.GetMetadata().GetAnnotations())
	}
	h = RolloutHistory(w.d, w.rsList())
	if len(h) != 2 || h[0].Revision != 2 || h[0].ReplicaSet != v2 || h[1].Revision != 3 || h[1].ReplicaSet != v1 || h[1].ChangeCause != "first" {
		t.Fatalf("history after rollback = %+v", h)
	}
	if w.d.GetMetadata().GetAnnotations()[RevisionAnnotation] != "3" {
		t.Fatalf("deployment revision = %q", w.d.GetMetadata().GetAnnotations()[RevisionAnnotation])
	}
}

// TestDeploymentRevisionHistorySimulation: with revisionHistoryLimit 2, five
// rollouts leave the new ReplicaSet and the two most recent old ones.
func TestDeploymentRevisionHistorySimulation(t *testing.T) {
	d := wlDeployment(2, wlInt(1), wlInt(0))
	d.Spec.RevisionHistoryLimit = proto.Int32(2)
	w := newWLWorld(t, d)
	w.runToSettled(50)
	for i := 2; i <= 6; i++ {
		w.editSpec(func(s *appsv1.DeploymentSpec) { wlImage(s, fmt.Sprintf("img:%d", i)) })
		w.runToSettled(50)
		if len(w.rss) > 3 {
			t.Fatalf("after rollout %d: %d ReplicaSets\n%s", i, len(w.rss), w.dump())
		}
	}
	var revs []int64
	for _, r := range RolloutHistory(w.d, w.rsList()) {
		revs = append(revs, r.Revision)
	}
	if !slices.Equal(revs, []int64{4, 5, 6}) {
		t.Fatalf("revisions left %v, want [4 5 6]", revs)
	}
}

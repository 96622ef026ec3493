package ctrl

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// gcWorld is a one-peer store with the garbage collector running on it, and a
// record of the resourceVersion at which each object was deleted.
type gcWorld struct {
	t       *testing.T
	ctx     context.Context
	deps    appsv1.DeploymentsClient
	rsets   appsv1.ReplicaSetsClient
	pods    corev1.PodsClient
	mu      sync.Mutex
	deleted map[string]uint64 // "Kind/name" -> resourceVersion of the deletion
}

func newGCWorld(t *testing.T) *gcWorld {
	c := testcluster.New(t, 1)
	conn := c.Peers[0].Conn
	icfg := DefaultInformerConfig()
	icfg.Logger = discardLogger()
	inf, err := NewInformers(conn, icfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &gcWorld{t: t, deps: appsv1.NewDeploymentsClient(conn), rsets: appsv1.NewReplicaSetsClient(conn),
		pods: corev1.NewPodsClient(conn), deleted: map[string]uint64{}}
	record := func(kind string, md *metav1.ObjectMeta) {
		rv, _ := strconv.ParseUint(md.GetResourceVersion(), 10, 64)
		w.mu.Lock()
		w.deleted[kind+"/"+md.GetName()] = rv
		w.mu.Unlock()
	}
	_ = inf.Deployments().AddHandler(HandlerFuncs[*appsv1.Deployment]{Delete: func(o *appsv1.Deployment) { record("Deployment", o.GetMetadata()) }})
	_ = inf.ReplicaSets().AddHandler(HandlerFuncs[*appsv1.ReplicaSet]{Delete: func(o *appsv1.ReplicaSet) { record("ReplicaSet", o.GetMetadata()) }})
	_ = inf.Pods().AddHandler(HandlerFuncs[*corev1.Pod]{Delete: func(o *corev1.Pod) { record("Pod", o.GetMetadata()) }})
	gc := NewGarbageCollector(conn, inf, RealClock(), discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	w.ctx = ctx
	var g errgroup.Group
	g.Go(func() error { return inf.Run(ctx) })
	g.Go(func() error { return gc.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("garbage collector: %v", err)
		}
	})
	return w
}

func gcRef(kind string, md *metav1.ObjectMeta) *metav1.OwnerReference {
	return &metav1.OwnerReference{ApiVersion: "apps/v1", Kind: kind, Name: md.GetName(), Uid: md.GetUid(),
		Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true)}
}

// tree creates Deployment name, its ReplicaSet name-rs and n pods name-rs-i.
func (w *gcWorld) tree(name string, n int) (*appsv1.Deployment, *appsv1.ReplicaSet) {
	w.t.Helper()
	lbl := map[string]string{"app": name}
	d, err := w.deps.Create(w.ctx, &appsv1.CreateDeploymentRequest{Namespace: "default", Body: &appsv1.Deployment{
		Metadata: &metav1.ObjectMeta{Name: name},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(int32(n)), Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: wlTemplate("img:1", lbl)}}})
	if err != nil {
		w.t.Fatal(err)
	}
	rs, err := w.rsets.Create(w.ctx, &appsv1.CreateReplicaSetRequest{Namespace: "default", Body: &appsv1.ReplicaSet{
		Metadata: &metav1.ObjectMeta{Name: name + "-rs", Labels: lbl, OwnerReferences: []*metav1.OwnerReference{gcRef("Deployment", d.GetMetadata())}},
		Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(int32(n)), Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: wlTemplate("img:1", lbl)}}})
	if err != nil {
		w.t.Fatal(err)
	}
	for i := range n {
		w.pod(fmt.Sprintf("%s-rs-%d", name, i), lbl, gcRef("ReplicaSet", rs.GetMetadata()))
	}
	return d, rs
}

func (w *gcWorld) pod(name string, lbl map[string]string, refs ...*metav1.OwnerReference) {
	w.t.Helper()
	_, err := w.pods.Create(w.ctx, &corev1.CreatePodRequest{Namespace: "default", Body: &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name, Labels: lbl, OwnerReferences: refs},
		Spec:     wlTemplate("img:1", lbl).GetSpec()}})
	if err != nil {
		w.t.Fatal(err)
	}
}

// gone waits until the objects ("Kind/name") are deleted and returns the
// resourceVersions of their deletions.
func (w *gcWorld) gone(names ...string) []uint64 {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.mu.Lock()
		var rvs []uint64
		for _, n := range names {
			if rv, ok := w.deleted[n]; ok {
				rvs = append(rvs, rv)
			}
		}
		w.mu.Unlock()
		if len(rvs) == len(names) {
			return rvs
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("not all of %v were deleted: %d were", names, len(rvs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *gcWorld) deleteDeployment(name, policy string) {
	w.t.Helper()
	if _, err := w.deps.Delete(w.ctx, &metav1.DeleteRequest{Namespace: "default", Name: name, PropagationPolicy: policy}); err != nil {
		w.t.Fatal(err)
	}
}

func TestGarbageCollectorBackground(t *testing.T) {
	w := newGCWorld(t)
	w.tree("bg", 2)
	w.deleteDeployment("bg", "Background")
	w.gone("Deployment/bg", "ReplicaSet/bg-rs", "Pod/bg-rs-0", "Pod/bg-rs-1")
}

// TestGarbageCollectorForeground: the Deployment goes last, after its
// ReplicaSet, which goes after its pods; meanwhile it is visible with its
// deletionTimestamp.
func TestGarbageCollectorForeground(t *testing.T) {
	w := newGCWorld(t)
	w.tree("fg", 3)
	w.deleteDeployment("fg", "Foreground")
	rvs := w.gone("Pod/fg-rs-0", "Pod/fg-rs-1", "Pod/fg-rs-2", "ReplicaSet/fg-rs", "Deployment/fg")
	pods, rs, d := rvs[:3], rvs[3], rvs[4]
	for _, p := range pods {
		if p >= rs {
			t.Fatalf("a pod went at %d, after its ReplicaSet at %d", p, rs)
		}
	}
	if rs >= d {
		t.Fatalf("the ReplicaSet went at %d, after its Deployment at %d", rs, d)
	}
}

// TestGarbageCollectorOrphan: the Deployment goes, its ReplicaSet stays with no
// owner, and the ReplicaSet's pods stay too.
func TestGarbageCollectorOrphan(t *testing.T) {
	w := newGCWorld(t)
	w.tree("or", 2)
	w.deleteDeployment("or", "Orphan")
	w.gone("Deployment/or")
	rs, err := w.rsets.Get(w.ctx, &metav1.GetRequest{Namespace: "default", Name: "or-rs"})
	if err != nil {
		t.Fatalf("orphaned ReplicaSet: %v", err)
	}
	if refs := rs.GetMetadata().GetOwnerReferences(); len(refs) != 0 {
		t.Fatalf("orphaned ReplicaSet still has owners %v", refs)
	}
	time.Sleep(300 * time.Millisecond) // the collector had time to (wrongly) act
	for i := range 2 {
		if _, err := w.pods.Get(w.ctx, &metav1.GetRequest{Namespace: "default", Name: fmt.Sprintf("or-rs-%d", i)}); err != nil {
			t.Fatalf("pod of the orphaned ReplicaSet: %v", err)
		}
	}
}

// TestGarbageCollectorOwnerUIDs: a pod whose owner name exists with another UID
// is collected; one with a live owner and a gone one only loses the reference
// to the gone one.
func TestGarbageCollectorOwnerUIDs(t *testing.T) {
	w := newGCWorld(t)
	_, rs := w.tree("live", 0)
	lbl := map[string]string{"app": "x"}
	stale := gcRef("ReplicaSet", &metav1.ObjectMeta{Name: "live-rs", Uid: "some-older-uid"})
	w.pod("stale-owner", lbl, stale)
	second := gcRef("ReplicaSet", &metav1.ObjectMeta{Name: "gone-rs", Uid: "gone-uid"})
	second.Controller = nil
	w.pod("two-owners", lbl, gcRef("ReplicaSet", rs.GetMetadata()), second)
	w.gone("Pod/stale-owner")
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := w.pods.Get(w.ctx, &metav1.GetRequest{Namespace: "default", Name: "two-owners"})
		if status.Code(err) == codes.NotFound {
			t.Fatal("a pod with a live owner was collected")
		}
		if err != nil {
			t.Fatal(err)
		}
		refs := p.GetMetadata().GetOwnerReferences()
		if len(refs) == 1 && refs[0].GetUid() == rs.GetMetadata().GetUid() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("owners of two-owners: %v", refs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

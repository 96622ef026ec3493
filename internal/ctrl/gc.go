package ctrl

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Finalizers of the garbage collector, set by the API on a Foreground or Orphan
// delete of an owner kind (internal/apiserver, finalizers.go).
const (
	FinalizerForeground = "foregroundDeletion"
	FinalizerOrphan     = "orphan"
)

// GarbageCollector is Kubernetes' cascading deletion through ownerReferences,
// for owners that are Deployments, ReplicaSets, DaemonSets and StatefulSets and
// dependents that are ReplicaSets and pods (owners of other kinds are never
// judged gone):
//
//   - background: a dependent none of whose owners exists any more (no object
//     of the kind, namespace and name with the UID; an owner missing from the
//     cache is confirmed with a read from the API) is deleted;
//   - foreground: an owner marked for deletion with the foregroundDeletion
//     finalizer has its dependents deleted (those that are owners themselves in
//     the foreground too); once none that blocks owner deletion is left, the
//     finalizer is removed and the API removes the owner;
//   - orphan: an owner marked with the orphan finalizer is removed from its
//     dependents' ownerReferences, then the finalizer is removed.
//
// It is event-driven: an object is looked at when it or one of its owners
// changes, never in sweeps over everything. Every write carries a UID or
// resourceVersion precondition; a failed one is retried with back-off.
type GarbageCollector struct {
	conn   grpc.ClientConnInterface
	inf    *Informers
	clock  Clock
	logger *slog.Logger
}

// NewGarbageCollector returns the collector for the API behind conn, reading
// through the shared informers inf.
func NewGarbageCollector(conn grpc.ClientConnInterface, inf *Informers, clock Clock, logger *slog.Logger) *GarbageCollector {
	return &GarbageCollector{conn: conn, inf: inf, clock: clock, logger: logger}
}

// gcKind is what the collector needs of one kind.
type gcKind struct {
	kind string
	// cached returns the cached object; byOwner the cached objects with an
	// ownerReference to uid (dependent kinds only).
	cached  func(ns, name string) (Object, bool)
	byOwner func(uid string) []Object
	// live reads the object from the API (owner kinds only).
	live   func(ctx context.Context, ns, name string) (Object, error)
	update func(ctx context.Context, obj Object) error
	delete func(ctx context.Context, req *metav1.DeleteRequest) error
	synced func(ctx context.Context) error
}

// newGCKind wraps a shared informer and the kind's client calls.
func newGCKind[T Object](kind string, inf *Informer[T], dependent bool,
	get func(context.Context, *metav1.GetRequest, ...grpc.CallOption) (T, error),
	update func(ctx context.Context, obj T) error,
	del func(context.Context, *metav1.DeleteRequest, ...grpc.CallOption) (T, error),
) *gcKind {
	k := &gcKind{
		kind:   kind,
		cached: func(ns, name string) (Object, bool) { return inf.Get(ns, name) },
		live: func(ctx context.Context, ns, name string) (Object, error) {
			return get(ctx, &metav1.GetRequest{Namespace: ns, Name: name})
		},
		update: func(ctx context.Context, obj Object) error { return update(ctx, obj.(T)) },
		delete: func(ctx context.Context, req *metav1.DeleteRequest) error { _, err := del(ctx, req); return err },
		synced: inf.WaitSynced,
	}
	if dependent {
		inf.EnsureIndex(IndexOwnerUID, IndexByOwnerUID[T])
		k.byOwner = func(uid string) []Object {
			objs, _ := inf.ByIndex(IndexOwnerUID, uid)
			out := make([]Object, len(objs))
			for i, o := range objs {
				out[i] = o
			}
			return out
		}
	}
	return k
}

// gcRun is one Run's state.
type gcRun struct {
	*GarbageCollector
	owners     map[string]*gcKind // by kind
	dependents map[string]*gcKind
	q          *Queue
}

// Queue keys: "owner|Kind|ns/name" and "dep|Kind|ns/name".
func gcKey(role, kind string, md *metav1.ObjectMeta) string {
	return role + "|" + kind + "|" + md.GetNamespace() + "/" + md.GetName()
}

// Run collects until ctx ends, then returns nil; it returns an error only when
// it cannot start.
func (gc *GarbageCollector) Run(ctx context.Context) error {
	rsets := appsv1.NewReplicaSetsClient(gc.conn)
	deps := appsv1.NewDeploymentsClient(gc.conn)
	dsets := appsv1.NewDaemonSetsClient(gc.conn)
	ssets := appsv1.NewStatefulSetsClient(gc.conn)
	pods := corev1.NewPodsClient(gc.conn)
	rsKind := newGCKind("ReplicaSet", gc.inf.ReplicaSets(), true, rsets.Get,
		func(ctx context.Context, o *appsv1.ReplicaSet) error {
			_, err := rsets.Update(ctx, &appsv1.UpdateReplicaSetRequest{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName(), Body: o})
			return err
		}, rsets.Delete)
	r := &gcRun{
		GarbageCollector: gc,
		owners: map[string]*gcKind{
			"ReplicaSet": rsKind,
			"Deployment": newGCKind("Deployment", gc.inf.Deployments(), false, deps.Get,
				func(ctx context.Context, o *appsv1.Deployment) error {
					_, err := deps.Update(ctx, &appsv1.UpdateDeploymentRequest{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName(), Body: o})
					return err
				}, deps.Delete),
			"DaemonSet": newGCKind("DaemonSet", gc.inf.DaemonSets(), false, dsets.Get,
				func(ctx context.Context, o *appsv1.DaemonSet) error {
					_, err := dsets.Update(ctx, &appsv1.UpdateDaemonSetRequest{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName(), Body: o})
					return err
				}, dsets.Delete),
			"StatefulSet": newGCKind("StatefulSet", gc.inf.StatefulSets(), false, ssets.Get,
				func(ctx context.Context, o *appsv1.StatefulSet) error {
					_, err := ssets.Update(ctx, &appsv1.UpdateStatefulSetRequest{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName(), Body: o})
					return err
				}, ssets.Delete),
		},
		dependents: map[string]*gcKind{
			"ReplicaSet": rsKind,
			"Pod": newGCKind("Pod", gc.inf.Pods(), true, pods.Get,
				func(ctx context.Context, o *corev1.Pod) error {
					_, err := pods.Update(ctx, &corev1.UpdatePodRequest{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName(), Body: o})
					return err
				}, pods.Delete),
		},
	}
	qcfg := DefaultQueueConfig()
	qcfg.Clock = gc.clock
	var err error
	if r.q, err = NewQueue(qcfg); err != nil {
		return err
	}
	// Whether the informers already run or not, every cached object reaches
	// the handlers as an add first: each dependent is looked at once.
	addDependentHandlers(r, gc.inf.Pods(), "Pod")
	addDependentHandlers(r, gc.inf.ReplicaSets(), "ReplicaSet")
	addOwnerHandlers(r, gc.inf.ReplicaSets(), "ReplicaSet")
	addOwnerHandlers(r, gc.inf.Deployments(), "Deployment")
	addOwnerHandlers(r, gc.inf.DaemonSets(), "DaemonSet")
	addOwnerHandlers(r, gc.inf.StatefulSets(), "StatefulSet")

	for _, k := range r.owners {
		if k.synced(ctx) != nil {
			return nil
		}
	}
	if r.dependents["Pod"].synced(ctx) != nil {
		return nil
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); r.q.Work(ctx, r.logger, noRequeue(r.sync)) }()
	}
	wg.Wait()
	return nil
}

// addDependentHandlers queues a dependent when it appears or its owners change,
// and its waiting owners when it goes or drops them.
func addDependentHandlers[T Object](r *gcRun, inf *Informer[T], kind string) {
	_ = inf.AddHandler(HandlerFuncs[T]{
		Add: func(o T) {
			if len(o.GetMetadata().GetOwnerReferences()) > 0 {
				r.q.Add(gcKey("dep", kind, o.GetMetadata()))
			}
		},
		Update: func(old, o T) {
			if !slices.EqualFunc(old.GetMetadata().GetOwnerReferences(), o.GetMetadata().GetOwnerReferences(), ownerRefEqual) {
				r.q.Add(gcKey("dep", kind, o.GetMetadata()))
				r.queueOwners(old.GetMetadata())
			}
		},
		Delete: func(o T) { r.queueOwners(o.GetMetadata()) },
	})
}

func ownerRefEqual(a, b *metav1.OwnerReference) bool { return proto.Equal(a, b) }

// queueOwners queues the owners md refers to, so that one waiting for its
// dependents to go, or to be orphaned, looks again.
func (r *gcRun) queueOwners(md *metav1.ObjectMeta) {
	for _, ref := range md.GetOwnerReferences() {
		if _, known := r.owners[ref.GetKind()]; known {
			r.q.Add("owner|" + ref.GetKind() + "|" + md.GetNamespace() + "/" + ref.GetName())
		}
	}
}

// addOwnerHandlers queues an owner marked with a collector finalizer, and the
// dependents of an owner that is gone.
func addOwnerHandlers[T Object](r *gcRun, inf *Informer[T], kind string) {
	marked := func(o T) {
		md := o.GetMetadata()
		if md.GetDeletionTimestamp() != nil && (slices.Contains(md.GetFinalizers(), FinalizerForeground) || slices.Contains(md.GetFinalizers(), FinalizerOrphan)) {
			r.q.Add(gcKey("owner", kind, md))
		}
	}
	_ = inf.AddHandler(HandlerFuncs[T]{
		Add:    marked,
		Update: func(_, o T) { marked(o) },
		Delete: func(o T) {
			for dkind, dk := range r.dependents {
				for _, d := range dk.byOwner(o.GetMetadata().GetUid()) {
					r.q.Add(gcKey("dep", dkind, d.GetMetadata()))
				}
			}
		},
	})
}

func (r *gcRun) sync(ctx context.Context, key string) error {
	role, rest, _ := strings.Cut(key, "|")
	kind, nsName, _ := strings.Cut(rest, "|")
	ns, name := SplitKey(nsName)
	if role == "owner" {
		return r.syncOwner(ctx, r.owners[kind], ns, name)
	}
	return r.syncDependent(ctx, r.dependents[kind], ns, name)
}

// ownerState is what a dependent's owner reference points at.
type ownerState int

const (
	ownerSolid   ownerState = iota // exists and is not waiting for its dependents
	ownerGone                      // no object with that UID
	ownerWaiting                   // deleted in the foreground: its dependents go first
)

// ownerOf judges one owner reference of a dependent in namespace ns. An owner
// missing from the cache is read from the API before it is judged gone: the
// owner's informer may lag the dependent's.
func (r *gcRun) ownerOf(ctx context.Context, ns string, ref *metav1.OwnerReference) (ownerState, error) {
	k, known := r.owners[ref.GetKind()]
	if !known {
		return ownerSolid, nil
	}
	o, ok := k.cached(ns, ref.GetName())
	if !ok || o.GetMetadata().GetUid() != ref.GetUid() {
		live, err := k.live(ctx, ns, ref.GetName())
		switch {
		case status.Code(err) == codes.NotFound:
			return ownerGone, nil
		case err != nil:
			return ownerSolid, fmt.Errorf("read owner %s %s/%s: %w", ref.GetKind(), ns, ref.GetName(), err)
		case live.GetMetadata().GetUid() != ref.GetUid():
			return ownerGone, nil
		}
		o = live
	}
	md := o.GetMetadata()
	if md.GetDeletionTimestamp() != nil && slices.Contains(md.GetFinalizers(), FinalizerForeground) {
		return ownerWaiting, nil
	}
	return ownerSolid, nil
}

// syncDependent deletes a dependent none of whose owners remains, and drops
// references to gone or waiting owners from one that still has a solid owner.
func (r *gcRun) syncDependent(ctx context.Context, k *gcKind, ns, name string) error {
	if k == nil {
		return nil
	}
	obj, ok := k.cached(ns, name)
	if !ok {
		return nil
	}
	md := obj.GetMetadata()
	refs := md.GetOwnerReferences()
	if len(refs) == 0 || md.GetDeletionTimestamp() != nil {
		return nil
	}
	var solid, waiting int
	var keep []*metav1.OwnerReference
	for _, ref := range refs {
		st, err := r.ownerOf(ctx, ns, ref)
		if err != nil {
			return err
		}
		switch st {
		case ownerSolid:
			solid++
			keep = append(keep, ref)
		case ownerWaiting:
			waiting++
		}
	}
	if solid > 0 {
		if len(keep) == len(refs) {
			return nil
		}
		next := proto.Clone(obj).(Object)
		next.GetMetadata().OwnerReferences = keep
		return ignoreNotFound(k.update(ctx, next))
	}
	policy := "Background"
	if _, isOwner := r.owners[k.kind]; isOwner && waiting > 0 {
		policy = "Foreground" // its own dependents go before it, as its owner waits
	}
	// The resourceVersion precondition makes a stale cache fail the delete: the
	// dependent may have been orphaned or adopted since.
	err := k.delete(ctx, &metav1.DeleteRequest{Namespace: ns, Name: name, PropagationPolicy: policy,
		Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid()), ResourceVersion: proto.String(md.GetResourceVersion())}}})
	if err == nil {
		r.logger.Debug("garbage collected", "kind", k.kind, "name", ns+"/"+name, "policy", policy)
	}
	return ignoreNotFound(err)
}

// syncOwner finishes a Foreground or Orphan deletion of an owner.
func (r *gcRun) syncOwner(ctx context.Context, k *gcKind, ns, name string) error {
	if k == nil {
		return nil
	}
	obj, ok := k.cached(ns, name)
	if !ok {
		return nil
	}
	md := obj.GetMetadata()
	if md.GetDeletionTimestamp() == nil {
		return nil
	}
	uid := md.GetUid()
	var dependents []Object
	var kinds []*gcKind
	for _, dk := range r.dependents {
		for _, d := range dk.byOwner(uid) {
			dependents = append(dependents, d)
			kinds = append(kinds, dk)
		}
	}
	switch {
	case slices.Contains(md.GetFinalizers(), FinalizerOrphan):
		for i, d := range dependents {
			next := proto.Clone(d).(Object)
			dmd := next.GetMetadata()
			dmd.OwnerReferences = slices.DeleteFunc(dmd.OwnerReferences, func(ref *metav1.OwnerReference) bool { return ref.GetUid() == uid })
			if err := ignoreNotFound(kinds[i].update(ctx, next)); err != nil {
				return fmt.Errorf("orphan %s %s/%s: %w", kinds[i].kind, dmd.GetNamespace(), dmd.GetName(), err)
			}
		}
		return r.dropFinalizer(ctx, k, obj, FinalizerOrphan)
	case slices.Contains(md.GetFinalizers(), FinalizerForeground):
		blocking := 0
		for i, d := range dependents {
			dmd := d.GetMetadata()
			for _, ref := range dmd.GetOwnerReferences() {
				if ref.GetUid() == uid && ref.GetBlockOwnerDeletion() {
					blocking++
					break
				}
			}
			if dmd.GetDeletionTimestamp() != nil {
				continue
			}
			policy := "Background"
			if _, isOwner := r.owners[kinds[i].kind]; isOwner {
				policy = "Foreground"
			}
			err := kinds[i].delete(ctx, &metav1.DeleteRequest{Namespace: dmd.GetNamespace(), Name: dmd.GetName(), PropagationPolicy: policy,
				Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(dmd.GetUid())}}})
			if err := ignoreNotFound(err); err != nil {
				return fmt.Errorf("delete dependent %s %s/%s: %w", kinds[i].kind, dmd.GetNamespace(), dmd.GetName(), err)
			}
		}
		if blocking > 0 {
			return nil // each dependent's deletion queues this owner again
		}
		return r.dropFinalizer(ctx, k, obj, FinalizerForeground)
	}
	return nil
}

// dropFinalizer removes finalizer from obj with obj's resourceVersion as
// precondition; without finalizers left, the API removes obj.
func (r *gcRun) dropFinalizer(ctx context.Context, k *gcKind, obj Object, finalizer string) error {
	next := proto.Clone(obj).(Object)
	md := next.GetMetadata()
	md.Finalizers = slices.DeleteFunc(md.Finalizers, func(f string) bool { return f == finalizer })
	if err := ignoreNotFound(k.update(ctx, next)); err != nil {
		return fmt.Errorf("remove finalizer %s from %s %s/%s: %w", finalizer, k.kind, md.GetNamespace(), md.GetName(), err)
	}
	r.logger.Debug("finalized", "kind", k.kind, "name", md.GetNamespace()+"/"+md.GetName(), "finalizer", finalizer)
	return nil
}

func ignoreNotFound(err error) error {
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

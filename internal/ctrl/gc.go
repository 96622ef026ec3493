package ctrl

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// GarbageCollector deletes dependents whose owners are all gone (Kubernetes'
// background cascading deletion): a ReplicaSet whose Deployment was deleted, a
// pod whose ReplicaSet, DaemonSet or StatefulSet was deleted. An owner counts as
// gone when no object of its kind, namespace and name exists with its UID.
// Deletes carry the dependent's UID as precondition.
type GarbageCollector struct {
	conn   grpc.ClientConnInterface
	clock  Clock
	logger *slog.Logger
}

// NewGarbageCollector returns the collector for the API behind conn.
func NewGarbageCollector(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) *GarbageCollector {
	return &GarbageCollector{conn: conn, clock: clock, logger: logger}
}

// ownerLookup reports whether an owner of a kind with this namespace, name and
// UID exists, and whether the kind is one the collector knows (unknown kinds
// are never judged gone).
type ownerLookup func(kind, ns, name, uid string) (exists, known bool)

// Run collects until ctx ends.
func (gc *GarbageCollector) Run(ctx context.Context) error {
	icfg := DefaultInformerConfig()
	icfg.Clock, icfg.Logger = gc.clock, gc.logger
	pods := corev1.NewPodsClient(gc.conn)
	rsets := appsv1.NewReplicaSetsClient(gc.conn)
	deps := appsv1.NewDeploymentsClient(gc.conn)
	dsets := appsv1.NewDaemonSetsClient(gc.conn)
	ssets := appsv1.NewStatefulSetsClient(gc.conn)
	icfg.Name = "gc-pods"
	podInf, err := NewInformer(NewGRPCListWatcher(pods.List, pods.Watch, nil), icfg)
	if err != nil {
		return err
	}
	icfg.Name = "gc-replicasets"
	rsInf, err := NewInformer(NewGRPCListWatcher(rsets.List, rsets.Watch, nil), icfg)
	if err != nil {
		return err
	}
	icfg.Name = "gc-deployments"
	depInf, err := NewInformer(NewGRPCListWatcher(deps.List, deps.Watch, nil), icfg)
	if err != nil {
		return err
	}
	icfg.Name = "gc-daemonsets"
	dsInf, err := NewInformer(NewGRPCListWatcher(dsets.List, dsets.Watch, nil), icfg)
	if err != nil {
		return err
	}
	icfg.Name = "gc-statefulsets"
	ssInf, err := NewInformer(NewGRPCListWatcher(ssets.List, ssets.Watch, nil), icfg)
	if err != nil {
		return err
	}
	lookup := func(kind, ns, name, uid string) (bool, bool) {
		var md *metav1.ObjectMeta
		var ok bool
		switch kind {
		case "ReplicaSet":
			var o *appsv1.ReplicaSet
			o, ok = rsInf.Get(ns, name)
			md = o.GetMetadata()
		case "Deployment":
			var o *appsv1.Deployment
			o, ok = depInf.Get(ns, name)
			md = o.GetMetadata()
		case "DaemonSet":
			var o *appsv1.DaemonSet
			o, ok = dsInf.Get(ns, name)
			md = o.GetMetadata()
		case "StatefulSet":
			var o *appsv1.StatefulSet
			o, ok = ssInf.Get(ns, name)
			md = o.GetMetadata()
		default:
			return false, false
		}
		return ok && md.GetUid() == uid, true
	}
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	for _, add := range []func() error{
		func() error {
			return podInf.AddHandler(HandlerFuncs[*corev1.Pod]{Add: func(*corev1.Pod) { poke() }, Update: func(_, _ *corev1.Pod) { poke() }})
		},
		func() error {
			return rsInf.AddHandler(HandlerFuncs[*appsv1.ReplicaSet]{Add: func(*appsv1.ReplicaSet) { poke() }, Delete: func(*appsv1.ReplicaSet) { poke() }})
		},
		func() error {
			return depInf.AddHandler(HandlerFuncs[*appsv1.Deployment]{Delete: func(*appsv1.Deployment) { poke() }})
		},
		func() error {
			return dsInf.AddHandler(HandlerFuncs[*appsv1.DaemonSet]{Delete: func(*appsv1.DaemonSet) { poke() }})
		},
		func() error {
			return ssInf.AddHandler(HandlerFuncs[*appsv1.StatefulSet]{Delete: func(*appsv1.StatefulSet) { poke() }})
		},
	} {
		if err := add(); err != nil {
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, inf := range []interface{ Run(context.Context) error }{podInf, rsInf, depInf, dsInf, ssInf} {
		g.Go(func() error { return inf.Run(ctx) })
	}
	g.Go(func() error {
		for _, s := range []interface{ WaitSynced(context.Context) error }{podInf, rsInf, depInf, dsInf, ssInf} {
			if err := s.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		for {
			for _, rs := range rsInf.List() {
				if orphaned(rs.GetMetadata(), lookup) {
					gc.delete(ctx, "ReplicaSet", rs.GetMetadata(), func(req *metav1.DeleteRequest) error {
						_, err := rsets.Delete(ctx, req)
						return err
					})
				}
			}
			for _, p := range podInf.List() {
				if orphaned(p.GetMetadata(), lookup) {
					gc.delete(ctx, "Pod", p.GetMetadata(), func(req *metav1.DeleteRequest) error {
						_, err := pods.Delete(ctx, req)
						return err
					})
				}
			}
			t := gc.clock.NewTimer(30 * time.Second) // a sweep now and then even without events
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-wake:
			case <-t.C():
			}
			t.Stop()
		}
	})
	return g.Wait()
}

// orphaned reports whether md has owners and every one of them is known to be gone.
func orphaned(md *metav1.ObjectMeta, lookup ownerLookup) bool {
	refs := md.GetOwnerReferences()
	if len(refs) == 0 || md.GetDeletionTimestamp() != nil {
		return false
	}
	for _, r := range refs {
		exists, known := lookup(r.GetKind(), md.GetNamespace(), r.GetName(), r.GetUid())
		if exists || !known {
			return false
		}
	}
	return true
}

func (gc *GarbageCollector) delete(ctx context.Context, kind string, md *metav1.ObjectMeta, del func(*metav1.DeleteRequest) error) {
	err := del(&metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(), PropagationPolicy: "Background",
		Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
	if err != nil && status.Code(err) != codes.NotFound && ctx.Err() == nil {
		gc.logger.Debug("garbage collect", "kind", kind, "name", md.GetNamespace()+"/"+md.GetName(), "err", err)
		return
	}
	gc.logger.Debug("garbage collected", "kind", kind, "name", md.GetNamespace()+"/"+md.GetName())
}

package ctrl

import (
	"context"
	"log/slog"
	"sync"

	"golang.org/x/sync/errgroup"

	"google.golang.org/grpc"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
)

// Informers hands out one informer per kind over one API connection, shared by
// every loop that reads the kind (Kubernetes' SharedInformerFactory): each kind
// is listed and watched once, and cached once, however many loops use it.
// Loops add their handlers and indexes to the shared informers (see
// Informer.AddHandler and EnsureIndex: late ones are caught up) and never run
// them; Run runs every informer asked for, before or after it started.
type Informers struct {
	conn grpc.ClientConnInterface
	cfg  InformerConfig

	mu      sync.Mutex
	byKind  map[string]runnable
	ctx     context.Context // Run's, once running
	stopped bool
	wg      sync.WaitGroup
}

type runnable interface {
	Run(context.Context) error
	WaitSynced(context.Context) error
}

// NewInformers returns an empty set over conn; cfg.Name is ignored (each
// informer is named after its kind).
func NewInformers(conn grpc.ClientConnInterface, cfg InformerConfig) (*Informers, error) {
	cfg.Name = "shared"
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Informers{conn: conn, cfg: cfg, byKind: map[string]runnable{}}, nil
}

// Run runs the informers until ctx ends, starting those asked for later as
// they are; it returns nil once all have stopped.
func (f *Informers) Run(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	for _, inf := range f.byKind {
		f.startLocked(inf)
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

func (f *Informers) startLocked(inf runnable) {
	if f.ctx == nil || f.stopped {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = inf.Run(f.ctx) // only ErrStarted, impossible: each is started once
	}()
}

// WaitSynced waits until every informer asked for so far has synced, or ctx
// ends (its error).
func (f *Informers) WaitSynced(ctx context.Context) error {
	f.mu.Lock()
	all := make([]runnable, 0, len(f.byKind))
	for _, inf := range f.byKind {
		all = append(all, inf)
	}
	f.mu.Unlock()
	for _, inf := range all {
		if err := inf.WaitSynced(ctx); err != nil {
			return err
		}
	}
	return nil
}

// shared returns f's informer for kind, making it with lw on first use.
func shared[T Object](f *Informers, kind string, lw func() ListWatcher[T]) *Informer[T] {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.byKind[kind]; ok {
		return inf.(*Informer[T])
	}
	cfg := f.cfg
	cfg.Name = kind
	inf, err := NewInformer(lw(), cfg)
	if err != nil {
		panic("ctrl: shared informer config was validated by NewInformers: " + err.Error())
	}
	f.byKind[kind] = inf
	f.startLocked(inf)
	return inf
}

// Pods is the shared pod informer.
func (f *Informers) Pods() *Informer[*corev1.Pod] {
	return shared(f, "pods", func() ListWatcher[*corev1.Pod] {
		c := corev1.NewPodsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Nodes is the shared node informer.
func (f *Informers) Nodes() *Informer[*corev1.Node] {
	return shared(f, "nodes", func() ListWatcher[*corev1.Node] {
		c := corev1.NewNodesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Namespaces is the shared namespace informer.
func (f *Informers) Namespaces() *Informer[*corev1.Namespace] {
	return shared(f, "namespaces", func() ListWatcher[*corev1.Namespace] {
		c := corev1.NewNamespacesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Services is the shared service informer.
func (f *Informers) Services() *Informer[*corev1.Service] {
	return shared(f, "services", func() ListWatcher[*corev1.Service] {
		c := corev1.NewServicesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Endpoints is the shared Endpoints informer.
func (f *Informers) Endpoints() *Informer[*corev1.Endpoints] {
	return shared(f, "endpoints", func() ListWatcher[*corev1.Endpoints] {
		c := corev1.NewEndpointsServiceClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// PersistentVolumes is the shared PersistentVolume informer.
func (f *Informers) PersistentVolumes() *Informer[*corev1.PersistentVolume] {
	return shared(f, "persistentvolumes", func() ListWatcher[*corev1.PersistentVolume] {
		c := corev1.NewPersistentVolumesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// PersistentVolumeClaims is the shared PersistentVolumeClaim informer.
func (f *Informers) PersistentVolumeClaims() *Informer[*corev1.PersistentVolumeClaim] {
	return shared(f, "persistentvolumeclaims", func() ListWatcher[*corev1.PersistentVolumeClaim] {
		c := corev1.NewPersistentVolumeClaimsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// StorageClasses is the shared StorageClass informer.
func (f *Informers) StorageClasses() *Informer[*storagev1.StorageClass] {
	return shared(f, "storageclasses", func() ListWatcher[*storagev1.StorageClass] {
		c := storagev1.NewStorageClassesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// NodeLeases is the shared informer of the Leases in kube-node-lease.
func (f *Informers) NodeLeases() *Informer[*coordinationv1.Lease] {
	return shared(f, "leases/"+nlLeaseNamespace, func() ListWatcher[*coordinationv1.Lease] {
		c := coordinationv1.NewLeasesClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, &metav1.ListRequest{Namespace: nlLeaseNamespace})
	})
}

// ReplicaSets is the shared ReplicaSet informer.
func (f *Informers) ReplicaSets() *Informer[*appsv1.ReplicaSet] {
	return shared(f, "replicasets", func() ListWatcher[*appsv1.ReplicaSet] {
		c := appsv1.NewReplicaSetsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Deployments is the shared Deployment informer.
func (f *Informers) Deployments() *Informer[*appsv1.Deployment] {
	return shared(f, "deployments", func() ListWatcher[*appsv1.Deployment] {
		c := appsv1.NewDeploymentsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// DaemonSets is the shared DaemonSet informer.
func (f *Informers) DaemonSets() *Informer[*appsv1.DaemonSet] {
	return shared(f, "daemonsets", func() ListWatcher[*appsv1.DaemonSet] {
		c := appsv1.NewDaemonSetsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// StatefulSets is the shared StatefulSet informer.
func (f *Informers) StatefulSets() *Informer[*appsv1.StatefulSet] {
	return shared(f, "statefulsets", func() ListWatcher[*appsv1.StatefulSet] {
		c := appsv1.NewStatefulSetsClient(f.conn)
		return NewGRPCListWatcher(c.List, c.Watch, nil)
	})
}

// Standard index names on shared informers; every user of a name indexes by
// the same function.
const (
	// IndexOwnerUID files objects under the UIDs of their ownerReferences
	// (IndexByOwnerUID).
	IndexOwnerUID = "ownerUID"
	// IndexNodeName files pods under spec.nodeName (IndexPodByNodeName).
	IndexNodeName = "nodeName"
	// IndexControllerless files pods without a controller reference under their
	// namespace (IndexPodWithoutController).
	IndexControllerless = "controllerless"
)

// IndexPodWithoutController indexes a pod no controller owns by its namespace.
func IndexPodWithoutController(p *corev1.Pod) []string {
	if controllerOf(p.GetMetadata()) != nil {
		return nil
	}
	return []string{p.GetMetadata().GetNamespace()}
}

// IndexPodByNodeName indexes a bound pod by its node.
func IndexPodByNodeName(p *corev1.Pod) []string {
	if n := p.GetSpec().GetNodeName(); n != "" {
		return []string{n}
	}
	return nil
}

// informersFor returns shared when a caller set it (the caller runs it), or
// else a private set that runs in g until ctx ends, for a loop run on its own
// (in tests).
func informersFor(ctx context.Context, g *errgroup.Group, shared *Informers, conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) (*Informers, error) {
	if shared != nil {
		return shared, nil
	}
	icfg := DefaultInformerConfig()
	icfg.Clock, icfg.Logger = clock, logger
	f, err := NewInformers(conn, icfg)
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return f.Run(ctx) })
	return f, nil
}

package ctrl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// expectationTimeout bounds how long a ReplicaSet waits for its own creates and
// deletes to show up in the cache before it is reconciled anyway.
const expectationTimeout = 30 * time.Second

// Workloads runs the ReplicaSet and Deployment controllers: informers on pods,
// ReplicaSets and Deployments feed one work queue per kind; workers apply what
// ReconcileReplicaSet and ReconcileDeployment decide, each write conditioned on
// the resourceVersion (or UID) it read, so a deposed leader's writes fail.
type Workloads struct {
	conn    grpc.ClientConnInterface
	clock   Clock
	logger  *slog.Logger
	workers int

	pods   corev1.PodsClient
	rsets  appsv1.ReplicaSetsClient
	deps   appsv1.DeploymentsClient
	events *EventRecorder

	shared *Informers // nil: Run uses informers of its own
	podInf *Informer[*corev1.Pod]
	rsInf  *Informer[*appsv1.ReplicaSet]
	depInf *Informer[*appsv1.Deployment]
	rsQ    *Queue
	depQ   *Queue

	mu     sync.Mutex // guards expect
	expect map[string]*expectation
}

// expectation counts the creates and deletes of one ReplicaSet not yet seen.
type expectation struct {
	adds, dels int
	at         time.Time
}

// NewWorkloads returns the controllers for the API behind conn.
func NewWorkloads(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) (*Workloads, error) {
	w := &Workloads{conn: conn, clock: clock, logger: logger, workers: 4,
		pods: corev1.NewPodsClient(conn), rsets: appsv1.NewReplicaSetsClient(conn), deps: appsv1.NewDeploymentsClient(conn),
		events: NewEventRecorder(corev1.NewEventsClient(conn), "replicaset-controller", clock, logger),
		expect: map[string]*expectation{}}
	var err error
	qcfg := DefaultQueueConfig()
	qcfg.Clock = clock
	if w.rsQ, err = NewQueue(qcfg); err != nil {
		return nil, err
	}
	if w.depQ, err = NewQueue(qcfg); err != nil {
		return nil, err
	}
	return w, nil
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (w *Workloads) UseInformers(f *Informers) { w.shared = f }

// watch takes the informers from f and registers the handlers.
func (w *Workloads) watch(f *Informers) {
	w.podInf, w.rsInf, w.depInf = f.Pods(), f.ReplicaSets(), f.Deployments()
	// A ReplicaSet needs its own pods and the namespace's orphans (which it
	// may adopt), never the whole namespace: indexes give both directly.
	w.podInf.EnsureIndex(IndexOwnerUID, IndexByOwnerUID[*corev1.Pod])
	w.podInf.EnsureIndex(IndexControllerless, IndexPodWithoutController)
	// A pod marked for deletion counts as a deletion seen, as in Kubernetes;
	// its removal then counts only if it was never marked.
	_ = w.podInf.AddHandler(HandlerFuncs[*corev1.Pod]{
		Add: func(p *corev1.Pod) { w.podEvent(p, true, false) },
		Update: func(old, p *corev1.Pod) {
			w.podEvent(p, false, old.GetMetadata().GetDeletionTimestamp() == nil && p.GetMetadata().GetDeletionTimestamp() != nil)
		},
		Delete: func(p *corev1.Pod) { w.podEvent(p, false, p.GetMetadata().GetDeletionTimestamp() == nil) },
	})
	_ = w.rsInf.AddHandler(HandlerFuncs[*appsv1.ReplicaSet]{
		Add:    w.rsEvent,
		Update: func(_, rs *appsv1.ReplicaSet) { w.rsEvent(rs) },
		Delete: w.rsEvent,
	})
	enqueueDep := func(d *appsv1.Deployment) { w.depQ.Add(KeyOf(d)) }
	_ = w.depInf.AddHandler(HandlerFuncs[*appsv1.Deployment]{
		Add:    enqueueDep,
		Update: func(_, d *appsv1.Deployment) { enqueueDep(d) },
		Delete: enqueueDep,
	})
}

func controllerOf(md *metav1.ObjectMeta) *metav1.OwnerReference {
	for _, r := range md.GetOwnerReferences() {
		if r.GetController() {
			return r
		}
	}
	return nil
}

func (w *Workloads) podEvent(p *corev1.Pod, added, deleted bool) {
	md := p.GetMetadata()
	ref := controllerOf(md)
	if ref == nil || ref.GetKind() != "ReplicaSet" {
		if ref == nil {
			for _, rs := range w.rsInf.ListNamespace(md.GetNamespace()) {
				w.rsQ.Add(KeyOf(rs)) // an orphan: a ReplicaSet may adopt it
			}
		}
		return
	}
	key := md.GetNamespace() + "/" + ref.GetName()
	if added || deleted {
		w.mu.Lock()
		if e := w.expect[key]; e != nil {
			if added {
				e.adds--
			} else {
				e.dels--
			}
		}
		w.mu.Unlock()
	}
	w.rsQ.Add(key)
	// A Deployment hears of its pods through its ReplicaSets' status, except a
	// deletion, which a Recreate rollout waits for.
	if !deleted {
		return
	}
	if rs, ok := w.rsInf.GetByKey(key); ok {
		if dref := controllerOf(rs.GetMetadata()); dref != nil && dref.GetKind() == "Deployment" {
			w.depQ.Add(md.GetNamespace() + "/" + dref.GetName())
		}
	}
}

// podsFor returns the cached pods that reference one of the owner UIDs, and the
// namespace's pods without a controller.
func (w *Workloads) podsFor(ns string, uids ...string) []*corev1.Pod {
	out, _ := w.podInf.ByIndex(IndexControllerless, ns)
	for _, uid := range uids {
		owned, _ := w.podInf.ByIndex(IndexOwnerUID, uid)
		out = append(out, owned...)
	}
	return out
}

func (w *Workloads) rsEvent(rs *appsv1.ReplicaSet) {
	w.rsQ.Add(KeyOf(rs))
	md := rs.GetMetadata()
	if ref := controllerOf(md); ref != nil && ref.GetKind() == "Deployment" {
		w.depQ.Add(md.GetNamespace() + "/" + ref.GetName())
		return
	}
	for _, d := range w.depInf.ListNamespace(md.GetNamespace()) {
		w.depQ.Add(KeyOf(d)) // an orphan: a Deployment may adopt it
	}
}

// Run runs the controllers until ctx ends.
func (w *Workloads) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, w.shared, w.conn, w.clock, w.logger)
	if err != nil {
		return err
	}
	w.watch(f)
	g.Go(func() error { return w.events.Run(ctx) })
	g.Go(func() error {
		for _, s := range []interface{ WaitSynced(context.Context) error }{w.podInf, w.rsInf, w.depInf} {
			if err := s.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		var wg sync.WaitGroup
		for range w.workers {
			wg.Add(2)
			go func() { defer wg.Done(); w.rsQ.Work(ctx, w.logger, w.syncReplicaSet) }()
			go func() { defer wg.Done(); w.depQ.Work(ctx, w.logger, w.syncDeployment) }()
		}
		wg.Wait()
		return nil
	})
	return g.Wait()
}

func (w *Workloads) satisfied(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.expect[key]
	if e == nil {
		return true
	}
	if (e.adds <= 0 && e.dels <= 0) || w.clock.Now().Sub(e.at) > expectationTimeout {
		delete(w.expect, key)
		return true
	}
	return false
}

func (w *Workloads) setExpect(key string, adds, dels int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expect[key] = &expectation{adds: adds, dels: dels, at: w.clock.Now()}
}

func (w *Workloads) lowerExpect(key string, adds, dels int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.expect[key]; e != nil {
		e.adds -= adds
		e.dels -= dels
	}
}

func (w *Workloads) syncReplicaSet(ctx context.Context, key string) (time.Duration, error) {
	rs, ok := w.rsInf.GetByKey(key)
	if !ok {
		w.mu.Lock()
		delete(w.expect, key)
		w.mu.Unlock()
		return 0, nil
	}
	if !w.satisfied(key) || rs.GetMetadata().GetDeletionTimestamp() != nil {
		return 0, nil
	}
	ns := rs.GetMetadata().GetNamespace()
	acts := ReconcileReplicaSet(rs, w.podsFor(ns, rs.GetMetadata().GetUid()), w.clock.Now())
	for _, p := range append(acts.Adopt, acts.Release...) {
		if _, err := w.pods.Update(ctx, &corev1.UpdatePodRequest{Namespace: ns, Name: p.GetMetadata().GetName(), Body: p}); err != nil {
			return 0, fmt.Errorf("adopt or release pod %s: %w", p.GetMetadata().GetName(), err)
		}
	}
	if n := len(acts.Create); n > 0 {
		w.setExpect(key, n, 0)
		done := 0
		for _, batch := range SlowStartBatches(n) {
			errs := make([]error, batch)
			var wg sync.WaitGroup
			for i := range batch {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = w.pods.Create(ctx, &corev1.CreatePodRequest{Namespace: ns, Body: acts.Create[done+i]})
				}()
			}
			wg.Wait()
			failed := 0
			for _, err := range errs {
				if err != nil {
					failed++
				}
			}
			done += batch
			if err := errors.Join(errs...); err != nil {
				w.lowerExpect(key, failed+n-done, 0) // these will never be seen
				w.events.Record(Ref("ReplicaSet", "apps/v1", rs.GetMetadata()), "Warning", "FailedCreate", fmt.Sprintf("Error creating: %v", err))
				return 0, fmt.Errorf("create pods: %w", err)
			}
		}
		w.events.Record(Ref("ReplicaSet", "apps/v1", rs.GetMetadata()), "Normal", "SuccessfulCreate", fmt.Sprintf("Created %d pod(s)", n))
	}
	if n := len(acts.Delete); n > 0 {
		w.setExpect(key, 0, n)
		var failed int
		var errs []error
		for _, p := range acts.Delete {
			md := p.GetMetadata()
			_, err := w.pods.Delete(ctx, &metav1.DeleteRequest{Namespace: ns, Name: md.GetName(),
				Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
			if err != nil && status.Code(err) != codes.NotFound {
				failed++
				errs = append(errs, err)
			}
		}
		if failed > 0 {
			w.lowerExpect(key, 0, failed)
			return 0, fmt.Errorf("delete pods: %w", errors.Join(errs...))
		}
		w.events.Record(Ref("ReplicaSet", "apps/v1", rs.GetMetadata()), "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted %d pod(s)", n))
	}
	if acts.Status != nil {
		if _, err := w.rsets.UpdateStatus(ctx, &appsv1.UpdateReplicaSetRequest{Namespace: ns, Name: rs.GetMetadata().GetName(), Body: acts.Status}); err != nil {
			return 0, fmt.Errorf("replicaset status: %w", err)
		}
	}
	return acts.RequeueAfter, nil
}

func (w *Workloads) syncDeployment(ctx context.Context, key string) (time.Duration, error) {
	d, ok := w.depInf.GetByKey(key)
	if !ok || d.GetMetadata().GetDeletionTimestamp() != nil {
		return 0, nil
	}
	ns, name := d.GetMetadata().GetNamespace(), d.GetMetadata().GetName()
	rss := w.rsInf.ListNamespace(ns)
	var owned []string
	for _, rs := range rss {
		if ref := controllerOf(rs.GetMetadata()); ref != nil && ref.GetUid() == d.GetMetadata().GetUid() {
			owned = append(owned, rs.GetMetadata().GetUid())
		}
	}
	acts := ReconcileDeployment(d, rss, w.podsFor(ns, owned...), w.clock.Now())
	for _, rs := range acts.UpdateReplicaSets {
		if _, err := w.rsets.Update(ctx, &appsv1.UpdateReplicaSetRequest{Namespace: ns, Name: rs.GetMetadata().GetName(), Body: rs}); err != nil {
			return 0, fmt.Errorf("update replicaset %s: %w", rs.GetMetadata().GetName(), err)
		}
	}
	if rs := acts.CreateReplicaSet; rs != nil {
		if _, err := w.rsets.Create(ctx, &appsv1.CreateReplicaSetRequest{Namespace: ns, Body: rs}); err != nil {
			return 0, fmt.Errorf("create replicaset %s: %w", rs.GetMetadata().GetName(), err)
		}
	}
	for _, rs := range acts.DeleteReplicaSets {
		md := rs.GetMetadata()
		_, err := w.rsets.Delete(ctx, &metav1.DeleteRequest{Namespace: ns, Name: md.GetName(),
			Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid()), ResourceVersion: proto.String(md.GetResourceVersion())}}})
		if err != nil && status.Code(err) != codes.NotFound {
			return 0, fmt.Errorf("delete replicaset %s: %w", md.GetName(), err)
		}
	}
	st := acts.Status
	if acts.Update != nil {
		updated, err := w.deps.Update(ctx, &appsv1.UpdateDeploymentRequest{Namespace: ns, Name: name, Body: acts.Update})
		if err != nil {
			return 0, fmt.Errorf("update deployment: %w", err)
		}
		if st != nil {
			next := proto.Clone(updated).(*appsv1.Deployment)
			next.Status = st.GetStatus()
			st = next
		}
	}
	if st != nil {
		if _, err := w.deps.UpdateStatus(ctx, &appsv1.UpdateDeploymentRequest{Namespace: ns, Name: name, Body: st}); err != nil {
			return 0, fmt.Errorf("deployment status: %w", err)
		}
	}
	for _, e := range acts.Events {
		w.events.Record(Ref("Deployment", "apps/v1", d.GetMetadata()), e.Type, e.Reason, e.Message)
	}
	return acts.RequeueAfter, nil
}

package ctrl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Sets runs the DaemonSet and StatefulSet controllers: informers on nodes,
// pods, PersistentVolumeClaims, DaemonSets and StatefulSets feed one work queue
// per kind; workers apply what ReconcileDaemonSet and ReconcileStatefulSet
// decide. Pod and claim updates carry the resourceVersion read, deletes the
// UID read, so a deposed leader's writes and decisions over a stale cache
// fail. A key is not reconciled again until the caches show the creates and
// deletes of its previous pass (a delete shows as soon as the pod is marked
// for deletion), or expectationTimeout passed. It also deletes the claims of
// a deleted StatefulSet whose retention policy was whenDeleted Delete (the
// garbage collector sweeps only pods and ReplicaSets).
// Build one per leadership term; Run may be called once.
type Sets struct {
	conn    grpc.ClientConnInterface
	shared  *Informers // nil: Run uses informers of its own
	clock   Clock
	logger  *slog.Logger
	workers int

	pods     corev1.PodsClient
	pvcs     corev1.PersistentVolumeClaimsClient
	dsets    appsv1.DaemonSetsClient
	ssets    appsv1.StatefulSetsClient
	dsEvents *EventRecorder
	ssEvents *EventRecorder

	nodeInf *Informer[*corev1.Node]
	podInf  *Informer[*corev1.Pod]
	pvcInf  *Informer[*corev1.PersistentVolumeClaim]
	dsInf   *Informer[*appsv1.DaemonSet]
	ssInf   *Informer[*appsv1.StatefulSet]
	dsQ     *Queue
	ssQ     *Queue
	dsWait  *setsExpectations
	ssWait  *setsExpectations
}

// NewSets returns the DaemonSet and StatefulSet controllers for the API behind
// conn; nothing happens until Run.
func NewSets(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) (*Sets, error) {
	if clock == nil || logger == nil {
		return nil, errors.New("sets: clock and logger are required")
	}
	s := &Sets{conn: conn, clock: clock, logger: logger, workers: 4,
		pods: corev1.NewPodsClient(conn), pvcs: corev1.NewPersistentVolumeClaimsClient(conn),
		dsets: appsv1.NewDaemonSetsClient(conn), ssets: appsv1.NewStatefulSetsClient(conn),
		dsEvents: NewEventRecorder(corev1.NewEventsClient(conn), "daemonset-controller", clock, logger),
		ssEvents: NewEventRecorder(corev1.NewEventsClient(conn), "statefulset-controller", clock, logger),
		dsWait:   newSetsExpectations(clock), ssWait: newSetsExpectations(clock)}
	var err error
	qcfg := DefaultQueueConfig()
	qcfg.Clock = clock
	if s.dsQ, err = NewQueue(qcfg); err != nil {
		return nil, err
	}
	if s.ssQ, err = NewQueue(qcfg); err != nil {
		return nil, err
	}
	return s, nil
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (s *Sets) UseInformers(f *Informers) { s.shared = f }

// watch takes the informers from f and registers the handlers.
func (s *Sets) watch(f *Informers) error {
	s.nodeInf, s.podInf, s.pvcInf, s.dsInf, s.ssInf = f.Nodes(), f.Pods(), f.PersistentVolumeClaims(), f.DaemonSets(), f.StatefulSets()
	allDaemonSets := func() {
		for _, ds := range s.dsInf.List() {
			s.dsQ.Add(KeyOf(ds))
		}
	}
	return errors.Join(
		s.nodeInf.AddHandler(HandlerFuncs[*corev1.Node]{
			Add: func(*corev1.Node) { allDaemonSets() },
			Update: func(old, n *corev1.Node) {
				if nodeSchedulingChanged(old, n) {
					allDaemonSets()
				}
			},
			Delete: func(*corev1.Node) { allDaemonSets() },
		}),
		s.podInf.AddHandler(HandlerFuncs[*corev1.Pod]{
			Add:    func(p *corev1.Pod) { s.podEvent(p, podAdded) },
			Update: s.onPodUpdate,
			Delete: func(p *corev1.Pod) { s.podEvent(p, podGone) },
		}),
		s.pvcInf.AddHandler(HandlerFuncs[*corev1.PersistentVolumeClaim]{
			Add:    func(c *corev1.PersistentVolumeClaim) { s.claimEvent(c, "+") },
			Update: func(_, c *corev1.PersistentVolumeClaim) { s.claimEvent(c, "") },
			Delete: func(c *corev1.PersistentVolumeClaim) { s.claimEvent(c, "-") },
		}),
		s.dsInf.AddHandler(HandlerFuncs[*appsv1.DaemonSet]{
			Add:    func(ds *appsv1.DaemonSet) { s.dsQ.Add(KeyOf(ds)) },
			Update: func(_, ds *appsv1.DaemonSet) { s.dsQ.Add(KeyOf(ds)) },
			Delete: func(ds *appsv1.DaemonSet) { s.dsQ.Add(KeyOf(ds)) },
		}),
		s.ssInf.AddHandler(HandlerFuncs[*appsv1.StatefulSet]{
			Add:    func(ss *appsv1.StatefulSet) { s.ssQ.Add(KeyOf(ss)) },
			Update: func(_, ss *appsv1.StatefulSet) { s.ssQ.Add(KeyOf(ss)) },
			Delete: func(ss *appsv1.StatefulSet) { s.ssQ.Add(KeyOf(ss)) },
		}),
	)
}

// podChange is what a pod event tells the expectations.
type podChange int

const (
	podUpdated podChange = iota // nothing: some other change
	podAdded                    // the pod was created
	podMarked                   // deletionTimestamp newly set: a delete that finalizers hold back
	podGone                     // the pod was removed
)

// onPodUpdate handles a pod update: one that sets deletionTimestamp shows a
// delete, as Kubernetes' controllers take it, since the pod may stay
// (terminating) for as long as finalizers hold it.
func (s *Sets) onPodUpdate(old, p *corev1.Pod) {
	change := podUpdated
	if old.GetMetadata().GetDeletionTimestamp() == nil && p.GetMetadata().GetDeletionTimestamp() != nil {
		change = podMarked
	}
	s.podEvent(p, change)
}

// podEvent queues the set that controls p (every set of its namespace for an
// orphan, which one may adopt) and notes an add or a delete for the
// expectations. A delete held back by finalizers shows twice, marked and then
// gone: a DaemonSet's count takes it once, when it is first seen, and a
// StatefulSet's named expectation either (the second finds nothing to clear).
func (s *Sets) podEvent(p *corev1.Pod, change podChange) {
	md := p.GetMetadata()
	ref := controllerRefOf(md)
	if ref == nil {
		for _, ds := range s.dsInf.ListNamespace(md.GetNamespace()) {
			s.dsQ.Add(KeyOf(ds))
		}
		for _, ss := range s.ssInf.ListNamespace(md.GetNamespace()) {
			s.ssQ.Add(KeyOf(ss))
		}
		return
	}
	key := md.GetNamespace() + "/" + ref.GetName()
	switch ref.GetKind() {
	case "DaemonSet":
		switch {
		case change == podAdded:
			s.dsWait.observeCount(key, true)
		case change == podMarked, change == podGone && md.GetDeletionTimestamp() == nil:
			s.dsWait.observeCount(key, false)
		}
		s.dsQ.Add(key)
	case "StatefulSet":
		switch change {
		case podAdded:
			s.ssWait.observeName("+pod " + KeyOf(p))
		case podMarked, podGone:
			s.ssWait.observeName("-pod " + KeyOf(p))
		}
		s.ssQ.Add(key)
	}
}

// claimEvent queues the StatefulSets a claim belongs to: those it names as
// owner, and those whose claim names it has.
func (s *Sets) claimEvent(c *corev1.PersistentVolumeClaim, op string) {
	md := c.GetMetadata()
	if op != "" {
		s.ssWait.observeName(op + "pvc " + KeyOf(c))
	}
	for _, r := range md.GetOwnerReferences() {
		if r.GetKind() == "StatefulSet" {
			s.ssQ.Add(md.GetNamespace() + "/" + r.GetName())
		}
	}
	for _, ss := range s.ssInf.ListNamespace(md.GetNamespace()) {
		if _, ok := ssClaimOrdinal(ss, md.GetName()); ok {
			s.ssQ.Add(KeyOf(ss))
		}
	}
}

// Run runs the controllers until ctx ends, then returns nil once every
// goroutine it started has stopped.
func (s *Sets) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, s.shared, s.conn, s.clock, s.logger)
	if err != nil {
		return err
	}
	if err := s.watch(f); err != nil {
		return err
	}
	g.Go(func() error { return s.dsEvents.Run(ctx) })
	g.Go(func() error { return s.ssEvents.Run(ctx) })
	g.Go(func() error {
		for _, inf := range []interface{ WaitSynced(context.Context) error }{s.nodeInf, s.podInf, s.pvcInf, s.dsInf, s.ssInf} {
			if err := inf.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		var wg sync.WaitGroup
		for range s.workers {
			wg.Add(2)
			go func() { defer wg.Done(); s.dsQ.Work(ctx, s.logger, s.syncDaemonSet) }()
			go func() { defer wg.Done(); s.ssQ.Work(ctx, s.logger, s.syncStatefulSet) }()
		}
		wg.Wait()
		return nil
	})
	return g.Wait()
}

// syncDaemonSet applies one ReconcileDaemonSet pass for key.
func (s *Sets) syncDaemonSet(ctx context.Context, key string) (time.Duration, error) {
	ds, ok := s.dsInf.GetByKey(key)
	if !ok {
		s.dsWait.forget(key)
		return 0, nil
	}
	if !s.dsWait.satisfied(key) {
		return expectationTimeout, nil // events requeue it sooner
	}
	md := ds.GetMetadata()
	ns := md.GetNamespace()
	acts := ReconcileDaemonSet(ds, s.nodeInf.List(), s.podInf.ListNamespace(ns), s.clock.Now())
	ref := Ref("DaemonSet", "apps/v1", md)
	if err := s.adoptRelease(ctx, ns, acts.Adopt, acts.Release); err != nil {
		return 0, err
	}
	adds, dels := len(acts.Create), len(acts.Delete)
	if adds+dels > 0 {
		s.dsWait.expect(key, adds, dels, nil)
	}
	created := 0
	for _, batch := range SlowStartBatches(adds) {
		errs := make([]error, batch)
		names := make([]string, batch)
		var wg sync.WaitGroup
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := s.pods.Create(ctx, &corev1.CreatePodRequest{Namespace: ns, Body: acts.Create[created+i]})
				names[i], errs[i] = p.GetMetadata().GetName(), err
			}()
		}
		wg.Wait()
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				continue
			}
			s.dsEvents.Record(ref, "Normal", "SuccessfulCreate", "Created pod: "+names[i])
		}
		created += batch
		if err := errors.Join(errs...); err != nil {
			s.dsWait.lower(key, failed+adds-created, dels, nil) // these will never be seen
			s.dsEvents.Record(ref, "Warning", "FailedCreate", fmt.Sprintf("Error creating: %v", err))
			return 0, fmt.Errorf("create pods: %w", err)
		}
	}
	var errs []error
	for _, p := range acts.Delete {
		pm := p.GetMetadata()
		err := s.deletePod(ctx, pm)
		if err != nil {
			errs = append(errs, err)
			s.dsEvents.Record(ref, "Warning", "FailedDelete", fmt.Sprintf("Error deleting: %v", err))
			continue
		}
		s.dsEvents.Record(ref, "Normal", "SuccessfulDelete", "Deleted pod: "+pm.GetName())
	}
	if len(errs) > 0 {
		s.dsWait.lower(key, 0, len(errs), nil)
		return 0, fmt.Errorf("delete pods: %w", errors.Join(errs...))
	}
	if acts.Status != nil {
		if _, err := s.dsets.UpdateStatus(ctx, &appsv1.UpdateDaemonSetRequest{Namespace: ns, Name: md.GetName(), Body: acts.Status}); err != nil {
			return 0, fmt.Errorf("daemonset status: %w", err)
		}
	}
	return acts.RequeueAfter, nil
}

// syncStatefulSet applies one ReconcileStatefulSet pass for key, or cleans up
// after a StatefulSet that is gone.
func (s *Sets) syncStatefulSet(ctx context.Context, key string) (time.Duration, error) {
	ss, ok := s.ssInf.GetByKey(key)
	if !ok {
		s.ssWait.forget(key)
		return 0, s.deleteOrphanClaims(ctx, key)
	}
	if !s.ssWait.satisfied(key) {
		return expectationTimeout, nil // events requeue it sooner
	}
	md := ss.GetMetadata()
	ns, name := md.GetNamespace(), md.GetName()
	acts := ReconcileStatefulSet(ss, s.podInf.ListNamespace(ns), s.pvcInf.ListNamespace(ns), s.clock.Now())
	ref := Ref("StatefulSet", "apps/v1", md)
	if err := s.adoptRelease(ctx, ns, acts.Adopt, acts.Release); err != nil {
		return 0, err
	}
	for _, c := range acts.UpdateClaims {
		if _, err := s.pvcs.Update(ctx, &corev1.UpdatePersistentVolumeClaimRequest{Namespace: ns, Name: c.GetMetadata().GetName(), Body: c}); err != nil {
			return 0, fmt.Errorf("update claim %s: %w", c.GetMetadata().GetName(), err)
		}
	}

	// Every create and delete below is expected by name; pending holds those
	// not yet done, given back if the pass stops early.
	var pending []string
	for _, c := range acts.CreateClaims {
		pending = append(pending, "+pvc "+KeyOf(c))
	}
	for _, p := range acts.Create {
		pending = append(pending, "+pod "+KeyOf(p))
	}
	for _, p := range acts.Delete {
		pending = append(pending, "-pod "+KeyOf(p))
	}
	for _, c := range acts.DeleteClaims {
		pending = append(pending, "-pvc "+KeyOf(c))
	}
	if len(pending) > 0 {
		s.ssWait.expect(key, 0, 0, pending)
	}
	done := func(token string) { pending = slices.DeleteFunc(pending, func(t string) bool { return t == token }) }
	fail := func(err error) (time.Duration, error) {
		s.ssWait.lower(key, 0, 0, pending)
		return 0, err
	}

	claimOf := map[string]string{} // claim -> pod, for event messages
	for _, p := range acts.Create {
		for _, v := range p.GetSpec().GetVolumes() {
			if c := v.GetPersistentVolumeClaim(); c != nil {
				claimOf[c.GetClaimName()] = p.GetMetadata().GetName()
			}
		}
	}
	for _, c := range acts.CreateClaims {
		cn := c.GetMetadata().GetName()
		_, err := s.pvcs.Create(ctx, &corev1.CreatePersistentVolumeClaimRequest{Namespace: ns, Body: c})
		switch {
		case status.Code(err) == codes.AlreadyExists:
			// Created by someone else meanwhile; the pod may use it, and its
			// add may have shown before we expected it.
			s.ssWait.lower(key, 0, 0, []string{"+pvc " + KeyOf(c)})
			done("+pvc " + KeyOf(c))
		case err != nil:
			s.ssEvents.Record(ref, "Warning", "FailedCreate",
				fmt.Sprintf("create Claim %s for Pod %s in StatefulSet %s failed error: %v", cn, claimOf[cn], name, err))
			return fail(fmt.Errorf("create claim %s: %w", cn, err))
		default:
			done("+pvc " + KeyOf(c))
			s.ssEvents.Record(ref, "Normal", "SuccessfulCreate",
				fmt.Sprintf("create Claim %s Pod %s in StatefulSet %s success", cn, claimOf[cn], name))
		}
	}
	created := 0
	for _, batch := range SlowStartBatches(len(acts.Create)) {
		errs := make([]error, batch)
		var wg sync.WaitGroup
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.pods.Create(ctx, &corev1.CreatePodRequest{Namespace: ns, Body: acts.Create[created+i]})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			p := acts.Create[created+i]
			pn := p.GetMetadata().GetName()
			if err != nil {
				s.ssEvents.Record(ref, "Warning", "FailedCreate", fmt.Sprintf("create Pod %s in StatefulSet %s failed error: %v", pn, name, err))
				continue
			}
			done("+pod " + KeyOf(p))
			s.ssEvents.Record(ref, "Normal", "SuccessfulCreate", fmt.Sprintf("create Pod %s in StatefulSet %s successful", pn, name))
		}
		created += batch
		if err := errors.Join(errs...); err != nil {
			return fail(fmt.Errorf("create pods: %w", err))
		}
	}
	for _, p := range acts.Delete {
		pn := p.GetMetadata().GetName()
		if err := s.deletePod(ctx, p.GetMetadata()); err != nil {
			s.ssEvents.Record(ref, "Warning", "FailedDelete", fmt.Sprintf("delete Pod %s in StatefulSet %s failed error: %v", pn, name, err))
			return fail(fmt.Errorf("delete pod %s: %w", pn, err))
		}
		done("-pod " + KeyOf(p))
		s.ssEvents.Record(ref, "Normal", "SuccessfulDelete", fmt.Sprintf("delete Pod %s in StatefulSet %s successful", pn, name))
	}
	for _, c := range acts.DeleteClaims {
		cn := c.GetMetadata().GetName()
		if err := s.deleteClaim(ctx, c.GetMetadata()); err != nil {
			return fail(fmt.Errorf("delete claim %s: %w", cn, err))
		}
		done("-pvc " + KeyOf(c))
		s.ssEvents.Record(ref, "Normal", "SuccessfulDelete", fmt.Sprintf("delete Claim %s in StatefulSet %s successful", cn, name))
	}
	if acts.Status != nil {
		if _, err := s.ssets.UpdateStatus(ctx, &appsv1.UpdateStatefulSetRequest{Namespace: ns, Name: name, Body: acts.Status}); err != nil {
			return 0, fmt.Errorf("statefulset status: %w", err)
		}
	}
	return acts.RequeueAfter, nil
}

// deleteOrphanClaims deletes, for a StatefulSet key no longer in the cache,
// the claims of its namespace whose every owner is a StatefulSet that is gone
// and one of them had that name: those whenDeleted Delete marked.
func (s *Sets) deleteOrphanClaims(ctx context.Context, key string) error {
	ns, name := SplitKey(key)
	var errs []error
	for _, c := range s.pvcInf.ListNamespace(ns) {
		md := c.GetMetadata()
		refs := md.GetOwnerReferences()
		if md.GetDeletionTimestamp() != nil || !slices.ContainsFunc(refs, func(r *metav1.OwnerReference) bool {
			return r.GetKind() == "StatefulSet" && r.GetName() == name
		}) {
			continue
		}
		if slices.ContainsFunc(refs, func(r *metav1.OwnerReference) bool {
			if r.GetKind() != "StatefulSet" {
				return true
			}
			ss, ok := s.ssInf.Get(ns, r.GetName())
			return ok && ss.GetMetadata().GetUid() == r.GetUid()
		}) {
			continue
		}
		if err := s.deleteClaim(ctx, md); err != nil {
			errs = append(errs, fmt.Errorf("delete claim %s: %w", md.GetName(), err))
			continue
		}
		s.logger.Debug("deleted claim of a deleted statefulset", "claim", KeyOf(c), "statefulset", key)
	}
	return errors.Join(errs...)
}

// adoptRelease writes the ownerReference changes of adopted and released pods.
func (s *Sets) adoptRelease(ctx context.Context, ns string, adopt, release []*corev1.Pod) error {
	for _, p := range slices.Concat(adopt, release) {
		if _, err := s.pods.Update(ctx, &corev1.UpdatePodRequest{Namespace: ns, Name: p.GetMetadata().GetName(), Body: p}); err != nil {
			return fmt.Errorf("adopt or release pod %s: %w", p.GetMetadata().GetName(), err)
		}
	}
	return nil
}

// deletePod deletes the pod md names if it still has md's UID; NotFound counts
// as done.
func (s *Sets) deletePod(ctx context.Context, md *metav1.ObjectMeta) error {
	_, err := s.pods.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(),
		Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// deleteClaim deletes the claim md names if it still has md's UID; NotFound
// counts as done.
func (s *Sets) deleteClaim(ctx context.Context, md *metav1.ObjectMeta) error {
	_, err := s.pvcs.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(),
		Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// setsExpectations holds, per DaemonSet or StatefulSet key, the creates and
// deletes of its last pass that the caches have not shown yet (Kubernetes'
// expectations): counted (a DaemonSet's pods, whose names the server picks,
// seen through their controller reference) or named ("+pod ns/name",
// "-pvc ns/name": a StatefulSet's pods and claims, whose names are fixed).
// Handlers observe; workers expect, lower and ask. Safe for concurrent use.
type setsExpectations struct {
	clock Clock

	mu     sync.Mutex // guards sets and tokens
	sets   map[string]*setsPending
	tokens map[string]string // expected named write -> set key
}

type setsPending struct {
	adds, dels int // counted creates and deletes not yet seen
	named      int // entries of tokens pointing here
	at         time.Time
}

func newSetsExpectations(clock Clock) *setsExpectations {
	return &setsExpectations{clock: clock, sets: map[string]*setsPending{}, tokens: map[string]string{}}
}

// expect replaces key's expectations; call it before making the writes.
func (e *setsExpectations) expect(key string, adds, dels int, tokens []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropLocked(key)
	p := &setsPending{adds: adds, dels: dels, at: e.clock.Now()}
	for _, t := range tokens {
		if _, dup := e.tokens[t]; !dup {
			e.tokens[t] = key
			p.named++
		}
	}
	e.sets[key] = p
}

// lower gives back expectations for writes that failed or were never made.
func (e *setsExpectations) lower(key string, adds, dels int, tokens []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.sets[key]
	if p == nil {
		return
	}
	p.adds -= adds
	p.dels -= dels
	for _, t := range tokens {
		if e.tokens[t] == key {
			delete(e.tokens, t)
			p.named--
		}
	}
}

// observeCount notes that a counted pod of key was added or deleted.
func (e *setsExpectations) observeCount(key string, added bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.sets[key]; p != nil {
		if added {
			p.adds--
		} else {
			p.dels--
		}
	}
}

// observeName notes that the named write token showed in a cache.
func (e *setsExpectations) observeName(token string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key, ok := e.tokens[token]
	if !ok {
		return
	}
	delete(e.tokens, token)
	if p := e.sets[key]; p != nil {
		p.named--
	}
}

// satisfied reports whether key's writes have all shown, or waited longer than
// expectationTimeout (then they are forgotten).
func (e *setsExpectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.sets[key]
	if p == nil {
		return true
	}
	if (p.adds <= 0 && p.dels <= 0 && p.named <= 0) || e.clock.Now().Sub(p.at) > expectationTimeout {
		e.dropLocked(key)
		return true
	}
	return false
}

// forget drops key's expectations (its object is gone).
func (e *setsExpectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropLocked(key)
}

func (e *setsExpectations) dropLocked(key string) {
	if p := e.sets[key]; p != nil && p.named > 0 {
		for t, k := range e.tokens {
			if k == key {
				delete(e.tokens, t)
			}
		}
	}
	delete(e.sets, key)
}

package ctrl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
)

// errVbStale says a change was decided on a cache the API contradicts (a
// claim or volume the cache lacks still exists); the pass is retried.
var errVbStale = errors.New("cache behind the API")

// vbPassKey is the only key of the binder's queue: every pass reconciles
// every volume and claim, because binding is a matching over all of them.
const vbPassKey = "volumes"

// Event repeats: the same event about the same object is recorded again only
// after vbEventRepeatMin, then twice as long each time, up to vbEventRepeatMax.
const (
	vbEventRepeatMin = time.Minute
	vbEventRepeatMax = 30 * time.Minute
)

// VolumeBinder binds PersistentVolumeClaims to PersistentVolumes and keeps
// both phases, applying what ReconcileVolumeBinding decides. Informers on
// volumes, claims and StorageClasses wake a single worker (a one-key queue,
// so wake-ups coalesce) that reconciles a snapshot of the caches and writes
// the changes, up to vbWriters at a time, each with the resourceVersion it
// was decided on (deletes also with the UID). A failed pass is retried with
// the queue's per-key back-off. Build one per leadership term.
type VolumeBinder struct {
	conn   grpc.ClientConnInterface
	clock  Clock
	logger *slog.Logger
	shared *Informers // nil: Run uses informers of its own
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (b *VolumeBinder) UseInformers(f *Informers) { b.shared = f }

// vbWriters bounds the changes one pass writes concurrently.
const vbWriters = 8

// NewVolumeBinder returns the binder for the API behind conn; nothing happens
// until Run.
func NewVolumeBinder(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) *VolumeBinder {
	return &VolumeBinder{conn: conn, clock: clock, logger: logger}
}

// vbRun is the state of one Run.
type vbRun struct {
	*VolumeBinder
	pvs    corev1.PersistentVolumesClient
	pvcs   corev1.PersistentVolumeClaimsClient
	pvInf  *Informer[*corev1.PersistentVolume]
	pvcInf *Informer[*corev1.PersistentVolumeClaim]
	scInf  *Informer[*storagev1.StorageClass]
	q      *Queue
	events *EventRecorder
	// pvWritten and pvcWritten hold what this run wrote until the informers
	// show it, so that a pass never decides on a state older than the run's
	// own writes (Kubernetes' controller updates its caches the same way).
	pvWritten  *vbWritten[*corev1.PersistentVolume]
	pvcWritten *vbWritten[*corev1.PersistentVolumeClaim]
	memo       *vbEventMemo
}

// Run binds until ctx ends, then returns nil; it returns an error only when
// it cannot start. Run may be called again after it returned.
func (b *VolumeBinder) Run(ctx context.Context) error {
	r := &vbRun{VolumeBinder: b, pvs: corev1.NewPersistentVolumesClient(b.conn), pvcs: corev1.NewPersistentVolumeClaimsClient(b.conn),
		events:    NewEventRecorder(corev1.NewEventsClient(b.conn), VolumeControllerName, b.clock, b.logger),
		pvWritten: newVbWritten[*corev1.PersistentVolume](), pvcWritten: newVbWritten[*corev1.PersistentVolumeClaim](),
		memo: &vbEventMemo{seen: map[string]vbMemoEntry{}}}
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, b.shared, b.conn, b.clock, b.logger)
	if err != nil {
		return err
	}
	r.pvInf, r.pvcInf, r.scInf = f.PersistentVolumes(), f.PersistentVolumeClaims(), f.StorageClasses()
	qcfg := DefaultQueueConfig()
	qcfg.Clock = b.clock
	if r.q, err = NewQueue(qcfg); err != nil {
		return err
	}
	wake := func() { r.q.Add(vbPassKey) }
	err = errors.Join(
		r.pvInf.AddHandler(HandlerFuncs[*corev1.PersistentVolume]{Add: func(*corev1.PersistentVolume) { wake() },
			Update: func(_, _ *corev1.PersistentVolume) { wake() }, Delete: func(*corev1.PersistentVolume) { wake() }}),
		r.pvcInf.AddHandler(HandlerFuncs[*corev1.PersistentVolumeClaim]{Add: func(*corev1.PersistentVolumeClaim) { wake() },
			Update: func(_, _ *corev1.PersistentVolumeClaim) { wake() }, Delete: func(*corev1.PersistentVolumeClaim) { wake() }}),
		r.scInf.AddHandler(HandlerFuncs[*storagev1.StorageClass]{Add: func(*storagev1.StorageClass) { wake() },
			Update: func(_, _ *storagev1.StorageClass) { wake() }, Delete: func(*storagev1.StorageClass) { wake() }}),
	)
	if err != nil {
		return err
	}

	g.Go(func() error { return r.events.Run(ctx) })
	g.Go(func() error {
		for _, s := range []interface{ WaitSynced(context.Context) error }{r.pvInf, r.pvcInf, r.scInf} {
			if err := s.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		wake()
		r.q.Work(ctx, r.logger, func(ctx context.Context, _ string) (time.Duration, error) { return 0, r.pass(ctx) })
		return nil
	})
	return g.Wait()
}

// pass reconciles the caches (with this run's writes) once and applies the
// changes; it returns the errors of the changes that failed.
func (r *vbRun) pass(ctx context.Context) error {
	pvs := r.pvWritten.view(r.pvInf.List())
	pvcs := r.pvcWritten.view(r.pvcInf.List())
	now := r.clock.Now()
	acts := ReconcileVolumeBinding(pvs, pvcs, r.scInf.List(), now)
	live := make(map[string]bool, len(pvs)+len(pvcs))
	for _, v := range pvs {
		live[v.GetMetadata().GetUid()] = true
	}
	for _, c := range pvcs {
		live[c.GetMetadata().GetUid()] = true
	}
	r.memo.keep(live)

	var mu sync.Mutex // guards errs
	var errs []error
	var g errgroup.Group
	g.SetLimit(vbWriters)
	for _, ch := range acts.Changes {
		g.Go(func() error {
			if err := r.apply(ctx, ch, now); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// apply writes one change in the order VolumeChange documents and then
// records its events (those the memo lets through).
func (r *vbRun) apply(ctx context.Context, ch VolumeChange, now time.Time) error {
	if err := r.confirmGone(ctx, ch); err != nil {
		return err
	}
	if v := ch.Volume; v != nil {
		name := v.GetMetadata().GetName()
		switch {
		case ch.DeleteVolume:
			md := v.GetMetadata()
			_, err := r.pvs.Delete(ctx, &metav1.DeleteRequest{Name: name, Body: &metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid()), ResourceVersion: proto.String(md.GetResourceVersion())}}})
			if err != nil && status.Code(err) != codes.NotFound {
				return fmt.Errorf("delete volume %s: %w", name, err)
			}
			r.pvWritten.deleted(name, md.GetUid())
			r.logger.Info("deleted released volume", "volume", name, "policy", reclaimDelete)
		case ch.UpdateVolume || ch.UpdateVolumeStatus:
			if err := r.writeVolume(ctx, ch); err != nil {
				return err
			}
		}
	}
	if c := ch.Claim; c != nil && (ch.UpdateClaim || ch.UpdateClaimStatus) {
		if err := r.writeClaim(ctx, ch); err != nil {
			return err
		}
		if ch.Volume != nil && c.GetStatus().GetPhase() == claimBound {
			r.logger.Info("bound claim", "claim", KeyOf(c), "volume", ch.Volume.GetMetadata().GetName())
		}
	}
	for _, e := range ch.Events {
		if r.memo.allow(e, now) {
			r.events.Record(e.Object, e.Type, e.Reason, e.Message)
		}
	}
	return nil
}

// confirmGone checks the preconditions RequireClaimGone and RequireVolumeGone
// with reads from the API, returning errVbStale when the object exists.
func (r *vbRun) confirmGone(ctx context.Context, ch VolumeChange) error {
	if ref := ch.RequireClaimGone; ref != nil {
		c, err := r.pvcs.Get(ctx, &metav1.GetRequest{Namespace: ref.GetNamespace(), Name: ref.GetName()})
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return fmt.Errorf("read claim %s/%s: %w", ref.GetNamespace(), ref.GetName(), err)
		case c.GetMetadata().GetUid() == ref.GetUid():
			return fmt.Errorf("claim %s/%s of volume %s: %w", ref.GetNamespace(), ref.GetName(), ch.Volume.GetMetadata().GetName(), errVbStale)
		}
	}
	if name := ch.RequireVolumeGone; name != "" {
		_, err := r.pvs.Get(ctx, &metav1.GetRequest{Name: name})
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return fmt.Errorf("read volume %s: %w", name, err)
		default:
			return fmt.Errorf("volume %s of claim %s: %w", name, KeyOf(ch.Claim), errVbStale)
		}
	}
	return nil
}

// writeVolume writes the volume's metadata and spec, then its status.
func (r *vbRun) writeVolume(ctx context.Context, ch VolumeChange) error {
	want := ch.Volume
	name := want.GetMetadata().GetName()
	cur := want
	if ch.UpdateVolume {
		out, err := r.pvs.Update(ctx, &corev1.UpdatePersistentVolumeRequest{Name: name, Body: want})
		if err != nil {
			return fmt.Errorf("update volume %s: %w", name, err)
		}
		r.pvWritten.wrote(out)
		cur = out
	}
	if ch.UpdateVolumeStatus {
		next := proto.Clone(cur).(*corev1.PersistentVolume)
		next.Status = want.GetStatus()
		out, err := r.pvs.UpdateStatus(ctx, &corev1.UpdatePersistentVolumeRequest{Name: name, Body: next})
		if err != nil {
			return fmt.Errorf("update status of volume %s: %w", name, err)
		}
		r.pvWritten.wrote(out)
		if ph := out.GetStatus().GetPhase(); ph == pvReleased || ph == pvAvailable {
			r.logger.Info("volume phase", "volume", name, "phase", ph)
		}
	}
	return nil
}

// writeClaim writes the claim's metadata and spec, then its status.
func (r *vbRun) writeClaim(ctx context.Context, ch VolumeChange) error {
	want := ch.Claim
	ns, name := want.GetMetadata().GetNamespace(), want.GetMetadata().GetName()
	cur := want
	if ch.UpdateClaim {
		out, err := r.pvcs.Update(ctx, &corev1.UpdatePersistentVolumeClaimRequest{Namespace: ns, Name: name, Body: want})
		if err != nil {
			return fmt.Errorf("update claim %s/%s: %w", ns, name, err)
		}
		r.pvcWritten.wrote(out)
		cur = out
	}
	if ch.UpdateClaimStatus {
		next := proto.Clone(cur).(*corev1.PersistentVolumeClaim)
		next.Status = want.GetStatus()
		out, err := r.pvcs.UpdateStatus(ctx, &corev1.UpdatePersistentVolumeClaimRequest{Namespace: ns, Name: name, Body: next})
		if err != nil {
			return fmt.Errorf("update status of claim %s/%s: %w", ns, name, err)
		}
		r.pvcWritten.wrote(out)
	}
	return nil
}

// vbWritten remembers objects a run wrote or deleted until its informer
// catches up. Safe for concurrent use.
type vbWritten[T Object] struct {
	mu   sync.Mutex        // guards objs and gone
	objs map[string]T      // key -> object as the write returned it
	gone map[string]string // key -> UID of an object deleted
}

func newVbWritten[T Object]() *vbWritten[T] {
	return &vbWritten[T]{objs: map[string]T{}, gone: map[string]string{}}
}

func (w *vbWritten[T]) wrote(obj T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.objs[KeyOf(obj)] = obj
}

func (w *vbWritten[T]) deleted(key, uid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.objs, key)
	w.gone[key] = uid
}

// view returns cached with every object this run wrote later than the cached
// copy replaced by the written one, and objects it deleted left out. Entries
// the cache has caught up with (or whose object is gone) are dropped.
func (w *vbWritten[T]) view(cached []T) []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]T, 0, len(cached))
	seen := make(map[string]bool, len(w.objs)+len(w.gone))
	for _, obj := range cached {
		key, md := KeyOf(obj), obj.GetMetadata()
		if uid, ok := w.gone[key]; ok && uid == md.GetUid() {
			seen[key] = true
			continue
		}
		if mine, ok := w.objs[key]; ok && mine.GetMetadata().GetUid() == md.GetUid() &&
			vbNewer(mine.GetMetadata().GetResourceVersion(), md.GetResourceVersion()) {
			seen[key] = true
			out = append(out, mine)
			continue
		}
		out = append(out, obj)
	}
	for key := range w.objs {
		if !seen[key] {
			delete(w.objs, key)
		}
	}
	for key := range w.gone {
		if !seen[key] {
			delete(w.gone, key)
		}
	}
	return out
}

// vbNewer reports whether resourceVersion a is later than b (both Raft
// indexes); unreadable versions are never newer.
func vbNewer(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}

// vbEventMemo keeps the binder from repeating itself: an event about an
// object (by UID and reason) passes when its message changed, and otherwise
// only once its repeat interval passed (vbEventRepeatMin, doubling up to
// vbEventRepeatMax). Safe for concurrent use.
type vbEventMemo struct {
	mu   sync.Mutex // guards seen
	seen map[string]vbMemoEntry
}

type vbMemoEntry struct {
	uid, message string
	next         time.Time
	every        time.Duration
}

func (m *vbEventMemo) allow(e VolumeEvent, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := e.Object.GetUid() + "\x00" + e.Reason
	prev, ok := m.seen[key]
	if ok && prev.message == e.Message && now.Before(prev.next) {
		return false
	}
	every := vbEventRepeatMin
	if ok && prev.message == e.Message {
		every = min(2*prev.every, vbEventRepeatMax)
	}
	m.seen[key] = vbMemoEntry{uid: e.Object.GetUid(), message: e.Message, next: now.Add(every), every: every}
	return true
}

// keep forgets the objects whose UID is not in live.
func (m *vbEventMemo) keep(live map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, e := range m.seen {
		if !live[e.uid] {
			delete(m.seen, key)
		}
	}
}

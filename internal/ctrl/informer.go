// Package ctrl holds the leader-run controllers and the machinery they share:
// Informer, a list+watch cache of one kind that tells handlers about changes,
// and Queue, a de-duplicating, rate-limited work queue of keys. See DESIGN.md.
package ctrl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Errors of this package; match them with errors.Is.
var (
	// ErrGone: a watch asked for changes older than the server's history window
	// (gRPC OutOfRange, HTTP 410). The informer relists. A ListWatcher wraps
	// its own error with it.
	ErrGone = errors.New("resource version too old")
	// ErrStarted: Run was called a second time.
	ErrStarted = errors.New("informer already started")
	// ErrUnknownIndex: ByIndex named an index that was never added.
	ErrUnknownIndex = errors.New("unknown index")
)

// Object is what an informer caches: a generated API message with ObjectMeta,
// such as *corev1.Pod or *appsv1.ReplicaSet.
type Object interface {
	proto.Message
	GetMetadata() *metav1.ObjectMeta
}

// Watch event types, as the API sends them.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventBookmark = "BOOKMARK"
	EventError    = "ERROR"
)

// WatchEvent is one change read from a watch. For EventDeleted, Object is the
// last state, stamped with the deletion's resourceVersion; for EventBookmark
// only its resourceVersion is meaningful.
type WatchEvent[T Object] struct {
	Type   string
	Object T
}

// ListWatcher is an informer's source: the API (NewGRPCListWatcher) or a fake.
type ListWatcher[T Object] interface {
	// List returns every object and the resourceVersion of that state. rv ""
	// asks for the latest state (a linearizable read), "0" for whatever the
	// peer has, as in Kubernetes.
	List(ctx context.Context, rv string) (items []T, listRV string, err error)
	// Watch streams the changes after rv until ctx ends or the stream fails. If
	// rv is older than the server's history, Watch or a later Recv fails with
	// an error matching ErrGone.
	Watch(ctx context.Context, rv string) (WatchStream[T], error)
}

// WatchStream is one open watch, read by one goroutine.
type WatchStream[T Object] interface {
	// Recv blocks for the next event. io.EOF means the server ended the stream
	// cleanly (shutdown, timeout); every error ends the stream.
	Recv() (WatchEvent[T], error)
}

// Handler is told about an informer's changes. Its methods are called from the
// informer's Run goroutine, one call at a time, in the order the cache changed
// (watch events in resourceVersion order; a relist's differences in list order,
// deletions last), each after the cache already shows that change. They must
// return quickly (a typical handler enqueues a key): the watch waits for them.
// Objects are shared with the cache: read, never modify.
type Handler[T Object] interface {
	OnAdd(obj T)
	// OnUpdate is called when an object changed. old and obj may differ in UID
	// when an object was deleted and recreated under the same name while the
	// informer was relisting.
	OnUpdate(old, obj T)
	// OnDelete gets the object's last known state. It is called only for
	// objects previously passed to OnAdd.
	OnDelete(obj T)
}

// HandlerFuncs is a Handler built from functions; nil ones are skipped.
type HandlerFuncs[T Object] struct {
	Add    func(obj T)
	Update func(old, obj T)
	Delete func(obj T)
}

func (h HandlerFuncs[T]) OnAdd(obj T) {
	if h.Add != nil {
		h.Add(obj)
	}
}

func (h HandlerFuncs[T]) OnUpdate(old, obj T) {
	if h.Update != nil {
		h.Update(old, obj)
	}
}

func (h HandlerFuncs[T]) OnDelete(obj T) {
	if h.Delete != nil {
		h.Delete(obj)
	}
}

// IndexFunc returns the values under which an object is indexed (none, one or
// several). It runs under the informer's lock: it must be a pure function of
// obj and must not call the informer.
type IndexFunc[T Object] func(obj T) []string

// IndexByOwnerUID indexes objects by the UIDs of their ownerReferences, e.g.
// pods by the ReplicaSet that owns them.
func IndexByOwnerUID[T Object](obj T) []string {
	refs := obj.GetMetadata().GetOwnerReferences()
	uids := make([]string, 0, len(refs))
	for _, r := range refs {
		uids = append(uids, r.GetUid())
	}
	return uids
}

// indexNamespace is the built-in index behind ListNamespace.
const indexNamespace = "namespace"

// KeyOf returns obj's cache and queue key: "namespace/name", or "name" for a
// cluster-scoped object, as in Kubernetes.
func KeyOf(obj Object) string {
	md := obj.GetMetadata()
	if md.GetNamespace() == "" {
		return md.GetName()
	}
	return md.GetNamespace() + "/" + md.GetName()
}

// SplitKey splits a key made by KeyOf; namespace is "" for a cluster-scoped key.
func SplitKey(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}

// InformerConfig configures an Informer.
type InformerConfig struct {
	// Name names the informer in logs, e.g. "pods".
	Name   string
	Logger *slog.Logger
	Clock  Clock
	// After a failed list or watch the informer retries at once, then after
	// MinBackoff, doubling up to MaxBackoff, until a watch delivers an event.
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// DefaultInformerConfig returns the defaults: back-off from 100ms to 30s.
func DefaultInformerConfig() InformerConfig {
	return InformerConfig{Logger: slog.Default(), Clock: RealClock(),
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second}
}

// Validate checks the settings.
func (c InformerConfig) Validate() error {
	if c.Logger == nil || c.Clock == nil {
		return fmt.Errorf("informer %q: logger and clock must be set", c.Name)
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("informer %q: back-off must satisfy 0 < min (%s) <= max (%s)", c.Name, c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// Informer keeps a local cache of one kind up to date by listing, then
// watching from the list's resourceVersion, and tells its handlers about every
// change. Register indexes and handlers (before or after Run: one added late is
// first told of every cached object as added, like client-go's shared
// informers), start Run, and WaitSynced before trusting the cache. Cache reads (Get, List, ByIndex, ...) may be called from
// any goroutine at any time; they see each change before handlers hear of it.
// Returned objects are shared: never modify one (proto.Clone it first).
type Informer[T Object] struct {
	lw     ListWatcher[T]
	cfg    InformerConfig
	synced chan struct{} // closed once the first list has reached the handlers

	// dispatchMu is held while a change is applied and handed to the handlers,
	// and while a late handler is caught up, so that every handler sees each
	// object's changes once and in order. Handlers must not register handlers.
	dispatchMu sync.Mutex

	mu sync.RWMutex // guards every field below
	// items is the cache, by key.
	items map[string]T
	// indexes maps index name -> value -> set of keys; indexers holds the
	// functions that fill them. Both have the same names.
	indexes  map[string]map[string]map[string]struct{}
	indexers map[string]IndexFunc[T]
	handlers []Handler[T]
	// rv is the resourceVersion of the last list or event applied to items.
	rv      string
	started bool
}

// NewInformer returns an informer over lw; nothing happens until Run.
func NewInformer[T Object](lw ListWatcher[T], cfg InformerConfig) (*Informer[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Informer[T]{
		lw:       lw,
		cfg:      cfg,
		synced:   make(chan struct{}),
		items:    map[string]T{},
		indexes:  map[string]map[string]map[string]struct{}{indexNamespace: {}},
		indexers: map[string]IndexFunc[T]{indexNamespace: func(o T) []string { return []string{o.GetMetadata().GetNamespace()} }},
	}, nil
}

// AddIndex adds a custom index, queried with ByIndex, built at once over what
// is cached. It fails when name is already taken.
func (inf *Informer[T]) AddIndex(name string, fn IndexFunc[T]) error {
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if _, ok := inf.indexers[name]; ok {
		return fmt.Errorf("add index %q to %s: name already taken", name, inf.cfg.Name)
	}
	inf.indexers[name] = fn
	inf.indexes[name] = map[string]map[string]struct{}{}
	for key, obj := range inf.items {
		inf.indexOneLocked(name, key, obj)
	}
	return nil
}

// EnsureIndex is AddIndex for an index several users share under one name: a
// second call with a taken name changes nothing. The callers must agree on fn.
func (inf *Informer[T]) EnsureIndex(name string, fn IndexFunc[T]) {
	inf.mu.RLock()
	_, ok := inf.indexers[name]
	inf.mu.RUnlock()
	if !ok {
		_ = inf.AddIndex(name, fn) // lost a race to another EnsureIndex: same index
	}
}

// AddHandler registers h; handlers are called in the order they were added.
// Added while Run is going, h is first told of every cached object as added,
// before it hears of any later change.
func (inf *Informer[T]) AddHandler(h Handler[T]) error {
	inf.dispatchMu.Lock()
	defer inf.dispatchMu.Unlock()
	inf.mu.Lock()
	inf.handlers = append(inf.handlers, h)
	var replay []change[T]
	for _, obj := range inf.items {
		replay = append(replay, change[T]{typ: EventAdded, obj: obj})
	}
	inf.mu.Unlock()
	dispatch([]Handler[T]{h}, replay...)
	return nil
}

// currentHandlers returns the handlers registered so far.
func (inf *Informer[T]) currentHandlers() []Handler[T] {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return slices.Clone(inf.handlers)
}

// HasSynced reports whether the first list is in the cache and has reached
// every handler.
func (inf *Informer[T]) HasSynced() bool {
	select {
	case <-inf.synced:
		return true
	default:
		return false
	}
}

// WaitSynced blocks until HasSynced, or returns ctx.Err() if ctx ends first.
func (inf *Informer[T]) WaitSynced(ctx context.Context) error {
	select {
	case <-inf.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns the cached object namespace/name (namespace "" for a
// cluster-scoped kind).
func (inf *Informer[T]) Get(namespace, name string) (T, bool) {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	return inf.GetByKey(key)
}

// GetByKey returns the cached object with the given KeyOf key.
func (inf *Informer[T]) GetByKey(key string) (T, bool) {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	obj, ok := inf.items[key]
	return obj, ok
}

// List returns every cached object, in no particular order.
func (inf *Informer[T]) List() []T {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	out := make([]T, 0, len(inf.items))
	for _, obj := range inf.items {
		out = append(out, obj)
	}
	return out
}

// ListNamespace returns the cached objects of one namespace, in no particular
// order.
func (inf *Informer[T]) ListNamespace(namespace string) []T {
	objs, _ := inf.ByIndex(indexNamespace, namespace)
	return objs
}

// ByIndex returns the cached objects that index name files under value, in no
// particular order; ErrUnknownIndex if no such index was added.
func (inf *Informer[T]) ByIndex(name, value string) ([]T, error) {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	idx, ok := inf.indexes[name]
	if !ok {
		return nil, fmt.Errorf("%s by %q: %w", inf.cfg.Name, name, ErrUnknownIndex)
	}
	keys := idx[value]
	out := make([]T, 0, len(keys))
	for key := range keys {
		out = append(out, inf.items[key])
	}
	return out, nil
}

// ResourceVersion returns the resourceVersion the cache reflects: that of the
// last list or watch event applied ("" before the first list).
func (inf *Informer[T]) ResourceVersion() string {
	inf.mu.RLock()
	defer inf.mu.RUnlock()
	return inf.rv
}

// Run fills the cache and keeps it current until ctx ends, then returns nil;
// the cache stays readable but no longer changes. It lists, then watches from
// the list's resourceVersion; after a stream error it watches again from the
// last resourceVersion it saw, and when that is older than the server's history
// (ErrGone) it lists again and turns the difference into add, update and
// delete calls, so handlers end up as if they had seen every change. Failures
// are retried with back-off, never returned. Run may be called once
// (ErrStarted after that).
func (inf *Informer[T]) Run(ctx context.Context) error {
	inf.mu.Lock()
	if inf.started {
		inf.mu.Unlock()
		return fmt.Errorf("run %s: %w", inf.cfg.Name, ErrStarted)
	}
	inf.started = true
	inf.mu.Unlock()

	log := inf.cfg.Logger.With("informer", inf.cfg.Name)
	rv := ""
	failures := 0 // failed lists and watches since a watch last delivered an event
	for {
		var err error
		if rv == "" {
			rv, err = inf.relist(ctx)
		}
		if err == nil {
			var progressed bool
			rv, progressed, err = inf.watch(ctx, rv)
			if progressed {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		delay := time.Duration(0)
		if failures > 0 {
			delay = backoff(inf.cfg.MinBackoff, inf.cfg.MaxBackoff, failures-1)
		}
		failures++
		switch {
		case errors.Is(err, ErrGone):
			log.Info("watch expired; relisting", "resourceVersion", rv, "err", err, "retry", delay)
			rv = ""
		case errors.Is(err, io.EOF):
			log.Debug("watch closed by server", "resourceVersion", rv, "retry", delay)
		default:
			log.Warn("list or watch failed", "resourceVersion", rv, "err", err, "retry", delay)
		}
		if sleep(ctx, inf.cfg.Clock, delay) != nil {
			return nil
		}
	}
}

// change is one handler call to make.
type change[T Object] struct {
	typ      string // EventAdded, EventModified or EventDeleted
	old, obj T
}

// relist replaces the cache with a fresh list, tells handlers the difference,
// and returns the list's resourceVersion.
func (inf *Informer[T]) relist(ctx context.Context) (string, error) {
	items, rv, err := inf.lw.List(ctx, "")
	if err != nil {
		return "", fmt.Errorf("list %s: %w", inf.cfg.Name, err)
	}
	if rv == "" {
		return "", fmt.Errorf("list %s: the server sent no resourceVersion", inf.cfg.Name)
	}
	inf.dispatchMu.Lock()
	defer inf.dispatchMu.Unlock()
	inf.mu.Lock()
	fresh := make(map[string]T, len(items))
	var changes []change[T]
	for _, obj := range items {
		key := KeyOf(obj)
		fresh[key] = obj
		old, had := inf.items[key]
		switch {
		case !had:
			changes = append(changes, change[T]{typ: EventAdded, obj: obj})
		case old.GetMetadata().GetResourceVersion() != obj.GetMetadata().GetResourceVersion():
			changes = append(changes, change[T]{typ: EventModified, old: old, obj: obj})
		}
	}
	var gone []string
	for key := range inf.items {
		if _, ok := fresh[key]; !ok {
			gone = append(gone, key)
		}
	}
	slices.Sort(gone)
	for _, key := range gone {
		changes = append(changes, change[T]{typ: EventDeleted, obj: inf.items[key]})
	}
	inf.items = fresh
	for name := range inf.indexes {
		inf.indexes[name] = map[string]map[string]struct{}{}
	}
	for key, obj := range fresh {
		inf.indexLocked(key, obj)
	}
	inf.rv = rv
	handlers := slices.Clone(inf.handlers)
	inf.mu.Unlock()

	dispatch(handlers, changes...)
	if !inf.HasSynced() {
		close(inf.synced) // only Run's goroutine gets here
	}
	return rv, nil
}

// watch applies one watch stream from rv until it fails, returning the last
// resourceVersion seen and whether any event arrived.
func (inf *Informer[T]) watch(ctx context.Context, rv string) (string, bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	stream, err := inf.lw.Watch(ctx, rv)
	if err != nil {
		return rv, false, fmt.Errorf("watch %s from %s: %w", inf.cfg.Name, rv, err)
	}
	progressed := false
	for {
		ev, err := stream.Recv()
		if err != nil {
			return rv, progressed, fmt.Errorf("watch %s from %s: %w", inf.cfg.Name, rv, err)
		}
		md := ev.Object.GetMetadata()
		switch {
		case ev.Type == EventError:
			return rv, progressed, fmt.Errorf("watch %s from %s: error event", inf.cfg.Name, rv)
		case md == nil:
			return rv, progressed, fmt.Errorf("watch %s from %s: %s event without an object", inf.cfg.Name, rv, ev.Type)
		case ev.Type == EventBookmark, ev.Type == EventAdded, ev.Type == EventModified, ev.Type == EventDeleted:
			inf.dispatchMu.Lock()
			if c, ok := inf.apply(ev); ok {
				dispatch(inf.currentHandlers(), c)
			}
			inf.dispatchMu.Unlock()
		default:
			return rv, progressed, fmt.Errorf("watch %s from %s: unknown event type %q", inf.cfg.Name, rv, ev.Type)
		}
		if v := md.GetResourceVersion(); v != "" {
			rv = v
		}
		progressed = true
	}
}

// apply puts one event into the cache, with its resourceVersion, and returns
// the handler call it implies, if any.
func (inf *Informer[T]) apply(ev WatchEvent[T]) (change[T], bool) {
	key := KeyOf(ev.Object)
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if v := ev.Object.GetMetadata().GetResourceVersion(); v != "" {
		inf.rv = v
	}
	if ev.Type == EventBookmark {
		return change[T]{}, false
	}
	old, had := inf.items[key]
	if had {
		inf.unindexLocked(key, old)
	}
	if ev.Type == EventDeleted {
		delete(inf.items, key)
		return change[T]{typ: EventDeleted, obj: ev.Object}, had
	}
	inf.items[key] = ev.Object
	inf.indexLocked(key, ev.Object)
	if had {
		return change[T]{typ: EventModified, old: old, obj: ev.Object}, true
	}
	return change[T]{typ: EventAdded, obj: ev.Object}, true
}

func (inf *Informer[T]) indexLocked(key string, obj T) {
	for name := range inf.indexers {
		inf.indexOneLocked(name, key, obj)
	}
}

func (inf *Informer[T]) indexOneLocked(name, key string, obj T) {
	idx := inf.indexes[name]
	for _, v := range inf.indexers[name](obj) {
		keys := idx[v]
		if keys == nil {
			keys = map[string]struct{}{}
			idx[v] = keys
		}
		keys[key] = struct{}{}
	}
}

func (inf *Informer[T]) unindexLocked(key string, obj T) {
	for name, fn := range inf.indexers {
		idx := inf.indexes[name]
		for _, v := range fn(obj) {
			delete(idx[v], key)
			if len(idx[v]) == 0 {
				delete(idx, v)
			}
		}
	}
}

// dispatch makes the handler calls, each change to every handler in order.
func dispatch[T Object](handlers []Handler[T], changes ...change[T]) {
	for _, c := range changes {
		for _, h := range handlers {
			switch c.typ {
			case EventAdded:
				h.OnAdd(c.obj)
			case EventModified:
				h.OnUpdate(c.old, c.obj)
			case EventDeleted:
				h.OnDelete(c.obj)
			}
		}
	}
}

// NewGRPCListWatcher adapts a generated client's List and Watch methods, so
// that an informer of any kind takes one line:
//
//	pods := corev1.NewPodsClient(conn)
//	lw := ctrl.NewGRPCListWatcher(pods.List, pods.Watch, nil) // a ListWatcher[*corev1.Pod]
//
// req, which may be nil, sets the namespace and selectors of both calls; its
// resourceVersion, paging and watch fields are ignored. Lists are not paged,
// so that a list is one consistent state. gRPC OutOfRange errors are returned
// wrapped with ErrGone.
func NewGRPCListWatcher[T Object, L listResponse[T], E any, PE watchEvent[E, T]](
	list func(context.Context, *metav1.ListRequest, ...grpc.CallOption) (L, error),
	watch func(context.Context, *metav1.ListRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[E], error),
	req *metav1.ListRequest,
) ListWatcher[T] {
	base := &metav1.ListRequest{}
	if req != nil {
		base = &metav1.ListRequest{Namespace: req.GetNamespace(), LabelSelector: req.GetLabelSelector(),
			FieldSelector: req.GetFieldSelector()}
	}
	return grpcListWatcher[T, L, E, PE]{list: list, watch: watch, base: base}
}

// listResponse is what a generated List method returns, e.g. *corev1.PodList.
type listResponse[T Object] interface {
	GetItems() []T
	GetMetadata() *metav1.ListMeta
}

// watchEvent is a generated watch event message, e.g. *corev1.PodWatchEvent.
type watchEvent[E any, T Object] interface {
	*E
	GetType() string
	GetObject() T
}

type grpcListWatcher[T Object, L listResponse[T], E any, PE watchEvent[E, T]] struct {
	list  func(context.Context, *metav1.ListRequest, ...grpc.CallOption) (L, error)
	watch func(context.Context, *metav1.ListRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[E], error)
	base  *metav1.ListRequest // read-only
}

func (g grpcListWatcher[T, L, E, PE]) List(ctx context.Context, rv string) ([]T, string, error) {
	req := proto.CloneOf(g.base)
	req.ResourceVersion = rv
	resp, err := g.list(ctx, req)
	if err != nil {
		return nil, "", fromGRPC(err)
	}
	return resp.GetItems(), resp.GetMetadata().GetResourceVersion(), nil
}

func (g grpcListWatcher[T, L, E, PE]) Watch(ctx context.Context, rv string) (WatchStream[T], error) {
	req := proto.CloneOf(g.base)
	req.ResourceVersion, req.Watch, req.AllowWatchBookmarks = rv, true, true
	stream, err := g.watch(ctx, req)
	if err != nil {
		return nil, fromGRPC(err)
	}
	return grpcStream[T, E, PE]{stream}, nil
}

type grpcStream[T Object, E any, PE watchEvent[E, T]] struct {
	s grpc.ServerStreamingClient[E]
}

func (g grpcStream[T, E, PE]) Recv() (WatchEvent[T], error) {
	ev, err := g.s.Recv()
	if err != nil {
		return WatchEvent[T]{}, fromGRPC(err)
	}
	pe := PE(ev)
	return WatchEvent[T]{Type: pe.GetType(), Object: pe.GetObject()}, nil
}

// fromGRPC translates the gRPC status that means 410 Gone into ErrGone.
func fromGRPC(err error) error {
	if status.Code(err) == codes.OutOfRange {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

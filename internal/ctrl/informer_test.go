package ctrl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

var (
	_ Handler[*corev1.Pod]     = HandlerFuncs[*corev1.Pod]{}
	_ Handler[*corev1.Pod]     = (*recorder)(nil)
	_ ListWatcher[*corev1.Pod] = (*fakeServer)(nil)
)

// fakeServer is an in-memory API for pods: a store, a resourceVersion counter,
// the history of changes and the open watch streams. Tests mutate it and break
// or mute its streams to drive an informer through resumes and relists.
type fakeServer struct {
	mu        sync.Mutex // guards every field below
	rv        int
	objs      map[string]*corev1.Pod
	history   []WatchEvent[*corev1.Pod]
	compacted int // a watch from below this resourceVersion is gone
	streams   map[*fakeStream]bool
	muted     bool    // changes are not sent to open streams (they stay in history)
	listErrs  []error // returned by the next lists, in order
	lists     int
	watchRVs  []string // the resourceVersion of every Watch call
}

type fakeStream struct {
	ctx context.Context
	ch  chan streamItem
}

type streamItem struct {
	ev  WatchEvent[*corev1.Pod]
	err error
}

func newFakeServer(pods ...*corev1.Pod) *fakeServer {
	s := &fakeServer{objs: map[string]*corev1.Pod{}, streams: map[*fakeStream]bool{}}
	for _, p := range pods {
		s.put(p)
	}
	return s
}

func pod(ns, name, node string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Namespace: ns, Name: name, Uid: "uid-" + name},
		Spec: &corev1.PodSpec{NodeName: node}}
}

// put creates or replaces a pod and returns its new resourceVersion.
func (s *fakeServer) put(p *corev1.Pod) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv++
	p = proto.CloneOf(p)
	p.Metadata.ResourceVersion = strconv.Itoa(s.rv)
	typ := EventAdded
	if _, ok := s.objs[KeyOf(p)]; ok {
		typ = EventModified
	}
	s.objs[KeyOf(p)] = p
	s.sendLocked(WatchEvent[*corev1.Pod]{Type: typ, Object: p})
	return p.Metadata.ResourceVersion
}

func (s *fakeServer) del(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ns + "/" + name
	p := proto.CloneOf(s.objs[key])
	delete(s.objs, key)
	s.rv++
	p.Metadata.ResourceVersion = strconv.Itoa(s.rv)
	s.sendLocked(WatchEvent[*corev1.Pod]{Type: EventDeleted, Object: p})
}

func (s *fakeServer) sendLocked(ev WatchEvent[*corev1.Pod]) {
	s.history = append(s.history, ev)
	if s.muted {
		return
	}
	for st := range s.streams {
		st.ch <- streamItem{ev: ev}
	}
}

// inject sends ev to the open streams without recording it.
func (s *fakeServer) inject(ev WatchEvent[*corev1.Pod]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.ch <- streamItem{ev: ev}
	}
}

func (s *fakeServer) mute(m bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.muted = m
}

// compact forgets the history: watches from before now are gone.
func (s *fakeServer) compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history, s.compacted = nil, s.rv
}

// breakStreams ends every open stream with err.
func (s *fakeServer) breakStreams(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.ch <- streamItem{err: err}
		delete(s.streams, st)
	}
}

func (s *fakeServer) currentRV() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.Itoa(s.rv)
}

func (s *fakeServer) calls() (lists int, watchRVs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists, slices.Clone(s.watchRVs)
}

func (s *fakeServer) List(ctx context.Context, rv string) ([]*corev1.Pod, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	if len(s.listErrs) > 0 {
		err := s.listErrs[0]
		s.listErrs = s.listErrs[1:]
		return nil, "", err
	}
	keys := make([]string, 0, len(s.objs))
	for k := range s.objs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var items []*corev1.Pod
	for _, k := range keys {
		items = append(items, s.objs[k])
	}
	return items, strconv.Itoa(s.rv), nil
}

func (s *fakeServer) Watch(ctx context.Context, rv string) (WatchStream[*corev1.Pod], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchRVs = append(s.watchRVs, rv)
	from, err := strconv.Atoi(rv)
	if err != nil {
		return nil, fmt.Errorf("bad resourceVersion %q", rv)
	}
	if from < s.compacted {
		return nil, fmt.Errorf("watch from %d: %w", from, ErrGone)
	}
	st := &fakeStream{ctx: ctx, ch: make(chan streamItem, 1000)}
	for _, ev := range s.history {
		if n, _ := strconv.Atoi(ev.Object.Metadata.ResourceVersion); n > from {
			st.ch <- streamItem{ev: ev}
		}
	}
	s.streams[st] = true
	return st, nil
}

func (st *fakeStream) Recv() (WatchEvent[*corev1.Pod], error) {
	select {
	case it := <-st.ch:
		return it.ev, it.err
	case <-st.ctx.Done():
		return WatchEvent[*corev1.Pod]{}, st.ctx.Err()
	}
}

// recorder is a Handler that writes each call as a line to a channel.
type recorder struct{ ch chan string }

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1000)} }

func (r *recorder) OnAdd(p *corev1.Pod) { r.ch <- "add " + KeyOf(p) }
func (r *recorder) OnUpdate(old, p *corev1.Pod) {
	r.ch <- fmt.Sprintf("update %s %s->%s", KeyOf(p), old.Metadata.ResourceVersion, p.Metadata.ResourceVersion)
}
func (r *recorder) OnDelete(p *corev1.Pod) { r.ch <- "delete " + KeyOf(p) }

// expect reads the next len(want) calls, which must be want, and then checks
// that no other call is pending.
func (r *recorder) expect(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case line := <-r.ch:
			got = append(got, line)
		case <-time.After(10 * time.Second):
			t.Fatalf("handler calls: got %q, want %q", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("handler calls: got %q, want %q", got, want)
	}
	select {
	case line := <-r.ch:
		t.Fatalf("unexpected handler call %q after %q", line, want)
	default:
	}
}

// expectUnordered is expect for calls whose order is not defined.
func (r *recorder) expectUnordered(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case line := <-r.ch:
			got = append(got, line)
		case <-time.After(10 * time.Second):
			t.Fatalf("handler calls: got %q, want %q", got, want)
		}
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("handler calls: got %q, want %q in any order", got, want)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startInformer builds a pod informer over srv with node and owner indexes and
// a recorder, runs it until the test ends and waits for it to sync.
func startInformer(t *testing.T, srv *fakeServer, clk *fakeClock) (*Informer[*corev1.Pod], *recorder) {
	t.Helper()
	cfg := DefaultInformerConfig()
	cfg.Name, cfg.Logger, cfg.Clock = "pods", discardLogger(), clk
	inf, err := NewInformer[*corev1.Pod](srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := inf.AddIndex("node", func(p *corev1.Pod) []string { return []string{p.GetSpec().GetNodeName()} }); err != nil {
		t.Fatal(err)
	}
	if err := inf.AddIndex("owner", IndexByOwnerUID[*corev1.Pod]); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := inf.AddHandler(rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inf.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after ctx ended", err)
		}
	})
	return inf, rec
}

func waitSynced(t *testing.T, inf *Informer[*corev1.Pod]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := inf.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
}

// names returns the sorted names of objs.
func names[T Object](objs []T) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetMetadata().GetName())
	}
	slices.Sort(out)
	return out
}

func byIndex(t *testing.T, inf *Informer[*corev1.Pod], index, value string) []string {
	t.Helper()
	pods, err := inf.ByIndex(index, value)
	if err != nil {
		t.Fatal(err)
	}
	return names(pods)
}

func TestInformerListThenWatch(t *testing.T) {
	owned := pod("default", "b", "n2")
	owned.Metadata.OwnerReferences = []*metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Uid: "rs-1"}}
	srv := newFakeServer(pod("default", "a", "n1"), owned, pod("kube-system", "c", "n1"))
	inf, rec := startInformer(t, srv, newFakeClock())
	waitSynced(t, inf)
	if !inf.HasSynced() {
		t.Fatal("HasSynced false after WaitSynced")
	}
	rec.expect(t, "add default/a", "add default/b", "add kube-system/c")

	if p, ok := inf.Get("default", "a"); !ok || p.GetSpec().GetNodeName() != "n1" {
		t.Fatalf("Get(default, a) = %v, %v", p, ok)
	}
	if _, ok := inf.Get("default", "c"); ok {
		t.Fatal("Get(default, c) found a pod of another namespace")
	}
	if got := names(inf.ListNamespace("default")); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ListNamespace(default) = %v", got)
	}
	if got := names(inf.List()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("List = %v", got)
	}
	if got := byIndex(t, inf, "node", "n1"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("by node n1 = %v", got)
	}
	if got := byIndex(t, inf, "owner", "rs-1"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("by owner rs-1 = %v", got)
	}

	srv.put(pod("default", "d", "n1"))
	moved := pod("default", "b", "n1")
	srv.put(moved)
	srv.del("default", "a")
	rec.expect(t, "add default/d", "update default/b 2->5", "delete default/a")
	if got := byIndex(t, inf, "node", "n1"); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("by node n1 after changes = %v", got)
	}
	if got := byIndex(t, inf, "node", "n2"); len(got) != 0 {
		t.Fatalf("by node n2 after b moved = %v", got)
	}
	if got := byIndex(t, inf, "owner", "rs-1"); len(got) != 0 {
		t.Fatalf("by owner after b lost its owner = %v", got)
	}
	if _, ok := inf.GetByKey("default/a"); ok {
		t.Fatal("deleted pod still cached")
	}
	if got, want := inf.ResourceVersion(), srv.currentRV(); got != want {
		t.Fatalf("ResourceVersion = %s, want %s", got, want)
	}

	if _, err := inf.ByIndex("nope", "x"); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("ByIndex(unknown) = %v, want ErrUnknownIndex", err)
	}
	// An index and a handler added late see what is cached, then what changes.
	if err := inf.AddIndex("late", func(p *corev1.Pod) []string { return []string{p.GetSpec().GetNodeName()} }); err != nil {
		t.Fatalf("AddIndex after Run: %v", err)
	}
	if got := byIndex(t, inf, "late", "n1"); !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("late index n1 = %v", got)
	}
	if err := inf.AddIndex("late", IndexByOwnerUID[*corev1.Pod]); err == nil {
		t.Fatal("AddIndex with a taken name succeeded")
	}
	late := newRecorder()
	if err := inf.AddHandler(late); err != nil {
		t.Fatalf("AddHandler after Run: %v", err)
	}
	late.expectUnordered(t, "add default/b", "add default/d", "add kube-system/c")
	srv.del("default", "d")
	late.expect(t, "delete default/d")
	rec.expect(t, "delete default/d")
	if err := inf.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Run = %v, want ErrStarted", err)
	}
}

func TestInformerNotSyncedBeforeRun(t *testing.T) {
	cfg := DefaultInformerConfig()
	cfg.Logger = discardLogger()
	inf, err := NewInformer[*corev1.Pod](newFakeServer(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := inf.AddIndex(indexNamespace, IndexByOwnerUID[*corev1.Pod]); err == nil {
		t.Fatal("AddIndex took the built-in namespace index's name")
	}
	if inf.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := inf.WaitSynced(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitSynced with an ended ctx = %v", err)
	}
}

func TestInformerResumesAfterStreamError(t *testing.T) {
	srv := newFakeServer(pod("default", "a", ""))
	inf, rec := startInformer(t, srv, newFakeClock())
	waitSynced(t, inf)
	rec.expect(t, "add default/a")
	rvB := srv.put(pod("default", "b", ""))
	rec.expect(t, "add default/b")

	// c is committed while the stream is broken: only a resume from rvB sees it.
	srv.mute(true)
	srv.put(pod("default", "c", ""))
	srv.mute(false)
	srv.breakStreams(errors.New("connection reset"))
	rec.expect(t, "add default/c")

	// An ERROR event ends the stream like an error does: d, queued behind it on
	// that stream, arrives through a third watch from c's resourceVersion.
	rvC := srv.currentRV()
	srv.inject(WatchEvent[*corev1.Pod]{Type: EventError, Object: &corev1.Pod{Metadata: &metav1.ObjectMeta{}}})
	srv.put(pod("default", "d", ""))
	rec.expect(t, "add default/d")

	lists, watches := srv.calls()
	if lists != 1 {
		t.Fatalf("%d lists, want 1: a resumable stream error must not relist", lists)
	}
	if want := []string{"1", rvB, rvC}; !slices.Equal(watches, want) {
		t.Fatalf("watches from %v, want %v", watches, want)
	}
}

func TestInformerRelistsWhenGone(t *testing.T) {
	srv := newFakeServer(pod("default", "a", "n1"), pod("default", "b", "n1"), pod("default", "c", "n2"))
	clk := newFakeClock()
	inf, rec := startInformer(t, srv, clk)
	waitSynced(t, inf)
	rec.expect(t, "add default/a", "add default/b", "add default/c")
	waitUntil(t, "the first watch", func() bool { _, w := srv.calls(); return len(w) == 1 })

	// Changes the informer misses, then the history is compacted past them.
	srv.mute(true)
	srv.put(pod("default", "a", "n2"))
	srv.del("default", "b")
	srv.put(pod("default", "d", "n1"))
	srv.compact()
	srv.mute(false)
	srv.breakStreams(io.EOF)

	// The resume fails with ErrGone without progress: the relist waits MinBackoff.
	waitUntil(t, "the informer to back off", func() bool { return clk.Waiters() == 1 })
	if r := clk.Requests(); r[len(r)-1] != DefaultInformerConfig().MinBackoff {
		t.Fatalf("back-off before relist = %s", r[len(r)-1])
	}
	clk.Advance(DefaultInformerConfig().MinBackoff)

	// a changed, c did not (no call), d appeared, b vanished.
	rec.expect(t, "update default/a 1->4", "add default/d", "delete default/b")
	if got := names(inf.List()); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("cache after relist = %v", got)
	}
	if got := byIndex(t, inf, "node", "n1"); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("by node n1 after relist = %v", got)
	}
	if got := byIndex(t, inf, "node", "n2"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("by node n2 after relist = %v", got)
	}

	// The watch goes on from the relist.
	srv.put(pod("default", "e", ""))
	rec.expect(t, "add default/e")
	if lists, watches := srv.calls(); lists != 2 || len(watches) != 3 || watches[2] != "6" {
		t.Fatalf("lists %d, watches from %v; want 2 lists and a third watch from 6", lists, watches)
	}
}

func TestInformerBacksOffFailedLists(t *testing.T) {
	srv := newFakeServer(pod("default", "a", ""))
	srv.listErrs = []error{errors.New("e1"), errors.New("e2"), errors.New("e3"), errors.New("e4")}
	clk := newFakeClock()
	inf, rec := startInformer(t, srv, clk)
	// The first retry is immediate; then MinBackoff, doubling.
	for _, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		waitUntil(t, "a back-off timer", func() bool { return clk.Waiters() == 1 })
		if r := clk.Requests(); r[len(r)-1] != d {
			t.Fatalf("back-off %s, want %s (all: %v)", r[len(r)-1], d, r)
		}
		if inf.HasSynced() {
			t.Fatal("synced while lists fail")
		}
		clk.Advance(d)
	}
	waitSynced(t, inf)
	rec.expect(t, "add default/a")
	if lists, _ := srv.calls(); lists != 5 {
		t.Fatalf("%d lists, want 5", lists)
	}
}

func TestInformerConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*InformerConfig)
		ok   bool
	}{
		{"default", func(*InformerConfig) {}, true},
		{"no logger", func(c *InformerConfig) { c.Logger = nil }, false},
		{"no clock", func(c *InformerConfig) { c.Clock = nil }, false},
		{"zero min", func(c *InformerConfig) { c.MinBackoff = 0 }, false},
		{"max below min", func(c *InformerConfig) { c.MaxBackoff = c.MinBackoff / 2 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultInformerConfig()
			tc.edit(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	for _, tc := range []struct{ ns, name, key string }{
		{"default", "web", "default/web"},
		{"", "node-1", "node-1"},
	} {
		obj := &corev1.Pod{Metadata: &metav1.ObjectMeta{Namespace: tc.ns, Name: tc.name}}
		if got := KeyOf(obj); got != tc.key {
			t.Errorf("KeyOf(%s, %s) = %q, want %q", tc.ns, tc.name, got, tc.key)
		}
		if ns, name := SplitKey(tc.key); ns != tc.ns || name != tc.name {
			t.Errorf("SplitKey(%q) = %q, %q", tc.key, ns, name)
		}
	}
}

func TestFromGRPC(t *testing.T) {
	if err := fromGRPC(status.Error(codes.OutOfRange, "too old resource version")); !errors.Is(err, ErrGone) {
		t.Fatalf("OutOfRange -> %v, want ErrGone", err)
	}
	if err := fromGRPC(status.Error(codes.Unavailable, "no leader")); errors.Is(err, ErrGone) {
		t.Fatalf("Unavailable -> %v, must not be ErrGone", err)
	}
	if err := fromGRPC(io.EOF); err != io.EOF {
		t.Fatalf("io.EOF -> %v, want io.EOF unchanged", err)
	}
}

// TestInformerAgainstCluster runs a ConfigMap informer through the gRPC adapter
// against a follower of a real in-process 3-peer cluster.
func TestInformerAgainstCluster(t *testing.T) {
	c := testcluster.New(t, 3)
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	follower := (leader + 1) % len(c.Peers)
	writes := corev1.NewConfigMapsClient(c.Peers[leader].Conn)
	reads := corev1.NewConfigMapsClient(c.Peers[follower].Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := func(ns, name string) {
		t.Helper()
		_, err := writes.Create(ctx, &corev1.CreateConfigMapRequest{Namespace: ns,
			Body: &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}})
		if err != nil {
			t.Fatalf("create %s/%s: %v", ns, name, err)
		}
	}
	create("default", "before")

	cfg := DefaultInformerConfig()
	cfg.Name, cfg.Logger = "configmaps", discardLogger()
	inf, err := NewInformer(NewGRPCListWatcher(reads.List, reads.Watch, &metav1.ListRequest{Namespace: "default"}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex // guards calls
		calls []string
	)
	record := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	if err := inf.AddHandler(HandlerFuncs[*corev1.ConfigMap]{
		Add:    func(cm *corev1.ConfigMap) { record("add " + KeyOf(cm)) },
		Update: func(_, cm *corev1.ConfigMap) { record("update " + KeyOf(cm)) },
		Delete: func(cm *corev1.ConfigMap) { record("delete " + KeyOf(cm)) },
	}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- inf.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	if err := inf.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
	if _, ok := inf.Get("default", "before"); !ok {
		t.Fatal("the initial list missed default/before")
	}

	create("default", "a")
	create("default", "b")
	create("kube-system", "elsewhere") // outside the informer's namespace
	c.WaitFor(10*time.Second, "a and b in the cache", func() bool {
		_, okA := inf.Get("default", "a")
		_, okB := inf.Get("default", "b")
		return okA && okB
	})
	cm, _ := inf.Get("default", "a")
	if cm.GetData()["k"] != "a" {
		t.Fatalf("cached default/a = %v", cm)
	}

	if _, err := writes.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: "a"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	c.WaitFor(10*time.Second, "a gone from the cache", func() bool {
		_, ok := inf.Get("default", "a")
		return !ok
	})
	if _, ok := inf.Get("kube-system", "elsewhere"); ok {
		t.Fatal("the informer cached an object of another namespace")
	}
	got := names(inf.ListNamespace("default"))
	if !slices.Contains(got, "b") || !slices.Contains(got, "before") || slices.Contains(got, "a") {
		t.Fatalf("ListNamespace(default) = %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	var ours []string
	for _, call := range calls {
		switch call {
		case "add default/before", "add default/a", "add default/b", "delete default/a":
			ours = append(ours, call)
		}
	}
	if want := []string{"add default/before", "add default/a", "add default/b", "delete default/a"}; !slices.Equal(ours, want) {
		t.Fatalf("handler calls %q, want in order %q (all: %q)", ours, want, calls)
	}
}

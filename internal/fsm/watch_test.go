package fsm_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/fsm/fsmtest"
)

// drain reads every event w has ready now, failing on any error but the "nothing
// pending" one.
func drain(t *testing.T, w *fsm.Watcher) []fsm.Event {
	t.Helper()
	var out []fsm.Event
	for {
		ev, err := fsmtest.Pending(w)
		if errors.Is(err, context.Canceled) {
			return out
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		out = append(out, ev)
	}
}

// describe renders events as "RV TYPE Kind/ns/name" for comparison.
func describe(evs []fsm.Event) []string {
	var out []string
	for _, ev := range evs {
		md := ev.Object.GetMetadata()
		out = append(out, fmt.Sprintf("%d %s %s/%s/%s", ev.RV, ev.Type, ev.Kind, md.GetNamespace(), md.GetName()))
	}
	return out
}

func TestWatchEvents(t *testing.T) {
	f := withDefault(t)
	w, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}
	i1, created := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"v": "1"})))
	fsmtest.ApplyNext(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", nil))) // fails: no event
	fsmtest.MustApply(t, f, fsmtest.SetMember("m", "r", "g", "h"))                    // not an object: no event
	i2, updated := fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.ConfigMap("default", "cfg", map[string]string{"v": "2"}), ""))
	i3, deleted := fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "cfg"))

	for _, want := range []struct {
		typ        fsm.EventType
		rv         uint64
		obj, prev  fsm.Object
		objVersion string
	}{
		{fsm.Added, i1, created.Object, nil, rv(i1)},
		{fsm.Modified, i2, updated.Object, created.Object, rv(i2)},
		{fsm.Deleted, i3, deleted.Object, updated.Object, rv(i3)},
	} {
		ev := fsmtest.ReadyEvent(t, w)
		if ev.Type != want.typ || ev.RV != want.rv || ev.Kind != "ConfigMap" {
			t.Errorf("event %s %s rv %d, want %s ConfigMap rv %d", ev.Type, ev.Kind, ev.RV, want.typ, want.rv)
		}
		if !proto.Equal(ev.Object, want.obj) || ev.Object.GetMetadata().GetResourceVersion() != want.objVersion {
			t.Errorf("%s object = %v, want %v", ev.Type, ev.Object, want.obj)
		}
		if (want.prev == nil) != (ev.Prev == nil) || (want.prev != nil && !proto.Equal(ev.Prev, want.prev)) {
			t.Errorf("%s prev = %v, want %v", ev.Type, ev.Prev, want.prev)
		}
	}
	fsmtest.NoEvent(t, w)
}

func TestWatchReplaysFromRV(t *testing.T) {
	f := withDefault(t)                                                             // event at 1
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "a", nil))) // 2
	fsmtest.MustApply(t, f, fsmtest.Noop())                                         // 3: no event
	fsmtest.MustApply(t, f, fsmtest.Batch(                                          // 4: two events
		fsmtest.Create(fsmtest.ConfigMap("default", "b", nil)),
		fsmtest.Update(fsmtest.ConfigMap("default", "a", map[string]string{"k": "v"}), ""),
	))
	fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "b")) // 5
	all := []string{
		"1 ADDED Namespace//default",
		"2 ADDED ConfigMap/default/a",
		"4 ADDED ConfigMap/default/b",
		"4 MODIFIED ConfigMap/default/a",
		"5 DELETED ConfigMap/default/b",
	}
	for _, c := range []struct {
		from uint64
		want []string
	}{
		{0, all},
		{1, all[1:]},
		{2, all[2:]},
		{3, all[2:]},
		{4, all[4:]},
		{5, nil},
	} {
		t.Run(fmt.Sprint(c.from), func(t *testing.T) {
			if !f.CanWatchFrom(c.from) {
				t.Errorf("CanWatchFrom(%d) = false", c.from)
			}
			w, err := f.Watch(c.from, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(drain(t, w)); !slices.Equal(got, c.want) {
				t.Errorf("Watch(%d) replayed %q, want %q", c.from, got, c.want)
			}
		})
	}
}

// TestWatchFromFutureRVSkipsEarlierEvents is the regression test for a watch from a
// resourceVersion the FSM has not reached yet (a client that listed on a peer further
// ahead): it used to deliver every change after the current index, including those
// at or below fromRV that the client had already seen.
func TestWatchFromFutureRVSkipsEarlierEvents(t *testing.T) {
	f := withDefault(t) // applied 1
	w, err := f.Watch(4, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c", "d", "e"} { // 2..6
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", name, nil)))
	}
	want := []string{"5 ADDED ConfigMap/default/d", "6 ADDED ConfigMap/default/e"}
	if got := describe(drain(t, w)); !slices.Equal(got, want) {
		t.Errorf("Watch(4) at applied 1 delivered %q, want %q", got, want)
	}
}

func TestWatchTooSlow(t *testing.T) {
	const window = 4
	for _, c := range []struct {
		name   string
		behind int // events published after the watcher's position
		ok     bool
	}{
		{"just inside the window", window, true},
		{"one past the window", window + 1, false},
		{"far past the window", 3 * window, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fsmtest.NewWithWindow(t, window)
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default"))) // 1
			w, err := f.Watch(0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ev := fsmtest.ReadyEvent(t, w); ev.RV != 1 {
				t.Fatalf("first event rv %d, want 1", ev.RV)
			}
			for i := range c.behind {
				fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", fmt.Sprint(i), nil)))
			}
			var got []uint64
			for {
				ev, err := fsmtest.Pending(w)
				if errors.Is(err, context.Canceled) {
					break
				}
				if err != nil {
					if !errors.Is(err, fsm.ErrTooSlow) {
						t.Fatalf("err = %v, want ErrTooSlow", err)
					}
					if c.ok {
						t.Fatalf("watcher %d behind a window of %d closed: %v", c.behind, window, err)
					}
					// Closed for good: it never resumes past the gap.
					fsmtest.MustApply(t, f, fsmtest.Noop())
					if _, err := fsmtest.Pending(w); !errors.Is(err, fsm.ErrTooSlow) {
						t.Fatalf("after ErrTooSlow: %v", err)
					}
					break
				}
				got = append(got, ev.RV)
			}
			if c.ok && len(got) != c.behind {
				t.Fatalf("got %d events, want %d", len(got), c.behind)
			}
			if !c.ok && len(got) != 0 {
				t.Fatalf("a watcher out of the window delivered %v before ErrTooSlow", got)
			}
			for i, r := range got {
				if r != uint64(i+2) {
					t.Fatalf("events %v skip or reorder", got)
				}
			}
		})
	}
}

// TestWatchTooSlowNeverSkips races a reader against a writer with a small window:
// whatever the interleaving, the reader sees consecutive changes, then either all of
// them or ErrTooSlow.
func TestWatchTooSlowNeverSkips(t *testing.T) {
	const window, n = 8, 500
	f := fsmtest.NewWithWindow(t, window)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default"))) // 1
	w, err := f.Watch(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), fsmtest.EventTimeout)
		defer cancel()
		want := uint64(2)
		for want <= n+1 {
			ev, err := w.Next(ctx)
			if errors.Is(err, fsm.ErrTooSlow) {
				return
			}
			if err != nil {
				t.Errorf("watch: %v", err)
				return
			}
			if ev.RV != want {
				t.Errorf("got rv %d, want %d: an event was skipped", ev.RV, want)
				return
			}
			want++
		}
	}()
	for i := range n {
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", fmt.Sprint(i), nil)))
	}
	<-done
}

func TestWatchGone(t *testing.T) {
	const window = 3
	f := fsmtest.NewWithWindow(t, window)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default"))) // 1
	for _, name := range []string{"a", "b", "c", "d", "e"} {              // 2..6
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", name, nil)))
	}
	// The ring holds 4, 5 and 6: the changes at 1..3 are evicted.
	for _, c := range []struct {
		from uint64
		want []uint64 // nil with gone
		gone bool
	}{
		{from: 0, gone: true},
		{from: 2, gone: true},
		{from: 3, want: []uint64{4, 5, 6}},
		{from: 4, want: []uint64{5, 6}},
		{from: 6, want: nil},
	} {
		t.Run(fmt.Sprint(c.from), func(t *testing.T) {
			if got := f.CanWatchFrom(c.from); got == c.gone {
				t.Errorf("CanWatchFrom(%d) = %v", c.from, got)
			}
			w, err := f.Watch(c.from, nil)
			if c.gone {
				if !errors.Is(err, fsm.ErrGone) || w != nil {
					t.Fatalf("Watch(%d) = %v, %v, want ErrGone", c.from, w, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, ev := range drain(t, w) {
				got = append(got, ev.RV)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Watch(%d) delivered %v, want %v", c.from, got, c.want)
			}
		})
	}
}

// TestWatchGonePartialEntry checks that an entry whose events are only partly
// evicted counts as evicted: resuming from before it would miss some of them.
func TestWatchGonePartialEntry(t *testing.T) {
	f := fsmtest.NewWithWindow(t, 3)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default"))) // 1
	fsmtest.MustApply(t, f, fsmtest.Batch(                                // 2: three events
		fsmtest.Create(fsmtest.ConfigMap("default", "a", nil)),
		fsmtest.Create(fsmtest.ConfigMap("default", "b", nil)),
		fsmtest.Create(fsmtest.ConfigMap("default", "c", nil)),
	))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "d", nil))) // 3, evicts 2/a
	if _, err := f.Watch(1, nil); !errors.Is(err, fsm.ErrGone) {
		t.Fatalf("Watch(1) with part of entry 2 evicted: err = %v, want ErrGone", err)
	}
	w, err := f.Watch(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(drain(t, w)), []string{"3 ADDED ConfigMap/default/d"}; !slices.Equal(got, want) {
		t.Errorf("Watch(2) = %q, want %q", got, want)
	}
}

func TestWatchGoneAfterRestore(t *testing.T) {
	src := withDefault(t)
	for i := range 10 {
		fsmtest.MustApply(t, src, fsmtest.Create(fsmtest.ConfigMap("default", fmt.Sprint(i), nil)))
	}
	data := fsmtest.Snapshot(t, src)

	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "x", nil)))
	pending, err := f.Watch(0, nil) // has two events it has not read
	if err != nil {
		t.Fatal(err)
	}
	blocked, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fsmtest.EventTimeout)
		defer cancel()
		_, err := blocked.Next(ctx)
		errc <- err
	}()

	fsmtest.Restore(t, f, data)

	if err := <-errc; !errors.Is(err, fsm.ErrGone) {
		t.Errorf("blocked watcher: %v, want ErrGone", err)
	}
	if _, err := fsmtest.Pending(pending); !errors.Is(err, fsm.ErrGone) {
		t.Errorf("watcher with unread events: %v, want ErrGone", err)
	}
	if _, err := f.Watch(2, nil); !errors.Is(err, fsm.ErrGone) {
		t.Errorf("Watch from before the restored index: %v, want ErrGone", err)
	}
	w, err := f.Watch(src.Applied(), nil)
	if err != nil {
		t.Fatalf("Watch from the restored index: %v", err)
	}
	index, _ := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "after", nil)))
	if ev := fsmtest.ReadyEvent(t, w); ev.RV != index || ev.Object.GetMetadata().GetName() != "after" {
		t.Errorf("after restore: event %v", describe([]fsm.Event{ev}))
	}
}

func TestViewAndWatch(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "before", nil)))
	v, w := f.ViewAndWatch(nil)
	if v.Index != f.Applied() {
		t.Fatalf("view index %d, applied %d", v.Index, f.Applied())
	}
	if _, ok := v.Get("ConfigMap", "default", "before"); !ok {
		t.Fatal("the view misses a change at its index")
	}
	fsmtest.NoEvent(t, w) // nothing at or before the view's index

	i1, _ := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "after", nil)))
	i2, _ := fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "before"))
	want := []string{
		fmt.Sprintf("%d ADDED ConfigMap/default/after", i1),
		fmt.Sprintf("%d DELETED ConfigMap/default/before", i2),
	}
	if got := describe(drain(t, w)); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if _, ok := v.Get("ConfigMap", "default", "after"); ok {
		t.Error("the view sees a later change")
	}
}

// TestViewAndWatchConcurrent takes views and watches while commands are applied: each
// view plus its events must rebuild exactly the final state, with no change missed
// or delivered twice, whatever the interleaving.
func TestViewAndWatchConcurrent(t *testing.T) {
	f := withDefault(t)
	const n, readers = 400, 6
	var wg sync.WaitGroup
	results := make([]map[string]string, readers)
	start := make(chan struct{})
	for r := range readers {
		wg.Go(func() {
			<-start
			v, w := f.ViewAndWatch(func(ev fsm.Event) (fsm.Event, bool) { return ev, ev.Kind == "ConfigMap" })
			state := map[string]string{}
			v.List("ConfigMap", "", func(o fsm.Object) bool {
				state[o.GetMetadata().GetName()] = o.GetMetadata().GetResourceVersion()
				return true
			})
			last := uint64(n + 1) // the final index
			if v.Index < last {
				ctx, cancel := context.WithTimeout(context.Background(), fsmtest.EventTimeout)
				defer cancel()
				prev := v.Index
				for {
					ev, err := w.Next(ctx)
					if err != nil {
						t.Errorf("reader %d: %v", r, err)
						return
					}
					if ev.RV <= v.Index || ev.RV < prev {
						t.Errorf("reader %d: event at %d after view %d and event %d", r, ev.RV, v.Index, prev)
						return
					}
					prev = ev.RV
					name := ev.Object.GetMetadata().GetName()
					if ev.Type == fsm.Deleted {
						delete(state, name)
					} else {
						state[name] = ev.Object.GetMetadata().GetResourceVersion()
					}
					if ev.RV == last {
						break
					}
				}
			}
			results[r] = state
		})
	}
	close(start)
	for i := range n - 1 {
		name := fmt.Sprint(i % 17)
		switch {
		case i%5 == 4:
			fsmtest.ApplyNext(t, f, fsmtest.Delete("ConfigMap", "default", name))
		case i%3 == 0:
			fsmtest.ApplyNext(t, f, fsmtest.Create(fsmtest.ConfigMap("default", name, nil)))
		default:
			fsmtest.ApplyNext(t, f, fsmtest.Update(fsmtest.ConfigMap("default", name, map[string]string{"i": fmt.Sprint(i)}), ""))
		}
	}
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "last", nil))) // n+1
	wg.Wait()

	want := map[string]string{}
	f.View().List("ConfigMap", "", func(o fsm.Object) bool {
		want[o.GetMetadata().GetName()] = o.GetMetadata().GetResourceVersion()
		return true
	})
	for r, got := range results {
		if got == nil {
			continue // already reported
		}
		for name, v := range want {
			if got[name] != v {
				t.Errorf("reader %d: %s at rv %q, want %q", r, name, got[name], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("reader %d rebuilt %d objects, want %d", r, len(got), len(want))
		}
	}
}

func TestWatchFilter(t *testing.T) {
	f := withDefault(t)
	web := func(o fsm.Object) bool { return o != nil && o.GetMetadata().GetLabels()["app"] == "web" }
	// A label selector: an object that stops matching is DELETED for this watcher,
	// one that starts matching is ADDED.
	filter := func(ev fsm.Event) (fsm.Event, bool) {
		if ev.Kind != "ConfigMap" {
			return ev, false
		}
		if ev.Type != fsm.Modified {
			return ev, web(ev.Object)
		}
		now, before := web(ev.Object), web(ev.Prev)
		switch {
		case now && !before:
			ev.Type = fsm.Added
		case !now && before:
			ev.Type = fsm.Deleted
		}
		return ev, now || before
	}
	w, err := f.Watch(f.Applied(), filter)
	if err != nil {
		t.Fatal(err)
	}
	labelled := func(name, app string) *corev1.ConfigMap {
		cm := fsmtest.ConfigMap("default", name, nil)
		cm.Metadata.Labels = map[string]string{"app": app}
		return cm
	}
	pod := fsmtest.Pod("default", "p", "")
	pod.Metadata.Labels = map[string]string{"app": "web"}
	i1, _ := fsmtest.MustApply(t, f, fsmtest.Create(labelled("a", "web")))
	fsmtest.MustApply(t, f, fsmtest.Create(labelled("b", "db")))
	fsmtest.MustApply(t, f, fsmtest.Create(pod))
	i2, _ := fsmtest.MustApply(t, f, fsmtest.Update(labelled("b", "web"), ""))
	i3, _ := fsmtest.MustApply(t, f, fsmtest.Update(labelled("a", "db"), ""))
	fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "a"))
	i4, _ := fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "b"))

	want := []string{
		fmt.Sprintf("%d ADDED ConfigMap/default/a", i1),
		fmt.Sprintf("%d ADDED ConfigMap/default/b", i2),
		fmt.Sprintf("%d DELETED ConfigMap/default/a", i3),
		fmt.Sprintf("%d DELETED ConfigMap/default/b", i4),
	}
	if got := describe(drain(t, w)); !slices.Equal(got, want) {
		t.Errorf("filtered events %q, want %q", got, want)
	}
}

func TestWatchNextContext(t *testing.T) {
	f := withDefault(t)
	w, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	if _, err := w.Next(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: err = %v, want context.DeadlineExceeded", err)
	}

	// A cancelled Next loses nothing: the watcher carries on from where it was.
	index, _ := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "x", nil)))
	if ev := fsmtest.ReadyEvent(t, w); ev.RV != index {
		t.Errorf("after cancellation: event at %d, want %d", ev.RV, index)
	}
}

// TestWatchConcurrentReaders has many watchers, some filtered, read a stream of
// applies as it happens; each sees every change it accepts exactly once, in order.
func TestWatchConcurrentReaders(t *testing.T) {
	f := withDefault(t)
	const n, readers = 500, 8
	start := f.Applied()
	var wg sync.WaitGroup
	for r := range readers {
		var filter fsm.Filter
		if r%2 == 1 {
			filter = func(ev fsm.Event) (fsm.Event, bool) { return ev, ev.RV%2 == 0 }
		}
		w, err := f.Watch(start, filter)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), fsmtest.EventTimeout)
			defer cancel()
			want := start + 1
			for want <= start+n {
				if filter != nil && want%2 == 1 {
					want++
					continue
				}
				ev, err := w.Next(ctx)
				if err != nil {
					t.Errorf("reader %d: %v", r, err)
					return
				}
				if ev.RV != want {
					t.Errorf("reader %d: event at %d, want %d", r, ev.RV, want)
					return
				}
				want++
			}
		})
	}
	for i := range n {
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", fmt.Sprint(i), nil)))
	}
	wg.Wait()
}

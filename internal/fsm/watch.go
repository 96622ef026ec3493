package fsm

import (
	"context"
	"sort"
	"sync"
)

// EventType is the Kubernetes watch event type.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one applied change. Object is the new state (for Deleted, the last state
// stamped with the deletion's resourceVersion); Prev is the state before (nil for
// Added). Both are shared and read-only.
type Event struct {
	Type   EventType
	RV     uint64
	Kind   string
	Object Object
	Prev   Object
}

// Filter decides what a watcher receives: it returns the event to deliver (possibly
// with a different type, e.g. DELETED when an object stops matching a selector) and
// whether to deliver it. A nil Filter delivers everything. It runs on the watcher's
// goroutine and must not block.
type Filter func(Event) (Event, bool)

// Broadcaster keeps the last window changes in a ring and lets any number of watchers
// read them at their own pace. A watcher never holds a private queue: it holds a
// position in the ring. One that falls out of the window is closed with ErrTooSlow,
// so it never skips an event silently.
type Broadcaster struct {
	mu sync.Mutex // guards every field below
	// ring holds events with sequence numbers [first, next); event seq s is at
	// ring[s % len(ring)].
	ring        []Event
	first, next uint64
	// evictedRV is the highest resourceVersion no longer fully in the ring; a watch
	// from below it would miss changes.
	evictedRV uint64
	// epoch changes on reset; watchers from an older epoch are gone.
	epoch uint64
	wake  chan struct{} // closed and replaced on every publish and reset
}

// NewBroadcaster returns a broadcaster that keeps window events.
func NewBroadcaster(window int) *Broadcaster {
	return &Broadcaster{ring: make([]Event, window), wake: make(chan struct{})}
}

func (b *Broadcaster) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	n := uint64(len(b.ring))
	for _, ev := range events {
		if b.next-b.first == n {
			old := b.ring[b.first%n]
			b.evictedRV = max(b.evictedRV, old.RV)
			b.ring[b.first%n] = Event{}
			b.first++
		}
		b.ring[b.next%n] = ev
		b.next++
	}
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// reset drops the whole history: the state jumped to index by a snapshot restore.
func (b *Broadcaster) reset(index uint64) {
	b.mu.Lock()
	clear(b.ring)
	b.first = b.next
	b.evictedRV = index
	b.epoch++
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

func (b *Broadcaster) subscribe(fromRV uint64, filter Filter) (*Watcher, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fromRV < b.evictedRV {
		return nil, ErrGone
	}
	n := uint64(len(b.ring))
	count := int(b.next - b.first)
	i := sort.Search(count, func(i int) bool { return b.ring[(b.first+uint64(i))%n].RV > fromRV })
	return &Watcher{b: b, cursor: b.first + uint64(i), epoch: b.epoch, after: fromRV, filter: filter}, nil
}

// Watcher reads changes in order from a Broadcaster. It is used by one goroutine.
type Watcher struct {
	b      *Broadcaster
	cursor uint64
	epoch  uint64
	// after is the resourceVersion the watch started from. A peer may be asked for
	// a watch from a version it has not applied yet; events at or below it are
	// skipped when they arrive.
	after  uint64
	filter Filter
}

// Next blocks until the next change the filter accepts, ctx ends (ctx.Err()), or the
// watcher is closed: ErrTooSlow when it fell out of the window, ErrGone when the
// history was replaced by a snapshot.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		b := w.b
		b.mu.Lock()
		if b.epoch != w.epoch {
			b.mu.Unlock()
			return Event{}, ErrGone
		}
		if w.cursor < b.first {
			b.mu.Unlock()
			return Event{}, ErrTooSlow
		}
		if w.cursor < b.next {
			ev := b.ring[w.cursor%uint64(len(b.ring))]
			w.cursor++
			b.mu.Unlock()
			if ev.RV <= w.after {
				continue
			}
			if w.filter == nil {
				return ev, nil
			}
			if out, ok := w.filter(ev); ok {
				return out, nil
			}
			continue
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// CanWatchFrom reports whether a watch from fromRV would start (not ErrGone).
func (f *FSM) CanWatchFrom(fromRV uint64) bool {
	f.watch.mu.Lock()
	defer f.watch.mu.Unlock()
	return fromRV >= f.watch.evictedRV
}

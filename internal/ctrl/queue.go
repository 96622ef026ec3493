package ctrl

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// QueueConfig configures a Queue.
type QueueConfig struct {
	// BaseDelay is AddRateLimited's first delay for a key; each further failure
	// doubles it, up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	Clock     Clock
}

// DefaultQueueConfig returns client-go's per-item defaults: 5ms doubling up to
// 1000s, on the real clock.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{BaseDelay: 5 * time.Millisecond, MaxDelay: 1000 * time.Second, Clock: RealClock()}
}

// Validate checks the settings.
func (c QueueConfig) Validate() error {
	if c.BaseDelay <= 0 {
		return fmt.Errorf("queue base delay must be positive, got %s", c.BaseDelay)
	}
	if c.MaxDelay < c.BaseDelay {
		return fmt.Errorf("queue max delay %s must be at least the base delay %s", c.MaxDelay, c.BaseDelay)
	}
	if c.Clock == nil {
		return fmt.Errorf("queue clock must be set")
	}
	return nil
}

// Queue is a de-duplicating, rate-limited work queue of keys ("namespace/name"),
// with client-go's workqueue semantics:
//
//   - A key added while it waits in the queue is queued once.
//   - A key added while a worker processes it (between Get and Done) is not
//     handed to another worker; Done queues it again, so it is processed once
//     more, after the current pass, and never by two workers at once.
//   - AddAfter and AddRateLimited hold a key until its time comes, then Add it;
//     for a key already held, the earlier time wins.
//
// The queue owns no goroutine: delayed keys are moved to the queue by Get and
// Len when the clock says they are due. It has no Close: Get returns ("", false)
// once its ctx ends, so workers sharing a leadership term's ctx all stop with
// it, and the queue is then dropped (a new term builds a new one). Every method
// may be called from any goroutine.
type Queue struct {
	cfg QueueConfig

	mu sync.Mutex // guards every field below
	// ready holds keys waiting for a worker, in FIFO order; each key is in it at
	// most once and is then also in dirty.
	ready []string
	// dirty holds keys that need a (further) pass: those in ready and those
	// added while being processed.
	dirty map[string]struct{}
	// processing holds keys handed out by Get and not yet Done.
	processing map[string]struct{}
	// delayed holds keys added with a delay, by when they are due; heap may
	// also hold stale entries (a key whose due time moved earlier, or that
	// already fired), recognised by not matching delayed.
	delayed map[string]time.Time
	heap    dueHeap
	// failures counts AddRateLimited calls per key since its last Forget.
	failures map[string]int
	// wake, when not nil, is closed to wake every Get blocked on an empty queue.
	wake chan struct{}
}

// NewQueue returns an empty queue.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Queue{
		cfg:        cfg,
		dirty:      map[string]struct{}{},
		processing: map[string]struct{}{},
		delayed:    map[string]time.Time{},
		failures:   map[string]int{},
	}, nil
}

// Add queues key for processing unless it is already waiting for a worker.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if _, ok := q.dirty[key]; ok {
		return
	}
	q.dirty[key] = struct{}{}
	if _, ok := q.processing[key]; ok {
		return // Done queues it
	}
	q.ready = append(q.ready, key)
	q.wakeLocked()
}

func (q *Queue) wakeLocked() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// AddAfter adds key once d has passed on the queue's clock; d <= 0 adds it now.
// If key is already held for later, the earlier of the two times is kept.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	at := q.cfg.Clock.Now().Add(d)
	if cur, ok := q.delayed[key]; ok && !at.Before(cur) {
		return
	}
	q.delayed[key] = at
	heap.Push(&q.heap, dueEntry{key: key, at: at})
	q.wakeLocked() // a blocked Get must re-arm its timer for an earlier due time
}

// AddRateLimited adds key after its back-off: BaseDelay * 2^n, capped at
// MaxDelay, where n counts the earlier AddRateLimited calls for key since its
// last Forget. Workers call it when a pass failed and should be retried.
func (q *Queue) AddRateLimited(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	q.AddAfter(key, backoff(q.cfg.BaseDelay, q.cfg.MaxDelay, n))
}

// backoff returns base * 2^n capped at limit.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := float64(base) * math.Pow(2, float64(n))
	if d >= float64(limit) {
		return limit
	}
	return time.Duration(d)
}

// Forget resets key's back-off; workers call it after a successful pass. It
// does not remove key from the queue.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// NumRequeues returns how many AddRateLimited calls key had since its last
// Forget, so a worker can give up on a key after some number of retries.
func (q *Queue) NumRequeues(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get blocks until a key is ready and returns it with true; the caller must
// call Done(key) when its pass ends. Once ctx ends Get returns ("", false),
// even if keys are ready: workers stop as soon as their term does.
func (q *Queue) Get(ctx context.Context) (string, bool) {
	for {
		if ctx.Err() != nil {
			return "", false
		}
		q.mu.Lock()
		now := q.cfg.Clock.Now()
		q.promoteLocked(now)
		if len(q.ready) > 0 {
			key := q.ready[0]
			q.ready[0] = ""
			q.ready = q.ready[1:]
			delete(q.dirty, key)
			q.processing[key] = struct{}{}
			q.mu.Unlock()
			return key, true
		}
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake := q.wake
		var due <-chan time.Time
		var timer Timer
		if next, ok := q.nextDueLocked(); ok {
			timer = q.cfg.Clock.NewTimer(next.Sub(now))
			due = timer.C()
		}
		q.mu.Unlock()
		select {
		case <-wake:
		case <-due:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Done ends the pass over key that Get started. If key was added meanwhile, it
// is queued again now.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if _, ok := q.dirty[key]; ok {
		q.ready = append(q.ready, key)
		q.wakeLocked()
	}
}

// Len returns the number of keys ready for a worker: not those held for later,
// nor those being processed.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promoteLocked(q.cfg.Clock.Now())
	return len(q.ready)
}

// promoteLocked adds every delayed key due at or before now.
func (q *Queue) promoteLocked(now time.Time) {
	for len(q.heap) > 0 {
		e := q.heap[0]
		if e.at.After(now) {
			return
		}
		heap.Pop(&q.heap)
		if at, ok := q.delayed[e.key]; ok && at.Equal(e.at) {
			delete(q.delayed, e.key)
			q.addLocked(e.key)
		}
	}
}

// nextDueLocked returns the earliest due time of a delayed key.
func (q *Queue) nextDueLocked() (time.Time, bool) {
	for len(q.heap) > 0 {
		e := q.heap[0]
		if at, ok := q.delayed[e.key]; ok && at.Equal(e.at) {
			return e.at, true
		}
		heap.Pop(&q.heap) // stale
	}
	return time.Time{}, false
}

type dueEntry struct {
	key string
	at  time.Time
}

// dueHeap is a min-heap of dueEntry by time (container/heap).
type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Work takes keys from q until ctx ends and runs sync on each, one at a time:
// a key that failed is logged and retried with its back-off, one that
// succeeded is forgotten and, when sync asks for a later look, queued again
// after that delay. Run it in as many goroutines as the loop has workers.
func (q *Queue) Work(ctx context.Context, logger *slog.Logger, sync func(context.Context, string) (time.Duration, error)) {
	for {
		key, ok := q.Get(ctx)
		if !ok {
			return
		}
		after, err := sync(ctx, key)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Debug("sync", "key", key, "err", err)
			q.AddRateLimited(key)
		case err == nil:
			q.Forget(key)
			if after > 0 {
				q.AddAfter(key, after)
			}
		}
		q.Done(key)
	}
}

// noRequeue adapts a sync that never asks for a later look to Work.
func noRequeue(sync func(context.Context, string) error) func(context.Context, string) (time.Duration, error) {
	return func(ctx context.Context, key string) (time.Duration, error) { return 0, sync(ctx, key) }
}

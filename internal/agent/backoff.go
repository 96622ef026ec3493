package agent

import (
	"sync"
	"time"
)

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

// Restart back-off, as the kubelet's: 10 s after the first failure of a
// container, doubling with each failure up to 5 minutes; a container whose
// last failure is more than twice the maximum in the past starts over at 10 s.
const (
	BackoffInitial = 10 * time.Second
	BackoffMax     = 5 * time.Minute
)

// Backoff tracks the restart delay of each container (key: pod UID and
// container name). Safe for concurrent use.
type Backoff struct {
	clock        Clock
	initial, max time.Duration

	mu      sync.Mutex
	entries map[string]*backoffEntry
}

type backoffEntry struct {
	delay time.Duration
	last  time.Time // when the delay was last raised
}

// NewBackoff returns the kubelet's back-off (BackoffInitial to BackoffMax).
func NewBackoff(clock Clock) *Backoff {
	return &Backoff{clock: clock, initial: BackoffInitial, max: BackoffMax, entries: map[string]*backoffEntry{}}
}

// Failed records that the container key just failed and returns the delay
// before it may start again.
func (b *Backoff) Failed(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	e, ok := b.entries[key]
	switch {
	case !ok || now.Sub(e.last) > 2*b.max:
		e = &backoffEntry{delay: b.initial}
		b.entries[key] = e
	default:
		e.delay = min(2*e.delay, b.max)
	}
	e.last = now
	return e.delay
}

// Delay is the back-off of the container key, and whether it has one.
func (b *Backoff) Delay(key string) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	if !ok {
		return 0, false
	}
	return e.delay, true
}

// Wait returns how long the container key must still wait before a restart,
// counting from finishedAt, its last exit (0: it may start now).
func (b *Backoff) Wait(key string, finishedAt time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[key]
	if !ok {
		return 0
	}
	return max(0, finishedAt.Add(e.delay).Sub(b.clock.Now()))
}

// Forget drops key (the pod is gone).
func (b *Backoff) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, key)
}

package ctrl

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock whose time moves only by Advance; timers fire then.
// Tests of this package (and of the controllers that will live in it) use it
// so that nothing sleeps for a back-off or a delayed add.
type fakeClock struct {
	mu       sync.Mutex // guards every field below
	now      time.Time
	timers   []*fakeTimer    // pending, not stopped
	requests []time.Duration // every NewTimer duration, in order
}

var _ Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, d)
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, p := range t.c.timers {
		if p == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves time forward by d and fires every timer due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	pending := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			pending = append(pending, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = pending
}

// Waiters returns the number of pending timers.
func (c *fakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Requests returns the durations of every timer made so far.
func (c *fakeClock) Requests() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.requests...)
}

// waitUntil polls cond until it holds, failing the test after a generous real
// timeout. It waits for other goroutines to get somewhere, never for a timer.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSleep(t *testing.T) {
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sleep(ctx, clk, 0); err != nil {
		t.Fatalf("sleep(0) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep(ctx, clk, time.Second) }()
	waitUntil(t, "the sleeper's timer", func() bool { return clk.Waiters() == 1 })
	clk.Advance(999 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("sleep returned %v before its time", err)
	default:
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("sleep = %v, want nil", err)
	}

	go func() { done <- sleep(ctx, clk, time.Hour) }()
	waitUntil(t, "the sleeper's timer", func() bool { return clk.Waiters() == 1 })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("sleep after cancel = %v, want context.Canceled", err)
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers left pending after sleep returned", n)
	}
}

package ctrl

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func newTestQueue(t *testing.T) (*Queue, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg := DefaultQueueConfig()
	cfg.Clock = clk
	q, err := NewQueue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q, clk
}

// mustGet takes the next key, which must be ready now.
func mustGet(t *testing.T, q *Queue) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, ok := q.Get(ctx)
	if !ok {
		t.Fatal("Get: no key")
	}
	return key
}

func wantLen(t *testing.T, q *Queue, n int) {
	t.Helper()
	if got := q.Len(); got != n {
		t.Fatalf("Len = %d, want %d", got, n)
	}
}

func TestQueueConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*QueueConfig)
		ok   bool
	}{
		{"default", func(*QueueConfig) {}, true},
		{"zero base", func(c *QueueConfig) { c.BaseDelay = 0 }, false},
		{"max below base", func(c *QueueConfig) { c.MaxDelay = c.BaseDelay / 2 }, false},
		{"no clock", func(c *QueueConfig) { c.Clock = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultQueueConfig()
			tc.edit(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestQueueDeduplicates(t *testing.T) {
	q, _ := newTestQueue(t)
	q.Add("a")
	q.Add("b")
	q.Add("a")
	wantLen(t, q, 2)
	if k := mustGet(t, q); k != "a" {
		t.Fatalf("first key %q, want a (FIFO)", k)
	}
	if k := mustGet(t, q); k != "b" {
		t.Fatalf("second key %q, want b", k)
	}
	wantLen(t, q, 0)
	q.Done("a")
	q.Done("b")
	wantLen(t, q, 0)
}

func TestQueueReAddWhileProcessing(t *testing.T) {
	q, _ := newTestQueue(t)
	q.Add("a")
	if k := mustGet(t, q); k != "a" {
		t.Fatalf("got %q", k)
	}
	q.Add("a")
	q.Add("a")
	wantLen(t, q, 0) // not handed to a second worker while the first has it

	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		k, _ := q.Get(ctx)
		got <- k
	}()
	select {
	case k := <-got:
		t.Fatalf("second worker got %q while it was being processed", k)
	case <-time.After(20 * time.Millisecond):
	}
	q.Done("a")
	select {
	case k := <-got:
		if k != "a" {
			t.Fatalf("after Done got %q, want a", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("key re-added during processing was not queued again by Done")
	}
	q.Done("a")
	wantLen(t, q, 0) // the two adds during processing made one more pass, not two
}

func TestQueueGetWakesOnAdd(t *testing.T) {
	q, _ := newTestQueue(t)
	got := make(chan string, 1)
	go func() { got <- mustGet(t, q) }()
	time.Sleep(5 * time.Millisecond) // let Get block; correctness does not depend on it
	q.Add("x")
	if k := <-got; k != "x" {
		t.Fatalf("got %q", k)
	}
}

func TestQueueGetEndsWithContext(t *testing.T) {
	q, _ := newTestQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	go func() {
		_, ok := q.Get(ctx)
		done <- ok
	}()
	cancel()
	if ok := <-done; ok {
		t.Fatal("Get returned a key after its ctx ended")
	}
	q.Add("a")
	if _, ok := q.Get(ctx); ok {
		t.Fatal("Get with an ended ctx returned a key")
	}
}

func TestQueueAddAfter(t *testing.T) {
	q, clk := newTestQueue(t)
	q.AddAfter("now", 0)
	wantLen(t, q, 1)
	mustGet(t, q)
	q.Done("now")

	q.AddAfter("a", 10*time.Second)
	q.AddAfter("a", time.Second) // earlier wins
	q.AddAfter("a", time.Minute) // later loses
	q.AddAfter("b", 2*time.Second)
	wantLen(t, q, 0)
	clk.Advance(999 * time.Millisecond)
	wantLen(t, q, 0)
	clk.Advance(time.Millisecond)
	wantLen(t, q, 1)
	if k := mustGet(t, q); k != "a" {
		t.Fatalf("got %q, want a", k)
	}
	q.Done("a")
	clk.Advance(time.Second)
	if k := mustGet(t, q); k != "b" {
		t.Fatalf("got %q, want b", k)
	}
	q.Done("b")
	clk.Advance(time.Hour) // the superseded entries for a must not fire
	wantLen(t, q, 0)
}

func TestQueueGetWaitsForDelayedKey(t *testing.T) {
	q, clk := newTestQueue(t)
	q.AddAfter("a", time.Minute)
	got := make(chan string, 1)
	go func() { got <- mustGet(t, q) }()
	waitUntil(t, "Get to arm a timer", func() bool { return clk.Waiters() == 1 })
	q.AddAfter("b", time.Second) // Get must re-arm for the earlier key
	waitUntil(t, "Get to re-arm its timer", func() bool {
		r := clk.Requests()
		return clk.Waiters() == 1 && r[len(r)-1] == time.Second
	})
	clk.Advance(time.Second)
	if k := <-got; k != "b" {
		t.Fatalf("got %q, want b", k)
	}
}

func TestQueueRateLimited(t *testing.T) {
	q, clk := newTestQueue(t)
	for i, want := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond} {
		if n := q.NumRequeues("a"); n != i {
			t.Fatalf("NumRequeues = %d, want %d", n, i)
		}
		q.AddRateLimited("a")
		clk.Advance(want - time.Nanosecond)
		wantLen(t, q, 0)
		clk.Advance(time.Nanosecond)
		wantLen(t, q, 1)
		mustGet(t, q)
		q.Done("a")
	}
	q.AddRateLimited("b") // keys back off independently
	clk.Advance(5 * time.Millisecond)
	wantLen(t, q, 1)
	mustGet(t, q)
	q.Done("b")

	q.Forget("a")
	if n := q.NumRequeues("a"); n != 0 {
		t.Fatalf("NumRequeues after Forget = %d", n)
	}
	q.AddRateLimited("a")
	clk.Advance(5 * time.Millisecond)
	wantLen(t, q, 1)
}

func TestBackoff(t *testing.T) {
	base, limit := 5*time.Millisecond, 1000*time.Second
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, 5 * time.Millisecond},
		{1, 10 * time.Millisecond},
		{10, 5120 * time.Millisecond},
		{17, 655360 * time.Millisecond},
		{18, limit},
		{1000, limit}, // no overflow
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			if got := backoff(base, limit, tc.n); got != tc.want {
				t.Fatalf("backoff(%d) = %s, want %s", tc.n, got, tc.want)
			}
		})
	}
}

// TestQueueWorkers runs several workers over many adds of few keys and checks
// that no key is ever processed by two workers at once.
func TestQueueWorkers(t *testing.T) {
	q, _ := newTestQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu     sync.Mutex // guards active and passes
		active = map[string]bool{}
		passes = map[string]int{}
		wg     sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, ok := q.Get(ctx)
				if !ok {
					return
				}
				mu.Lock()
				if active[key] {
					t.Errorf("key %s processed by two workers at once", key)
				}
				active[key] = true
				mu.Unlock()
				time.Sleep(time.Microsecond)
				mu.Lock()
				active[key] = false
				passes[key]++
				mu.Unlock()
				q.Done(key)
			}
		}()
	}
	for i := range 2000 {
		q.Add(fmt.Sprintf("k%d", i%10))
	}
	waitUntil(t, "workers to drain the queue", func() bool {
		mu.Lock()
		defer mu.Unlock()
		busy := false
		for _, a := range active {
			busy = busy || a
		}
		return q.Len() == 0 && !busy && len(passes) == 10
	})
	cancel()
	wg.Wait()
}

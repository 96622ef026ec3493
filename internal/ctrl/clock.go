package ctrl

import (
	"context"
	"time"
)

// Clock is the time source of queues and informers. Production code uses
// RealClock; tests inject a fake whose timers fire only when the test advances
// it, so no test sleeps waiting for a back-off or a delayed add.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer whose channel receives once, d after Now.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that Clock users need.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did so.
	Stop() bool
}

// RealClock returns the Clock backed by package time.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// sleep waits d on c, returning ctx.Err() if ctx ends first. A d <= 0 returns
// at once (nil unless ctx has already ended).
func sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package hollow

import (
	"container/heap"
	"time"
)

// timer is one scheduled wake-up of the loop. Entries are never removed early:
// when one fires, fn checks whether it is still wanted (the due time it was
// scheduled for still stands).
type timer struct {
	due time.Time
	fn  func()
}

// timers is a min-heap by due time, owned by the loop goroutine.
type timers []timer

func (t timers) Len() int           { return len(t) }
func (t timers) Less(i, j int) bool { return t[i].due.Before(t[j].due) }
func (t timers) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timers) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timers) Pop() any {
	old := *t
	x := old[len(old)-1]
	old[len(old)-1] = timer{}
	*t = old[:len(old)-1]
	return x
}

func (t *timers) add(due time.Time, fn func()) { heap.Push(t, timer{due: due, fn: fn}) }

// popDue removes and returns the timers due at or before now, earliest first.
func (t *timers) popDue(now time.Time) []timer {
	var out []timer
	for t.Len() > 0 && !(*t)[0].due.After(now) {
		out = append(out, heap.Pop(t).(timer))
	}
	return out
}

// next returns the earliest due time.
func (t timers) next() (time.Time, bool) {
	if len(t) == 0 {
		return time.Time{}, false
	}
	return t[0].due, true
}

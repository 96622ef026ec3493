package check

import (
	"strings"
	"testing"
)

func ev(typ, key, value, rv string) WatchEvent {
	return WatchEvent{Type: typ, Key: key, Value: value, RV: rv}
}

func added(key, value, rv string) WatchEvent    { return ev(EventAdded, key, value, rv) }
func modified(key, value, rv string) WatchEvent { return ev(EventModified, key, value, rv) }
func deleted(key, value, rv string) WatchEvent  { return ev(EventDeleted, key, value, rv) }
func resume(rv string) WatchEvent               { return WatchEvent{Type: EventResume, RV: rv} }
func bookmark(rv string) WatchEvent             { return WatchEvent{Type: EventBookmark, RV: rv} }
func reset() WatchEvent                         { return WatchEvent{Type: EventReset} }

func TestWatches(t *testing.T) {
	// full is everything that happened, from rv 3 on.
	full := []WatchEvent{
		added("a", "1", "3"), added("b", "1", "4"), modified("a", "2", "5"),
		modified("b", "2", "6"), modified("a", "3", "7"), deleted("b", "2", "8"),
		modified("a", "4", "9"), added("b", "5", "10"),
	}
	from := func(i int) []WatchEvent { return append([]WatchEvent{}, full[i:]...) }
	cat := func(parts ...[]WatchEvent) []WatchEvent {
		var out []WatchEvent
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	one := func(e ...WatchEvent) []WatchEvent { return e }

	tests := []struct {
		name     string
		streams  [][]WatchEvent
		problems []string // substrings, one per problem, in order
	}{
		{name: "no watchers"},
		{name: "identical watchers", streams: [][]WatchEvent{full, full, full}},
		{name: "a watcher that started later", streams: [][]WatchEvent{full, cat(one(resume("5")), from(3))}},
		{
			name: "resume segments from the last version seen",
			streams: [][]WatchEvent{full, cat(
				full[:2], one(resume("4")), full[2:5], one(resume("7")), one(resume("7")), from(5))},
		},
		{
			name:    "resume from a later version skips what it does not cover",
			streams: [][]WatchEvent{full, cat(full[:2], one(resume("7")), from(5))},
		},
		{
			name: "relist after losing its place: a snapshot in any order, then live events",
			streams: [][]WatchEvent{full, cat(full[:3], one(reset(), resume("0"),
				added("b", "2", "6"), added("a", "3", "7")), from(5))},
		},
		{
			name:    "resume from an earlier version redelivers",
			streams: [][]WatchEvent{full, cat(full[:5], one(resume("4")), from(2))},
		},
		{
			name:    "several keys in one entry",
			streams: [][]WatchEvent{{added("b", "1", "3"), added("a", "1", "3"), modified("a", "2", "4")}, {added("a", "1", "3"), added("b", "1", "3"), modified("a", "2", "4")}},
		},
		{
			name:    "bookmark ends a snapshot",
			streams: [][]WatchEvent{full, cat(one(added("b", "2", "6"), added("a", "2", "5"), bookmark("6")), from(4))},
		},
		{
			name:    "gap",
			streams: [][]WatchEvent{full, cat(full[:4], from(5))},
			// The stream began without RESUME, so its leading ADDED events count
			// as the initial snapshot and coverage starts at the first other one.
			problems: []string{`watcher 1 segment 0: gap: missed 1 events of key "a" within rv (4, 10] it covered: MODIFIED "3" rv=7`},
		},
		{
			name:     "gap after resuming",
			streams:  [][]WatchEvent{full, cat(full[:3], one(resume("5")), from(4))},
			problems: []string{`watcher 1 segment 1: gap: missed 1 events of key "b" within rv (5, 10] it covered: MODIFIED "2" rv=6`},
		},
		{
			name:     "gap after a snapshot",
			streams:  [][]WatchEvent{full, cat(one(resume("0"), added("a", "2", "5"), added("b", "2", "6")), full[4:5], full[6:])},
			problems: []string{`watcher 1 segment 0: gap: missed 1 events of key "b" within rv (6, 10] it covered: DELETED "2" rv=8`},
		},
		{
			name:     "reorder after a snapshot",
			streams:  [][]WatchEvent{full, cat(one(resume("0"), added("a", "2", "5"), added("b", "2", "6")), full[6:7], full[5:6], full[7:])},
			problems: []string{`watcher 1 event 4 (DELETED "b" rv=8): out of order: after rv=9`},
		},
		{
			name:     "duplicate",
			streams:  [][]WatchEvent{full, cat(full[:4], full[3:])},
			problems: []string{`watcher 1 event 4 (MODIFIED "b" rv=6): duplicate`},
		},
		{
			name:     "duplicate across a resume",
			streams:  [][]WatchEvent{full, cat(full[:4], one(resume("6")), full[3:])},
			problems: []string{`watcher 1 event 5 (MODIFIED "b" rv=6): duplicate`},
		},
		{
			name:     "reorder",
			streams:  [][]WatchEvent{full, cat(full[:3], one(full[4], full[3]), full[5:])},
			problems: []string{`watcher 1 event 4 (MODIFIED "b" rv=6): out of order: after rv=7`},
		},
		{
			name:     "event at the version resumed from",
			streams:  [][]WatchEvent{full, cat(full[:3], one(resume("5")), full[2:])},
			problems: []string{`watcher 1 event 4 (MODIFIED "a" rv=5): duplicate`},
		},
		{
			name:     "event before a bookmark's promise",
			streams:  [][]WatchEvent{full, cat(full[:3], one(bookmark("6")), full[3:])},
			problems: []string{`(MODIFIED "b" rv=6): out of order: at or before rv=6`},
		},
		{
			name:     "watchers disagree on an event",
			streams:  [][]WatchEvent{full, cat(full[:4], one(modified("a", "X", "7")), full[5:])},
			problems: []string{`watchers 0 and 1 disagree on key "a" at rv=7: MODIFIED "3" vs MODIFIED "X"`},
		},
		{
			name: "watchers see different sequences of a key",
			streams: [][]WatchEvent{
				{resume("2"), added("a", "1", "3"), modified("a", "2", "5"), modified("a", "3", "7")},
				{resume("2"), added("a", "1", "3"), modified("a", "2b", "6"), modified("a", "3", "7")},
			},
			problems: []string{
				`watcher 0 segment 0: gap: missed 1 events of key "a" within rv (2, 7] it covered: MODIFIED "2b" rv=6`,
				`watcher 1 segment 0: gap: missed 1 events of key "a" within rv (2, 7] it covered: MODIFIED "2" rv=5`,
			},
		},
		{
			name:     "malformed events",
			streams:  [][]WatchEvent{{added("a", "1", "x"), ev("ERROR", "", "", "3"), added("", "1", "4")}},
			problems: []string{"resourceVersion is not a decimal Raft index", "unknown event type", "event without a key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Watches(tt.streams)
			if len(got) != len(tt.problems) {
				t.Fatalf("Watches = %q; want %d problems like %q", got, len(tt.problems), tt.problems)
			}
			for i, want := range tt.problems {
				if !strings.Contains(got[i], want) {
					t.Errorf("problem %d = %q; want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}

func TestWatchesSimulated(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		sim := simulate(simConfig{seed: seed, clients: 6, keys: 4, ticks: 400, infoRate: 0.1, watchers: 3})
		if p := Watches(sim.streams); len(p) > 0 {
			t.Errorf("seed %d: correct watch streams judged bad: %q", seed, p)
		}
		// Drop one event from the middle of a segment of watcher 1.
		s := sim.streams[1]
		i := len(s) / 2
		for s[i-1].Type == EventResume || s[i].Type == EventResume || s[i+1].Type == EventResume {
			i++
		}
		sim.streams[1] = append(s[:i:i], s[i+1:]...)
		p := Watches(sim.streams)
		if len(p) != 1 || !strings.Contains(p[0], "watcher 1 segment") || !strings.Contains(p[0], "rv="+s[i].RV) {
			t.Errorf("seed %d: dropped %v from watcher 1; got problems %q", seed, s[i], p)
		}
	}
}

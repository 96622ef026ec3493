package check

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// WatchEvent is one event a watcher received, or a pseudo-event the runner records
// about the watch itself (RESUME, RESET). RV is the object's resourceVersion, or
// for a pseudo-event the version it names.
type WatchEvent struct {
	Type       string
	Key, Value string
	RV         string
}

// Event types. ADDED, MODIFIED and DELETED come from the server; BOOKMARK too, if
// the server sends them.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	// EventBookmark says the watcher has every event up to RV. As the first
	// event after a watch from the current state, it ends the initial ADDED
	// events at the version they show.
	EventBookmark = "BOOKMARK"
	// EventResume starts a new segment: the runner watched again from RV after
	// the previous watch ended. RV "" or "0" means from the current state.
	EventResume = "RESUME"
	// EventReset ends a segment because the watcher lost its place (410 Gone);
	// what follows is a watch from the current state.
	EventReset = "RESET"
)

// evID names one change: several keys may share a resourceVersion only when one
// Raft entry changed them all.
type evID struct {
	rv  uint64
	key string
}

// witness is the first report of a change by any watcher.
type witness struct {
	watcher int
	typ     string
	value   string
}

// segment is the stretch of one watcher's stream between two (re)starts. It covers
// the versions (lo, hi] when hasLo: the watcher must have seen every change in that
// range.
type segment struct {
	watcher, number int // number counts the watcher's segments from 0
	hasLo           bool
	lo, hi          uint64
	seen            map[evID]bool
}

// Watches checks the streams of all watchers, each in arrival order, and returns
// the problems found in human-readable form; none means the watch guarantees held.
//
// Every watcher must watch the same set of keys. A stream is a sequence of
// segments: the first starts at the stream's start, and each RESUME or RESET
// starts another. A segment resumed from an explicit version X receives the
// changes after X. A segment from the current state (the stream's first unless
// it starts with RESUME X; RESUME "" or "0"; after RESET) begins with a snapshot:
// a run of ADDED events, one per key, in no particular order, ended by the first
// other event or by a BOOKMARK. Snapshot events are exempt from ordering and are
// not compared between watchers (a snapshot shows a modified object as ADDED).
//
// Checks:
//   - order: within a run of segments (a resume from at least the last version
//     seen continues the run; a resume from earlier or from the current state
//     starts a new one), each event's version is at least the previous one's, and
//     above the version the segment resumed from or a bookmark promised;
//   - duplicates: no change (version, key) twice within a run;
//   - agreement: every report of one change, by any watcher, has the same type and
//     value;
//   - gaps: a segment covers the versions after its start (the resume version, a
//     bookmark ending its snapshot, or else just before its first event after the
//     snapshot) up to its last event or bookmark; in that range it must contain
//     every change any watcher saw for any key.
//
// Agreement and gap-freedom together mean that, over the versions two watchers
// both covered, they saw the same sequence of events for every key.
func Watches(streams [][]WatchEvent) []string {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	union := map[string]map[uint64]witness{}
	var segments []*segment

	for w, stream := range streams {
		var (
			seg      *segment
			nseg     int
			runSeen  = map[evID]bool{} // changes seen in the current run
			prevRV   uint64            // highest version seen in the current run
			after    uint64            // events must be above this
			inSnap   bool              // in the snapshot of a from-current-state segment
			snapKeys map[string]bool
		)
		start := func(fromCurrent bool, rv uint64) {
			seg = &segment{watcher: w, number: nseg, seen: map[evID]bool{}}
			segments = append(segments, seg)
			nseg++
			if fromCurrent || rv < prevRV {
				runSeen, prevRV = map[evID]bool{}, 0
			}
			inSnap, snapKeys, after = fromCurrent, map[string]bool{}, 0
			if !fromCurrent {
				seg.hasLo, seg.lo, seg.hi, after = true, rv, rv, rv
			}
		}
		if len(stream) == 0 || stream[0].Type != EventResume {
			start(true, 0)
		}
		for i, ev := range stream {
			where := fmt.Sprintf("watcher %d event %d (%s %q rv=%s)", w, i, ev.Type, ev.Key, ev.RV)
			var rv uint64
			if ev.Type != EventReset && !(ev.Type == EventResume && (ev.RV == "" || ev.RV == "0")) {
				var err error
				if rv, err = strconv.ParseUint(ev.RV, 10, 64); err != nil {
					report("%s: resourceVersion is not a decimal Raft index", where)
					if ev.Type == EventResume {
						start(true, 0) // resumed from somewhere unknown
					}
					continue
				}
			}
			switch ev.Type {
			case EventResume:
				start(ev.RV == "" || ev.RV == "0", rv)
				continue
			case EventReset:
				start(true, 0)
				continue
			case EventBookmark:
				if rv < prevRV {
					report("%s: bookmark behind rv=%d already seen", where, prevRV)
				}
				if inSnap {
					inSnap, seg.hasLo, seg.lo = false, true, rv
				}
				after, seg.hi = max(after, rv), max(seg.hi, rv)
				continue
			case EventAdded, EventModified, EventDeleted:
			default:
				report("%s: unknown event type", where)
				continue
			}
			if ev.Key == "" {
				report("%s: event without a key", where)
				continue
			}
			id := evID{rv, ev.Key}
			if inSnap && ev.Type == EventAdded && !snapKeys[ev.Key] {
				snapKeys[ev.Key] = true
				seg.seen[id], runSeen[id] = true, true
				prevRV = max(prevRV, rv)
				continue
			}
			if inSnap {
				// The first change after the snapshot: the segment is complete
				// from here on (a watch cannot start inside one Raft entry).
				inSnap, seg.hasLo, seg.lo = false, true, max(rv, 1)-1
				seg.hi = seg.lo
			}
			switch {
			case runSeen[id]:
				report("%s: duplicate", where)
				continue
			case rv <= after:
				report("%s: out of order: at or before rv=%d the watch resumed from or was promised", where, after)
			case rv < prevRV:
				report("%s: out of order: after rv=%d", where, prevRV)
			}
			seg.seen[id], runSeen[id] = true, true
			prevRV, seg.hi = max(prevRV, rv), max(seg.hi, rv)

			byRV := union[ev.Key]
			if byRV == nil {
				byRV = map[uint64]witness{}
				union[ev.Key] = byRV
			}
			if first, ok := byRV[rv]; !ok {
				byRV[rv] = witness{w, ev.Type, ev.Value}
			} else if first.typ != ev.Type || first.value != ev.Value {
				report("watchers %d and %d disagree on key %q at rv=%d: %s %q vs %s %q",
					first.watcher, w, ev.Key, rv, first.typ, first.value, ev.Type, ev.Value)
			}
		}
	}

	keys := make([]string, 0, len(union))
	sorted := map[string][]uint64{}
	for k, byRV := range union {
		keys = append(keys, k)
		for rv := range byRV {
			sorted[k] = append(sorted[k], rv)
		}
		sort.Slice(sorted[k], func(i, j int) bool { return sorted[k][i] < sorted[k][j] })
	}
	sort.Strings(keys)
	for _, seg := range segments {
		if !seg.hasLo || seg.hi <= seg.lo {
			continue
		}
		for _, k := range keys {
			rvs := sorted[k]
			var missed []string
			for i := sort.Search(len(rvs), func(i int) bool { return rvs[i] > seg.lo }); i < len(rvs) && rvs[i] <= seg.hi; i++ {
				if !seg.seen[evID{rvs[i], k}] {
					ev := union[k][rvs[i]]
					missed = append(missed, fmt.Sprintf("%s %q rv=%d", ev.typ, ev.value, rvs[i]))
				}
			}
			if len(missed) == 0 {
				continue
			}
			n := len(missed)
			if n > 5 {
				missed = append(missed[:5], "...")
			}
			report("watcher %d segment %d: gap: missed %d events of key %q within rv (%d, %d] it covered: %s",
				seg.watcher, seg.number, n, k, seg.lo, seg.hi, strings.Join(missed, ", "))
		}
	}
	return problems
}

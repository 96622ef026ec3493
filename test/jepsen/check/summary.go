package check

import (
	"fmt"
	"strings"
)

// Converged reports whether every peer reported the same applied index and the
// same state digest; Divergence says how they differ when not.
func Converged(applied []uint64, digests []string) bool {
	return Divergence(applied, digests) == ""
}

// Divergence describes how the peers' applied indexes (applied[i] is peer i's) and
// state digests disagree, or returns "" when they all agree. No peers at all, or
// a different number of indexes and digests, is a divergence too.
func Divergence(applied []uint64, digests []string) string {
	switch {
	case len(applied) == 0:
		return "no peer reported its applied index"
	case len(applied) != len(digests):
		return fmt.Sprintf("%d applied indexes but %d digests", len(applied), len(digests))
	}
	var diffs []string
	for i := 1; i < len(applied); i++ {
		if applied[i] != applied[0] || digests[i] != digests[0] {
			diffs = append(diffs, fmt.Sprintf("peer %d has applied=%d digest=%s", i, applied[i], digests[i]))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("peer 0 has applied=%d digest=%s but %s", applied[0], digests[0], strings.Join(diffs, ", "))
}

// Summary formats the one-line verdict of a run, for example
//
//	ops=12034 keys=40 faults=37 linearizable=true watch=ok lost=0 converged=true
//
// with watch=N-problems when the watch checks found N problems.
func Summary(ops, keys, faults int, lin bool, watchProblems, lost int, converged bool) string {
	watch := "ok"
	if watchProblems > 0 {
		watch = fmt.Sprintf("%d-problems", watchProblems)
	}
	return fmt.Sprintf("ops=%d keys=%d faults=%d linearizable=%t watch=%s lost=%d converged=%t",
		ops, keys, faults, lin, watch, lost, converged)
}

package check

import (
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizable checks each key's operations against a single-register model with
// porcupine, one partition per key. It returns ok only if porcupine found a
// linearization of every key within timeout (0 means no limit; the limit is for
// the whole history, not per key).
//
// bad lists, in order, the keys for which no complete linearization was found:
// proven non-linearizable, or unfinished when the timeout struck (with no key
// proven bad, a timeout still makes ok false). vis writes porcupine's HTML
// visualization of the bad keys alone, re-checking them on each call (again
// bounded by timeout); it writes nothing when ok. Linearizable does not modify h.
func Linearizable(h History, timeout time.Duration) (ok bool, bad []string, vis func(w io.Writer) error) {
	ops, keys := porcupineOps(h, nil)
	known := map[string]bool{}
	for _, op := range h.Ops {
		if op.Result == OK && op.OutRV != "" && (op.Kind == Write || op.Kind == Create || op.Kind == CAS) {
			known[op.OutRV] = true
		}
	}
	model := registerModel(known)
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	if res == porcupine.Ok {
		return true, nil, func(io.Writer) error { return nil }
	}
	// Partition i is key i (partitionByKey sorts), and porcupine reports for each
	// partition a complete linearization when it found one.
	size := map[string]int{}
	for _, op := range ops {
		size[op.Input.(regInput).key]++
	}
	for i, partials := range info.PartialLinearizations() {
		complete := false
		for _, p := range partials {
			complete = complete || len(p) == size[keys[i]]
		}
		if !complete {
			bad = append(bad, keys[i])
		}
	}
	if len(bad) == 0 {
		return true, nil, func(io.Writer) error { return nil } // all done as time ran out
	}
	badSet := map[string]bool{}
	for _, k := range bad {
		badSet[k] = true
	}
	vis = func(w io.Writer) error {
		ops, _ := porcupineOps(h, badSet)
		_, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
		if err := porcupine.Visualize(model, info, w); err != nil {
			return fmt.Errorf("visualize keys %v: %w", bad, err)
		}
		return nil
	}
	return false, bad, vis
}

// porcupineOps converts the ops of the given keys (all keys if only is nil) and
// returns them with the sorted list of keys they touch.
//
// An Info op gets Return = math.MaxInt64, so porcupine may linearize it anywhere
// after its Call, including after everything else (which is how "it never
// happened" is expressed). Each Info op also gets its own client row in the
// visualization, since it overlaps every later op of its client. Client rows are
// renumbered densely per key.
func porcupineOps(h History, only map[string]bool) ([]porcupine.Operation, []string) {
	type indexed struct {
		i  int
		op Op
	}
	byKey := map[string][]indexed{}
	for i, op := range h.Ops {
		if only != nil && !only[op.Key] {
			continue
		}
		if _, _, use := modelOp(op); use {
			byKey[op.Key] = append(byKey[op.Key], indexed{i, op})
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var out []porcupine.Operation
	for _, k := range keys {
		var clients []int
		seen := map[int]bool{}
		for _, x := range byKey[k] {
			if x.op.Result != Info && !seen[x.op.Client] {
				seen[x.op.Client] = true
				clients = append(clients, x.op.Client)
			}
		}
		sort.Ints(clients)
		row := map[int]int{}
		for i, c := range clients {
			row[c] = i
		}
		nextRow := len(clients)
		for _, x := range byKey[k] {
			in, o, _ := modelOp(x.op)
			p := porcupine.Operation{Input: in, Output: o, Call: x.op.Call, Return: x.op.Return}
			if x.op.Result == Info {
				p.Return = math.MaxInt64
				p.ClientId = nextRow
				nextRow++
			} else {
				p.ClientId = row[x.op.Client]
				p.Return = max(p.Return, p.Call)
			}
			p.Metadata = fmt.Sprintf("client %d, history op %d", x.op.Client, x.i)
			if x.op.Err != "" {
				p.Metadata = fmt.Sprintf("%s: %s", p.Metadata, x.op.Err)
			}
			out = append(out, p)
		}
	}
	return out, keys
}

package check

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/anishathalye/porcupine"
)

// regState is one possible state of one key. rv is "" when the key is absent, and
// also when it exists at a version the clients never learned (written by an Info
// op, or by an OK op whose response carried no resourceVersion). An unknown rv
// matches what a later op claims it is, unless another mutation's response
// carried that rv: every Raft index is one entry's, so an unknown version is
// never a known one.
type regState struct {
	exists bool
	value  string
	rv     string
}

func (s regState) String() string {
	switch {
	case !s.exists:
		return "absent"
	case s.rv == "":
		return fmt.Sprintf("%q@?", s.value)
	default:
		return fmt.Sprintf("%q@%s", s.value, s.rv)
	}
}

// regInput is what a client sent.
type regInput struct {
	kind     OpKind
	key      string
	value    string
	expectRV string
}

// regOutput is what came back. For an Info op only result is set.
type regOutput struct {
	result Result
	reason string // Fail only: ReasonNotFound, ReasonAlreadyExists or ReasonConflict
	found  bool
	value  string
	rv     string
}

// registerModel returns the sequential specification of one key; known holds
// every rv that an OK mutation's response carried. The model is nondeterministic
// only where the clients lack information: an Info cas against a state whose rv
// is unknown may or may not have matched.
func registerModel(known map[string]bool) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{regState{}} },
		Step: func(state, input, output any) []any {
			next := stepRegister(state.(regState), input.(regInput), output.(regOutput), known)
			out := make([]any, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Hash: func(state any) uint64 {
			s := state.(regState)
			h := fnv.New64a()
			fmt.Fprintf(h, "%t\x00%s\x00%s", s.exists, s.value, s.rv)
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			return describeOp(input.(regInput), output.(regOutput))
		},
		DescribeState: func(state any) string { return state.(regState).String() },
	}
	return nm.ToModel()
}

// stepRegister returns every state the key may be in after op, or none if the op
// could not have returned out from s. known is as for registerModel.
func stepRegister(s regState, in regInput, out regOutput, known map[string]bool) []regState {
	written := regState{exists: true, value: in.value, rv: out.rv} // out.rv is "" for Info
	switch in.kind {
	case Read:
		if out.found != s.exists || (out.found && out.value != s.value) {
			return nil
		}
		if !out.found || out.rv == "" || s.rv == out.rv {
			return []regState{s}
		}
		if s.rv != "" || known[out.rv] {
			return nil
		}
		s.rv = out.rv // pins a version no response told
		return []regState{s}

	case Write:
		// An update without precondition. One that did not answer cannot
		// have created the key: an update of an absent key fails with
		// NotFound (the client then records a create instead). An OK one is
		// taken as an upsert.
		if !s.exists && out.result == Info {
			return []regState{s}
		}
		return []regState{written}

	case Create:
		switch out.result {
		case OK:
			if s.exists {
				return nil
			}
			return []regState{written}
		case Info:
			if s.exists {
				return []regState{s} // would have failed with AlreadyExists
			}
			return []regState{written}
		default: // AlreadyExists
			if !s.exists {
				return nil
			}
			return []regState{s}
		}

	case CAS:
		// An empty ExpectRV is an unconditional update: it needs only the key.
		mustMatch := s.exists && (in.expectRV == "" || s.rv == in.expectRV)
		mayMatch := mustMatch || (s.exists && s.rv == "" && !known[in.expectRV])
		switch out.result {
		case OK:
			if !mayMatch {
				return nil
			}
			return []regState{written}
		case Info:
			switch {
			case mustMatch:
				return []regState{written}
			case mayMatch:
				return []regState{written, s}
			default:
				return []regState{s}
			}
		default: // Conflict or NotFound
			if mustMatch {
				return nil
			}
			return []regState{s}
		}

	case Delete:
		switch out.result {
		case OK:
			if !s.exists {
				return nil
			}
			return []regState{{}}
		case Info:
			return []regState{{}} // deleted, or already absent
		default: // NotFound
			if s.exists {
				return nil
			}
			return []regState{s}
		}
	}
	return nil
}

// modelOp turns a history op into a porcupine input and output, or reports that
// the op says nothing about the key and is left out: reads that did not answer,
// lists, and Fail ops whose error names no state the server saw.
func modelOp(op Op) (regInput, regOutput, bool) {
	in := regInput{kind: op.Kind, key: op.Key, value: op.Value, expectRV: op.ExpectRV}
	out := regOutput{result: op.Result}
	switch op.Result {
	case OK:
		out.found, out.value, out.rv = op.Found, op.Out, op.OutRV
		return in, out, op.Kind != List
	case Info:
		return in, out, op.Kind != Read && op.Kind != List
	}
	out.reason = failReason(op.Err)
	switch {
	case op.Kind == Create && out.reason == ReasonAlreadyExists,
		op.Kind == CAS && (out.reason == ReasonConflict || out.reason == ReasonNotFound),
		op.Kind == Delete && out.reason == ReasonNotFound:
		return in, out, true
	}
	return in, out, false
}

func describeOp(in regInput, out regOutput) string {
	var call string
	switch in.kind {
	case Read:
		call = "read()"
	case Write, Create:
		call = fmt.Sprintf("%s(%q)", in.kind, in.value)
	case CAS:
		call = fmt.Sprintf("cas(%s, %q)", in.expectRV, in.value)
	default:
		call = string(in.kind) + "()"
	}
	var ret string
	switch {
	case out.result == Info:
		ret = "? (indeterminate)"
	case out.result == Fail:
		ret = out.reason
	case in.kind == Read && !out.found:
		ret = "absent"
	case in.kind == Read:
		ret = fmt.Sprintf("%q@%s", out.value, out.rv)
	case in.kind == Delete:
		ret = "ok"
	default:
		ret = "ok@" + out.rv
	}
	return call + " -> " + ret
}

// partitionByKey splits a history into one partition per key, in sorted key
// order: partition i belongs to the i-th key porcupineOps returns.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(regInput).key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		parts[i] = byKey[k]
	}
	return parts
}

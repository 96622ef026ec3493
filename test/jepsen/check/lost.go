package check

import (
	"fmt"
	"sort"
	"strconv"
)

// Final is one key's state read after every fault was healed.
type Final struct {
	Found bool
	Value string
	RV    string
}

func (f Final) String() string {
	if !f.Found {
		return "absent"
	}
	return fmt.Sprintf("%q@%s", f.Value, f.RV)
}

// LostWrites returns one line per acknowledged write that final no longer shows
// and that nothing can have replaced: a write, create, cas or delete that returned
// OK and then vanished. A key missing from final is taken as absent (as a List
// returns it). Call it with each peer's final state to check them all.
//
// A mutation is an OK or Info write, create, cas or delete: an op that may have
// changed the key (a Fail op did not). An OK mutation W of key k is lost when
// final[k] does not show W — it shows W if W is a delete and k is absent, or if k
// holds W's value and, when both are known, W's resourceVersion — and either
//
//  1. no other mutation of k may have taken effect after W: every other one is OK
//     and returned before W was called (an Info op may take effect at any time
//     after its call, so any Info mutation of k spares W), or
//  2. k exists at a resourceVersion below W's. resourceVersions are Raft indexes,
//     so whatever replaced W — an update, or a delete and a create — would have
//     left k absent or at a higher version.
//
// Either rule alone shows the write was undone, so a reported write is lost
// whatever the concurrency. Rule 1 can only judge each key's last writes; rule 2
// catches a state that went back in time under later writes. Reads play no part:
// a read that saw W proves W happened, which W's OK already says.
func LostWrites(h History, final map[string]Final) []string {
	byKey := map[string][]Op{}
	for _, op := range h.Ops {
		switch op.Kind {
		case Write, Create, CAS, Delete:
			if op.Result == OK || op.Result == Info {
				byKey[op.Key] = append(byKey[op.Key], op)
			}
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var lost []string
	for _, k := range keys {
		muts := byKey[k]
		sort.SliceStable(muts, func(i, j int) bool { return muts[i].Call < muts[j].Call })
		f := final[k]
		for i, w := range muts {
			if w.Result != OK || shows(f, w) {
				continue
			}
			var why string
			if older(f, w) {
				why = fmt.Sprintf("the final version %s precedes the write's %s", f.RV, w.OutRV)
			} else if !mayFollow(muts, i) {
				why = "no other write of the key can have followed it"
			} else {
				continue
			}
			lost = append(lost, fmt.Sprintf("key %q: %s by client %d acknowledged%s in [%d, %d] is lost: final state %s; %s",
				k, describeMutation(w), w.Client, rvSuffix(w.OutRV), w.Call, w.Return, f, why))
		}
	}
	return lost
}

// shows reports whether the final state still reflects the OK mutation w.
func shows(f Final, w Op) bool {
	if w.Kind == Delete {
		return !f.Found
	}
	return f.Found && f.Value == w.Value && (w.OutRV == "" || f.RV == "" || f.RV == w.OutRV)
}

// older reports whether the key ended at a version before the one w produced.
func older(f Final, w Op) bool {
	if w.Kind == Delete || !f.Found {
		return false
	}
	frv, err1 := strconv.ParseUint(f.RV, 10, 64)
	wrv, err2 := strconv.ParseUint(w.OutRV, 10, 64)
	return err1 == nil && err2 == nil && frv < wrv
}

// mayFollow reports whether any mutation other than muts[i] may have taken effect
// after muts[i] did.
func mayFollow(muts []Op, i int) bool {
	w := muts[i]
	for j, x := range muts {
		if j != i && (x.Result == Info || x.Return >= w.Call) {
			return true
		}
	}
	return false
}

func describeMutation(op Op) string {
	switch op.Kind {
	case Delete:
		return "delete"
	case CAS:
		return fmt.Sprintf("cas(%s, %q)", op.ExpectRV, op.Value)
	default:
		return fmt.Sprintf("%s(%q)", op.Kind, op.Value)
	}
}

func rvSuffix(rv string) string {
	if rv == "" {
		return ""
	}
	return " at rv " + rv
}

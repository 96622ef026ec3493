package check

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
)

// simConfig shapes a simulated run against a correct store.
type simConfig struct {
	seed     uint64
	clients  int
	keys     int
	ticks    int
	infoRate float64 // share of mutations that end indeterminate
	watchers int
}

// simResult is what a simulated run recorded, and the truth behind it.
type simResult struct {
	h       History
	final   map[string]Final
	streams [][]WatchEvent
}

type simObject struct {
	value string
	rv    uint64
}

// simulate runs clients against an in-memory store that is linearizable by
// construction: each op takes effect at one instant between its call and its
// return, except Info ops, which take effect at a random later instant or never.
// Every mutation gets the next global index as its rv, like a Raft index.
// Watchers receive every change, sometimes disconnecting and resuming.
func simulate(cfg simConfig) simResult {
	rng := rand.New(rand.NewPCG(cfg.seed, 1))
	store := map[string]simObject{}
	var index uint64
	var changes []WatchEvent

	type pending struct {
		op       Op
		applyAt  int // tick at which it takes effect; -1 never
		returnAt int
		applied  bool
		opIndex  int // position in history once recorded, -1 before
	}
	apply := func(p *pending) {
		op := &p.op
		obj, exists := store[op.Key]
		setResult := func(ok bool, reason string) {
			if op.Result == Info {
				return // the client never learns the outcome
			}
			if ok {
				op.Result = OK
			} else {
				op.Result, op.Err = Fail, reason
			}
		}
		change := func(typ string, o simObject) {
			changes = append(changes, WatchEvent{Type: typ, Key: op.Key, Value: o.value, RV: strconv.FormatUint(o.rv, 10)})
		}
		switch op.Kind {
		case Read:
			op.Result, op.Found = OK, exists
			if exists {
				op.Out, op.OutRV = obj.value, strconv.FormatUint(obj.rv, 10)
			}
		case Write, Create, CAS:
			ok := true
			reason := ""
			switch {
			case op.Kind == Write && !exists && op.Result == Info:
				ok = false // the update found nothing; the client never learned it
			case op.Kind == Write && !exists:
				op.Kind = Create // the client saw NotFound and created the key, as workload.go does
			case op.Kind == Create && exists:
				ok, reason = false, "AlreadyExists: exists"
			case op.Kind == CAS && !exists:
				ok, reason = false, "rpc error: code = NotFound desc = not found"
			case op.Kind == CAS && strconv.FormatUint(obj.rv, 10) != op.ExpectRV:
				ok, reason = false, "rpc error: code = Aborted desc = conflict"
			}
			setResult(ok, reason)
			if ok {
				index++
				store[op.Key] = simObject{op.Value, index}
				if op.Result == OK {
					op.OutRV = strconv.FormatUint(index, 10)
				}
				typ := EventModified
				if !exists {
					typ = EventAdded
				}
				change(typ, store[op.Key])
			}
		case Delete:
			setResult(exists, "NotFound: gone")
			if exists {
				index++
				delete(store, op.Key)
				change(EventDeleted, simObject{obj.value, index})
			}
		}
		p.applied = true
	}

	var h History
	inflight := make([]*pending, cfg.clients)
	var orphans []*pending // Info ops that returned but may still apply
	lastRV := make([]map[string]string, cfg.clients)
	for c := range lastRV {
		lastRV[c] = map[string]string{}
	}
	seq := 0
	for t := 0; t < cfg.ticks; t++ {
		for _, c := range rng.Perm(cfg.clients) {
			p := inflight[c]
			if p == nil {
				key := fmt.Sprintf("k%d", rng.IntN(cfg.keys))
				seq++
				op := Op{Client: c, Key: key, Value: fmt.Sprintf("c%d-%d", c, seq), Call: int64(t)}
				switch r := rng.IntN(20); {
				case r < 8:
					op.Kind, op.Value = Read, ""
				case r < 13:
					op.Kind = Write
				case r < 17:
					op.Kind, op.ExpectRV = CAS, lastRV[c][key]
					if op.ExpectRV == "" {
						op.ExpectRV = "1"
					}
				case r < 19:
					op.Kind = Create
				default:
					op.Kind, op.Value = Delete, ""
				}
				p = &pending{op: op, opIndex: -1}
				p.applyAt = t + rng.IntN(3)
				p.returnAt = p.applyAt + rng.IntN(3)
				if op.Kind != Read && rng.Float64() < cfg.infoRate {
					p.op.Result = Info
					switch rng.IntN(3) {
					case 0:
						p.applyAt = -1
					case 1:
						p.applyAt = t + rng.IntN(40) // maybe long after it returns
					}
				}
				if p.op.Kind == Write && rng.IntN(10) == 0 && p.op.Result != Info {
					p.applyAt = -1 // refused before proposing
					p.op.Result, p.op.Err = Fail, "Invalid: refused"
				}
				inflight[c] = p
			}
			if p.applyAt == t && !p.applied {
				apply(p)
			}
			if p.returnAt == t {
				p.op.Return = int64(t)
				if p.op.Kind == Read && p.op.Result == OK && p.op.Found {
					lastRV[c][p.op.Key] = p.op.OutRV
				}
				h.Ops = append(h.Ops, p.op)
				if p.op.Result == Info && !p.applied && p.applyAt > t {
					orphans = append(orphans, p)
				}
				inflight[c] = nil
			}
		}
		for _, p := range orphans {
			if p.applyAt == t && !p.applied {
				apply(p)
			}
		}
	}
	for _, p := range inflight {
		if p != nil {
			p.op.Result, p.op.OutRV, p.op.Found, p.op.Out = Info, "", false, ""
			p.op.Return = int64(cfg.ticks)
			h.Ops = append(h.Ops, p.op) // cut short by the end of the run
		}
	}

	final := map[string]Final{}
	for k, o := range store {
		final[k] = Final{Found: true, Value: o.value, RV: strconv.FormatUint(o.rv, 10)}
	}

	streams := make([][]WatchEvent, cfg.watchers)
	for w := range streams {
		var s []WatchEvent
		last := "" // rv of the last change delivered
		for i := 0; i < len(changes); i++ {
			if rng.IntN(50) == 0 && last != "" {
				// Disconnect and resume from the last version seen. Changes at
				// the same rv as last are a single entry, already delivered.
				s = append(s, WatchEvent{Type: EventResume, RV: last})
				for i < len(changes) && changes[i].RV == last {
					i++
				}
				if i == len(changes) {
					break
				}
			}
			s = append(s, changes[i])
			last = changes[i].RV
		}
		streams[w] = s
	}
	sort.SliceStable(h.Ops, func(i, j int) bool { return h.Ops[i].Call < h.Ops[j].Call })
	return simResult{h: h, final: final, streams: streams}
}

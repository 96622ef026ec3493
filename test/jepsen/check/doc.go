// Package check judges a history recorded by the Jepsen-style suite: per-key
// linearizability (with porcupine), acknowledged writes lost by the end, watch
// guarantees, and convergence of the peers. Every checker is a pure function of
// what the runner recorded; none talks to the cluster. All are safe for concurrent
// use.
//
// # DESIGN
//
// Objects. A key (namespace/name) is one register: absent, or present with a value
// (ConfigMap data["v"]) and a resourceVersion (rv), the Raft index of the write
// that produced that version. Keys are independent, so Linearizable hands
// porcupine one partition per key (Model.Partition), and each key is checked
// alone, in parallel.
//
// Model state. The state of a key is (exists, value, rv). An OK write, create or
// cas sets rv to the rv its response carried (OutRV). When the clients cannot know
// the rv — the op was indeterminate, or the response had none — the state's rv is
// "unknown", which matches what a later op claims: a read that returns an rv pins
// it, a cas is allowed to match it — unless that rv is one an OK mutation's
// response carried, since each Raft index belongs to one entry (without this, a
// pending Info write would excuse any stale read or stale cas). rv values are
// only compared for equality, never ordered, in the model. Reads check found,
// value and (when recorded) rv.
// Write is a put that always succeeds (the runner's update-or-create); create
// needs the key absent; cas needs the key present at ExpectRV; delete needs it
// present.
//
// Indeterminate (Info) operations. An Info op may take effect at any time after
// its call, possibly long after the client gave up, or never. It is given to
// porcupine with Return = math.MaxInt64 and an unknown output, porcupine's way of
// handling crashed operations: porcupine must still linearize it, but may place it
// anywhere after its call, including after every other op, where it affects
// nothing ("never happened"). When linearized, it has the effect the server would
// give it at that point: an Info write sets the value with an unknown rv; an Info
// create does so only if the key is absent (else it is a no-op, as the server
// would refuse it); an Info delete leaves the key absent; an Info cas applies if
// the rv matches and is a no-op if it does not — and when the rv is unknown both
// outcomes are possible, the one place where the model is nondeterministic
// (porcupine.NondeterministicModel, whose power-set construction tracks both).
// So no Info op can make a history illegal; it can only explain an observation.
// Info reads are dropped: they change nothing and returned nothing.
//
// Failed operations. A Fail op did not take effect. Most say nothing about the
// key and are dropped, but some errors are the server reporting the key's state at
// the moment it decided: create failing with AlreadyExists (key present), cas
// failing with Conflict or NotFound (key absent or not at ExpectRV), delete
// failing with NotFound (key absent). Those are checked as observations. The
// reason is read from Err, either a leading Kubernetes reason ("Conflict",
// "Conflict: ...") or a gRPC status text ("rpc error: code = Aborted desc = ...";
// NotFound, AlreadyExists and Aborted are understood). Any other Fail op is dropped,
// as are write Fails whatever their reason (an update-or-create fails for several).
//
// Lost writes. LostWrites documents its rule; in short, an OK mutation is lost
// when the final state does not show it and either nothing could have followed it
// in real time, or the key ended at a lower rv than the mutation produced (rvs are
// Raft indexes, so any replacement would have a higher one).
//
// Watches. Watches documents its rules: order and duplicates per watcher, within
// runs of gap-free segments; agreement of all reports of one change (rv, key); and
// gaps, judged against the union of what all watchers saw over the range each
// segment covered. A watch from the current state begins with a snapshot of ADDED
// events in no order, which is exempt from ordering and comparison.
//
// Cost. Linearizability checking is NP-hard, and every Info op stays concurrent
// with everything after it. A linearizable key is usually found linearizable
// quickly, but proving a key illegal means exhausting the orders of its pending
// Info ops: keep each key's history short (rotate keys; a few hundred ops and a
// few percent Info per key check in well under a second) and pass a timeout.
// A check that runs out of time reports ok=false: Linearizable never says true
// without a complete linearization of every key.
//
// # What the runner must record
//
//   - Call and Return from one monotonic clock for all clients, Call before
//     sending, Return after the answer; any op that may have reached the server
//     and has no definite answer is Info, never Fail.
//   - OutRV on every OK read, write, cas and create (without it the check is weaker,
//     never wrong); unique written values make lost writes and visualizations
//     easier to read.
//   - For Fail ops, Err carrying the server's reason (see above).
//   - Final state read after healing, every key the workload touched (absent keys
//     may be left out of the map). Appending those final reads to the history as
//     read ops also lets Linearizable judge the end state.
//   - Per watcher, events in arrival order; RESUME with the rv resumed from when a
//     watch is restarted, RESET when it lost its place. Every watcher watches the
//     same keys.
package check

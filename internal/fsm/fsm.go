package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
)

// Config configures an FSM.
type Config struct {
	// WatchWindow is how many changes the watch history keeps. A watch may resume
	// from any resourceVersion still inside it.
	WatchWindow int
	Logger      *slog.Logger
}

// DefaultConfig returns the settings a control-plane peer uses.
func DefaultConfig() Config {
	return Config{WatchWindow: 20_000, Logger: slog.Default()}
}

// Validate checks the settings.
func (c Config) Validate() error {
	if c.WatchWindow < 1 {
		return fmt.Errorf("watch window must be at least 1, got %d", c.WatchWindow)
	}
	return nil
}

// FSM is Rafter's replicated state machine: raft calls Apply, Snapshot and Restore
// from its single FSM goroutine; any goroutine may call View, Subscribe, Applied and
// WaitApplied concurrently with them.
type FSM struct {
	cfg Config

	// mu orders Apply's commit (db swap, applied index, publish) against readers
	// taking a View plus a watch subscription in one consistent step.
	mu      sync.RWMutex
	db      *memdb.MemDB
	applied uint64
	// appliedCh is closed and replaced every time applied advances.
	appliedCh chan struct{}

	watch *Broadcaster
}

var (
	_ raft.BatchingFSM        = (*FSM)(nil)
	_ raft.ConfigurationStore = (*FSM)(nil)
)

// New returns an empty FSM.
func New(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &FSM{
		cfg:       cfg,
		db:        newDB(),
		appliedCh: make(chan struct{}),
		watch:     NewBroadcaster(cfg.WatchWindow),
	}, nil
}

// Result is what Apply returns for a command: the object as stored (Put), the object
// as it was when deleted (Delete), one Result per command (Batch), or an error.
// Object is the stored message itself, shared with readers: never modify it.
type Result struct {
	Object Object
	Batch  []Result
	Err    error
}

// Apply applies one Raft log entry. See ApplyBatch.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies consecutive committed entries in one memdb transaction,
// publishing their watch events and advancing the applied index once. Raft calls it
// with command and configuration entries. Deterministic: it reads only the entries
// and the current state. Each command succeeds or fails on its own, checking
// everything before it changes anything; errors are returned inside *Result.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if len(logs) == 0 {
		return out
	}
	txn := f.db.Txn(true)
	var events []Event
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			out[i] = &Result{}
			continue
		}
		var cmd fsmv1.Command
		if err := proto.Unmarshal(l.Data, &cmd); err != nil {
			out[i] = &Result{Err: fmt.Errorf("%w: decode: %v", ErrInvalidCommand, err)}
			continue
		}
		res := f.applyCommand(txn, l.Index, &cmd, &events)
		out[i] = &res
	}
	f.advance(logs[len(logs)-1].Index, txn, events)
	return out
}

// StoreConfiguration is called by raft for a configuration entry when it does not
// batch (ApplyBatch gets them otherwise). The FSM keeps no configuration; it only
// counts the entry as applied, so that every entry a read may wait for advances the
// applied index.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.advance(index, nil, nil)
}

// advance commits txn (if any), publishes events and moves the applied index, all
// under mu so that readers see the three together.
func (f *FSM) advance(index uint64, txn *memdb.Txn, events []Event) {
	f.mu.Lock()
	if txn != nil {
		txn.Commit()
	}
	f.applied = index
	f.watch.publish(events)
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.mu.Unlock()
}

func (f *FSM) applyCommand(txn *memdb.Txn, index uint64, cmd *fsmv1.Command, events *[]Event) Result {
	switch op := cmd.Op.(type) {
	case *fsmv1.Command_Put:
		obj, err := applyPut(txn, index, op.Put, events)
		return Result{Object: obj, Err: err}
	case *fsmv1.Command_Delete:
		obj, err := applyDelete(txn, index, op.Delete, events)
		return Result{Object: obj, Err: err}
	case *fsmv1.Command_Batch:
		out := Result{Batch: make([]Result, len(op.Batch.GetCommands()))}
		for i, c := range op.Batch.GetCommands() {
			if _, nested := c.Op.(*fsmv1.Command_Batch); nested {
				out.Batch[i] = Result{Err: fmt.Errorf("%w: nested batch", ErrInvalidCommand)}
				continue
			}
			out.Batch[i] = f.applyCommand(txn, index, c, events)
		}
		return out
	case *fsmv1.Command_SetMember:
		m := op.SetMember.GetMember()
		if m.GetId() == "" {
			return Result{Err: fmt.Errorf("%w: member without id", ErrInvalidCommand)}
		}
		err := txn.Insert(tableMembers, &memberEntry{ID: m.GetId(), Member: Member{
			ID: m.GetId(), RaftAddress: m.GetRaftAddress(), GRPCAddress: m.GetGrpcAddress(), HTTPAddress: m.GetHttpAddress(),
		}})
		return Result{Err: err}
	case *fsmv1.Command_RemoveMember:
		_, err := txn.DeleteAll(tableMembers, "id", op.RemoveMember.GetId())
		return Result{Err: err}
	case *fsmv1.Command_Noop:
		return Result{}
	default:
		return Result{Err: fmt.Errorf("%w: unknown op %T", ErrInvalidCommand, cmd.Op)}
	}
}

func applyPut(txn *memdb.Txn, index uint64, put *fsmv1.Put, events *[]Event) (Object, error) {
	k, ok := kinds.ByKind(put.GetKind())
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidCommand, put.GetKind())
	}
	msg, err := put.GetObject().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("%w: decode object: %v", ErrInvalidCommand, err)
	}
	if msg.ProtoReflect().Descriptor().FullName() != k.Message {
		return nil, fmt.Errorf("%w: kind %s carries %s", ErrInvalidCommand, k.Kind, msg.ProtoReflect().Descriptor().FullName())
	}
	obj, ok := msg.(Object)
	if !ok || obj.GetMetadata() == nil || obj.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("%w: %s without metadata.name", ErrInvalidCommand, k.Kind)
	}
	md := obj.GetMetadata()
	if !k.Namespaced && md.GetNamespace() != "" {
		return nil, fmt.Errorf("%w: cluster-scoped %s with a namespace", ErrInvalidCommand, k.Kind)
	}
	if k.Namespaced {
		if md.GetNamespace() == "" {
			return nil, fmt.Errorf("%w: namespaced %s without a namespace", ErrInvalidCommand, k.Kind)
		}
		if raw, _ := txn.First(tableObjects, "id", objectKey("Namespace", "", md.GetNamespace())); raw == nil {
			return nil, &NamespaceNotFoundError{Namespace: md.GetNamespace()}
		}
	}
	key := objectKey(k.Kind, md.GetNamespace(), md.GetName())
	raw, err := txn.First(tableObjects, "id", key)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", key, err)
	}
	var old *entry
	if raw != nil {
		old = raw.(*entry)
	}
	switch {
	case put.GetCreate() && old != nil:
		return nil, fmt.Errorf("%s %q: %w", k.Resource, md.GetName(), ErrAlreadyExists)
	case !put.GetCreate() && old == nil:
		return nil, fmt.Errorf("%s %q: %w", k.Resource, md.GetName(), ErrNotFound)
	case !put.GetCreate() && put.GetExpectedResourceVersion() != "" &&
		put.GetExpectedResourceVersion() != old.Obj.GetMetadata().GetResourceVersion():
		return nil, fmt.Errorf("%s %q: %w: the object has been modified (resourceVersion %s, expected %s)",
			k.Resource, md.GetName(), ErrConflict, old.Obj.GetMetadata().GetResourceVersion(), put.GetExpectedResourceVersion())
	}

	md.ResourceVersion = strconv.FormatUint(index, 10)
	if old == nil {
		md.Generation = 1
	} else {
		md.Generation = old.Obj.GetMetadata().GetGeneration()
		if md.Generation == 0 || specChanged(old.Obj, obj) {
			md.Generation++
		}
		// Identity never changes through an update.
		md.Uid = old.Obj.GetMetadata().GetUid()
		md.CreationTimestamp = old.Obj.GetMetadata().GetCreationTimestamp()
	}
	if svc, ok := obj.(*corev1.Service); ok {
		if err := allocateService(txn, svc); err != nil {
			return nil, err
		}
	}
	e := newEntry(k.Kind, obj, index)
	if err := txn.Insert(tableObjects, e); err != nil {
		return nil, fmt.Errorf("insert %s: %w", key, err)
	}
	ev := Event{Type: Added, RV: index, Kind: k.Kind, Object: obj}
	if old != nil {
		ev.Type, ev.Prev = Modified, old.Obj
	}
	*events = append(*events, ev)
	return obj, nil
}

func applyDelete(txn *memdb.Txn, index uint64, del *fsmv1.Delete, events *[]Event) (Object, error) {
	k, ok := kinds.ByKind(del.GetKind())
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidCommand, del.GetKind())
	}
	key := objectKey(k.Kind, del.GetNamespace(), del.GetName())
	raw, err := txn.First(tableObjects, "id", key)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", key, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s %q: %w", k.Resource, del.GetName(), ErrNotFound)
	}
	old := raw.(*entry)
	omd := old.Obj.GetMetadata()
	if v := del.GetExpectedResourceVersion(); v != "" && v != omd.GetResourceVersion() {
		return nil, fmt.Errorf("%s %q: %w: resourceVersion is %s, precondition %s", k.Resource, del.GetName(), ErrConflict, omd.GetResourceVersion(), v)
	}
	if u := del.GetExpectedUid(); u != "" && u != omd.GetUid() {
		return nil, fmt.Errorf("%s %q: %w: uid is %s, precondition %s", k.Resource, del.GetName(), ErrConflict, omd.GetUid(), u)
	}
	gone, err := removeEntry(txn, index, old, events)
	if err != nil {
		return nil, err
	}
	if k.Kind == "Namespace" {
		// A namespace takes its contents with it, in the same entry. Scanning each
		// namespaced kind's prefix keeps a namespace index off every write.
		var contents []*entry
		for _, nk := range kinds.All {
			if !nk.Namespaced {
				continue
			}
			it, err := txn.Get(tableObjects, "id_prefix", kindPrefix(nk.Kind, del.GetName()))
			if err != nil {
				return nil, fmt.Errorf("list %s in namespace %s: %w", nk.Resource, del.GetName(), err)
			}
			for raw := it.Next(); raw != nil; raw = it.Next() {
				contents = append(contents, raw.(*entry))
			}
		}
		for _, e := range contents {
			if _, err := removeEntry(txn, index, e, events); err != nil {
				return nil, err
			}
		}
	}
	return gone, nil
}

// removeEntry deletes one stored object and records its DELETED event. The deleted
// object is reported at the deletion's resourceVersion, as Kubernetes does.
func removeEntry(txn *memdb.Txn, index uint64, old *entry, events *[]Event) (Object, error) {
	if err := txn.Delete(tableObjects, old); err != nil {
		return nil, fmt.Errorf("delete %s: %w", old.Key, err)
	}
	if old.Kind == "Service" {
		if _, err := txn.DeleteAll(tableAllocs, "holder", old.Namespace+"/"+old.Name); err != nil {
			return nil, fmt.Errorf("release allocations of %s: %w", old.Key, err)
		}
	}
	gone := proto.Clone(old.Obj).(Object)
	gone.GetMetadata().ResourceVersion = strconv.FormatUint(index, 10)
	*events = append(*events, Event{Type: Deleted, RV: index, Kind: old.Kind, Object: gone, Prev: old.Obj})
	return gone, nil
}

func newEntry(kind string, obj Object, index uint64) *entry {
	md := obj.GetMetadata()
	e := &entry{
		Key: objectKey(kind, md.GetNamespace(), md.GetName()), Kind: kind,
		Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(), RV: index, Obj: obj,
	}
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetUid() != "" {
			e.Owners = append(e.Owners, ref.GetUid())
		}
	}
	if p, ok := obj.(*corev1.Pod); ok {
		e.NodeName = p.GetSpec().GetNodeName()
	}
	return e
}

// specChanged reports whether anything but apiVersion, kind, metadata and status
// differs between two objects of the same kind.
func specChanged(a, b Object) bool {
	return !proto.Equal(withoutMetaStatus(a), withoutMetaStatus(b))
}

func withoutMetaStatus(o Object) proto.Message {
	src := o.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Name() {
		case "metadata", "status", "apiVersion", "kind":
		default:
			dst.Set(fd, v)
		}
		return true
	})
	return dst.Interface()
}

// View returns a consistent read-only snapshot of the current state.
func (f *FSM) View() *View {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &View{txn: f.db.Txn(false), Index: f.applied}
}

// ViewAndWatch returns a snapshot and a watcher that delivers every change after it,
// taken in one step so nothing falls between them.
func (f *FSM) ViewAndWatch(filter Filter) (*View, *Watcher) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := &View{txn: f.db.Txn(false), Index: f.applied}
	w, _ := f.watch.subscribe(f.applied, filter) // from the current index it cannot be gone
	return v, w
}

// Watch returns a watcher for every change with resourceVersion greater than fromRV.
// It fails with ErrGone when the history no longer reaches back that far.
func (f *FSM) Watch(fromRV uint64, filter Filter) (*Watcher, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.watch.subscribe(fromRV, filter)
}

// Applied returns the index of the last applied log entry.
func (f *FSM) Applied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// WaitApplied blocks until the applied index reaches index or done is closed; it
// reports whether the index was reached.
func (f *FSM) WaitApplied(done <-chan struct{}, index uint64) bool {
	for {
		f.mu.RLock()
		applied, ch := f.applied, f.appliedCh
		f.mu.RUnlock()
		if applied >= index {
			return true
		}
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

// Snapshot captures the state for raft. Called from the FSM goroutine; the returned
// snapshot is persisted concurrently with further Applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	v := f.View()
	return &snapshot{view: v}, nil
}

// Restore replaces the whole state with a snapshot. Every open watcher is closed with
// ErrGone, since the changes between its position and the snapshot are unknown.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, index, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.db = db
	f.applied = index
	f.watch.reset(index)
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.mu.Unlock()
	f.cfg.Logger.Info("restored snapshot", "index", index)
	return nil
}

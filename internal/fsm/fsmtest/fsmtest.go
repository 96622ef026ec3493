// Package fsmtest drives an fsm.FSM directly, without a raft cluster, for tests of
// the fsm package and of the packages built on it. Every helper takes a testing.TB
// and fails the test on misuse; none of them starts a goroutine.
package fsmtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// EventTimeout bounds how long NextEvent waits for an event that must come. It is a
// guard against a hung test, not a timing assertion.
const EventTimeout = 10 * time.Second

// New returns an empty FSM with the default watch window and a logger that
// discards everything.
func New(t testing.TB) *fsm.FSM {
	t.Helper()
	return NewWithWindow(t, fsm.DefaultConfig().WatchWindow)
}

// NewWithWindow returns an empty FSM whose watch history keeps window changes.
func NewWithWindow(t testing.TB, window int) *fsm.FSM {
	t.Helper()
	f, err := fsm.New(fsm.Config{WatchWindow: window, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("fsm.New: %v", err)
	}
	return f
}

// Log returns the raft log entry that carries cmd at index.
func Log(t testing.TB, index uint64, cmd *fsmv1.Command) *raft.Log {
	t.Helper()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatalf("marshal command: %v", err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// Apply applies cmd to f as the log entry at index and returns the result, whatever
// its Err. It fails the test only if Apply returns something other than *fsm.Result.
func Apply(t testing.TB, f *fsm.FSM, index uint64, cmd *fsmv1.Command) *fsm.Result {
	t.Helper()
	out := f.Apply(Log(t, index, cmd))
	res, ok := out.(*fsm.Result)
	if !ok {
		t.Fatalf("Apply(%d) returned %T, want *fsm.Result", index, out)
	}
	return res
}

// ApplyNext applies cmd as the entry after the last applied one.
func ApplyNext(t testing.TB, f *fsm.FSM, cmd *fsmv1.Command) *fsm.Result {
	t.Helper()
	return Apply(t, f, f.Applied()+1, cmd)
}

// MustApply applies cmd as the entry after the last applied one and fails the test
// if it, or any command of a batch, returns an error. It returns the entry's index.
func MustApply(t testing.TB, f *fsm.FSM, cmd *fsmv1.Command) (uint64, *fsm.Result) {
	t.Helper()
	index := f.Applied() + 1
	res := Apply(t, f, index, cmd)
	if err := Err(res); err != nil {
		t.Fatalf("apply %d: %v", index, err)
	}
	return index, res
}

// Err returns res.Err or the first error among a batch's results.
func Err(res *fsm.Result) error {
	if res.Err != nil {
		return res.Err
	}
	for _, r := range res.Batch {
		if err := Err(&r); err != nil {
			return err
		}
	}
	return nil
}

// KindOf returns the kind name of a generated API message ("ConfigMap"), or "" when
// the message is not a served kind.
func KindOf(m proto.Message) string {
	name := m.ProtoReflect().Descriptor().FullName()
	for _, k := range kinds.All {
		if k.Message == name {
			return k.Kind
		}
	}
	return ""
}

// PutKind returns a Put command that stores msg under kind, which need not match
// msg's type (to test that the FSM rejects the mismatch).
func PutKind(kind string, msg proto.Message, create bool, expectedRV string) *fsmv1.Command {
	a, err := anypb.New(msg)
	if err != nil {
		panic("fsmtest: wrap object: " + err.Error()) // only a nil or broken message gets here
	}
	return &fsmv1.Command{Op: &fsmv1.Command_Put{Put: &fsmv1.Put{
		Kind: kind, Object: a, Create: create, ExpectedResourceVersion: expectedRV,
	}}}
}

// Create returns a command that creates obj; its kind comes from its message type.
func Create(obj fsm.Object) *fsmv1.Command { return PutKind(KindOf(obj), obj, true, "") }

// Update returns a command that replaces obj, on condition that its stored
// resourceVersion is expectedRV (unconditional when empty).
func Update(obj fsm.Object, expectedRV string) *fsmv1.Command {
	return PutKind(KindOf(obj), obj, false, expectedRV)
}

// Delete returns an unconditional delete of kind namespace/name.
func Delete(kind, namespace, name string) *fsmv1.Command {
	return DeleteIf(kind, namespace, name, "", "")
}

// DeleteIf returns a delete with resourceVersion and uid preconditions (each ignored
// when empty).
func DeleteIf(kind, namespace, name, expectedRV, expectedUID string) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_Delete{Delete: &fsmv1.Delete{
		Kind: kind, Namespace: namespace, Name: name,
		ExpectedResourceVersion: expectedRV, ExpectedUid: expectedUID,
	}}}
}

// Batch returns a command applying cmds in one entry.
func Batch(cmds ...*fsmv1.Command) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_Batch{Batch: &fsmv1.Batch{Commands: cmds}}}
}

// SetMember returns a command recording a control-plane member.
func SetMember(id, raftAddr, grpcAddr, httpAddr string) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_SetMember{SetMember: &fsmv1.SetMember{Member: &fsmv1.Member{
		Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr, HttpAddress: httpAddr,
	}}}}
}

// RemoveMember returns a command forgetting a control-plane member.
func RemoveMember(id string) *fsmv1.Command {
	return &fsmv1.Command{Op: &fsmv1.Command_RemoveMember{RemoveMember: &fsmv1.RemoveMember{Id: id}}}
}

// Noop returns a command that changes nothing.
func Noop() *fsmv1.Command { return &fsmv1.Command{Op: &fsmv1.Command_Noop{Noop: &fsmv1.Noop{}}} }

// Meta returns object metadata with a uid derived from namespace and name, as the
// API server would stamp a unique one.
func Meta(namespace, name string) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Name: name, Namespace: namespace, Uid: "uid-" + namespace + "-" + name}
}

// Namespace returns a Namespace named name.
func Namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{Metadata: Meta("", name)}
}

// ConfigMap returns a ConfigMap holding data.
func ConfigMap(namespace, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{Metadata: Meta(namespace, name), Data: data}
}

// Service returns a ClusterIP Service with clusterIP ("" for none, "None" for
// headless) and one port per nodePort, which makes it a NodePort Service.
func Service(namespace, name, clusterIP string, nodePorts ...int32) *corev1.Service {
	spec := &corev1.ServiceSpec{Type: "ClusterIP", ClusterIP: clusterIP}
	if clusterIP != "" {
		spec.ClusterIPs = []string{clusterIP}
	}
	for i, p := range nodePorts {
		spec.Type = "NodePort"
		spec.Ports = append(spec.Ports, &corev1.ServicePort{Protocol: "TCP", Port: 80 + int32(i), NodePort: p})
	}
	return &corev1.Service{Metadata: Meta(namespace, name), Spec: spec}
}

// Pod returns a Pod bound to node ("" for unscheduled).
func Pod(namespace, name, node string) *corev1.Pod {
	return &corev1.Pod{Metadata: Meta(namespace, name), Spec: &corev1.PodSpec{
		NodeName:   node,
		Containers: []*corev1.Container{{Name: "main", Image: "busybox"}},
	}}
}

// OwnedBy adds an ownerReference to owner and returns obj.
func OwnedBy[T fsm.Object](obj T, owner fsm.Object) T {
	md := obj.GetMetadata()
	md.OwnerReferences = append(md.OwnerReferences, &metav1.OwnerReference{
		Kind: KindOf(owner), Name: owner.GetMetadata().GetName(), Uid: owner.GetMetadata().GetUid(),
	})
	return obj
}

// Get returns the stored object kind namespace/name from f's current view, failing
// the test when it is missing or not a T.
func Get[T fsm.Object](t testing.TB, f *fsm.FSM, kind, namespace, name string) T {
	t.Helper()
	obj, ok := f.View().Get(kind, namespace, name)
	if !ok {
		t.Fatalf("%s %s/%s not found", kind, namespace, name)
	}
	typed, ok := obj.(T)
	if !ok {
		t.Fatalf("%s %s/%s is a %T", kind, namespace, name, obj)
	}
	return typed
}

// NextEvent returns w's next event, failing the test on an error or when none comes
// within EventTimeout.
func NextEvent(t testing.TB, w *fsm.Watcher) fsm.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), EventTimeout)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return ev
}

// ReadyEvent returns the event w has ready now, failing the test on an error or when
// there is none. Apply publishes its events before it returns, so a test that applies
// on its own goroutine reads them with ReadyEvent and never waits.
func ReadyEvent(t testing.TB, w *fsm.Watcher) fsm.Event {
	t.Helper()
	ev, err := Pending(w)
	if errors.Is(err, context.Canceled) {
		t.Fatal("watch: no event ready")
	}
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return ev
}

// Pending returns the event w would deliver right now without blocking, or the error
// it would return; a watcher with nothing to deliver returns context.Canceled.
func Pending(w *fsm.Watcher) (fsm.Event, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return w.Next(ctx)
}

// NoEvent fails the test if w has an event (or an error) to deliver right now.
func NoEvent(t testing.TB, w *fsm.Watcher) {
	t.Helper()
	ev, err := Pending(w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("watch: got event %s %s rv %d (err %v), want nothing pending", ev.Type, ev.Kind, ev.RV, err)
	}
}

// Sink is an in-memory raft.SnapshotSink. It is safe for concurrent use.
type Sink struct {
	mu        sync.Mutex // guards every field below
	buf       bytes.Buffer
	closed    bool
	cancelled bool
	// WriteErr, when set before Persist, makes every Write fail with it.
	WriteErr error
}

var _ raft.SnapshotSink = (*Sink)(nil)

// Write appends p, or fails with WriteErr.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cancelled {
		return 0, errors.New("fsmtest: write to a finished sink")
	}
	if s.WriteErr != nil {
		return 0, s.WriteErr
	}
	return s.buf.Write(p)
}

// Close marks the snapshot complete.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cancelled {
		return errors.New("fsmtest: sink finished twice")
	}
	s.closed = true
	return nil
}

// Cancel marks the snapshot abandoned.
func (s *Sink) Cancel() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cancelled {
		return errors.New("fsmtest: sink finished twice")
	}
	s.cancelled = true
	return nil
}

// ID names the snapshot.
func (s *Sink) ID() string { return "fsmtest" }

// Closed reports whether Close was called.
func (s *Sink) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Cancelled reports whether Cancel was called.
func (s *Sink) Cancelled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// Bytes returns a copy of everything written.
func (s *Sink) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

// Snapshot takes f's raft snapshot, persists it to a Sink and returns its bytes.
func Snapshot(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink Sink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.Closed() {
		t.Fatal("Persist succeeded without closing the sink")
	}
	return sink.Bytes()
}

// Restore restores f from data and fails the test on an error.
func Restore(t testing.TB, f *fsm.FSM, data []byte) {
	t.Helper()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
}

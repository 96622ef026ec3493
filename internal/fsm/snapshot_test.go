package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/fsm/fsmtest"
)

const snapshotMagic = "rafter-snapshot-v1\n"

// populated returns an FSM holding some of everything a snapshot carries.
func populated(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsmtest.New(t)
	for _, cmd := range scenario() {
		fsmtest.ApplyNext(t, f, cmd)
	}
	rs := &appsv1.ReplicaSet{Metadata: fsmtest.Meta("default", "rs")}
	fsmtest.MustApply(t, f, fsmtest.Create(rs))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.OwnedBy(fsmtest.Pod("default", "owned", "n2"), rs)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "headless", "None")))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "np", "10.96.0.20", 30090, 30091)))
	fsmtest.MustApply(t, f, fsmtest.Noop()) // the applied index is past the last change
	return f
}

// record is one length-delimited snapshot record.
func record(t *testing.T, m proto.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := protodelim.MarshalTo(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// craft builds a snapshot stream from a header and records.
func craft(t *testing.T, hdr *fsmv1.SnapshotHeader, recs ...proto.Message) []byte {
	t.Helper()
	out := append([]byte(snapshotMagic), record(t, hdr)...)
	for _, r := range recs {
		out = append(out, record(t, r)...)
	}
	return out
}

func objectRecord(t *testing.T, kind string, obj proto.Message) *fsmv1.SnapshotRecord {
	t.Helper()
	a, err := anypb.New(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Object{Object: &fsmv1.SnapshotObject{Kind: kind, Object: a}}}
}

func stored(o fsm.Object, version string) fsm.Object {
	o.GetMetadata().ResourceVersion = version
	o.GetMetadata().Generation = 1
	return o
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := populated(t)
	data := fsmtest.Snapshot(t, src)

	dst := withDefault(t)
	// Whatever dst held before is replaced, not merged.
	fsmtest.MustApply(t, dst, fsmtest.Create(fsmtest.ConfigMap("default", "only-in-dst", nil)))
	fsmtest.MustApply(t, dst, fsmtest.Create(fsmtest.Service("default", "dst", "10.96.0.99")))
	fsmtest.MustApply(t, dst, fsmtest.SetMember("dst", "r", "g", "h"))
	fsmtest.Restore(t, dst, data)

	want, got := stateOf(t, src.View()), stateOf(t, dst.View())
	if !slices.Equal(want, got) {
		t.Fatalf("restored state differs:\nwant %q\ngot  %q", want, got)
	}
	if dst.Applied() != src.Applied() || dst.View().Index != src.Applied() {
		t.Errorf("Applied() = %d, view index %d, want the header's %d", dst.Applied(), dst.View().Index, src.Applied())
	}
	if len(dst.View().Members()) == 0 {
		t.Error("no members restored") // guards the comparison above against an empty scenario
	}

	// Secondary indexes are rebuilt.
	var onN2 []string
	dst.View().PodsOnNode("n2", func(o fsm.Object) bool { onN2 = append(onN2, o.GetMetadata().GetName()); return true })
	if !slices.Equal(onN2, []string{"owned"}) {
		t.Errorf("restored PodsOnNode(n2) = %q", onN2)
	}
	var owned []string
	dst.View().ByOwner("uid-default-rs", func(_ string, o fsm.Object) bool { owned = append(owned, o.GetMetadata().GetName()); return true })
	if !slices.Equal(owned, []string{"owned"}) {
		t.Errorf("restored ByOwner(rs) = %q", owned)
	}

	// Allocations are enforced, not just listed; dst's own Service and its address
	// are gone. The restored FSM then carries on exactly as the source does.
	thief := fsmtest.Create(fsmtest.Service("default", "thief", "10.96.0.20"))
	free := fsmtest.Create(fsmtest.Service("default", "free", "10.96.0.99"))
	update := fsmtest.Update(fsmtest.ConfigMap("default", "big", map[string]string{"k": "v"}), "")
	res := fsmtest.ApplyNext(t, dst, thief)
	var ae *fsm.AllocatedError
	if !errors.As(res.Err, &ae) || ae.Holder != "default/np" {
		t.Errorf("new Service on a restored ClusterIP: err = %v, want AllocatedError held by default/np", res.Err)
	}
	fsmtest.MustApply(t, dst, free)
	fsmtest.MustApply(t, dst, update)
	for _, cmd := range []*fsmv1.Command{thief, free, update} {
		fsmtest.ApplyNext(t, src, cmd)
	}
	if !bytes.Equal(saved(t, src.View()), saved(t, dst.View())) {
		t.Error("source and restored FSM diverge after applying the same commands")
	}
}

func saved(t *testing.T, v *fsm.View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := v.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotIsPointInTime(t *testing.T) {
	f := populated(t)
	want := stateOf(t, f.View())
	index := f.Applied()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	// Applies go on while raft persists the snapshot.
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "later", nil)))
	fsmtest.MustApply(t, f, fsmtest.Delete("Namespace", "", "default"))
	var sink fsmtest.Sink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	dst := fsmtest.New(t)
	fsmtest.Restore(t, dst, sink.Bytes())
	if got := stateOf(t, dst.View()); !slices.Equal(got, want) {
		t.Errorf("snapshot holds later changes:\nwant %q\ngot  %q", want, got)
	}
	if dst.Applied() != index {
		t.Errorf("restored index %d, want %d", dst.Applied(), index)
	}
}

func TestPersistCancelsOnWriteError(t *testing.T) {
	f := populated(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("disk full")
	sink := &fsmtest.Sink{WriteErr: diskFull}
	if err := snap.Persist(sink); !errors.Is(err, diskFull) {
		t.Fatalf("Persist = %v, want the sink's error", err)
	}
	if !sink.Cancelled() || sink.Closed() {
		t.Errorf("sink cancelled %v, closed %v; want cancelled only", sink.Cancelled(), sink.Closed())
	}
}

func TestSnapshotIndex(t *testing.T) {
	f := populated(t)
	data := fsmtest.Snapshot(t, f)
	for _, c := range []struct {
		name  string
		data  []byte
		index uint64
		ok    bool
	}{
		{"whole snapshot", data, f.Applied(), true},
		{"header only", craft(t, &fsmv1.SnapshotHeader{AppliedIndex: 42, ObjectCount: 7}), 42, true},
		{"empty", nil, 0, false},
		{"bad magic", append([]byte("rafter-snapshot-v0\n"), data[len(snapshotMagic):]...), 0, false},
		{"magic only", []byte(snapshotMagic), 0, false},
		{"truncated header", data[:len(snapshotMagic)+1], 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			index, err := fsm.SnapshotIndex(bytes.NewReader(c.data))
			if (err == nil) != c.ok || index != c.index {
				t.Errorf("SnapshotIndex = %d, %v; want %d, ok=%v", index, err, c.index, c.ok)
			}
		})
	}
}

// closeTracker records whether Restore closed its reader.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// TestRestoreRejectsBadInput feeds Restore damaged snapshots: each fails, and the
// FSM keeps its state, its applied index and its watchers.
func TestRestoreRejectsBadInput(t *testing.T) {
	good := fsmtest.Snapshot(t, populated(t))
	hdr := func(index, objects uint64) *fsmv1.SnapshotHeader {
		return &fsmv1.SnapshotHeader{AppliedIndex: index, ObjectCount: objects}
	}
	ns := objectRecord(t, "Namespace", stored(fsmtest.Namespace("default"), "1"))
	cases := []struct {
		name string
		data []byte
	}{
		{"bad magic", append([]byte("RAFTER-SNAPSHOT-V1\n"), good[len(snapshotMagic):]...)},
		{"garbage after header", append(craft(t, hdr(5, 1)), bytes.Repeat([]byte{0xff}, 32)...)},
		{"record larger than the limit", append(craft(t, hdr(5, 1)), 0x80, 0x80, 0x80, 0x80, 0x10)},
		{"record without a type", craft(t, hdr(5, 0), &fsmv1.SnapshotRecord{})},
		{"more objects promised than present", craft(t, hdr(5, 2), ns)},
		{"fewer objects promised than present", craft(t, hdr(5, 0), ns)},
		{"unregistered object type", craft(t, hdr(5, 1), &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Object{
			Object: &fsmv1.SnapshotObject{Kind: "Widget", Object: &anypb.Any{TypeUrl: "type.googleapis.com/nope.Widget"}}}})},
		{"undecodable object", craft(t, hdr(5, 1), &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Object{
			Object: &fsmv1.SnapshotObject{Kind: "ConfigMap", Object: &anypb.Any{TypeUrl: "type.googleapis.com/rafter.core.v1.ConfigMap", Value: []byte{0xff}}}}})},
		{"object without metadata", craft(t, hdr(5, 1), objectRecord(t, "ConfigMap", &corev1.ConfigMap{}))},
		{"bad resourceVersion", craft(t, hdr(5, 2), ns, objectRecord(t, "ConfigMap", stored(fsmtest.ConfigMap("default", "x", nil), "abc")))},
		{"two Services on one ClusterIP", craft(t, hdr(5, 3), ns,
			objectRecord(t, "Service", stored(fsmtest.Service("default", "a", "10.96.0.10"), "2")),
			objectRecord(t, "Service", stored(fsmtest.Service("default", "b", "10.96.0.10"), "3")))},
	}
	// Every strict prefix of a good snapshot is a truncated one.
	for n := 0; n < len(good); n++ {
		cases = append(cases, struct {
			name string
			data []byte
		}{fmt.Sprintf("truncated to %d of %d bytes", n, len(good)), good[:n]})
	}

	// One FSM takes every bad snapshot in turn; none may leave a mark on it.
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "kept", map[string]string{"k": "v"})))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "kept", "10.96.0.10")))
	fsmtest.MustApply(t, f, fsmtest.SetMember("kept", "r", "g", "h"))
	before, applied := stateOf(t, f.View()), f.Applied()
	w, err := f.Watch(applied, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := &closeTracker{Reader: bytes.NewReader(c.data)}
			if err := f.Restore(rc); err == nil {
				t.Fatal("Restore accepted a damaged snapshot")
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			if _, err := fsm.CheckSnapshot(bytes.NewReader(c.data)); err == nil {
				t.Error("CheckSnapshot accepted a damaged snapshot")
			}
			if after := stateOf(t, f.View()); !slices.Equal(before, after) {
				t.Fatalf("state changed:\nbefore %q\nafter  %q", before, after)
			}
			if f.Applied() != applied {
				t.Fatalf("Applied() = %d, want %d", f.Applied(), applied)
			}
			fsmtest.NoEvent(t, w) // and not ErrGone: the watch history is intact
		})
	}
	index, _ := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "next", nil)))
	if ev := fsmtest.ReadyEvent(t, w); ev.RV != index {
		t.Errorf("watcher after failed restores: event at %d, want %d", ev.RV, index)
	}
}

func TestCheckSnapshot(t *testing.T) {
	f := populated(t)
	data := fsmtest.Snapshot(t, f)
	index, err := fsm.CheckSnapshot(bytes.NewReader(data))
	if err != nil || index != f.Applied() {
		t.Fatalf("CheckSnapshot = %d, %v; want %d", index, err, f.Applied())
	}
	_, err = fsm.CheckSnapshot(strings.NewReader(snapshotMagic))
	if err == nil {
		t.Error("CheckSnapshot accepted a stream without a header")
	}
}

// TestRestoreEmpty restores the snapshot of an FSM that never applied anything.
func TestRestoreEmpty(t *testing.T) {
	data := fsmtest.Snapshot(t, fsmtest.New(t))
	f := withDefault(t)
	fsmtest.Restore(t, f, data)
	if got := stateOf(t, f.View()); len(got) != 0 || f.Applied() != 0 {
		t.Errorf("after restoring an empty snapshot: applied %d, state %q", f.Applied(), got)
	}
}

// TestSnapshotChecksumCatchesBitFlips flips one byte inside a ConfigMap value — a
// change that still decodes — and expects the CRC trailer to reject it.
func TestSnapshotChecksumCatchesBitFlips(t *testing.T) {
	f := fsmtest.New(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default")))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cm", map[string]string{"k": "value-to-corrupt"})))
	data := fsmtest.Snapshot(t, f)
	i := bytes.Index(data, []byte("value-to-corrupt"))
	if i < 0 {
		t.Fatal("value not found in snapshot bytes")
	}
	bad := bytes.Clone(data)
	bad[i] = 'V'
	if _, err := fsm.CheckSnapshot(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("CheckSnapshot of a corrupted snapshot: %v, want a checksum error", err)
	}
	if _, err := fsm.CheckSnapshot(bytes.NewReader(data)); err != nil {
		t.Fatalf("CheckSnapshot of the intact snapshot: %v", err)
	}
	if _, err := fsm.CheckSnapshot(bytes.NewReader(append(bytes.Clone(data), data[len(snapshotMagic):]...))); err == nil {
		t.Fatal("CheckSnapshot accepted records after the trailer")
	}
}

package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
)

// The snapshot format: a magic line, then length-delimited protobuf records — one
// SnapshotHeader, one SnapshotRecord per member and per object, and a trailer with a
// CRC-32C of everything before it. The same format
// is what `ctl snapshot save` downloads and `controlplane --restore` reads.
const snapshotMagic = "rafter-snapshot-v1\n"

type snapshot struct{ view *View }

var _ raft.FSMSnapshot = (*snapshot)(nil)

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.view.Save(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Save writes the whole view in the snapshot format.
func (v *View) Save(w io.Writer) error {
	out := bufio.NewWriterSize(w, 256<<10)
	sum := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(out, sum), 64<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	count := uint64(0)
	it, err := v.txn.Get(tableObjects, "id")
	if err != nil {
		return fmt.Errorf("iterate objects: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		count++
	}
	members := v.Members()
	hdr := &fsmv1.SnapshotHeader{AppliedIndex: v.Index, ObjectCount: count, MemberCount: uint64(len(members))}
	if _, err := protodelim.MarshalTo(bw, hdr); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	for _, m := range members {
		rec := &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Member{Member: &fsmv1.Member{
			Id: m.ID, RaftAddress: m.RaftAddress, GrpcAddress: m.GRPCAddress, HttpAddress: m.HTTPAddress,
		}}}
		if _, err := protodelim.MarshalTo(bw, rec); err != nil {
			return fmt.Errorf("write member %s: %w", m.ID, err)
		}
	}
	it, err = v.txn.Get(tableObjects, "id")
	if err != nil {
		return fmt.Errorf("iterate objects: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*entry)
		// Deterministic: proto's default encoding writes map fields (labels, data)
		// in Go's random map order, so equal states would save different bytes.
		a := new(anypb.Any)
		if err := anypb.MarshalFrom(a, e.Obj, proto.MarshalOptions{Deterministic: true}); err != nil {
			return fmt.Errorf("encode %s: %w", e.Key, err)
		}
		rec := &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Object{Object: &fsmv1.SnapshotObject{Kind: e.Kind, Object: a}}}
		if _, err := protodelim.MarshalTo(bw, rec); err != nil {
			return fmt.Errorf("write %s: %w", e.Key, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	trailer := &fsmv1.SnapshotRecord{Record: &fsmv1.SnapshotRecord_Trailer{Trailer: &fsmv1.SnapshotTrailer{Crc32C: sum.Sum32()}}}
	if _, err := protodelim.MarshalTo(out, trailer); err != nil {
		return fmt.Errorf("write snapshot trailer: %w", err)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hashingReader feeds every byte its reader hands out into a CRC, so the checksum
// before a record covers exactly the bytes consumed before it.
type hashingReader struct {
	r   *bufio.Reader
	sum hash.Hash32
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.sum.Write(p[:n])
	return n, err
}

func (h *hashingReader) ReadByte() (byte, error) {
	b, err := h.r.ReadByte()
	if err == nil {
		h.sum.Write([]byte{b})
	}
	return b, err
}

// readSnapshot builds a fresh database from a snapshot stream.
func readSnapshot(r io.Reader) (*memdb.MemDB, uint64, error) {
	br := &hashingReader{r: bufio.NewReaderSize(r, 256<<10), sum: crc32.New(castagnoli)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, 0, fmt.Errorf("not a rafter snapshot (bad magic)")
	}
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	var hdr fsmv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	db := newDB()
	txn := db.Txn(true)
	var objects, members uint64
	sealed := false
	for {
		before := br.sum.Sum32()
		var rec fsmv1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read record %d: %w", objects+members, err)
		}
		if sealed {
			return nil, 0, fmt.Errorf("data after the snapshot trailer")
		}
		switch r := rec.Record.(type) {
		case *fsmv1.SnapshotRecord_Trailer:
			if r.Trailer.GetCrc32C() != before {
				return nil, 0, fmt.Errorf("snapshot checksum mismatch: stored %08x, computed %08x", r.Trailer.GetCrc32C(), before)
			}
			sealed = true
		case *fsmv1.SnapshotRecord_Member:
			m := r.Member
			if err := txn.Insert(tableMembers, &memberEntry{ID: m.GetId(), Member: Member{
				ID: m.GetId(), RaftAddress: m.GetRaftAddress(), GRPCAddress: m.GetGrpcAddress(), HTTPAddress: m.GetHttpAddress(),
			}}); err != nil {
				return nil, 0, fmt.Errorf("restore member %s: %w", m.GetId(), err)
			}
			members++
		case *fsmv1.SnapshotRecord_Object:
			if err := restoreObject(txn, r.Object); err != nil {
				return nil, 0, err
			}
			objects++
		default:
			return nil, 0, fmt.Errorf("unknown snapshot record %T", rec.Record)
		}
	}
	if !sealed || objects != hdr.GetObjectCount() || members != hdr.GetMemberCount() {
		return nil, 0, fmt.Errorf("snapshot truncated: %d of %d objects, %d of %d members, trailer present: %v",
			objects, hdr.GetObjectCount(), members, hdr.GetMemberCount(), sealed)
	}
	txn.Commit()
	return db, hdr.GetAppliedIndex(), nil
}

func restoreObject(txn *memdb.Txn, so *fsmv1.SnapshotObject) error {
	msg, err := so.GetObject().UnmarshalNew()
	if err != nil {
		return fmt.Errorf("decode %s: %w", so.GetKind(), err)
	}
	obj, ok := msg.(Object)
	if !ok || obj.GetMetadata() == nil {
		return fmt.Errorf("snapshot object %s has no metadata", so.GetKind())
	}
	var rv uint64
	if _, err := fmt.Sscan(obj.GetMetadata().GetResourceVersion(), &rv); err != nil {
		return fmt.Errorf("snapshot %s %s: bad resourceVersion: %w", so.GetKind(), obj.GetMetadata().GetName(), err)
	}
	if err := txn.Insert(tableObjects, newEntry(so.GetKind(), obj, rv)); err != nil {
		return fmt.Errorf("restore %s: %w", so.GetKind(), err)
	}
	if svc, ok := obj.(*corev1.Service); ok {
		return allocateService(txn, svc)
	}
	return nil
}

// CheckSnapshot reads a whole snapshot stream and returns its applied index, or the
// first problem with it. Raft panics when an FSM cannot restore a snapshot it was
// handed, so a backup from outside is checked with this first.
func CheckSnapshot(r io.Reader) (uint64, error) {
	_, index, err := readSnapshot(r)
	return index, err
}

// SnapshotIndex reads the applied index from the header of a snapshot stream.
func SnapshotIndex(r io.Reader) (uint64, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return 0, fmt.Errorf("not a rafter snapshot (bad magic)")
	}
	var hdr fsmv1.SnapshotHeader
	if err := (protodelim.UnmarshalOptions{}).UnmarshalFrom(br, &hdr); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	return hdr.GetAppliedIndex(), nil
}

package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Object is any API object: every generated kind message has a metadata field.
type Object interface {
	proto.Message
	GetMetadata() *metav1.ObjectMeta
}

// entry is one stored object. Entries and the messages they hold are immutable once
// inserted: readers share them, and Apply replaces rather than mutates.
type entry struct {
	Key       string // kind/namespace/name
	Kind      string
	Namespace string
	Name      string
	UID       string
	Owners    []string // uids from ownerReferences
	NodeName  string   // pods only: spec.nodeName
	RV        uint64
	Obj       Object
}

// alloc records that a Service holds a ClusterIP or NodePort.
type alloc struct {
	Key    string // "clusterIP/10.96.0.10", "nodePort/30080"
	Holder string // namespace/name of the Service
}

// Member says how to reach a control-plane peer.
type Member struct {
	ID          string
	RaftAddress string
	GRPCAddress string
	HTTPAddress string
}

type memberEntry struct {
	ID     string
	Member Member
}

const (
	tableObjects = "objects"
	tableAllocs  = "allocs"
	tableMembers = "members"
)

func objectKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// kindPrefix is the id-index prefix of every object of kind in namespace, or in
// all namespaces when namespace is empty.
func kindPrefix(kind, namespace string) string {
	if namespace == "" {
		return kind + "/"
	}
	return kind + "/" + namespace + "/"
}

func newDB() *memdb.MemDB {
	schema := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableObjects: {
			Name: tableObjects,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
				"owner": {Name: "owner", AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "Owners"}},
				"node":  {Name: "node", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "NodeName"}},
			},
		},
		tableAllocs: {
			Name: tableAllocs,
			Indexes: map[string]*memdb.IndexSchema{
				"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
				"holder": {Name: "holder", Indexer: &memdb.StringFieldIndex{Field: "Holder"}},
			},
		},
		tableMembers: {
			Name: tableMembers,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			},
		},
	}}
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		panic(fmt.Sprintf("fsm: invalid memdb schema: %v", err)) // a programming error
	}
	return db
}

// View is a consistent read-only snapshot of the state at Index. Objects it returns
// are shared with the store and other readers: never modify them (proto.Clone first).
// A View is cheap, safe for concurrent use, and never blocks writers.
type View struct {
	txn   *memdb.Txn
	Index uint64
}

// Get returns the object kind/namespace/name (namespace "" for cluster-scoped kinds).
func (v *View) Get(kind, namespace, name string) (Object, bool) {
	raw, err := v.txn.First(tableObjects, "id", objectKey(kind, namespace, name))
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*entry).Obj, true
}

// List calls fn for every object of kind in namespace (all namespaces when empty), in
// namespace/name order, until fn returns false.
func (v *View) List(kind, namespace string, fn func(Object) bool) {
	it, err := v.txn.Get(tableObjects, "id_prefix", kindPrefix(kind, namespace))
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*entry).Obj) {
			return
		}
	}
}

// Count returns how many objects of kind are in namespace (all when empty).
func (v *View) Count(kind, namespace string) int {
	n := 0
	v.List(kind, namespace, func(Object) bool { n++; return true })
	return n
}

// ByOwner calls fn for every object whose ownerReferences name uid.
func (v *View) ByOwner(uid string, fn func(kind string, o Object) bool) {
	it, err := v.txn.Get(tableObjects, "owner", uid)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*entry)
		if !fn(e.Kind, e.Obj) {
			return
		}
	}
}

// PodsOnNode calls fn for every pod bound to node.
func (v *View) PodsOnNode(node string, fn func(Object) bool) {
	it, err := v.txn.Get(tableObjects, "node", node)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*entry).Obj) {
			return
		}
	}
}

// Allocated reports which Service (namespace/name) holds an allocation key such as
// "clusterIP/10.96.0.10" or "nodePort/30080".
func (v *View) Allocated(key string) (string, bool) {
	raw, err := v.txn.First(tableAllocs, "id", key)
	if err != nil || raw == nil {
		return "", false
	}
	return raw.(*alloc).Holder, true
}

// Allocations calls fn for every allocation key with the given prefix ("clusterIP/").
func (v *View) Allocations(prefix string, fn func(key, holder string) bool) {
	it, err := v.txn.Get(tableAllocs, "id_prefix", prefix)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		a := raw.(*alloc)
		if !fn(a.Key, a.Holder) {
			return
		}
	}
}

// Members returns every recorded control-plane member, ordered by id.
func (v *View) Members() []Member {
	it, err := v.txn.Get(tableMembers, "id")
	if err != nil {
		return nil
	}
	var out []Member
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*memberEntry).Member)
	}
	return out
}

// Member returns the member with id.
func (v *View) Member(id string) (Member, bool) {
	raw, err := v.txn.First(tableMembers, "id", id)
	if err != nil || raw == nil {
		return Member{}, false
	}
	return raw.(*memberEntry).Member, true
}

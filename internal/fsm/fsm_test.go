package fsm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	rbacv1 "github.com/rafter-dev/rafter/gen/rafter/rbac/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
	"github.com/rafter-dev/rafter/internal/fsm/fsmtest"
)

// stateOf describes everything a view holds — every object with its stored bytes,
// every allocation, every member — in a deterministic order, so two states compare
// with slices.Equal.
func stateOf(t *testing.T, v *fsm.View) []string {
	t.Helper()
	var out []string
	for _, k := range kinds.All {
		v.List(k.Kind, "", func(o fsm.Object) bool {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
			if err != nil {
				t.Fatalf("marshal %s: %v", k.Kind, err)
			}
			md := o.GetMetadata()
			out = append(out, fmt.Sprintf("%s %s/%s rv=%s %x", k.Kind, md.GetNamespace(), md.GetName(), md.GetResourceVersion(), b))
			return true
		})
	}
	v.Allocations("", func(key, holder string) bool {
		out = append(out, "alloc "+key+" "+holder)
		return true
	})
	for _, m := range v.Members() {
		out = append(out, fmt.Sprintf("member %+v", m))
	}
	return out
}

func rv(index uint64) string { return strconv.FormatUint(index, 10) }

// withDefault returns an FSM holding the Namespace "default".
func withDefault(t *testing.T) *fsm.FSM {
	t.Helper()
	f := fsmtest.New(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("default")))
	return f
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name   string
		window int
		ok     bool
	}{
		{"default", fsm.DefaultConfig().WatchWindow, true},
		{"one", 1, true},
		{"zero", 0, false},
		{"negative", -1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fsm.DefaultConfig()
			cfg.WatchWindow = c.window
			if err := cfg.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, c.ok)
			}
			if _, err := fsm.New(cfg); (err == nil) != c.ok {
				t.Fatalf("New() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	f := fsmtest.New(t)
	ns := fsmtest.Apply(t, f, 3, fsmtest.Create(fsmtest.Namespace("default")))
	if ns.Err != nil {
		t.Fatalf("create namespace: %v", ns.Err)
	}
	cm := fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"})
	// Whatever the proposer put in resourceVersion and generation is replaced.
	cm.Metadata.ResourceVersion = "999"
	cm.Metadata.Generation = 42
	// Raft indexes have gaps (configuration entries), so 12 follows 3.
	res := fsmtest.Apply(t, f, 12, fsmtest.Create(cm))
	if res.Err != nil {
		t.Fatalf("create: %v", res.Err)
	}
	md := res.Object.GetMetadata()
	if md.GetResourceVersion() != "12" {
		t.Errorf("resourceVersion = %q, want %q (the log index)", md.GetResourceVersion(), "12")
	}
	if md.GetGeneration() != 1 {
		t.Errorf("generation = %d, want 1", md.GetGeneration())
	}
	if md.GetUid() != "uid-default-cfg" {
		t.Errorf("uid = %q, want the proposer's %q", md.GetUid(), "uid-default-cfg")
	}
	if got := ns.Object.GetMetadata().GetResourceVersion(); got != "3" {
		t.Errorf("namespace resourceVersion = %q, want 3", got)
	}
	if f.Applied() != 12 {
		t.Errorf("Applied() = %d, want 12", f.Applied())
	}
	stored := fsmtest.Get[*corev1.ConfigMap](t, f, "ConfigMap", "default", "cfg")
	if !proto.Equal(stored, res.Object) {
		t.Errorf("stored %v, result %v", stored, res.Object)
	}
	if stored.GetData()["k"] != "v" {
		t.Errorf("data = %v", stored.GetData())
	}
}

// TestApplyErrorsChangeNothing checks every way a command can fail: the error
// matches the documented sentinel, no object is returned, the state and watch
// history are untouched, and the applied index still advances past the entry.
func TestApplyErrorsChangeNothing(t *testing.T) {
	badAny := func(kind, url string, value []byte) *fsmv1.Command {
		return &fsmv1.Command{Op: &fsmv1.Command_Put{Put: &fsmv1.Put{
			Kind: kind, Create: true, Object: &anypb.Any{TypeUrl: url, Value: value},
		}}}
	}
	for _, c := range []struct {
		name string
		cmd  *fsmv1.Command
		data []byte // raw entry data, instead of cmd
		want error
	}{
		{name: "namespace missing", cmd: fsmtest.Create(fsmtest.ConfigMap("nope", "x", nil)), want: fsm.ErrNotFound},
		{name: "already exists", cmd: fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "other"})), want: fsm.ErrAlreadyExists},
		{name: "namespace already exists", cmd: fsmtest.Create(fsmtest.Namespace("default")), want: fsm.ErrAlreadyExists},
		{name: "cluster-scoped with namespace", cmd: fsmtest.Create(&corev1.Node{Metadata: fsmtest.Meta("default", "n2")}), want: fsm.ErrInvalidCommand},
		{name: "namespaced without namespace", cmd: fsmtest.Create(fsmtest.ConfigMap("", "x", nil)), want: fsm.ErrInvalidCommand},
		{name: "message type does not match kind", cmd: fsmtest.PutKind("ConfigMap", &corev1.Secret{Metadata: fsmtest.Meta("default", "s")}, true, ""), want: fsm.ErrInvalidCommand},
		{name: "unknown kind", cmd: fsmtest.PutKind("Widget", fsmtest.ConfigMap("default", "w", nil), true, ""), want: fsm.ErrInvalidCommand},
		{name: "no metadata", cmd: fsmtest.PutKind("ConfigMap", &corev1.ConfigMap{}, true, ""), want: fsm.ErrInvalidCommand},
		{name: "no name", cmd: fsmtest.Create(fsmtest.ConfigMap("default", "", nil)), want: fsm.ErrInvalidCommand},
		{name: "undecodable object", cmd: badAny("ConfigMap", "type.googleapis.com/rafter.core.v1.ConfigMap", []byte{0xff, 0xff}), want: fsm.ErrInvalidCommand},
		{name: "unregistered object type", cmd: badAny("ConfigMap", "type.googleapis.com/nope.v1.Nope", nil), want: fsm.ErrInvalidCommand},
		{name: "undecodable entry", data: []byte{0xff, 0xff, 0xff}, want: fsm.ErrInvalidCommand},
		{name: "empty command", cmd: &fsmv1.Command{}, want: fsm.ErrInvalidCommand},
		{name: "put without object", cmd: &fsmv1.Command{Op: &fsmv1.Command_Put{Put: &fsmv1.Put{Kind: "ConfigMap", Create: true}}}, want: fsm.ErrInvalidCommand},
		{name: "update missing", cmd: fsmtest.Update(fsmtest.ConfigMap("default", "missing", nil), ""), want: fsm.ErrNotFound},
		{name: "update stale", cmd: fsmtest.Update(fsmtest.ConfigMap("default", "cfg", nil), "1"), want: fsm.ErrConflict},
		{name: "delete missing", cmd: fsmtest.Delete("ConfigMap", "default", "missing"), want: fsm.ErrNotFound},
		{name: "delete in missing namespace", cmd: fsmtest.Delete("ConfigMap", "nope", "cfg"), want: fsm.ErrNotFound},
		{name: "delete unknown kind", cmd: fsmtest.Delete("Widget", "default", "cfg"), want: fsm.ErrInvalidCommand},
		{name: "delete stale", cmd: fsmtest.DeleteIf("ConfigMap", "default", "cfg", "1", ""), want: fsm.ErrConflict},
		{name: "delete namespace stale", cmd: fsmtest.DeleteIf("Namespace", "", "default", "", "someone-else"), want: fsm.ErrConflict},
		{name: "clusterIP taken", cmd: fsmtest.Create(fsmtest.Service("default", "b", "10.96.0.10")), want: fsm.ErrAllocated},
		{name: "member without id", cmd: fsmtest.SetMember("", "r", "g", "h"), want: fsm.ErrInvalidCommand},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withDefault(t)
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"})))
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "a", "10.96.0.10", 30080)))
			fsmtest.MustApply(t, f, fsmtest.SetMember("m1", "r1", "g1", "h1"))
			before := stateOf(t, f.View())
			w, err := f.Watch(f.Applied(), nil)
			if err != nil {
				t.Fatal(err)
			}

			index := f.Applied() + 5
			var res *fsm.Result
			if c.data != nil {
				out := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: c.data})
				if res, _ = out.(*fsm.Result); res == nil {
					t.Fatalf("Apply returned %T, want *fsm.Result", out)
				}
			} else {
				res = fsmtest.Apply(t, f, index, c.cmd)
			}
			if !errors.Is(res.Err, c.want) {
				t.Fatalf("err = %v, want %v", res.Err, c.want)
			}
			if res.Object != nil {
				t.Errorf("a failed command returned object %v", res.Object)
			}
			if got := f.Applied(); got != index {
				t.Errorf("Applied() = %d, want %d: a failed entry is still applied", got, index)
			}
			if after := stateOf(t, f.View()); !slices.Equal(before, after) {
				t.Errorf("state changed:\nbefore %q\nafter  %q", before, after)
			}
			fsmtest.NoEvent(t, w)
		})
	}
}

func TestNamespaceNotFoundError(t *testing.T) {
	f := fsmtest.New(t)
	res := fsmtest.ApplyNext(t, f, fsmtest.Create(fsmtest.Pod("kube-system", "p", "")))
	var nf *fsm.NamespaceNotFoundError
	if !errors.As(res.Err, &nf) {
		t.Fatalf("err = %v, want a *fsm.NamespaceNotFoundError", res.Err)
	}
	if nf.Namespace != "kube-system" {
		t.Errorf("Namespace = %q, want kube-system", nf.Namespace)
	}
	if !errors.Is(res.Err, fsm.ErrNotFound) {
		t.Errorf("%v does not match ErrNotFound", res.Err)
	}
}

func TestApplyNonCommandEntries(t *testing.T) {
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogBarrier, raft.LogConfiguration} {
		t.Run(typ.String(), func(t *testing.T) {
			f := withDefault(t)
			before := stateOf(t, f.View())
			// Data that would be an invalid command is ignored for other entry types.
			out := f.Apply(&raft.Log{Index: 9, Type: typ, Data: []byte{0xff}})
			res, ok := out.(*fsm.Result)
			if !ok || res.Err != nil || res.Object != nil {
				t.Fatalf("Apply = %#v, want an empty *fsm.Result", out)
			}
			if f.Applied() != 9 {
				t.Errorf("Applied() = %d, want 9", f.Applied())
			}
			if after := stateOf(t, f.View()); !slices.Equal(before, after) {
				t.Errorf("state changed: %q -> %q", before, after)
			}
		})
	}
}

func TestUpdatePreconditions(t *testing.T) {
	for _, c := range []struct {
		name     string
		expected func(current string) string
		want     error
	}{
		{"unconditional", func(string) string { return "" }, nil},
		{"current resourceVersion", func(cur string) string { return cur }, nil},
		{"stale resourceVersion", func(string) string { return "2" }, fsm.ErrConflict},
		{"future resourceVersion", func(string) string { return "1000" }, fsm.ErrConflict},
		{"not a number", func(string) string { return "abc" }, fsm.ErrConflict},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withDefault(t)
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "1"})))
			_, created := fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "2"}), ""))
			cur := created.Object.GetMetadata().GetResourceVersion()

			index := f.Applied() + 1
			res := fsmtest.Apply(t, f, index, fsmtest.Update(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "3"}), c.expected(cur)))
			if !errors.Is(res.Err, c.want) || (c.want == nil && res.Err != nil) {
				t.Fatalf("err = %v, want %v", res.Err, c.want)
			}
			stored := fsmtest.Get[*corev1.ConfigMap](t, f, "ConfigMap", "default", "cfg")
			wantData, wantRV := "3", rv(index)
			if c.want != nil {
				wantData, wantRV = "2", cur
			}
			if stored.GetData()["k"] != wantData || stored.GetMetadata().GetResourceVersion() != wantRV {
				t.Errorf("stored data %v at rv %s, want k=%s at rv %s",
					stored.GetData(), stored.GetMetadata().GetResourceVersion(), wantData, wantRV)
			}
		})
	}
}

func TestUpdateGeneration(t *testing.T) {
	cm := func() fsm.Object {
		return fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"})
	}
	svc := func() fsm.Object {
		s := fsmtest.Service("default", "svc", "10.96.0.10")
		s.Spec.Selector = map[string]string{"app": "a"}
		return s
	}
	for _, c := range []struct {
		name   string
		base   func() fsm.Object
		change func(fsm.Object)
		bump   bool
	}{
		{"configmap data changed", cm, func(o fsm.Object) { o.(*corev1.ConfigMap).Data["k"] = "w" }, true},
		{"configmap key added", cm, func(o fsm.Object) { o.(*corev1.ConfigMap).Data["k2"] = "v" }, true},
		{"configmap binaryData added", cm, func(o fsm.Object) { o.(*corev1.ConfigMap).BinaryData = map[string][]byte{"b": {1}} }, true},
		{"configmap made immutable", cm, func(o fsm.Object) { o.(*corev1.ConfigMap).Immutable = proto.Bool(true) }, true},
		{"nothing changed", cm, func(fsm.Object) {}, false},
		{"labels only", cm, func(o fsm.Object) { o.GetMetadata().Labels = map[string]string{"l": "1"} }, false},
		{"annotations only", cm, func(o fsm.Object) { o.GetMetadata().Annotations = map[string]string{"a": "1"} }, false},
		{"apiVersion and kind only", cm, func(o fsm.Object) {
			o.(*corev1.ConfigMap).ApiVersion, o.(*corev1.ConfigMap).Kind = "v1", "ConfigMap"
		}, false},
		{"proposer-supplied generation", cm, func(o fsm.Object) { o.GetMetadata().Generation = 10 }, false},
		{"service status only", svc, func(o fsm.Object) {
			o.(*corev1.Service).Status = &corev1.ServiceStatus{LoadBalancer: &corev1.LoadBalancerStatus{
				Ingress: []*corev1.LoadBalancerIngress{{Ip: "192.0.2.1"}},
			}}
		}, false},
		{"service spec changed", svc, func(o fsm.Object) { o.(*corev1.Service).Spec.Selector["app"] = "b" }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withDefault(t)
			base := c.base()
			fsmtest.MustApply(t, f, fsmtest.Create(base))
			changed := proto.Clone(base).(fsm.Object)
			c.change(changed)
			index, res := fsmtest.MustApply(t, f, fsmtest.Update(changed, ""))
			want := int64(1)
			if c.bump {
				want = 2
			}
			md := res.Object.GetMetadata()
			if md.GetGeneration() != want {
				t.Errorf("generation = %d, want %d", md.GetGeneration(), want)
			}
			if md.GetResourceVersion() != rv(index) {
				t.Errorf("resourceVersion = %s, want %d even when generation stays", md.GetResourceVersion(), index)
			}
		})
	}
}

func TestGenerationCountsSpecChanges(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "0"})))
	for i, c := range []struct {
		data   string
		labels string
		want   int64
	}{
		{"1", "", 2},
		{"1", "x", 2},
		{"2", "x", 3},
		{"2", "y", 3},
		{"3", "y", 4},
	} {
		cm := fsmtest.ConfigMap("default", "cfg", map[string]string{"k": c.data})
		cm.Metadata.Labels = map[string]string{"l": c.labels}
		_, res := fsmtest.MustApply(t, f, fsmtest.Update(cm, ""))
		if got := res.Object.GetMetadata().GetGeneration(); got != c.want {
			t.Fatalf("update %d: generation = %d, want %d", i, got, c.want)
		}
	}
}

func TestUpdatePreservesIdentity(t *testing.T) {
	f := withDefault(t)
	created := &timestamppb.Timestamp{Seconds: 1_700_000_000}
	cm := fsmtest.ConfigMap("default", "cfg", nil)
	cm.Metadata.Uid = "uid-original"
	cm.Metadata.CreationTimestamp = created
	fsmtest.MustApply(t, f, fsmtest.Create(cm))

	upd := fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"})
	upd.Metadata.Uid = "uid-impostor"
	upd.Metadata.CreationTimestamp = &timestamppb.Timestamp{Seconds: 1_700_003_600}
	_, res := fsmtest.MustApply(t, f, fsmtest.Update(upd, ""))

	for _, o := range []fsm.Object{res.Object, fsmtest.Get[*corev1.ConfigMap](t, f, "ConfigMap", "default", "cfg")} {
		md := o.GetMetadata()
		if md.GetUid() != "uid-original" {
			t.Errorf("uid = %q, want uid-original", md.GetUid())
		}
		if !proto.Equal(md.GetCreationTimestamp(), created) {
			t.Errorf("creationTimestamp = %v, want %v", md.GetCreationTimestamp(), created)
		}
	}
	// The uid precondition of a delete sees the preserved uid.
	if res := fsmtest.ApplyNext(t, f, fsmtest.DeleteIf("ConfigMap", "default", "cfg", "", "uid-impostor")); !errors.Is(res.Err, fsm.ErrConflict) {
		t.Errorf("delete with the impostor uid: err = %v, want ErrConflict", res.Err)
	}
	fsmtest.MustApply(t, f, fsmtest.DeleteIf("ConfigMap", "default", "cfg", "", "uid-original"))
}

func TestDeletePreconditions(t *testing.T) {
	for _, c := range []struct {
		name     string
		rv, uid  func(cur string) string
		wantErr  error
		wantGone bool
	}{
		{"none", nil, nil, nil, true},
		{"current resourceVersion", func(cur string) string { return cur }, nil, nil, true},
		{"stale resourceVersion", func(string) string { return "2" }, nil, fsm.ErrConflict, false},
		{"matching uid", nil, func(string) string { return "uid-default-cfg" }, nil, true},
		{"other uid", nil, func(string) string { return "uid-recreated" }, fsm.ErrConflict, false},
		{"both match", func(cur string) string { return cur }, func(string) string { return "uid-default-cfg" }, nil, true},
		{"rv matches, uid does not", func(cur string) string { return cur }, func(string) string { return "x" }, fsm.ErrConflict, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withDefault(t)
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", nil)))
			_, upd := fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"}), ""))
			cur := upd.Object.GetMetadata().GetResourceVersion()
			var wantRV, wantUID string
			if c.rv != nil {
				wantRV = c.rv(cur)
			}
			if c.uid != nil {
				wantUID = c.uid(cur)
			}
			res := fsmtest.ApplyNext(t, f, fsmtest.DeleteIf("ConfigMap", "default", "cfg", wantRV, wantUID))
			if !errors.Is(res.Err, c.wantErr) || (c.wantErr == nil && res.Err != nil) {
				t.Fatalf("err = %v, want %v", res.Err, c.wantErr)
			}
			if _, ok := f.View().Get("ConfigMap", "default", "cfg"); ok == c.wantGone {
				t.Errorf("object present = %v after delete, want %v", ok, !c.wantGone)
			}
		})
	}
}

func TestDeleteReturnsObjectAtDeleteRV(t *testing.T) {
	f := withDefault(t)
	_, created := fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", map[string]string{"k": "v"})))
	before := f.View()
	index, res := fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "cfg"))

	gone := res.Object.(*corev1.ConfigMap)
	if gone.GetMetadata().GetResourceVersion() != rv(index) {
		t.Errorf("deleted object resourceVersion = %s, want %d", gone.GetMetadata().GetResourceVersion(), index)
	}
	if gone.GetData()["k"] != "v" || gone.GetMetadata().GetUid() != "uid-default-cfg" {
		t.Errorf("deleted object = %v, want the last stored state", gone)
	}
	// Stamping the deletion's version must not touch the object older views share.
	old, ok := before.Get("ConfigMap", "default", "cfg")
	if !ok {
		t.Fatal("a view taken before the delete lost the object")
	}
	if got, want := old.GetMetadata().GetResourceVersion(), created.Object.GetMetadata().GetResourceVersion(); got != want {
		t.Errorf("older view's object resourceVersion = %s, want %s", got, want)
	}
	if _, ok := f.View().Get("ConfigMap", "default", "cfg"); ok {
		t.Error("object still present after delete")
	}
	// The name is free again.
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "cfg", nil)))
}

func TestDeleteNamespaceDeletesContents(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("doomed")))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("doomed-not")))
	fsmtest.MustApply(t, f, fsmtest.Batch(
		fsmtest.Create(fsmtest.ConfigMap("doomed", "a", nil)),
		fsmtest.Create(fsmtest.ConfigMap("doomed", "b", nil)),
		fsmtest.Create(fsmtest.Pod("doomed", "p", "n1")),
		fsmtest.Create(fsmtest.Service("doomed", "s", "10.96.0.10", 30080)),
		fsmtest.Create(fsmtest.ConfigMap("doomed-not", "a", nil)),
		fsmtest.Create(fsmtest.ConfigMap("default", "a", nil)),
	))
	w, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}

	index, res := fsmtest.MustApply(t, f, fsmtest.Delete("Namespace", "", "doomed"))
	if res.Object.GetMetadata().GetName() != "doomed" {
		t.Errorf("result = %v, want the namespace", res.Object)
	}

	v := f.View()
	for _, k := range kinds.All {
		if n := v.Count(k.Kind, "doomed"); n != 0 {
			t.Errorf("%d %s left in the deleted namespace", n, k.Kind)
		}
	}
	if _, ok := v.Get("Namespace", "", "doomed"); ok {
		t.Error("namespace still present")
	}
	for _, ns := range []string{"default", "doomed-not"} {
		if _, ok := v.Get("ConfigMap", ns, "a"); !ok {
			t.Errorf("ConfigMap %s/a was deleted with another namespace", ns)
		}
	}
	if holder, ok := v.Allocated("clusterIP/10.96.0.10"); ok {
		t.Errorf("clusterIP still held by %s", holder)
	}
	if holder, ok := v.Allocated("nodePort/30080"); ok {
		t.Errorf("nodePort still held by %s", holder)
	}

	want := []string{"Namespace//doomed", "ConfigMap/doomed/a", "ConfigMap/doomed/b", "Pod/doomed/p", "Service/doomed/s"}
	var got []string
	for range want {
		ev := fsmtest.ReadyEvent(t, w)
		if ev.Type != fsm.Deleted || ev.RV != index {
			t.Errorf("event %s %s rv %d, want DELETED at %d", ev.Type, ev.Kind, ev.RV, index)
		}
		if ev.Object.GetMetadata().GetResourceVersion() != rv(index) {
			t.Errorf("deleted %s resourceVersion = %s, want %d", ev.Kind, ev.Object.GetMetadata().GetResourceVersion(), index)
		}
		got = append(got, ev.Kind+"/"+ev.Object.GetMetadata().GetNamespace()+"/"+ev.Object.GetMetadata().GetName())
	}
	fsmtest.NoEvent(t, w)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("DELETED events for %q, want %q", got, want)
	}

	// The freed address and port can be taken by a Service elsewhere.
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "s", "10.96.0.10", 30080)))
}

func TestServiceAllocations(t *testing.T) {
	for _, c := range []struct {
		name string
		svc  *corev1.Service
		want []string
	}{
		{"clusterIP", fsmtest.Service("ns", "s", "10.96.0.10"), []string{"clusterIP/10.96.0.10"}},
		{"clusterIP field only", &corev1.Service{Spec: &corev1.ServiceSpec{ClusterIP: "10.96.0.11"}}, []string{"clusterIP/10.96.0.11"}},
		{"dual stack", &corev1.Service{Spec: &corev1.ServiceSpec{ClusterIP: "10.96.0.12", ClusterIPs: []string{"10.96.0.12", "fd00::12"}}},
			[]string{"clusterIP/10.96.0.12", "clusterIP/fd00::12"}},
		{"headless", fsmtest.Service("ns", "s", "None"), nil},
		{"no address", fsmtest.Service("ns", "s", ""), nil},
		{"no spec", &corev1.Service{}, nil},
		{"node ports", fsmtest.Service("ns", "s", "10.96.0.10", 30080, 30081),
			[]string{"clusterIP/10.96.0.10", "nodePort/30080", "nodePort/30081"}},
		{"same node port twice", fsmtest.Service("ns", "s", "", 30080, 30080), []string{"nodePort/30080"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fsm.ServiceAllocations(c.svc); !slices.Equal(got, c.want) {
				t.Errorf("ServiceAllocations = %q, want %q", got, c.want)
			}
		})
	}
}

func TestServiceAllocationConflicts(t *testing.T) {
	for _, c := range []struct {
		name      string
		second    *corev1.Service
		wantWhat  string // "" when the second Service must be accepted
		wantValue string
	}{
		{"same clusterIP", fsmtest.Service("default", "b", "10.96.0.10"), "clusterIP", "10.96.0.10"},
		{"same clusterIP in another namespace", fsmtest.Service("other", "b", "10.96.0.10"), "clusterIP", "10.96.0.10"},
		{"same nodePort", fsmtest.Service("default", "b", "10.96.0.11", 30080), "nodePort", "30080"},
		{"second of its nodePorts taken", fsmtest.Service("default", "b", "10.96.0.11", 30081, 30080), "nodePort", "30080"},
		{"address in clusterIPs", &corev1.Service{Metadata: fsmtest.Meta("default", "b"),
			Spec: &corev1.ServiceSpec{ClusterIPs: []string{"fd00::1", "10.96.0.10"}}}, "clusterIP", "10.96.0.10"},
		{"different address and port", fsmtest.Service("default", "b", "10.96.0.11", 30081), "", ""},
		{"headless", fsmtest.Service("default", "b", "None"), "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withDefault(t)
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("other")))
			fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "a", "10.96.0.10", 30080)))
			res := fsmtest.ApplyNext(t, f, fsmtest.Create(c.second))
			if c.wantWhat == "" {
				if res.Err != nil {
					t.Fatalf("create: %v", res.Err)
				}
				return
			}
			var ae *fsm.AllocatedError
			if !errors.As(res.Err, &ae) || !errors.Is(res.Err, fsm.ErrAllocated) {
				t.Fatalf("err = %v, want an *fsm.AllocatedError matching ErrAllocated", res.Err)
			}
			if ae.What != c.wantWhat || ae.Value != c.wantValue || ae.Holder != "default/a" {
				t.Errorf("AllocatedError = %+v, want %s %s held by default/a", ae, c.wantWhat, c.wantValue)
			}
			if _, ok := f.View().Get("Service", c.second.Metadata.Namespace, "b"); ok {
				t.Error("the conflicting Service was stored")
			}
		})
	}
}

func TestServiceUpdateAllocations(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "a", "10.96.0.10", 30080)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "b", "10.96.0.20", 30090)))

	// A Service updating itself keeps what it holds.
	same := fsmtest.Service("default", "a", "10.96.0.10", 30080)
	same.Spec.Selector = map[string]string{"app": "a"}
	fsmtest.MustApply(t, f, fsmtest.Update(same, ""))
	v := f.View()
	for _, key := range []string{"clusterIP/10.96.0.10", "nodePort/30080"} {
		if holder, ok := v.Allocated(key); !ok || holder != "default/a" {
			t.Errorf("%s held by %q (%v), want default/a", key, holder, ok)
		}
	}

	// Taking b's port fails and releases nothing a holds.
	res := fsmtest.ApplyNext(t, f, fsmtest.Update(fsmtest.Service("default", "a", "10.96.0.11", 30090), ""))
	if !errors.Is(res.Err, fsm.ErrAllocated) {
		t.Fatalf("update onto b's nodePort: err = %v, want ErrAllocated", res.Err)
	}
	v = f.View()
	for key, want := range map[string]string{"clusterIP/10.96.0.10": "default/a", "nodePort/30080": "default/a", "nodePort/30090": "default/b"} {
		if holder, _ := v.Allocated(key); holder != want {
			t.Errorf("after the failed update %s held by %q, want %s", key, holder, want)
		}
	}
	if _, ok := v.Allocated("clusterIP/10.96.0.11"); ok {
		t.Error("the failed update allocated its new clusterIP")
	}

	// Moving to a new address and dropping the node port releases the old ones.
	fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.Service("default", "a", "10.96.0.11"), ""))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "c", "10.96.0.10", 30080)))
	v = f.View()
	for key, want := range map[string]string{"clusterIP/10.96.0.11": "default/a", "clusterIP/10.96.0.10": "default/c", "nodePort/30080": "default/c"} {
		if holder, _ := v.Allocated(key); holder != want {
			t.Errorf("%s held by %q, want %s", key, holder, want)
		}
	}

	// Headless holds nothing: becoming headless frees the address.
	fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.Service("default", "a", "None"), ""))
	var held []string
	f.View().Allocations("", func(key, holder string) bool {
		if holder == "default/a" {
			held = append(held, key)
		}
		return true
	})
	if len(held) != 0 {
		t.Errorf("headless Service holds %q", held)
	}
}

func TestServiceDeleteReleasesAllocations(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "a", "10.96.0.10", 30080)))
	if res := fsmtest.ApplyNext(t, f, fsmtest.Create(fsmtest.Service("default", "b", "10.96.0.10", 30080))); !errors.Is(res.Err, fsm.ErrAllocated) {
		t.Fatalf("while a exists: err = %v, want ErrAllocated", res.Err)
	}
	fsmtest.MustApply(t, f, fsmtest.Delete("Service", "default", "a"))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "b", "10.96.0.10", 30080)))
	v := f.View()
	for _, key := range []string{"clusterIP/10.96.0.10", "nodePort/30080"} {
		if holder, _ := v.Allocated(key); holder != "default/b" {
			t.Errorf("%s held by %q, want default/b", key, holder)
		}
	}
}

func TestBatch(t *testing.T) {
	f := withDefault(t)
	w, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}
	index := f.Applied() + 1
	res := fsmtest.Apply(t, f, index, fsmtest.Batch(
		fsmtest.Create(fsmtest.ConfigMap("default", "a", map[string]string{"k": "1"})),
		fsmtest.Create(fsmtest.ConfigMap("default", "a", nil)),
		fsmtest.Create(fsmtest.ConfigMap("missing", "x", nil)),
		fsmtest.Create(fsmtest.ConfigMap("default", "b", nil)),
		fsmtest.Batch(fsmtest.Create(fsmtest.ConfigMap("default", "nested", nil))),
		fsmtest.Update(fsmtest.ConfigMap("default", "a", map[string]string{"k": "2"}), rv(index)),
		fsmtest.Noop(),
	))
	if res.Err != nil {
		t.Fatalf("batch: %v", res.Err)
	}
	wantErrs := []error{nil, fsm.ErrAlreadyExists, fsm.ErrNotFound, nil, fsm.ErrInvalidCommand, nil, nil}
	if len(res.Batch) != len(wantErrs) {
		t.Fatalf("%d results, want %d", len(res.Batch), len(wantErrs))
	}
	for i, want := range wantErrs {
		r := res.Batch[i]
		if want == nil {
			if r.Err != nil {
				t.Errorf("command %d: %v", i, r.Err)
			}
			if r.Object != nil && r.Object.GetMetadata().GetResourceVersion() != rv(index) {
				t.Errorf("command %d: resourceVersion %s, want the entry's %d", i, r.Object.GetMetadata().GetResourceVersion(), index)
			}
			continue
		}
		if !errors.Is(r.Err, want) {
			t.Errorf("command %d: err = %v, want %v", i, r.Err, want)
		}
		if r.Object != nil {
			t.Errorf("command %d failed but returned %v", i, r.Object)
		}
	}
	v := f.View()
	if _, ok := v.Get("ConfigMap", "default", "nested"); ok {
		t.Error("a command inside a nested batch was applied")
	}
	a := fsmtest.Get[*corev1.ConfigMap](t, f, "ConfigMap", "default", "a")
	if a.GetData()["k"] != "2" || a.GetMetadata().GetGeneration() != 2 {
		t.Errorf("a = %v, want the update applied on top of the create", a)
	}
	for _, want := range []struct {
		typ  fsm.EventType
		name string
	}{{fsm.Added, "a"}, {fsm.Added, "b"}, {fsm.Modified, "a"}} {
		ev := fsmtest.ReadyEvent(t, w)
		if ev.Type != want.typ || ev.Object.GetMetadata().GetName() != want.name || ev.RV != index {
			t.Errorf("event %s %s rv %d, want %s %s rv %d", ev.Type, ev.Object.GetMetadata().GetName(), ev.RV, want.typ, want.name, index)
		}
	}
	fsmtest.NoEvent(t, w)
}

// TestBatchSeesEarlierCommands checks that each command of a batch works on the
// state its predecessors left, and that a watcher sees every step.
func TestBatchSeesEarlierCommands(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "old", "10.96.0.10")))
	w, err := f.Watch(f.Applied(), nil)
	if err != nil {
		t.Fatal(err)
	}
	index, _ := fsmtest.MustApply(t, f, fsmtest.Batch(
		fsmtest.Create(fsmtest.Namespace("fresh")),
		fsmtest.Create(fsmtest.ConfigMap("fresh", "cfg", nil)),
		fsmtest.Delete("Service", "default", "old"),
		fsmtest.Create(fsmtest.Service("fresh", "new", "10.96.0.10")),
	))
	want := []string{
		fmt.Sprintf("%d ADDED Namespace//fresh", index),
		fmt.Sprintf("%d ADDED ConfigMap/fresh/cfg", index),
		fmt.Sprintf("%d DELETED Service/default/old", index),
		fmt.Sprintf("%d ADDED Service/fresh/new", index),
	}
	if got := describe(drain(t, w)); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if holder, _ := f.View().Allocated("clusterIP/10.96.0.10"); holder != "fresh/new" {
		t.Errorf("clusterIP held by %q, want fresh/new", holder)
	}
}

func TestEmptyBatch(t *testing.T) {
	f := withDefault(t)
	res := fsmtest.Apply(t, f, 5, fsmtest.Batch())
	if res.Err != nil || len(res.Batch) != 0 {
		t.Fatalf("empty batch = %+v", res)
	}
	if f.Applied() != 5 {
		t.Errorf("Applied() = %d, want 5", f.Applied())
	}
}

// TestApplyBatchMatchesApply feeds the same entries to one FSM one at a time and to
// another in raft batches (with a configuration entry and an index gap inside): the
// results, the events and the final state must be the same.
func TestApplyBatchMatchesApply(t *testing.T) {
	var logs []*raft.Log
	index := uint64(0)
	for i, cmd := range scenario() {
		index++
		if i == 4 {
			logs = append(logs, &raft.Log{Index: index, Type: raft.LogConfiguration})
			index += 2 // entries the FSM never sees
		}
		logs = append(logs, fsmtest.Log(t, index, cmd))
	}

	one, batched := fsmtest.New(t), fsmtest.New(t)
	w1, _ := one.Watch(0, nil)
	w2, _ := batched.Watch(0, nil)
	var want []interface{}
	for _, l := range logs {
		want = append(want, one.Apply(l))
	}
	var got []interface{}
	for _, chunk := range [][]*raft.Log{logs[:1], logs[1:6], logs[6:6], logs[6:]} {
		got = append(got, batched.ApplyBatch(chunk)...)
		if len(chunk) > 0 && batched.Applied() != chunk[len(chunk)-1].Index {
			t.Errorf("after a batch ending at %d: Applied() = %d", chunk[len(chunk)-1].Index, batched.Applied())
		}
	}

	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i].(*fsm.Result), got[i].(*fsm.Result)
		if fmt.Sprint(w.Err) != fmt.Sprint(g.Err) || len(w.Batch) != len(g.Batch) || !proto.Equal(w.Object, g.Object) {
			t.Errorf("entry %d: batched result %+v, want %+v", logs[i].Index, g, w)
		}
	}
	if a, b := describe(drain(t, w1)), describe(drain(t, w2)); !slices.Equal(a, b) || len(a) == 0 {
		t.Errorf("batched events %q, want %q", b, a)
	}
	if !bytes.Equal(saved(t, one.View()), saved(t, batched.View())) {
		t.Error("batched and single applies end in different states")
	}
}

// scenario is a command sequence touching every command type, including failures
// and objects with map fields (whose Go iteration order is random).
func scenario() []*fsmv1.Command {
	data := map[string]string{}
	for i := range 40 {
		data[fmt.Sprintf("key-%02d", i)] = strconv.Itoa(i)
	}
	labels := map[string]string{"app": "web", "tier": "front", "env": "prod", "team": "a", "zone": "z1"}
	cm := fsmtest.ConfigMap("default", "big", data)
	cm.Metadata.Labels = labels
	cm.Metadata.Annotations = labels
	svc := fsmtest.Service("default", "web", "10.96.0.10", 30080)
	svc.Spec.Selector = labels
	pod := fsmtest.Pod("default", "web-1", "n1")
	pod.Spec.NodeSelector = labels
	cm2 := proto.Clone(cm).(*corev1.ConfigMap)
	cm2.Data["key-00"] = "changed"
	return []*fsmv1.Command{
		fsmtest.Create(fsmtest.Namespace("default")),
		fsmtest.Create(fsmtest.Namespace("other")),
		fsmtest.SetMember("b", "rb", "gb", "hb"),
		fsmtest.SetMember("a", "ra", "ga", "ha"),
		fsmtest.Create(cm),
		fsmtest.Create(svc),
		fsmtest.Create(pod),
		fsmtest.Create(fsmtest.Service("default", "clash", "10.96.0.10")),
		fsmtest.Batch(
			fsmtest.Update(cm2, ""),
			fsmtest.Create(fsmtest.ConfigMap("other", "x", data)),
			fsmtest.Create(fsmtest.ConfigMap("nope", "x", nil)),
		),
		fsmtest.Create(&corev1.Node{Metadata: fsmtest.Meta("", "n1")}),
		fsmtest.Delete("Namespace", "", "other"),
		fsmtest.RemoveMember("b"),
		fsmtest.Noop(),
	}
}

func TestDeterministicSnapshots(t *testing.T) {
	save := func() []byte {
		f := fsmtest.New(t)
		for i, cmd := range scenario() {
			fsmtest.Apply(t, f, uint64(i+1), cmd)
		}
		var buf bytes.Buffer
		if err := f.View().Save(&buf); err != nil {
			t.Fatalf("Save: %v", err)
		}
		return buf.Bytes()
	}
	a, b := save(), save()
	if !bytes.Equal(a, b) {
		t.Fatalf("two FSMs fed the same commands saved different snapshots (%d and %d bytes)", len(a), len(b))
	}
}

// TestSnapshotMapOrderIsDeterministic is the regression test for View.Save encoding
// objects with proto's default (random) map order, which made two saves of one view
// differ byte for byte.
func TestSnapshotMapOrderIsDeterministic(t *testing.T) {
	f := fsmtest.New(t)
	for _, cmd := range scenario() {
		fsmtest.ApplyNext(t, f, cmd)
	}
	v := f.View()
	var first bytes.Buffer
	if err := v.Save(&first); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		var again bytes.Buffer
		if err := v.Save(&again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), again.Bytes()) {
			t.Fatalf("save %d of the same view differs from the first", i+2)
		}
	}
}

func TestMembers(t *testing.T) {
	f := fsmtest.New(t)
	fsmtest.MustApply(t, f, fsmtest.SetMember("c", "rc", "gc", "hc"))
	fsmtest.MustApply(t, f, fsmtest.SetMember("a", "ra", "ga", "ha"))
	fsmtest.MustApply(t, f, fsmtest.SetMember("b", "rb", "gb", "hb"))
	fsmtest.MustApply(t, f, fsmtest.SetMember("a", "ra2", "ga2", "ha2"))

	want := []fsm.Member{
		{ID: "a", RaftAddress: "ra2", GRPCAddress: "ga2", HTTPAddress: "ha2"},
		{ID: "b", RaftAddress: "rb", GRPCAddress: "gb", HTTPAddress: "hb"},
		{ID: "c", RaftAddress: "rc", GRPCAddress: "gc", HTTPAddress: "hc"},
	}
	if got := f.View().Members(); !slices.Equal(got, want) {
		t.Fatalf("Members() = %+v, want %+v", got, want)
	}
	if m, ok := f.View().Member("b"); !ok || m != want[1] {
		t.Errorf("Member(b) = %+v, %v", m, ok)
	}

	fsmtest.MustApply(t, f, fsmtest.RemoveMember("b"))
	fsmtest.MustApply(t, f, fsmtest.RemoveMember("never-there"))
	if got := f.View().Members(); !slices.Equal(got, []fsm.Member{want[0], want[2]}) {
		t.Errorf("after removing b: Members() = %+v", got)
	}
	if _, ok := f.View().Member("b"); ok {
		t.Error("Member(b) found after removal")
	}
}

func TestViewGetList(t *testing.T) {
	f := fsmtest.New(t)
	for _, ns := range []string{"b", "a", "ab"} {
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace(ns)))
	}
	for _, key := range [][2]string{{"b", "y"}, {"a", "z"}, {"ab", "x"}, {"a", "x"}, {"b", "x"}} {
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap(key[0], key[1], nil)))
	}
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Pod("a", "x", "")))
	// One kind name is a prefix of another.
	fsmtest.MustApply(t, f, fsmtest.Create(&rbacv1.Role{Metadata: fsmtest.Meta("a", "r")}))
	fsmtest.MustApply(t, f, fsmtest.Create(&rbacv1.RoleBinding{Metadata: fsmtest.Meta("a", "rb")}))
	v := f.View()

	names := func(kind, ns string, limit int) []string {
		var out []string
		v.List(kind, ns, func(o fsm.Object) bool {
			out = append(out, o.GetMetadata().GetNamespace()+"/"+o.GetMetadata().GetName())
			return len(out) < limit
		})
		return out
	}
	for _, c := range []struct {
		name, kind, ns string
		limit          int
		want           []string
	}{
		{"all namespaces", "ConfigMap", "", 100, []string{"a/x", "a/z", "ab/x", "b/x", "b/y"}},
		{"one namespace", "ConfigMap", "a", 100, []string{"a/x", "a/z"}},
		{"namespace that prefixes another", "ConfigMap", "ab", 100, []string{"ab/x"}},
		{"empty namespace", "ConfigMap", "c", 100, nil},
		{"stops when fn returns false", "ConfigMap", "", 2, []string{"a/x", "a/z"}},
		{"other kind", "Pod", "", 100, []string{"a/x"}},
		{"kind that prefixes another", "Role", "", 100, []string{"a/r"}},
		{"kind that prefixes another, in a namespace", "Role", "a", 100, []string{"a/r"}},
		{"cluster-scoped", "Namespace", "", 100, []string{"/a", "/ab", "/b"}},
		{"unknown kind", "Widget", "", 100, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := names(c.kind, c.ns, c.limit); !slices.Equal(got, c.want) {
				t.Errorf("List = %q, want %q", got, c.want)
			}
			if c.limit == 100 {
				if got := v.Count(c.kind, c.ns); got != len(c.want) {
					t.Errorf("Count = %d, want %d", got, len(c.want))
				}
			}
		})
	}

	for _, c := range []struct {
		kind, ns, name string
		ok             bool
	}{
		{"ConfigMap", "a", "x", true},
		{"ConfigMap", "ab", "x", true},
		{"ConfigMap", "c", "x", false},
		{"ConfigMap", "", "x", false},
		{"Pod", "b", "x", false},
		{"Namespace", "", "ab", true},
		{"Namespace", "ab", "", false},
	} {
		obj, ok := v.Get(c.kind, c.ns, c.name)
		if ok != c.ok {
			t.Errorf("Get(%s, %q, %q) found = %v, want %v", c.kind, c.ns, c.name, ok, c.ok)
			continue
		}
		if ok && (obj.GetMetadata().GetName() != c.name || obj.GetMetadata().GetNamespace() != c.ns || fsmtest.KindOf(obj) != c.kind) {
			t.Errorf("Get(%s, %q, %q) = %v", c.kind, c.ns, c.name, obj)
		}
	}
}

func TestViewByOwner(t *testing.T) {
	f := withDefault(t)
	rs := &appsv1.ReplicaSet{Metadata: fsmtest.Meta("default", "rs")}
	other := &appsv1.ReplicaSet{Metadata: fsmtest.Meta("default", "other")}
	fsmtest.MustApply(t, f, fsmtest.Create(rs))
	fsmtest.MustApply(t, f, fsmtest.Create(other))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.OwnedBy(fsmtest.Pod("default", "p1", ""), rs)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.OwnedBy(fsmtest.Pod("default", "p2", ""), other)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.OwnedBy(fsmtest.OwnedBy(fsmtest.Pod("default", "p3", ""), other), rs)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.OwnedBy(fsmtest.ConfigMap("default", "c", nil), rs)))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Pod("default", "orphan", "")))

	owned := func(uid string) []string {
		var out []string
		f.View().ByOwner(uid, func(kind string, o fsm.Object) bool {
			out = append(out, kind+"/"+o.GetMetadata().GetName())
			return true
		})
		slices.Sort(out)
		return out
	}
	if got, want := owned(rs.Metadata.Uid), []string{"ConfigMap/c", "Pod/p1", "Pod/p3"}; !slices.Equal(got, want) {
		t.Errorf("ByOwner(rs) = %q, want %q", got, want)
	}
	if got, want := owned(other.Metadata.Uid), []string{"Pod/p2", "Pod/p3"}; !slices.Equal(got, want) {
		t.Errorf("ByOwner(other) = %q, want %q", got, want)
	}
	if got := owned("nobody"); len(got) != 0 {
		t.Errorf("ByOwner(nobody) = %q", got)
	}
	n := 0
	f.View().ByOwner(rs.Metadata.Uid, func(string, fsm.Object) bool { n++; return false })
	if n != 1 {
		t.Errorf("ByOwner kept calling after fn returned false: %d calls", n)
	}

	// Dropping the reference and deleting an owned object update the index.
	fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.OwnedBy(fsmtest.Pod("default", "p3", ""), other), ""))
	fsmtest.MustApply(t, f, fsmtest.Delete("ConfigMap", "default", "c"))
	if got, want := owned(rs.Metadata.Uid), []string{"Pod/p1"}; !slices.Equal(got, want) {
		t.Errorf("after update and delete: ByOwner(rs) = %q, want %q", got, want)
	}
}

func TestViewPodsOnNode(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Namespace("kube-system")))
	for _, p := range []*corev1.Pod{
		fsmtest.Pod("default", "a", "n1"),
		fsmtest.Pod("default", "b", "n2"),
		fsmtest.Pod("kube-system", "c", "n1"),
		fsmtest.Pod("default", "pending", ""),
	} {
		fsmtest.MustApply(t, f, fsmtest.Create(p))
	}
	on := func(node string) []string {
		var out []string
		f.View().PodsOnNode(node, func(o fsm.Object) bool {
			out = append(out, o.GetMetadata().GetNamespace()+"/"+o.GetMetadata().GetName())
			return true
		})
		slices.Sort(out)
		return out
	}
	for node, want := range map[string][]string{
		"n1": {"default/a", "kube-system/c"},
		"n2": {"default/b"},
		"n3": nil,
		"":   nil,
	} {
		if got := on(node); !slices.Equal(got, want) {
			t.Errorf("PodsOnNode(%q) = %q, want %q", node, got, want)
		}
	}

	fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.Pod("default", "pending", "n2"), ""))
	fsmtest.MustApply(t, f, fsmtest.Delete("Pod", "default", "b"))
	fsmtest.MustApply(t, f, fsmtest.Delete("Namespace", "", "kube-system"))
	if got, want := on("n2"), []string{"default/pending"}; !slices.Equal(got, want) {
		t.Errorf("after bind and delete: PodsOnNode(n2) = %q, want %q", got, want)
	}
	if got, want := on("n1"), []string{"default/a"}; !slices.Equal(got, want) {
		t.Errorf("after namespace delete: PodsOnNode(n1) = %q, want %q", got, want)
	}
}

func TestViewIsConsistent(t *testing.T) {
	f := withDefault(t)
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "old", map[string]string{"v": "1"})))
	v := f.View()
	if v.Index != f.Applied() {
		t.Fatalf("View().Index = %d, want %d", v.Index, f.Applied())
	}
	before := stateOf(t, v)

	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", "new", nil)))
	fsmtest.MustApply(t, f, fsmtest.Update(fsmtest.ConfigMap("default", "old", map[string]string{"v": "2"}), ""))
	fsmtest.MustApply(t, f, fsmtest.SetMember("m", "r", "g", "h"))
	fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.Service("default", "s", "10.96.0.10")))
	fsmtest.MustApply(t, f, fsmtest.Delete("Namespace", "", "default"))

	if after := stateOf(t, v); !slices.Equal(before, after) {
		t.Errorf("a view changed after later applies:\nbefore %q\nafter  %q", before, after)
	}
	if _, ok := v.Get("ConfigMap", "default", "new"); ok {
		t.Error("the old view sees an object created after it")
	}
	if v.Index == f.Applied() {
		t.Error("the old view's Index moved")
	}
	now := f.View()
	if now.Count("ConfigMap", "") != 0 || len(now.Members()) != 1 {
		t.Errorf("a new view does not see the later applies: %q", stateOf(t, now))
	}
}

// guard returns a done channel for WaitApplied that closes after
// fsmtest.EventTimeout, so a WaitApplied that never wakes fails the test instead of
// hanging it.
func guard(t *testing.T) <-chan struct{} {
	ctx, cancel := context.WithTimeout(context.Background(), fsmtest.EventTimeout)
	t.Cleanup(cancel)
	return ctx.Done()
}

func TestWaitApplied(t *testing.T) {
	t.Run("already applied", func(t *testing.T) {
		f := withDefault(t)
		if !f.WaitApplied(guard(t), f.Applied()) {
			t.Fatal("WaitApplied for an applied index returned false")
		}
	})
	t.Run("applied later", func(t *testing.T) {
		f := withDefault(t)
		target := f.Applied() + 3
		type outcome struct {
			ok      bool
			applied uint64
		}
		got := make(chan outcome, 1)
		done := guard(t)
		go func() {
			ok := f.WaitApplied(done, target)
			got <- outcome{ok, f.Applied()}
		}()
		for range 3 {
			fsmtest.MustApply(t, f, fsmtest.Noop())
		}
		o := <-got
		if !o.ok || o.applied < target {
			t.Fatalf("WaitApplied = %v with applied %d, want true once %d is applied", o.ok, o.applied, target)
		}
	})
	t.Run("done closes first", func(t *testing.T) {
		f := withDefault(t)
		done := make(chan struct{})
		got := make(chan bool, 1)
		go func() { got <- f.WaitApplied(done, 100) }()
		fsmtest.MustApply(t, f, fsmtest.Noop())
		close(done)
		if <-got {
			t.Fatal("WaitApplied returned true for an index never applied")
		}
	})
	t.Run("configuration entries count", func(t *testing.T) {
		f := withDefault(t)
		got := make(chan bool, 1)
		done := guard(t)
		go func() { got <- f.WaitApplied(done, 7) }()
		f.StoreConfiguration(7, raft.Configuration{Servers: []raft.Server{{ID: "a", Address: "a:1"}}})
		if !<-got {
			t.Fatal("WaitApplied returned false")
		}
		if f.Applied() != 7 {
			t.Errorf("Applied() = %d after StoreConfiguration(7)", f.Applied())
		}
	})
}

// TestConcurrentReaders runs views, waits and snapshots against a stream of
// applies; run under -race it checks the locking, and each view must be internally
// consistent: it holds exactly the objects created up to its Index.
func TestConcurrentReaders(t *testing.T) {
	f := withDefault(t)
	base := f.Applied()
	const n = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := f.View()
				if got, want := v.Count("ConfigMap", "default"), int(v.Index-base); got != want {
					t.Errorf("view at %d holds %d ConfigMaps, want %d", v.Index, got, want)
					return
				}
				if _, err := f.Snapshot(); err != nil {
					t.Errorf("Snapshot: %v", err)
					return
				}
			}
		})
	}
	done := guard(t)
	wg.Go(func() {
		for i := uint64(1); i <= n; i += 7 {
			if !f.WaitApplied(done, base+i) {
				t.Errorf("WaitApplied(%d) gave up", base+i)
			}
		}
	})
	for i := range n {
		fsmtest.MustApply(t, f, fsmtest.Create(fsmtest.ConfigMap("default", fmt.Sprintf("cm-%03d", i), nil)))
	}
	close(stop)
	wg.Wait()
}

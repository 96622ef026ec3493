package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type testSpec struct {
	Name       string                       `json:"name"`
	HostIPC    bool                         `json:"hostIPC,omitempty"`
	Replicas   *int32                       `json:"replicas,omitempty"`
	Policy     testPolicy                   `json:"policy,omitempty"`
	Labels     map[string]string            `json:"labels,omitempty"`
	Data       map[string][]byte            `json:"data,omitempty"`
	Raw        []byte                       `json:"raw,omitempty"`
	Ports      []testPort                   `json:"ports"`
	Limits     map[string]resource.Quantity `json:"limits,omitempty"`
	Target     intstr.IntOrString           `json:"target"`
	Started    *metav1.Time                 `json:"started,omitempty"`
	Ignored    string                       `json:"-"`
	hidden     string
	testInline `json:",inline"`
}

type testPolicy string

type testPort struct {
	Port int32 `json:"port"`
}

type testInline struct {
	Weight float64 `json:"weight"`
	Count  int     `json:"count"`
}

type testObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              testSpec `json:"spec"`
}

type testCustomJSON struct{ v string }

func (testCustomJSON) MarshalJSON() ([]byte, error) { return nil, nil }

type (
	badNested struct {
		Matrix [][]string `json:"matrix"`
	}
	badMapSlice struct {
		Extra map[string][]string `json:"extra"`
	}
	badCustom struct {
		Thing testCustomJSON `json:"thing"`
	}
	badInterface struct {
		Any any `json:"any"`
	}
	badUint struct {
		N uint16 `json:"n"`
	}
	badIntKey struct {
		M map[int]string `json:"m"`
	}
	badDuplicate struct {
		A          string `json:"a"`
		testDupOut `json:",inline"`
	}
	testDupOut struct {
		B string `json:"a"`
	}
	badNoTag   struct{ Name string }
	badForeign struct {
		T reflect.Value `json:"t"`
	}
)

// withTestPackage makes this test package's types reachable as rafter.test.v1.
func withTestPackage(t *testing.T) *protoPackage {
	t.Helper()
	p := &protoPackage{GoPath: reflect.TypeFor[testObject]().PkgPath(), Short: "test", Alias: "testv1"}
	saved := packages
	packages = append(append([]*protoPackage{}, packages...), p)
	t.Cleanup(func() { packages = saved })
	return p
}

func TestSchemaMapping(t *testing.T) {
	pkg := withTestPackage(t)
	s, err := buildSchema(nil, []reflect.Type{reflect.TypeFor[testObject]()})
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := s.lookup(reflect.TypeFor[testObject]())
	spec, _ := s.lookup(reflect.TypeFor[testSpec]())
	var got []string
	for _, m := range []*message{obj, spec} {
		for _, f := range m.Fields {
			f.Number = 1
			got = append(got, m.Name+": "+fieldDecl(f, pkg))
		}
	}
	want := []string{
		"testObject: string apiVersion = 1;",
		"testObject: string kind = 1;",
		"testObject: rafter.meta.v1.ObjectMeta metadata = 1;",
		"testObject: testSpec spec = 1;",
		"testSpec: string name = 1;",
		"testSpec: bool hostIPC = 1;",
		"testSpec: optional int32 replicas = 1;",
		"testSpec: string policy = 1;",
		"testSpec: map<string, string> labels = 1;",
		"testSpec: map<string, bytes> data = 1;",
		"testSpec: bytes raw = 1;",
		"testSpec: repeated testPort ports = 1;",
		"testSpec: map<string, google.protobuf.Value> limits = 1; // resource.Quantity",
		"testSpec: google.protobuf.Value target = 1; // intstr.IntOrString",
		"testSpec: google.protobuf.Timestamp started = 1; // metav1.Time",
		"testSpec: double weight = 1;",
		"testSpec: int64 count = 1;",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("fields:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSchemaRejectsUnmapped(t *testing.T) {
	withTestPackage(t)
	tests := []struct {
		typ  reflect.Type
		want []string // substrings of the error
	}{
		{reflect.TypeFor[badNested](), []string{"badNested.Matrix", "[][]string", "nested slice"}},
		{reflect.TypeFor[badMapSlice](), []string{"badMapSlice.Extra", "map[string][]string"}},
		{reflect.TypeFor[badCustom](), []string{"badCustom.Thing", "testCustomJSON", "custom JSON"}},
		{reflect.TypeFor[badInterface](), []string{"badInterface.Any", "interface"}},
		{reflect.TypeFor[badUint](), []string{"badUint.N", "uint16"}},
		{reflect.TypeFor[badIntKey](), []string{"badIntKey.M", "map key int"}},
		{reflect.TypeFor[badForeign](), []string{"badForeign.T", "reflect.Value", "package reflect has no proto package"}},
		{reflect.TypeFor[badNoTag](), []string{"badNoTag.Name", "no json name"}},
		{reflect.TypeFor[badDuplicate](), []string{"badDuplicate", `"a"`, "testDupOut.B"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ.Name(), func(t *testing.T) {
			_, err := buildSchema(nil, []reflect.Type{tc.typ})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.Contains(tc.typ.Name(), "Duplicate") && !errors.Is(err, ErrUnmapped) {
				t.Errorf("error %v is not ErrUnmapped", err)
			}
		})
	}
}

func TestKindTable(t *testing.T) {
	wantServices := map[string]string{
		"Pod": "Pods", "ConfigMap": "ConfigMaps", "Endpoints": "EndpointsService",
		"Ingress": "Ingresses", "StorageClass": "StorageClasses", "PersistentVolumeClaim": "PersistentVolumeClaims",
	}
	for _, k := range kindTable {
		svc, err := serviceName(k)
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := wantServices[k.Kind()]; ok && svc != w {
			t.Errorf("%s: service %s, want %s", k.Kind(), svc, w)
		}
		if k.List.Name() != k.Kind()+"List" {
			t.Errorf("%s: list type %s", k.Kind(), k.List.Name())
		}
	}
	statusKinds := map[string]bool{}
	for _, k := range kindTable {
		if hasStatus(k) {
			statusKinds[k.Kind()] = true
		}
	}
	for kind, want := range map[string]bool{"Pod": true, "Deployment": true, "Node": true, "ConfigMap": false, "Endpoints": false, "Event": false, "Role": false} {
		if statusKinds[kind] != want {
			t.Errorf("hasStatus(%s) = %t, want %t", kind, statusKinds[kind], want)
		}
	}
}

// A JSON name the proto grammar would not take as a field name is renamed with
// a trailing underscore and keeps its JSON name through json_name; the number
// parser reads it back under its JSON name. (buf v1.75 accepts every keyword
// Kubernetes uses, such as "optional" and "continue", so the list is empty.)
func TestKeywordFieldKeepsJSONName(t *testing.T) {
	protoKeywords["continue"] = true
	t.Cleanup(func() { delete(protoKeywords, "continue") })
	f := &field{Name: "continue", Type: "string", Number: 7}
	decl := fieldDecl(f, nil)
	if want := `string continue_ = 7 [json_name = "continue"];`; decl != want {
		t.Fatalf("decl = %s, want %s", decl, want)
	}
	prev, err := parsePrevious("message ListMeta {\n  " + decl + "\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if n := prev["ListMeta"].Numbers["continue"]; n != 7 {
		t.Errorf("parsed number of continue = %d, want 7", n)
	}
}

func TestRequestsReuseReflectedDeleteOptions(t *testing.T) {
	meta, _ := packageByGoPath("k8s.io/apimachinery/pkg/apis/meta/v1")
	own, err := renderRequests(meta, map[string]bool{"ObjectMeta": true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"message DeleteOptions {", "message Preconditions {", "message DeleteRequest {"} {
		if !strings.Contains(string(own), want) {
			t.Errorf("requests.proto lacks %q", want)
		}
	}
	reused, err := renderRequests(meta, map[string]bool{"DeleteOptions": true, "Preconditions": true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(reused), "message DeleteOptions") || strings.Contains(string(reused), "message Preconditions") {
		t.Error("requests.proto redeclares DeleteOptions although types.proto has it")
	}
	if !strings.Contains(string(reused), `import "rafter/meta/v1/types.proto";`) {
		t.Error("requests.proto does not import the reflected DeleteOptions")
	}
	if _, err := renderRequests(meta, map[string]bool{"ListRequest": true}); err == nil {
		t.Error("a Kubernetes type named ListRequest did not fail")
	}
}

// The scale subresource is generated for exactly the kinds whose spec has
// replicas and a label selector, and pods/eviction and the scale rpcs are bound
// to Kubernetes' paths.
func TestSubresources(t *testing.T) {
	var scaled []string
	for _, k := range kindTable {
		if hasScale(k) {
			scaled = append(scaled, k.Kind())
		}
	}
	if want := []string{"ReplicaSet", "Deployment", "StatefulSet"}; !reflect.DeepEqual(scaled, want) {
		t.Errorf("kinds with a scale subresource: %v, want %v", scaled, want)
	}
	root := t.TempDir()
	files, err := generate(root, root+"/kinds.go")
	if err != nil {
		t.Fatal(err)
	}
	apps := string(files[root+"/rafter/apps/v1/services.proto"])
	core := string(files[root+"/rafter/core/v1/services.proto"])
	for _, want := range []string{
		"rpc GetScale(rafter.meta.v1.GetRequest) returns (rafter.autoscaling.v1.Scale) {\n    option (google.api.http) = {\n      get: \"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale\"",
		"rpc UpdateScale(UpdateScaleRequest) returns (rafter.autoscaling.v1.Scale) {\n    option (google.api.http) = {\n      put: \"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/scale\"\n      body: \"body\"",
		"  rafter.autoscaling.v1.Scale body = 3;",
		`import "rafter/autoscaling/v1/types.proto";`,
	} {
		if !strings.Contains(apps, want) {
			t.Errorf("apps/v1/services.proto lacks %q", want)
		}
	}
	if strings.Count(apps, "rpc GetScale(") != 3 || strings.Contains(apps, "daemonsets/{name}/scale") {
		t.Error("apps/v1/services.proto: GetScale is not on exactly Deployments, ReplicaSets and StatefulSets")
	}
	for _, want := range []string{
		"rpc Evict(CreateEvictionRequest) returns (rafter.meta.v1.Status) {\n    option (google.api.http) = {\n      post: \"/api/v1/namespaces/{namespace}/pods/{name}/eviction\"\n      body: \"body\"",
		"  rafter.policy.v1.Eviction body = 3;",
		`import "rafter/policy/v1/types.proto";`,
	} {
		if !strings.Contains(core, want) {
			t.Errorf("core/v1/services.proto lacks %q", want)
		}
	}
	if strings.Contains(core, "/scale\"") {
		t.Error("core/v1/services.proto has a scale subresource")
	}
}

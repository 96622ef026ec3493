package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/randfill"

	_ "github.com/rafter-dev/rafter/gen/rafter/kinds" // registers every generated message
)

// TestKubernetesJSONRoundTrip fills every kind (and extra type) with random
// values, encodes it with Kubernetes' own JSON encoding, decodes that strictly
// with protojson into the generated message and encodes it again. Decoding
// proves every field Kubernetes writes exists in the schema with a compatible
// type; comparing proves nothing is lost or added. Differences allowed: int64
// quoting, zero values protojson leaves out, and timestamp fraction digits.
func TestKubernetesJSONRoundTrip(t *testing.T) {
	s, err := buildSchema(kindTable, extraTypes)
	if err != nil {
		t.Fatal(err)
	}
	var roots []reflect.Type
	for _, k := range kindTable {
		roots = append(roots, k.Object, k.List)
	}
	roots = append(roots, extraTypes...)
	quantities := []string{"0", "1", "250m", "1.5", "128Mi", "2Gi", "100k", "1e3", "-3"}
	f := randfill.NewWithSeed(1).NilChance(0.2).NumElements(1, 2).MaxDepth(30).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = resource.MustParse(quantities[c.Intn(len(quantities))])
		},
		func(fv *metav1.FieldsV1, c randfill.Continue) {
			fv.Raw = []byte(`{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{}}`)
		},
		// A nil []byte map value is JSON null, which protojson rejects for
		// map<string, bytes> (a documented limitation); fill values instead.
		func(m *map[string][]byte, c randfill.Continue) {
			*m = map[string][]byte{}
			for i := c.Intn(3); i > 0; i-- {
				v := []byte{}
				c.Fill(&v)
				if v == nil {
					v = []byte{}
				}
				(*m)[c.String(8)] = v
			}
		},
		func(re *runtime.RawExtension, c randfill.Continue) {
			re.Raw = []byte(`{"apiVersion":"v1","kind":"Pod"}`)
		},
	)
	const rounds = 25
	for _, rt := range roots {
		m, ok := s.lookup(rt)
		if !ok {
			t.Fatalf("no message for %s", rt)
		}
		t.Run(m.Name, func(t *testing.T) {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(m.FullName()))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < rounds; i++ {
				obj := reflect.New(rt)
				f.Fill(obj.Interface())
				in, err := json.Marshal(obj.Interface())
				if err != nil {
					t.Fatalf("round %d: Kubernetes encode: %v", i, err)
				}
				pm := mt.New().Interface()
				if err := protojson.Unmarshal(in, pm); err != nil {
					t.Fatalf("round %d: protojson rejected Kubernetes' JSON: %v\n%s", i, err, in)
				}
				out, err := protojson.Marshal(pm)
				if err != nil {
					t.Fatalf("round %d: protojson encode: %v", i, err)
				}
				c := &canonicalizer{lenient: true, quoted: map[string]bool{}}
				want := mustCanon(t, c, mt.Descriptor(), in)
				got := mustCanon(t, c, mt.Descriptor(), out)
				if !reflect.DeepEqual(want, got) {
					var diffs []string
					diffJSON(want, got, "", &diffs)
					t.Fatalf("round %d: protojson changed Kubernetes' JSON:\n%s", i, strings.Join(diffs, "\n"))
				}
			}
		})
	}
}

// TestDescriptorsMatchGoJSON checks the generated descriptors field by field
// against the Go structs' json tags, independently of the generator's own
// flattening: same JSON names, nothing missing, nothing extra.
func TestDescriptorsMatchGoJSON(t *testing.T) {
	s, err := buildSchema(kindTable, extraTypes)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, msgs := range s.messages {
		for _, m := range msgs {
			n++
			mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(m.FullName()))
			if err != nil {
				t.Errorf("%s: %v", m.FullName(), err)
				continue
			}
			want := map[string]bool{}
			goJSONNames(m.GoType, want)
			got := map[string]bool{}
			fields := mt.Descriptor().Fields()
			for i := 0; i < fields.Len(); i++ {
				got[fields.Get(i).JSONName()] = true
			}
			for name := range want {
				if !got[name] {
					t.Errorf("%s: Kubernetes field %q missing from the proto", m.FullName(), name)
				}
			}
			for name := range got {
				if !want[name] {
					t.Errorf("%s: proto field %q is not in Kubernetes' JSON", m.FullName(), name)
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d messages checked", n)
	}
}

// goJSONNames collects the JSON names encoding/json uses for t's fields: an
// embedded struct without a JSON name has its fields promoted.
func goJSONNames(t reflect.Type, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-":
		case sf.Anonymous && name == "":
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			goJSONNames(et, out)
		case !sf.IsExported():
		case name == "":
			out[sf.Name] = true
		default:
			out[name] = true
		}
	}
}

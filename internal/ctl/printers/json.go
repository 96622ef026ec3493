package printers

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	"github.com/rafter-dev/rafter/internal/k8sjson"
)

// JSON renders obj as the Kubernetes API writes it: protojson's field names and
// order, 64-bit integers as JSON numbers (protojson quotes them), indented by two
// spaces and ending in a newline. An object of a kind in kinds.All without
// apiVersion or kind gets them filled in, as kubectl shows them, so the output can
// be applied again.
func JSON(obj proto.Message) ([]byte, error) {
	b, err := compactJSON(obj)
	if err != nil {
		return nil, err
	}
	return indent(b)
}

// YAML renders obj as JSON does, converted to YAML (keys sorted, as kubectl and
// sigs.k8s.io/yaml write them).
func YAML(obj proto.Message) ([]byte, error) {
	b, err := compactJSON(obj)
	if err != nil {
		return nil, err
	}
	return jsonToYAML(b)
}

// compactJSON is JSON without the indentation.
func compactJSON(obj proto.Message) ([]byte, error) {
	obj = withTypeMeta(obj)
	b, err := protojson.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.ProtoReflect().Descriptor().FullName(), err)
	}
	b, err = k8sjson.Int64AsNumbers(obj.ProtoReflect().Descriptor(), b)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.ProtoReflect().Descriptor().FullName(), err)
	}
	return b, nil
}

// listJSON is kubectl's List of objs, compact: its keys in kubectl's (sorted) order.
func listJSON(objs []proto.Message) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"v1","items":[`)
	for i, obj := range objs {
		if i > 0 {
			b.WriteByte(',')
		}
		item, err := compactJSON(obj)
		if err != nil {
			return nil, err
		}
		b.Write(item)
	}
	b.WriteString(`],"kind":"List","metadata":{"resourceVersion":""}}`)
	return indent(b.Bytes())
}

func indent(compact []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, fmt.Errorf("indent JSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func jsonToYAML(b []byte) ([]byte, error) {
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	return y, nil
}

// withTypeMeta returns obj, or a copy of it with apiVersion and kind set when obj is
// of a kind in kinds.All and has either empty.
func withTypeMeta(obj proto.Message) proto.Message {
	m := obj.ProtoReflect()
	fields := m.Descriptor().Fields()
	av, kf := fields.ByName("apiVersion"), fields.ByName("kind")
	if av == nil || kf == nil || av.Kind() != protoreflect.StringKind || kf.Kind() != protoreflect.StringKind ||
		(m.Get(av).String() != "" && m.Get(kf).String() != "") {
		return obj
	}
	for _, k := range kinds.All {
		if k.Message == m.Descriptor().FullName() {
			c := proto.Clone(obj).ProtoReflect()
			c.Set(av, protoreflect.ValueOfString(k.APIVersion()))
			c.Set(kf, protoreflect.ValueOfString(k.Kind))
			return c.Interface()
		}
	}
	return obj
}

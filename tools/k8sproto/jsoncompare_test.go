package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// decodeJSON decodes JSON keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	return v, nil
}

// canonicalizer rewrites a decoded JSON document, guided by a message
// descriptor, into a form in which Kubernetes' JSON and protojson's JSON of the
// same object are reflect.DeepEqual.
//
// Always: int64 values that protojson quotes become numbers (the path is
// recorded in quoted). With lenient set, also: values Kubernetes writes but
// protojson leaves out (null, zero scalars without presence, empty lists and
// maps) are dropped, and timestamps are compared as instants, because
// protojson writes 0, 3, 6 or 9 fractional digits where MicroTime writes 6.
type canonicalizer struct {
	lenient bool
	quoted  map[string]bool
}

func (c *canonicalizer) message(md protoreflect.MessageDescriptor, v any, path string) (any, error) {
	switch md.FullName() {
	case "google.protobuf.Value":
		return v, nil
	case "google.protobuf.Timestamp":
		s, ok := v.(string)
		if !ok || !c.lenient {
			return v, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s is not a JSON object: %v", path, md.FullName(), v)
	}
	out := map[string]any{}
	for k, fv := range obj {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			return nil, fmt.Errorf("%s: %s has no field with JSON name %q", path, md.FullName(), k)
		}
		cv, keep, err := c.field(fd, fv, joinPath(path, k))
		if err != nil {
			return nil, err
		}
		if keep {
			out[k] = cv
		}
	}
	return out, nil
}

func (c *canonicalizer) field(fd protoreflect.FieldDescriptor, v any, path string) (any, bool, error) {
	if v == nil && (c.lenient || fd.Message() == nil || fd.Message().FullName() != "google.protobuf.Value") {
		return nil, !c.lenient, nil
	}
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%s: not a JSON object", path)
		}
		if c.lenient && len(m) == 0 {
			return nil, false, nil
		}
		out := map[string]any{}
		for k, ev := range m {
			cv, err := c.value(fd.MapValue(), ev, path+"["+k+"]")
			if err != nil {
				return nil, false, err
			}
			out[k] = cv
		}
		return out, true, nil
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			return nil, false, fmt.Errorf("%s: not a JSON array", path)
		}
		if c.lenient && len(l) == 0 {
			return nil, false, nil
		}
		out := make([]any, len(l))
		for i, ev := range l {
			cv, err := c.value(fd, ev, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, false, err
			}
			out[i] = cv
		}
		return out, true, nil
	}
	cv, err := c.value(fd, v, path)
	if err != nil {
		return nil, false, err
	}
	if c.lenient && !fd.HasPresence() && isZeroJSON(cv) {
		return nil, false, nil
	}
	return cv, true, nil
}

func (c *canonicalizer) value(fd protoreflect.FieldDescriptor, v any, path string) (any, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return c.message(fd.Message(), v, path)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if s, ok := v.(string); ok {
			c.quoted[stripIndexes(path)] = true
			return json.Number(s), nil
		}
	}
	return v, nil
}

func isZeroJSON(v any) bool {
	switch v := v.(type) {
	case bool:
		return !v
	case string:
		return v == ""
	case json.Number:
		return v == "0"
	}
	return false
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// stripIndexes turns "spec.containers[0].x" into "spec.containers[].x".
func stripIndexes(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
			b.WriteString("[]")
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// diffJSON describes the first few differences between two decoded documents.
func diffJSON(a, b any, path string, out *[]string) {
	if len(*out) >= 10 {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: %v != %v", path, a, b))
			return
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			ae, aok := av[k]
			be, bok := bv[k]
			switch {
			case !aok:
				*out = append(*out, fmt.Sprintf("%s: only in output: %v", joinPath(path, k), be))
			case !bok:
				*out = append(*out, fmt.Sprintf("%s: only in input: %v", joinPath(path, k), ae))
			default:
				diffJSON(ae, be, joinPath(path, k), out)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			*out = append(*out, fmt.Sprintf("%s: %v != %v", path, a, b))
			return
		}
		for i := range av {
			diffJSON(av[i], bv[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
	default:
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, fmt.Sprintf("%s: %#v != %#v", path, a, b))
		}
	}
}

package main

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ErrUnmapped is returned (wrapped, naming the Go type and field) when a field's
// Go type has no proto encoding that keeps Kubernetes' JSON.
var ErrUnmapped = errors.New("no proto mapping for Go type")

const (
	wktTimestamp = "google.protobuf.Timestamp"
	wktValue     = "google.protobuf.Value"
)

// wktImports maps a well-known type to the file that declares it.
var wktImports = map[string]string{
	wktTimestamp: "google/protobuf/timestamp.proto",
	wktValue:     "google/protobuf/struct.proto",
}

// specialTypes are Go types with custom JSON that get a deliberate encoding,
// chosen so protojson reads and writes what encoding/json does for them.
// Pointers to them map the same way (without "optional": messages have presence).
var specialTypes = map[reflect.Type]string{
	reflect.TypeFor[metav1.Time]():          wktTimestamp,
	reflect.TypeFor[metav1.MicroTime]():     wktTimestamp,
	reflect.TypeFor[resource.Quantity]():    wktValue,
	reflect.TypeFor[intstr.IntOrString]():   wktValue,
	reflect.TypeFor[metav1.FieldsV1]():      wktValue,
	reflect.TypeFor[runtime.RawExtension](): wktValue,
	reflect.TypeFor[metav1.Duration]():      "string",
	reflect.TypeFor[types.UID]():            "string",
}

var (
	typeMetaType    = reflect.TypeFor[metav1.TypeMeta]()
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// message is one proto message generated from one Go struct.
type message struct {
	Pkg    *protoPackage
	Name   string
	GoType reflect.Type // nil for messages that do not come from a Go struct
	Fields []*field
	// Reserved are numbers retired from this message; set by assignNumbers.
	Reserved []reservation
}

// FullName is the message's fully qualified proto name.
func (m *message) FullName() string { return m.Pkg.Name() + "." + m.Name }

// field is one proto field. Its proto name is the Kubernetes JSON name.
type field struct {
	Name    string // JSON name from the json tag, used verbatim as the proto field name
	Label   string // "", "optional" or "repeated"
	MapKey  string // non-empty for map fields: the key's proto type
	Type    string // scalar or well-known type; empty when Ref is set
	Ref     *message
	GoField string // "PodSpec.HostIPC", for messages
	Special string // Go type with a deliberate encoding ("resource.Quantity"), if any
	Number  int    // assigned by assignNumbers
}

// typeIn renders the field's value type as seen from package pkg.
func (f *field) typeIn(pkg *protoPackage) string {
	if f.Ref == nil {
		return f.Type
	}
	if f.Ref.Pkg == pkg {
		return f.Ref.Name
	}
	return f.Ref.FullName()
}

// schema is every generated message, grouped by package.
type schema struct {
	byType   map[reflect.Type]*message
	messages map[*protoPackage][]*message
}

func newSchema() *schema {
	return &schema{byType: map[reflect.Type]*message{}, messages: map[*protoPackage][]*message{}}
}

// buildSchema reflects over the kinds and extra types and every struct they reach.
func buildSchema(kinds []kindSpec, extra []reflect.Type) (*schema, error) {
	s := newSchema()
	var roots []reflect.Type
	for _, k := range kinds {
		roots = append(roots, k.Object, k.List)
	}
	roots = append(roots, extra...)
	for _, t := range roots {
		if _, err := s.messageFor(t); err != nil {
			return nil, err
		}
	}
	for _, msgs := range s.messages {
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].Name < msgs[j].Name })
	}
	return s, nil
}

// lookup returns the message generated for a Go struct type.
func (s *schema) lookup(t reflect.Type) (*message, bool) {
	m, ok := s.byType[t]
	return m, ok
}

// messageFor returns the message for struct type t, generating it (and every
// message it reaches) the first time.
func (s *schema) messageFor(t reflect.Type) (*message, error) {
	if m, ok := s.byType[t]; ok {
		return m, nil
	}
	if t.Kind() != reflect.Struct || t.Name() == "" {
		return nil, fmt.Errorf("%s: %w: only named structs become messages", t, ErrUnmapped)
	}
	pkg, ok := packageByGoPath(t.PkgPath())
	if !ok {
		return nil, fmt.Errorf("%s: %w: package %s has no proto package", t, ErrUnmapped, t.PkgPath())
	}
	m := &message{Pkg: pkg, Name: t.Name(), GoType: t}
	s.byType[t] = m
	s.messages[pkg] = append(s.messages[pkg], m)
	seen := map[string]string{}
	if err := s.collectFields(m, t, seen); err != nil {
		return nil, err
	}
	return m, nil
}

// collectFields appends t's JSON fields to m, flattening inline structs the way
// encoding/json does. seen maps JSON names already used to the Go field using them.
func (s *schema) collectFields(m *message, t reflect.Type, seen map[string]string) error {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		goField := t.Name() + "." + sf.Name
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		inline := false
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "inline":
				inline = true
			case "string":
				return fmt.Errorf("field %s (Go type %s): %w: json option \"string\"", goField, sf.Type, ErrUnmapped)
			}
		}
		if inline || (sf.Anonymous && name == "") {
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if name != "" || et.Kind() != reflect.Struct {
				return fmt.Errorf("field %s (Go type %s): %w: inline field must be an unnamed struct", goField, sf.Type, ErrUnmapped)
			}
			if et == typeMetaType {
				// TypeMeta declares kind before apiVersion; manifests and
				// Kubernetes' own protos lead with apiVersion.
				for _, n := range []string{"apiVersion", "kind"} {
					if err := addField(m, seen, &field{Name: n, Type: "string", GoField: "TypeMeta"}); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.collectFields(m, et, seen); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			return fmt.Errorf("field %s (Go type %s): %w: no json name", goField, sf.Type, ErrUnmapped)
		}
		f, err := s.fieldFor(sf.Type)
		if err != nil {
			return fmt.Errorf("field %s (Go type %s): %w", goField, sf.Type, err)
		}
		f.Name, f.GoField = name, goField
		if err := addField(m, seen, f); err != nil {
			return err
		}
	}
	return nil
}

func addField(m *message, seen map[string]string, f *field) error {
	if prev, ok := seen[f.Name]; ok {
		return fmt.Errorf("message %s: JSON name %q used by both %s and %s", m.Name, f.Name, prev, f.GoField)
	}
	seen[f.Name] = f.GoField
	m.Fields = append(m.Fields, f)
	return nil
}

// fieldFor maps a Go field type to a proto field shape (everything but the name).
func (s *schema) fieldFor(t reflect.Type) (*field, error) {
	if t.Kind() == reflect.Pointer {
		et := t.Elem()
		if et.Kind() == reflect.Pointer || et.Kind() == reflect.Slice || et.Kind() == reflect.Map {
			return nil, fmt.Errorf("%w: pointer to %s", ErrUnmapped, et.Kind())
		}
		f, err := s.valueType(et)
		if err != nil {
			return nil, err
		}
		if f.Ref == nil && !isWellKnown(f.Type) {
			f.Label = "optional"
		}
		return f, nil
	}
	switch {
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		et := t.Elem()
		if _, special := specialTypes[et]; !special {
			switch et.Kind() {
			case reflect.Slice:
				return nil, fmt.Errorf("%w: nested slice %s", ErrUnmapped, t)
			case reflect.Map:
				return nil, fmt.Errorf("%w: slice of maps %s", ErrUnmapped, t)
			case reflect.Pointer:
				if et.Elem().Kind() != reflect.Struct {
					return nil, fmt.Errorf("%w: slice of pointers to %s", ErrUnmapped, et.Elem().Kind())
				}
				et = et.Elem()
			}
		}
		f, err := s.valueType(et)
		if err != nil {
			return nil, err
		}
		f.Label = "repeated"
		return f, nil
	case t.Kind() == reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%w: map key %s is not a string", ErrUnmapped, t.Key())
		}
		if err := checkCustomJSON(t.Key()); err != nil {
			return nil, err
		}
		vt := t.Elem()
		if _, special := specialTypes[vt]; !special {
			switch {
			case vt.Kind() == reflect.Slice && vt.Elem().Kind() != reflect.Uint8:
				return nil, fmt.Errorf("%w: map of slices %s", ErrUnmapped, t)
			case vt.Kind() == reflect.Map || vt.Kind() == reflect.Pointer:
				return nil, fmt.Errorf("%w: map value %s", ErrUnmapped, vt)
			}
		}
		f, err := s.valueType(vt)
		if err != nil {
			return nil, err
		}
		f.MapKey = "string"
		return f, nil
	}
	return s.valueType(t)
}

// valueType maps a non-pointer, non-repeated Go type to a proto value type.
func (s *schema) valueType(t reflect.Type) (*field, error) {
	if wk, ok := specialTypes[t]; ok {
		return &field{Type: wk, Special: shortTypeName(t)}, nil
	}
	if err := checkCustomJSON(t); err != nil {
		return nil, err
	}
	switch t.Kind() {
	case reflect.String:
		return &field{Type: "string"}, nil
	case reflect.Bool:
		return &field{Type: "bool"}, nil
	case reflect.Int32:
		return &field{Type: "int32"}, nil
	case reflect.Int64, reflect.Int:
		return &field{Type: "int64"}, nil
	case reflect.Float64:
		return &field{Type: "double"}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &field{Type: "bytes"}, nil
		}
	case reflect.Struct:
		m, err := s.messageFor(t)
		if err != nil {
			return nil, err
		}
		return &field{Ref: m}, nil
	}
	return nil, fmt.Errorf("%w: %s (%s)", ErrUnmapped, t, t.Kind())
}

// checkCustomJSON fails for a type that is not special-cased but has its own
// JSON or text encoding: reflecting over its fields would describe the wrong JSON.
func checkCustomJSON(t reflect.Type) error {
	if _, ok := specialTypes[t]; ok {
		return nil
	}
	pt := reflect.PointerTo(t)
	for _, iface := range []reflect.Type{jsonMarshaler, jsonUnmarshaler, textMarshaler, textUnmarshaler} {
		if t.Implements(iface) || pt.Implements(iface) {
			return fmt.Errorf("%w: %s has a custom JSON encoding (%s)", ErrUnmapped, t, iface)
		}
	}
	return nil
}

// shortTypeName names a Go type the way Kubernetes code imports it:
// "metav1.Time", "resource.Quantity".
func shortTypeName(t reflect.Type) string {
	dir, base := path.Split(t.PkgPath())
	if strings.HasPrefix(base, "v") {
		base = path.Base(dir) + base
	}
	return base + "." + t.Name()
}

func isWellKnown(protoType string) bool {
	_, ok := wktImports[protoType]
	return ok
}

package manifest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	objectMetaName = protoreflect.FullName("rafter.meta.v1.ObjectMeta")
	listMetaName   = protoreflect.FullName("rafter.meta.v1.ListMeta")
	valueName      = protoreflect.FullName("google.protobuf.Value")
	structName     = protoreflect.FullName("google.protobuf.Struct")
	listValueName  = protoreflect.FullName("google.protobuf.ListValue")
	timestampName  = protoreflect.FullName("google.protobuf.Timestamp")
	durationName   = protoreflect.FullName("google.protobuf.Duration")
)

// The schema encodes Kubernetes' resource.Quantity and intstr.IntOrString as
// google.protobuf.Value, which takes any JSON. What each such field may hold is
// decided here: every map<string, Value> is a quantity map (resources limits and
// requests, capacity, allocatable, hard, overhead), and singular Value fields are
// named below. Any other Value field (managedFields' fieldsV1) takes any JSON.
var (
	quantityFields = map[protoreflect.Name]bool{
		"sizeLimit": true, "quantity": true, "perPod": true, "perContainer": true, "divisor": true,
	}
	intOrStringFields = map[protoreflect.Name]bool{
		"targetPort": true, "port": true, "maxSurge": true, "maxUnavailable": true,
	}
)

// fieldChecker walks a JSON value decoded by encoding/json (with UseNumber)
// alongside a message descriptor, reading it as Kubernetes' strict decoder reads
// JSON into the Go type, and collects every problem with its Kubernetes field
// path. Keys are visited in sorted order, so errors come in a stable order.
//
// It also replaces null elements of lists and null values of maps with their
// type's zero value, as Kubernetes decodes them (protojson rejects them), and
// then sets changed so the caller re-encodes the value before protojson reads it.
type fieldChecker struct {
	errs    []FieldError
	changed bool
}

func (c *fieldChecker) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *fieldChecker) typeError(path, want string, v any) {
	c.errorf(path, "expected %s, got %s", want, describe(v))
}

// message checks v, the JSON of a message of type md at path.
func (c *fieldChecker) message(path string, md protoreflect.MessageDescriptor, v any) {
	switch md.FullName() {
	case timestampName:
		c.timestamp(path, v)
		return
	case valueName:
		return
	case structName:
		if _, ok := v.(map[string]any); !ok && v != nil {
			c.typeError(path, "object", v)
		}
		return
	case listValueName:
		if _, ok := v.([]any); !ok && v != nil {
			c.typeError(path, "array", v)
		}
		return
	case durationName:
		if _, ok := v.(string); !ok && v != nil {
			c.typeError(path, "string", v)
		}
		return
	}
	if md.ParentFile().Package() == "google.protobuf" {
		return // the other well-known types: left to protojson
	}
	obj, ok := v.(map[string]any)
	if !ok {
		c.typeError(path, "object", v)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		p := joinPath(path, k)
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			c.errorf(p, "unknown field %q", k)
			continue
		}
		c.field(p, fd, obj[k])
	}
	if md.FullName() == objectMetaName {
		c.objectMeta(path, obj)
	}
}

// field checks v, the JSON of field fd at path.
func (c *fieldChecker) field(path string, fd protoreflect.FieldDescriptor, v any) {
	if v == nil {
		return // null is the field's default, to Kubernetes and protojson alike
	}
	switch {
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			c.typeError(path, "array", v)
			return
		}
		for i := range arr {
			p := path + "[" + strconv.Itoa(i) + "]"
			if arr[i] == nil {
				arr[i] = c.zero(p, fd, false)
				continue
			}
			c.single(p, fd, arr[i], false)
		}
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			c.typeError(path, "object", v)
			return
		}
		vd := fd.MapValue()
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			p := path + "[" + k + "]"
			if obj[k] == nil {
				obj[k] = c.zero(p, vd, true)
				continue
			}
			c.single(p, vd, obj[k], true)
		}
	default:
		c.single(path, fd, v, false)
	}
}

// single checks v, the JSON of one value of fd (the field itself, an element
// of a list, or a value of a map when inMap).
func (c *fieldChecker) single(path string, fd protoreflect.FieldDescriptor, v any, inMap bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			c.typeError(path, "string", v)
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			c.typeError(path, "boolean", v)
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		c.integer(path, v, 32, true)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		c.integer(path, v, 64, true)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		c.integer(path, v, 32, false)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		c.integer(path, v, 64, false)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := v.(json.Number); !ok {
			c.typeError(path, "number", v)
		}
	case protoreflect.EnumKind:
		switch v := v.(type) {
		case string:
			if fd.Enum().Values().ByName(protoreflect.Name(v)) == nil {
				c.errorf(path, "unsupported value %q", v)
			}
		case json.Number:
			c.integer(path, v, 32, true)
		default:
			c.typeError(path, "string", v)
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			c.typeError(path, "base64-encoded string", v)
			return
		}
		if _, err := decodeBase64(s); err != nil {
			c.errorf(path, "%v", err)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		if md.FullName() != valueName {
			c.message(path, md, v)
			return
		}
		switch {
		case inMap, quantityFields[fd.Name()]:
			c.quantity(path, v)
		case intOrStringFields[fd.Name()]:
			c.intOrString(path, v)
		}
	}
}

// zero is what a null element of a list, or null value of a map, of fd stands
// for: Kubernetes decodes null into the element type's zero value.
func (c *fieldChecker) zero(path string, fd protoreflect.FieldDescriptor, inMap bool) any {
	c.changed = true
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		return ""
	case protoreflect.BoolKind:
		return false
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch md := fd.Message(); {
		case md.FullName() == valueName && inMap:
			return json.Number("0") // a null quantity is the zero quantity
		case md.FullName() == valueName:
			return nil
		case md.ParentFile().Package() == "google.protobuf":
			c.errorf(path, "null is not allowed here")
			return nil
		default:
			return map[string]any{}
		}
	default:
		return json.Number("0")
	}
}

// integer checks that v is a JSON integer that fits the field's type.
func (c *fieldChecker) integer(path string, v any, bits int, signed bool) {
	n, ok := v.(json.Number)
	if !ok {
		c.typeError(path, "integer", v)
		return
	}
	var err error
	if signed {
		_, err = strconv.ParseInt(string(n), 10, bits)
	} else {
		_, err = strconv.ParseUint(string(n), 10, bits)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			if _, serr := strconv.ParseInt(string(n), 10, 64); serr == nil {
				err = strconv.ErrRange // a negative integer
			}
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, strconv.ErrRange):
		typ := "int"
		if !signed {
			typ = "uint"
		}
		c.errorf(path, "%s is out of range for %s%d", n, typ, bits)
	default:
		c.typeError(path, "integer", v)
	}
}

// quantity checks a resource.Quantity: a JSON number or a string, either in
// the quantity syntax ("500m", "128Mi", 1, 0.5).
func (c *fieldChecker) quantity(path string, v any) {
	var s string
	switch v := v.(type) {
	case nil:
		return
	case string:
		s = v
	case json.Number:
		s = string(v)
	default:
		c.typeError(path, "quantity (a string or a number)", v)
		return
	}
	if _, err := resource.ParseQuantity(s); err != nil {
		c.errorf(path, "%v", err)
	}
}

// intOrString checks an intstr.IntOrString: a string, or an integer that fits
// an int32.
func (c *fieldChecker) intOrString(path string, v any) {
	switch v := v.(type) {
	case nil, string:
	case json.Number:
		if _, err := strconv.ParseInt(string(v), 10, 32); err != nil {
			if errors.Is(err, strconv.ErrRange) {
				c.errorf(path, "%s is out of range for int32", v)
				return
			}
			c.typeError(path, "integer or string", v)
		}
	default:
		c.typeError(path, "integer or string", v)
	}
}

// timestamp checks a metav1.Time: null or an RFC 3339 string.
func (c *fieldChecker) timestamp(path string, v any) {
	switch v := v.(type) {
	case nil:
	case string:
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			c.errorf(path, "expected an RFC 3339 time such as \"2006-01-02T15:04:05Z\", got %q", v)
		}
	default:
		c.typeError(path, "RFC 3339 time string", v)
	}
}

// objectMeta validates what the server would reject in an ObjectMeta but is
// best caught before anything is sent: label keys and values, annotation keys.
func (c *fieldChecker) objectMeta(path string, obj map[string]any) {
	if labels, ok := obj["labels"].(map[string]any); ok {
		p := joinPath(path, "labels")
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				c.errorf(p+"["+k+"]", "Invalid value: %q: %s", k, strings.Join(msgs, "; "))
			}
			if s, ok := labels[k].(string); ok {
				if msgs := validation.IsValidLabelValue(s); len(msgs) > 0 {
					c.errorf(p+"["+k+"]", "Invalid value: %q: %s", s, strings.Join(msgs, "; "))
				}
			}
		}
	}
	if annotations, ok := obj["annotations"].(map[string]any); ok {
		p := joinPath(path, "annotations")
		for _, k := range slices.Sorted(maps.Keys(annotations)) {
			if msgs := validation.IsQualifiedName(strings.ToLower(k)); len(msgs) > 0 {
				c.errorf(p+"["+k+"]", "Invalid value: %q: %s", k, strings.Join(msgs, "; "))
			}
		}
	}
}

// decodeBase64 decodes s as protojson decodes bytes fields: standard or URL
// alphabet, padded or not.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

// joinPath appends a field name to a field path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describe names the JSON type of v for "expected X, got Y" messages, with the
// value itself when it is a scalar.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:37]) + "..."
		}
		return "string " + strconv.Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

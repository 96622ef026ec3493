// Package manifest is the strict manifest reader of ctl apply -f and ctl
// delete -f: YAML or JSON documents become the generated API messages the way
// kubectl's strict validation would read them, and every bad document is
// reported with its file, document, kind/name and field path (or line) before
// anything is sent to a server.
//
// YAML is turned into JSON (sigs.k8s.io/yaml, rejecting duplicate keys), the
// JSON is walked alongside the message descriptor to find unknown fields, wrong
// types, bad quantities, base64 and labels with Kubernetes field paths, and
// then protojson reads it, so that protojson's JSON stays Kubernetes' JSON.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
)

// Object is one decoded manifest document, or one item of a List document.
type Object struct {
	Source    string // file path, or "-" for stdin
	Index     int    // 0-based document index within Source (items of a List share theirs)
	Kind      kinds.Kind
	Msg       proto.Message // the generated message, e.g. *corev1.Pod; metadata present
	Name      string
	Namespace string // as written ("" when absent)
	// JSON is the document as JSON (after YAML conversion): exactly what Msg
	// was read from. For an item of a List it is the item alone; when a null
	// list element or map value was read as its zero value ("key:" with no value
	// in YAML), JSON holds that zero value.
	JSON []byte
}

// Decode decodes all documents of one source: multi-document YAML (block or
// flow style) or a stream of JSON values. source names it in
// the Objects and errors ("-" for stdin). Each bad document gives exactly one
// *Error and no Object; the other documents still decode. Empty documents are
// skipped and not counted. Decode is safe for concurrent use.
func Decode(source string, data []byte) ([]Object, []error) {
	var objs []Object
	var errs []error
	for _, d := range splitSource(source, data) {
		if d.err != nil {
			errs = append(errs, d.err)
			continue
		}
		o, err := decodeDocument(source, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o...)
	}
	return objs, errs
}

// decodeDocument decodes one document; a List gives one Object per item. A bad
// item fails the whole document (one *Error naming the first bad item, with
// the other bad items' problems in More), so a List never half-applies.
func decodeDocument(source string, d rawDoc) ([]Object, *Error) {
	dec := json.NewDecoder(bytes.NewReader(d.json))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &Error{Source: source, Index: d.index, Msg: err.Error()}
	}
	if v == nil {
		return nil, nil
	}
	r := docReader{source: source, index: d.index}
	return r.object("", v, d.json)
}

// docReader decodes the objects of one document.
type docReader struct {
	source string
	index  int
}

func (r docReader) fail(kind, name string, errs []FieldError) *Error {
	return &Error{
		Source: r.source, Index: r.index, Kind: kind, Name: name,
		Path: errs[0].Path, Msg: errs[0].Msg, More: errs[1:],
	}
}

// object decodes v, an object at path (""; "items[2]" inside a List). raw is
// v's JSON as written, or nil when it must be encoded from v.
func (r docReader) object(path string, v any, raw []byte) ([]Object, *Error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, r.fail("", "", []FieldError{{path, "expected a manifest (an object with apiVersion and kind), got " + describe(v)}})
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)

	apiVersion, kind, errs := header(path, obj)
	if len(errs) > 0 {
		return nil, r.fail(kind, name, errs)
	}
	if isList(kind, obj) {
		return r.list(path, obj, apiVersion, kind)
	}
	k, ok := kinds.ByKind(kind)
	if !ok {
		return nil, r.fail(kind, name, []FieldError{{path, unsupportedKind(kind, apiVersion)}})
	}
	if apiVersion != k.APIVersion() {
		return nil, r.fail(kind, name, []FieldError{{path, wrongAPIVersion(k, apiVersion)}})
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(k.Message)
	if err != nil {
		return nil, r.fail(kind, name, []FieldError{{path, fmt.Sprintf("no message type %s: %v", k.Message, err)}})
	}

	var c fieldChecker
	c.message(path, mt.Descriptor(), obj)
	if _, isObject := obj["metadata"].(map[string]any); isObject || obj["metadata"] == nil {
		if f, missing := requireName(path, meta); missing {
			c.errs = append(c.errs, f)
		}
	}
	if len(c.errs) > 0 {
		return nil, r.fail(kind, name, c.errs)
	}
	if raw == nil || c.changed {
		if raw, err = json.Marshal(obj); err != nil {
			return nil, r.fail(kind, name, []FieldError{{path, err.Error()}})
		}
	}
	msg := mt.New()
	if err := (protojson.UnmarshalOptions{}).Unmarshal(raw, msg.Interface()); err != nil {
		return nil, r.fail(kind, name, []FieldError{{path, err.Error()}})
	}
	if fd := msg.Descriptor().Fields().ByName("metadata"); fd != nil {
		msg.Mutable(fd) // present even when empty
	}
	return []Object{{
		Source: r.source, Index: r.index, Kind: k, Msg: msg.Interface(),
		Name: name, Namespace: namespace, JSON: raw,
	}}, nil
}

// list expands a List document (kind List, or a typed list such as
// DeploymentList) into its items. Items of a typed list without apiVersion and
// kind get the list's, as the API server writes them.
func (r docReader) list(path string, obj map[string]any, apiVersion, kind string) ([]Object, *Error) {
	itemKind, typed := kinds.Kind{}, kind != "List"
	if typed {
		k, ok := kinds.ByKind(strings.TrimSuffix(kind, "List"))
		if !ok {
			return nil, r.fail(kind, "", []FieldError{{path, unsupportedKind(kind, apiVersion)}})
		}
		if apiVersion != k.APIVersion() {
			return nil, r.fail(kind, "", []FieldError{{path, fmt.Sprintf("kind %q is not served in apiVersion %q; use apiVersion: %s", kind, apiVersion, k.APIVersion())}})
		}
		itemKind = k
	}
	var c fieldChecker
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		switch key {
		case "apiVersion", "kind":
		case "metadata":
			mt, err := protoregistry.GlobalTypes.FindMessageByName(listMetaName)
			if err == nil {
				c.message(joinPath(path, key), mt.Descriptor(), obj[key])
			}
		case "items":
			if _, ok := obj[key].([]any); !ok && obj[key] != nil {
				c.typeError(joinPath(path, key), "array", obj[key])
			}
		default:
			c.errorf(joinPath(path, key), "unknown field %q", key)
		}
	}
	if len(c.errs) > 0 {
		return nil, r.fail(kind, "", c.errs)
	}
	var objs []Object
	var failed *Error // the first bad item's error, holding the others' in More
	items, _ := obj["items"].([]any)
	for i, item := range items {
		if m, ok := item.(map[string]any); ok && typed {
			if _, ok := m["apiVersion"]; !ok {
				m["apiVersion"] = itemKind.APIVersion()
			}
			if _, ok := m["kind"]; !ok {
				m["kind"] = itemKind.Kind
			}
		}
		o, err := r.object(fmt.Sprintf("%s[%d]", joinPath(path, "items"), i), item, nil)
		switch {
		case err == nil:
			objs = append(objs, o...)
		case failed == nil:
			failed = err
		default:
			failed.More = append(failed.More, FieldError{err.Path, err.Msg})
			failed.More = append(failed.More, err.More...)
		}
	}
	if failed != nil {
		return nil, failed
	}
	return objs, nil
}

// header reads apiVersion and kind, which every manifest must have.
func header(path string, obj map[string]any) (apiVersion, kind string, errs []FieldError) {
	for _, f := range []struct {
		name string
		dst  *string
	}{{"apiVersion", &apiVersion}, {"kind", &kind}} {
		p := joinPath(path, f.name)
		switch v := obj[f.name].(type) {
		case nil:
			errs = append(errs, FieldError{p, "Required value"})
		case string:
			if v == "" {
				errs = append(errs, FieldError{p, "Required value"})
			}
			*f.dst = v
		default:
			errs = append(errs, FieldError{p, "expected string, got " + describe(v)})
		}
	}
	return apiVersion, kind, errs
}

// isList reports whether a document is a list of objects: kind List, or a
// kind ending in List that has items (DeploymentList), as kubectl decides.
func isList(kind string, obj map[string]any) bool {
	if kind == "List" {
		return true
	}
	_, hasItems := obj["items"]
	return strings.HasSuffix(kind, "List") && hasItems
}

// requireName reports a missing metadata.name: every object ctl applies or
// deletes is named, unless the manifest asks the server for a generated name.
func requireName(path string, meta map[string]any) (FieldError, bool) {
	if v, ok := meta["name"]; ok {
		if s, isString := v.(string); !isString || s != "" {
			return FieldError{}, false // a name, or a wrong type reported already
		}
	}
	if g, _ := meta["generateName"].(string); g != "" {
		return FieldError{}, false
	}
	return FieldError{joinPath(path, "metadata.name"), "Required value"}, true
}

// supportedKinds lists every kind Rafter serves, sorted, for error messages.
var supportedKinds = func() string {
	names := make([]string, 0, len(kinds.All))
	for _, k := range kinds.All {
		names = append(names, k.Kind)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}()

func unsupportedKind(kind, apiVersion string) string {
	for _, k := range kinds.All {
		if strings.EqualFold(k.Kind, kind) {
			return fmt.Sprintf("kind %q (%s) is not supported; did you mean %q?", kind, apiVersion, k.Kind)
		}
	}
	return fmt.Sprintf("kind %q (%s) is not supported; supported kinds: %s", kind, apiVersion, supportedKinds)
}

func wrongAPIVersion(k kinds.Kind, apiVersion string) string {
	return fmt.Sprintf("kind %q is not served in apiVersion %q; use apiVersion: %s", k.Kind, apiVersion, k.APIVersion())
}

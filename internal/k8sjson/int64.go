// Package k8sjson shapes protojson output like the JSON of the Kubernetes API, which
// the REST gateway serves and ctl prints. It depends only on the protobuf runtime, so
// control-plane packages and the CLI can both use it.
package k8sjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// ErrNotProtoJSON is returned by Int64AsNumbers when its input is not protojson's
// output for the message type it was given.
var ErrNotProtoJSON = errors.New("not protojson of the message")

// Int64AsNumbers rewrites protojson output of a message of type md so that 64-bit
// integer fields are JSON numbers, as Kubernetes writes them. Field order and every
// other byte of meaning are kept. in must be protojson's output for a message of md.
//
// It is a single pass over in, led by md: object keys are looked up as fields, the
// quoted value of an int64, uint64, sint64, fixed64 or sfixed64 field (singular, each
// element of a repeated field, each value of a map) and of a google.protobuf.Int64Value
// or UInt64Value loses its quotes, and everything else is copied byte for byte, so
// strings keep protojson's escapes exactly. Map keys stay strings. The other
// well-known types (Value, Struct, ListValue, Timestamp, Duration, Any, FieldMask,
// Empty and the other wrappers) are copied as they are, whatever they hold. The
// output has no whitespace between tokens, so json.Compact leaves it unchanged.
//
// An error (wrapping ErrNotProtoJSON) means in did not have the shape md predicts,
// such as an unknown key or a 64-bit field that is not a decimal integer; the caller
// should then use in as it is. It is safe for concurrent use.
func Int64AsNumbers(md protoreflect.MessageDescriptor, in []byte) ([]byte, error) {
	r := numRewriter{in: in, out: make([]byte, 0, len(in))}
	if err := r.message(md); err != nil {
		return nil, err
	}
	r.space()
	if r.pos != len(r.in) {
		return nil, r.errorf("data after the message")
	}
	return r.out, nil
}

// numRewriter is the state of one Int64AsNumbers pass: in is read from pos on and
// out is appended to.
type numRewriter struct {
	in  []byte
	pos int
	out []byte
}

func (r *numRewriter) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrNotProtoJSON, r.pos, fmt.Sprintf(format, args...))
}

func (r *numRewriter) space() {
	for r.pos < len(r.in) {
		switch r.in[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte without consuming it.
func (r *numRewriter) peek() (byte, error) {
	r.space()
	if r.pos >= len(r.in) {
		return 0, r.errorf("unexpected end of input")
	}
	return r.in[r.pos], nil
}

// punct consumes the next byte, which must be one of a or b, copies it and returns it.
func (r *numRewriter) punct(a, b byte) (byte, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if c != a && c != b {
		return 0, r.errorf("found %q, want %q or %q", c, a, b)
	}
	r.pos++
	r.out = append(r.out, c)
	return c, nil
}

// open consumes an opening bracket, or a null in its place (ok false).
func (r *numRewriter) open(bracket byte) (ok bool, err error) {
	c, err := r.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case bracket:
		r.pos++
		r.out = append(r.out, c)
		return true, nil
	case 'n':
		return false, r.scalar()
	}
	return false, r.errorf("found %q, want %q", c, bracket)
}

// empty consumes the closing bracket if it comes next.
func (r *numRewriter) empty(bracket byte) (bool, error) {
	c, err := r.peek()
	if err != nil || c != bracket {
		return false, err
	}
	r.pos++
	r.out = append(r.out, c)
	return true, nil
}

// wellKnown says how protojson writes the google.protobuf messages it special-cases.
var wellKnown = map[protoreflect.FullName]bool{
	// true: the value is an int64 written as a string.
	"google.protobuf.Int64Value":  true,
	"google.protobuf.UInt64Value": true,
	// false: copied as they are.
	"google.protobuf.Any":         false,
	"google.protobuf.Timestamp":   false,
	"google.protobuf.Duration":    false,
	"google.protobuf.FieldMask":   false,
	"google.protobuf.Empty":       false,
	"google.protobuf.Struct":      false,
	"google.protobuf.ListValue":   false,
	"google.protobuf.Value":       false,
	"google.protobuf.BoolValue":   false,
	"google.protobuf.BytesValue":  false,
	"google.protobuf.DoubleValue": false,
	"google.protobuf.FloatValue":  false,
	"google.protobuf.Int32Value":  false,
	"google.protobuf.StringValue": false,
	"google.protobuf.UInt32Value": false,
}

func (r *numRewriter) message(md protoreflect.MessageDescriptor) error {
	if md.FullName().Parent() == "google.protobuf" {
		if isInt, ok := wellKnown[md.FullName()]; ok {
			if isInt {
				return r.int64()
			}
			return r.opaque()
		}
	}
	if ok, err := r.open('{'); !ok || err != nil {
		return err
	}
	if done, err := r.empty('}'); done || err != nil {
		return err
	}
	fields := md.Fields()
	next := 0 // protojson writes fields in declaration order: look there first
	for {
		if _, err := r.peek(); err != nil {
			return err
		}
		key, esc, err := r.str()
		if err != nil {
			return err
		}
		fd, i := lookupField(fields, next, key[1:len(key)-1], esc)
		if fd == nil {
			return r.errorf("%s has no field %s", md.FullName(), key)
		}
		next = i + 1
		r.out = append(r.out, key...)
		if _, err := r.punct(':', ':'); err != nil {
			return err
		}
		if err := r.field(fd); err != nil {
			return err
		}
		if c, err := r.punct(',', '}'); c != ',' || err != nil {
			return err
		}
	}
}

// lookupField finds the field named by key (a JSON string's raw contents, with
// escapes if esc), first by scanning fields from index next, and returns it with its
// index (-1 for an extension).
func lookupField(fields protoreflect.FieldDescriptors, next int, key []byte, esc bool) (protoreflect.FieldDescriptor, int) {
	if !esc {
		for i := next; i < fields.Len(); i++ {
			if fd := fields.Get(i); fd.JSONName() == string(key) {
				return fd, i
			}
		}
	}
	name := string(key)
	if esc {
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &name) != nil {
			return nil, 0
		}
	}
	fd := fields.ByJSONName(name)
	if fd == nil {
		fd = fields.ByTextName(name)
	}
	if fd == nil {
		fd = fields.ByName(protoreflect.Name(name))
	}
	if fd != nil {
		return fd, fd.Index()
	}
	if n := len(name); n > 2 && name[0] == '[' && name[n-1] == ']' {
		if xt, err := protoregistry.GlobalTypes.FindExtensionByName(protoreflect.FullName(name[1 : n-1])); err == nil {
			return xt.TypeDescriptor(), -1
		}
	}
	return nil, 0
}

func (r *numRewriter) field(fd protoreflect.FieldDescriptor) error {
	switch {
	case fd.IsList():
		if ok, err := r.open('['); !ok || err != nil {
			return err
		}
		if done, err := r.empty(']'); done || err != nil {
			return err
		}
		for {
			if err := r.single(fd); err != nil {
				return err
			}
			if c, err := r.punct(',', ']'); c != ',' || err != nil {
				return err
			}
		}
	case fd.IsMap():
		if ok, err := r.open('{'); !ok || err != nil {
			return err
		}
		if done, err := r.empty('}'); done || err != nil {
			return err
		}
		vd := fd.MapValue()
		for {
			if _, err := r.peek(); err != nil {
				return err
			}
			key, _, err := r.str()
			if err != nil {
				return err
			}
			r.out = append(r.out, key...)
			if _, err := r.punct(':', ':'); err != nil {
				return err
			}
			if err := r.single(vd); err != nil {
				return err
			}
			if c, err := r.punct(',', '}'); c != ',' || err != nil {
				return err
			}
		}
	default:
		return r.single(fd)
	}
}

// single rewrites one value of fd's kind: the field itself, a list element or a map value.
func (r *numRewriter) single(fd protoreflect.FieldDescriptor) error {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Uint64Kind, protoreflect.Sint64Kind,
		protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return r.int64()
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return r.message(fd.Message())
	default:
		return r.opaque()
	}
}

// int64 turns a quoted decimal integer into a bare one. A bare number or null is
// copied.
func (r *numRewriter) int64() error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	if c != '"' {
		return r.scalar()
	}
	start := r.pos
	s, esc, err := r.str()
	if err != nil {
		return err
	}
	digits := s[1 : len(s)-1]
	if esc || !isJSONInteger(digits) {
		r.pos = start
		return r.errorf("64-bit integer field holds %s", s)
	}
	r.out = append(r.out, digits...)
	return nil
}

// isJSONInteger reports whether b is -?(0|[1-9][0-9]*).
func isJSONInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// str consumes the string that starts at pos and returns it, quotes included, as
// it appears in the input; esc reports whether it holds a backslash escape.
func (r *numRewriter) str() (s []byte, esc bool, err error) {
	if r.pos >= len(r.in) || r.in[r.pos] != '"' {
		return nil, false, r.errorf("want a string")
	}
	start := r.pos
	i := start + 1
	for {
		j := bytes.IndexByte(r.in[i:], '"')
		if j < 0 {
			return nil, false, r.errorf("unterminated string")
		}
		i += j
		k := i
		for k > start+1 && r.in[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			break
		}
		esc = true
		i++
	}
	s = r.in[start : i+1]
	if !esc {
		esc = bytes.IndexByte(s, '\\') >= 0
	}
	r.pos = i + 1
	return s, esc, nil
}

// scalar copies a number, true, false or null.
func (r *numRewriter) scalar() error {
	start := r.pos
	for r.pos < len(r.in) && !isDelimiter(r.in[r.pos]) {
		r.pos++
	}
	if r.pos == start {
		return r.errorf("want a value")
	}
	r.out = append(r.out, r.in[start:r.pos]...)
	return nil
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', ':', '{', '}', '[', ']', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// opaque copies one JSON value of any shape, leaving out whitespace between tokens.
func (r *numRewriter) opaque() error {
	depth := 0
	for {
		c, err := r.peek()
		if err != nil {
			return err
		}
		switch c {
		case '{', '[':
			depth++
			r.pos++
			r.out = append(r.out, c)
			continue
		case '}', ']':
			if depth == 0 {
				return r.errorf("unexpected %q", c)
			}
			depth--
			r.pos++
			r.out = append(r.out, c)
		case ',', ':':
			if depth == 0 {
				return r.errorf("unexpected %q", c)
			}
			r.pos++
			r.out = append(r.out, c)
			continue
		case '"':
			s, _, err := r.str()
			if err != nil {
				return err
			}
			r.out = append(r.out, s...)
		default:
			if err := r.scalar(); err != nil {
				return err
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

package apiserver

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// fieldSupport answers whether the system acts on a field path such as
// "spec.containers[].securityContext". An entry supports its path and everything
// under it; a path that is a proper prefix of an entry is partly supported and is
// looked into; any other set field is stored but not acted on, and named in a
// warning so that it is never a silent no-op.
type fieldSupport struct {
	full    map[string]bool
	partial map[string]bool
}

func newFieldSupport(entries []string) *fieldSupport {
	if entries == nil {
		return nil
	}
	fs := &fieldSupport{full: map[string]bool{}, partial: map[string]bool{}}
	for _, e := range entries {
		fs.full[e] = true
		for i := range e {
			if e[i] == '.' {
				fs.partial[strings.TrimSuffix(e[:i], "[]")] = true
				fs.partial[e[:i]] = true
			}
		}
	}
	return fs
}

// unsupported returns the set fields of obj the system does not act on, as sorted
// user-facing paths. metadata, status, apiVersion and kind are never reported.
func (fs *fieldSupport) unsupported(obj protoreflect.Message) []string {
	if fs == nil {
		return nil
	}
	found := map[string]bool{}
	obj.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.JSONName() {
		case "metadata", "status", "apiVersion", "kind":
			return true
		}
		fs.walk(fd, v, fd.JSONName(), fd.JSONName(), found)
		return true
	})
	out := make([]string, 0, len(found))
	for p := range found {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// walk visits one set field. key is the pattern path ("spec.containers[].ports");
// shown is the path with the first offending index ("spec.containers[0].ports").
func (fs *fieldSupport) walk(fd protoreflect.FieldDescriptor, v protoreflect.Value, key, shown string, found map[string]bool) {
	if fs.full[key] {
		return
	}
	isMsg := fd.Message() != nil && !fd.IsMap() && !isWellKnown(fd.Message())
	if !fs.partial[key] || !isMsg {
		found[shown] = true
		return
	}
	visit := func(m protoreflect.Message, k, s string) {
		m.Range(func(cfd protoreflect.FieldDescriptor, cv protoreflect.Value) bool {
			fs.walk(cfd, cv, k+"."+cfd.JSONName(), s+"."+cfd.JSONName(), found)
			return true
		})
	}
	if fd.IsList() {
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			visit(l.Get(i).Message(), key+"[]", fmt.Sprintf("%s[%d]", shown, i))
		}
		return
	}
	visit(v.Message(), key, shown)
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// warningText is the Kubernetes Warning header value for stored-but-unused fields.
func warningText(kind string, paths []string) string {
	return fmt.Sprintf("%s fields are stored but not acted on yet: %s", kind, strings.Join(paths, ", "))
}

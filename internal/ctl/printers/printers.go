// Package printers writes API objects the way kubectl does: the tables of `get` and
// `get -w` (kubectl's columns, headers and alignment), `-o wide|json|yaml|name`, and
// the `kind.group/name` names of apply, delete and friends.
//
// Everything here is a pure function of its arguments (the clock comes in through
// Options.Now), so it is safe for concurrent use; a TableWriter is not.
package printers

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// ErrUnknownOutput is returned by Print for an Output it does not know.
var ErrUnknownOutput = errors.New("unknown output format")

// Options choose how Print, Header and Row render objects.
type Options struct {
	Output        string    // "" (table), "wide", "yaml", "json" or "name"
	NoHeaders     bool      // leave out the table header
	AllNamespaces bool      // add the NAMESPACE column first for namespaced kinds, as kubectl -A does
	Now           time.Time // the time AGE is counted to; the zero time means time.Now()

	// WithKind writes names as kind.group/name in the NAME column, as kubectl does
	// when one command lists several kinds (`get deploy,svc`).
	WithKind bool
	// List makes json and yaml output a List even for a single object, as kubectl
	// does for every list request (`get pods`, unlike `get pod web`).
	List bool
}

func (o Options) wide() bool { return o.Output == "wide" }

func (o Options) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// Print writes objs, all of kind k, to w in the format opts.Output names.
//
// Tables (Output "" or "wide") are a header, unless opts.NoHeaders, then one row
// per object, aligned as kubectl aligns them; no objects print nothing at all, so
// the caller can say "No resources found" as kubectl does. "json" and "yaml" print
// the object itself when there is exactly one and opts.List is false, else a
// kubectl-style List of them (see JSON for the shape of each object). "name"
// prints one ResourceName per line. An unknown Output is an error wrapping
// ErrUnknownOutput; otherwise errors come from w or from encoding an object.
func Print(w io.Writer, k kinds.Kind, objs []proto.Message, opts Options) error {
	switch opts.Output {
	case "", "wide":
		if len(objs) == 0 {
			return nil
		}
		tw := NewTableWriter(w)
		if !opts.NoHeaders {
			tw.WriteRow(Header(k, opts))
		}
		for _, obj := range objs {
			tw.WriteRow(Row(k, obj, opts))
		}
		return tw.Flush()
	case "json", "yaml":
		var b []byte
		var err error
		if len(objs) == 1 && !opts.List {
			b, err = JSON(objs[0])
		} else {
			b, err = listJSON(objs)
		}
		if err == nil && opts.Output == "yaml" {
			b, err = jsonToYAML(b)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "name":
		var b strings.Builder
		for _, obj := range objs {
			b.WriteString(ResourceName(k, metadata(obj).GetName()))
			b.WriteByte('\n')
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	return fmt.Errorf("%w %q, allowed formats are: json, name, wide, yaml", ErrUnknownOutput, opts.Output)
}

// ResourceName is kubectl's name for an object: the kind in lower case, its API
// group if it has one, and the object's name: "pod/web-0", "deployment.apps/web",
// "ingress.networking.k8s.io/site".
func ResourceName(k kinds.Kind, name string) string {
	return kindName(k) + "/" + name
}

// kindName is kubectl's "kind.group" for k, in lower case.
func kindName(k kinds.Kind) string {
	if k.Group == "" {
		return strings.ToLower(k.Kind)
	}
	return strings.ToLower(k.Kind) + "." + k.Group
}

// metaObject is every API object: the generated getter of its metadata field.
type metaObject interface {
	GetMetadata() *metav1.ObjectMeta
}

// metadata returns obj's metadata, or nil (whose getters return zero values) when
// obj has none.
func metadata(obj proto.Message) *metav1.ObjectMeta {
	if m, ok := obj.(metaObject); ok {
		return m.GetMetadata()
	}
	return nil
}

package manifest

import (
	"fmt"
	"strings"
)

// Error says which document of which source failed and why, in one line:
//
//	web.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"
//	bad.yaml: line 7: mapping values are not allowed in this context
//
// Every error Read and Decode return is an *Error.
type Error struct {
	Source string // file path, or "-" for stdin
	Index  int    // 0-based document index within Source; -1 when the source as a whole failed (it could not be read)
	Kind   string // the document's kind, when it got that far ("" otherwise)
	Name   string // the document's metadata.name, when it has one
	Line   int    // 1-based line within Source of a YAML or JSON syntax error; 0 for errors about content
	Path   string // Kubernetes-style field path ("spec.replicas", "metadata.labels[app]"); "" when the error is not about one field
	Msg    string
	// More holds the document's further field errors after Path and Msg, so that
	// one document gives one error however many fields are wrong.
	More []FieldError
	// Err is the underlying error when there is one (an I/O error), for errors.Is/As.
	Err error
}

// FieldError is one problem with one field of a document.
type FieldError struct {
	Path string // Kubernetes-style field path; "" for the document as a whole
	Msg  string
}

func (f FieldError) String() string {
	if f.Path == "" {
		return f.Msg
	}
	return f.Path + ": " + f.Msg
}

// Error formats e in one line. Documents are numbered from 1 for people
// (Index 0 is "document 1"), as ctl numbers them everywhere.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(displaySource(e.Source))
	b.WriteString(": ")
	switch {
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	case e.Index >= 0:
		fmt.Fprintf(&b, "document %d", e.Index+1)
		switch {
		case e.Kind != "" && e.Name != "":
			fmt.Fprintf(&b, " (%s/%s)", e.Kind, e.Name)
		case e.Kind != "":
			fmt.Fprintf(&b, " (%s)", e.Kind)
		case e.Name != "":
			fmt.Fprintf(&b, " (name %s)", e.Name)
		}
		b.WriteString(": ")
	}
	b.WriteString(FieldError{e.Path, oneLine(e.Msg)}.String())
	for _, f := range e.More {
		b.WriteString("; ")
		b.WriteString(FieldError{f.Path, oneLine(f.Msg)}.String())
	}
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// displaySource names a source in messages: "-" reads as "<stdin>".
func displaySource(source string) string {
	if source == "-" {
		return "<stdin>"
	}
	return source
}

// oneLine folds a message that spans lines (some YAML and protojson errors do)
// into one.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

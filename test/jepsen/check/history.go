package check

import (
	"fmt"
	"strings"
)

// OpKind names what a client asked for.
type OpKind string

// The operations of the register and set workloads.
const (
	// Read gets one key; Out, Found and OutRV hold what it returned.
	Read OpKind = "read"
	// Write sets a key whatever it holds: an update without resourceVersion, or a
	// create when the key is absent (a runner that ends up creating may record the
	// op as Create instead).
	Write OpKind = "write"
	// CAS updates a key only if its resourceVersion is still ExpectRV.
	CAS OpKind = "cas"
	// Create adds a key that must not exist.
	Create OpKind = "create"
	// Delete removes a key that must exist.
	Delete OpKind = "delete"
	// List reads many keys at once; no checker here interprets it.
	List OpKind = "list"
)

// Result says whether an operation took effect.
type Result string

const (
	// OK: the operation definitely happened and its outputs are valid.
	OK Result = "ok"
	// Fail: the operation definitely did not happen (NotFound, Conflict,
	// AlreadyExists, Invalid, or refused before it was proposed).
	Fail Result = "fail"
	// Info: indeterminate (timeout, connection lost, Unavailable after sending):
	// the operation may have happened, at any time after Call, even long after
	// the client gave up.
	Info Result = "info"
)

// Op is one client operation, from invocation to response.
type Op struct {
	Client int
	Kind   OpKind
	Key    string
	// Inputs: Value to write, create or cas; ExpectRV is the resourceVersion a
	// cas requires (the one the client read).
	Value    string
	ExpectRV string
	// Outputs.
	Result Result
	Out    string // value read; "" with Found false when the key was absent
	Found  bool
	OutRV  string // resourceVersion returned by a read, write, cas or create
	// Call and Return are nanoseconds on one monotonic clock shared by every
	// client: Call taken before the request is sent, Return after the response
	// (or the error) arrives. The checkers treat an Info op as never returning,
	// whatever Return holds.
	Call, Return int64
	// Err is the error text of a Fail or Info op. For a Fail op it may also say
	// what the server observed; see the package documentation ("Failed
	// operations").
	Err string
}

// History is everything the clients did, in any order.
type History struct{ Ops []Op }

// Validate reports ops the checkers cannot interpret. The checkers still run on an
// invalid history, but an op that Validate rejects may be checked as something
// other than what the runner meant.
func (h History) Validate() error {
	var bad []string
	for i, op := range h.Ops {
		var why string
		switch {
		case op.Kind != Read && op.Kind != Write && op.Kind != CAS && op.Kind != Create && op.Kind != Delete && op.Kind != List:
			why = fmt.Sprintf("unknown kind %q", op.Kind)
		case op.Result != OK && op.Result != Fail && op.Result != Info:
			why = fmt.Sprintf("unknown result %q", op.Result)
		case op.Key == "" && op.Kind != List:
			why = "no key"
		case op.Kind == CAS && op.ExpectRV == "":
			why = "cas without ExpectRV"
		case op.Result != Info && op.Return < op.Call:
			why = fmt.Sprintf("returned (%d) before it was called (%d)", op.Return, op.Call)
		}
		if why != "" {
			bad = append(bad, fmt.Sprintf("op %d (client %d %s %q): %s", i, op.Client, op.Kind, op.Key, why))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("and %d more", len(bad)-10))
	}
	return fmt.Errorf("invalid history: %s", strings.Join(bad, "; "))
}

// What a Fail op's Err may report about the key's state. Any other Err makes a Fail
// op carry no information: it is left out of the checks.
const (
	ReasonNotFound      = "NotFound"      // the key was absent
	ReasonAlreadyExists = "AlreadyExists" // the key existed
	ReasonConflict      = "Conflict"      // the key's resourceVersion was not ExpectRV
)

// grpcReasons maps the gRPC codes the API server uses for the reasons above.
var grpcReasons = map[string]string{
	"NotFound":      ReasonNotFound,
	"AlreadyExists": ReasonAlreadyExists,
	"Aborted":       ReasonConflict,
}

// failReason extracts the Kubernetes reason from a Fail op's error text: either the
// text starts with the reason ("Conflict" or "Conflict: ..."), or it is a gRPC
// status text ("rpc error: code = Aborted desc = ..."). It returns "" when the
// text says neither.
func failReason(err string) string {
	if rest, ok := strings.CutPrefix(err, "rpc error: code = "); ok {
		code, _, _ := strings.Cut(rest, " ")
		return grpcReasons[code]
	}
	head, _, _ := strings.Cut(err, ":")
	switch head = strings.TrimSpace(head); head {
	case ReasonNotFound, ReasonAlreadyExists, ReasonConflict:
		return head
	}
	return ""
}

package fsm

import (
	"errors"
	"fmt"
)

// Errors returned by Apply (through Propose) and by View reads. Callers match them
// with errors.Is; the API server translates them into Kubernetes status codes.
var (
	// ErrNotFound: the object (or the namespace it belongs to) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a create named an object that exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: a precondition (resourceVersion or uid) did not hold.
	ErrConflict = errors.New("conflict")
	// ErrAllocated: a Service asked for a ClusterIP or NodePort another Service holds.
	ErrAllocated = errors.New("already allocated")
	// ErrInvalidCommand: the command itself is malformed (a bug in the proposer).
	ErrInvalidCommand = errors.New("invalid command")
	// ErrGone: a watch asked to start before the oldest retained change, or its
	// history was replaced by a snapshot restore. The client must relist.
	ErrGone = errors.New("resource version too old")
	// ErrTooSlow: a watcher fell further behind than the history window; it was
	// closed so the client relists rather than silently skipping changes.
	ErrTooSlow = errors.New("watcher fell behind the history window")
)

// NamespaceNotFoundError reports that the namespace of a namespaced object is missing.
// It matches ErrNotFound.
type NamespaceNotFoundError struct{ Namespace string }

func (e *NamespaceNotFoundError) Error() string {
	return fmt.Sprintf("namespaces %q not found", e.Namespace)
}

func (e *NamespaceNotFoundError) Is(target error) bool { return target == ErrNotFound }

// AllocatedError names the address or port a Service asked for that another Service
// already holds. It matches ErrAllocated.
type AllocatedError struct {
	What   string // "clusterIP" or "nodePort"
	Value  string // "10.96.0.10", "30080"
	Holder string // namespace/name of the Service holding it
}

func (e *AllocatedError) Error() string {
	return fmt.Sprintf("%s %s is already allocated to service %s", e.What, e.Value, e.Holder)
}

func (e *AllocatedError) Is(target error) bool { return target == ErrAllocated }

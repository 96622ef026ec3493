package apiserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// Deletion with finalizers, as in Kubernetes. An object whose metadata.finalizers
// is not empty is not removed by DELETE: it gets a deletionTimestamp and stays
// until updates have removed every finalizer, and the update that removes the
// last one removes the object. Propagation policies Foreground and Orphan work
// through finalizers the garbage collector owns ("foregroundDeletion",
// "orphan"); Background (the default) removes the object at once and leaves its
// dependents to the collector.

const (
	// FinalizerForeground holds an object until the garbage collector has
	// deleted its dependents that block owner deletion.
	FinalizerForeground = "foregroundDeletion"
	// FinalizerOrphan holds an object until the garbage collector has removed
	// it from its dependents' ownerReferences.
	FinalizerOrphan = "orphan"
)

// collectedOwners are the kinds the garbage collector (internal/ctrl, gc.go)
// follows as owners. Foreground and Orphan deletion of any other kind behave as
// Background: no dependent of it is ever collected, so there is nothing to wait
// for or to orphan, and no finalizer is added that nobody would remove.
var collectedOwners = map[string]bool{"Deployment": true, "ReplicaSet": true, "DaemonSet": true, "StatefulSet": true}

// httpCodeHeader carries an HTTP status other than 200 from a gRPC handler to
// the REST gateway (202 Accepted for a delete that only marked the object, see
// accepted).
const httpCodeHeader = "x-rafter-http-code"

// propagationPolicy returns the effective policy of a delete request: the query
// parameter, else the body's, else Background. Anything else is a 422 naming the
// field, as Kubernetes answers.
func propagationPolicy(req *metav1.DeleteRequest) (string, error) {
	p := req.GetPropagationPolicy()
	if p == "" {
		p = req.GetBody().GetPropagationPolicy()
	}
	if b := req.GetBody(); p == "" && b != nil && b.OrphanDependents != nil { // the deprecated form
		p = map[bool]string{true: "Orphan", false: "Background"}[b.GetOrphanDependents()]
	}
	switch p {
	case "":
		return "Background", nil
	case "Background", "Foreground", "Orphan":
		return p, nil
	}
	errs := field.ErrorList{field.NotSupported(field.NewPath("propagationPolicy"), p, []string{"Foreground", "Background", "Orphan"})}
	return "", apiError(ReasonInvalid, "DeleteOptions.meta.k8s.io \"\" is invalid: "+errs.ToAggregate().Error(),
		&metav1.StatusDetails{Group: "meta.k8s.io", Kind: "DeleteOptions", Causes: []*metav1.StatusCause{{
			Reason: string(errs[0].Type), Message: errs[0].ErrorBody(), Field: errs[0].Field}}})
}

// finalizersFor returns the finalizers an object of kind must carry once deleted
// with policy: its own, with the policy's finalizer added and the other policy's
// removed.
func finalizersFor(kind string, current []string, policy string) []string {
	out := slices.Clone(current)
	if !collectedOwners[kind] {
		policy = "Background"
	}
	add, drop := "", ""
	switch policy {
	case "Foreground":
		add, drop = FinalizerForeground, FinalizerOrphan
	case "Orphan":
		add, drop = FinalizerOrphan, FinalizerForeground
	}
	if drop != "" {
		out = slices.DeleteFunc(out, func(f string) bool { return f == drop })
	}
	if add != "" && !slices.Contains(out, add) {
		out = append(out, add)
	}
	return out
}

// markDeleted handles a DELETE of an object that must wait for finalizers:
// it sets deletionTimestamp (once) and the policy's finalizer, and returns the
// object as stored with done=true. When nothing holds the object back it returns
// done=false and the caller removes it. Preconditions in req apply to the
// marking write.
func (s *Server) markDeleted(ctx context.Context, k *kindInfo, ns string, req *metav1.DeleteRequest, policy string) (fsm.Object, bool, error) {
	obj, done, err := s.markForDeletion(ctx, k, ns, req, func(obj fsm.Object) (keep, next fsm.Object) {
		md := obj.GetMetadata()
		want := finalizersFor(k.Kind.Kind, md.GetFinalizers(), policy)
		if len(want) == 0 {
			return nil, nil
		}
		if md.GetDeletionTimestamp() != nil && slices.Equal(want, md.GetFinalizers()) {
			return obj, nil // already marked as asked
		}
		next = proto.Clone(obj).(fsm.Object)
		nmd := next.GetMetadata()
		if nmd.DeletionTimestamp == nil {
			nmd.DeletionTimestamp = timestamppb.New(s.cfg.Clock.Now().UTC().Truncate(1e9))
			nmd.DeletionGracePeriodSeconds = proto.Int64(0)
		}
		nmd.Finalizers = want
		return nil, next
	})
	if done && err == nil {
		accepted(ctx, req)
	}
	return obj, done, err
}

// markForDeletion is the write of every DELETE that marks an object instead
// of removing it (finalizers, graceful pod deletion, namespace termination).
// It reads the object, checks req's UID precondition, and asks decide: keep
// answers keep as it is and writes nothing; next (a modified clone) is
// written; neither means the object is not to be marked, and markForDeletion
// returns done=false for the caller to remove it. The write carries req's
// resourceVersion precondition, else the version read; in the latter case a
// conflict reads again and retries (five times), like an unconditional update.
// A dry run returns next unwritten.
func (s *Server) markForDeletion(ctx context.Context, k *kindInfo, ns string, req *metav1.DeleteRequest,
	decide func(obj fsm.Object) (keep, next fsm.Object)) (fsm.Object, bool, error) {
	name := req.GetName()
	pre := req.GetBody().GetPreconditions()
	for attempt := 0; ; attempt++ {
		obj, ok := s.fsm.View().Get(k.Kind.Kind, ns, name)
		if !ok {
			return nil, true, notFound(*k, name)
		}
		md := obj.GetMetadata()
		if uid := pre.GetUid(); uid != "" && uid != md.GetUid() {
			return nil, true, apiError(ReasonConflict, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, md.GetUid()),
				&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource})
		}
		keep, next := decide(obj)
		switch {
		case keep != nil:
			return keep, true, nil
		case next == nil:
			return nil, false, nil
		case isDryRun(req) || containsAll(req.GetBody().GetDryRun()):
			return next, true, nil
		}
		expected := pre.GetResourceVersion()
		precondition := expected
		if precondition == "" {
			precondition = md.GetResourceVersion()
		}
		stored, err := s.put(ctx, k, next, false, precondition)
		if err != nil && expected == "" && attempt < 5 && errors.Is(err, fsm.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, true, statusFromStore(*k, name, err)
		}
		return stored, true, nil
	}
}

// accepted makes the REST answer to a delete that only marked the object 202
// when the request asked for cascading deletion the deprecated way
// (orphanDependents: false), and leaves it 200 otherwise: Kubernetes' rule,
// kept for the clients that rely on it.
func accepted(ctx context.Context, req *metav1.DeleteRequest) {
	if b := req.GetBody(); b != nil && b.OrphanDependents != nil && !*b.OrphanDependents {
		_ = grpc.SetHeader(ctx, metadata.Pairs(httpCodeHeader, "202"))
	}
}

// finalized reports whether an update leaves obj marked for deletion with no
// finalizer: the update then removes it.
func finalized(obj fsm.Object) bool {
	md := obj.GetMetadata()
	return md.GetDeletionTimestamp() != nil && len(md.GetFinalizers()) == 0
}

// removeFinalized removes obj, which an update has just finalized, on the
// condition that it is still at resourceVersion precondition.
func (s *Server) removeFinalized(ctx context.Context, k *kindInfo, obj fsm.Object, precondition string) (fsm.Object, error) {
	md := obj.GetMetadata()
	del := &fsmv1.Delete{Kind: k.Kind.Kind, Namespace: md.GetNamespace(), Name: md.GetName(),
		ExpectedResourceVersion: precondition, ExpectedUid: md.GetUid()}
	_, res, err := s.peer.Propose(ctx, &fsmv1.Command{Op: &fsmv1.Command_Delete{Delete: del}})
	if err != nil {
		return nil, err
	}
	return res.Object, nil
}

// validateNoNewFinalizers is Kubernetes' rule that an object being deleted may
// lose finalizers but gain none.
func validateNoNewFinalizers(obj, old fsm.Object) field.ErrorList {
	if old.GetMetadata().GetDeletionTimestamp() == nil {
		return nil
	}
	var added []string
	for _, f := range obj.GetMetadata().GetFinalizers() {
		if !slices.Contains(old.GetMetadata().GetFinalizers(), f) {
			added = append(added, f)
		}
	}
	if len(added) == 0 {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
		fmt.Sprintf("no new finalizers can be added if the object is being deleted, found new finalizers %q", added))}
}

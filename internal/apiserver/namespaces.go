package apiserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// namespaceFinalizer is the finalizer the namespace controller removes once the
// namespace is empty, as in Kubernetes.
const namespaceFinalizer = "kubernetes"

// terminateNamespace is the first step of deleting a namespace: it is marked with a
// deletionTimestamp, phase Terminating and the "kubernetes" finalizer, and returned
// as it now is (done=true). The namespace controller deletes its contents, removes
// the finalizer and deletes it again; only then, with no finalizer left, done is
// false and the caller removes it from the store. Preconditions in req apply to the
// first step.
func (s *Server) terminateNamespace(ctx context.Context, k *kindInfo, req *metav1.DeleteRequest) (proto.Message, bool, error) {
	name := req.GetName()
	for attempt := 0; ; attempt++ {
		obj, ok := s.fsm.View().Get("Namespace", "", name)
		if !ok {
			return nil, true, notFound(*k, name)
		}
		ns := obj.(*corev1.Namespace)
		if ns.GetMetadata().GetDeletionTimestamp() != nil {
			if len(ns.GetSpec().GetFinalizers()) > 0 {
				return ns, true, nil // already terminating
			}
			return nil, false, nil
		}
		pre := req.GetBody().GetPreconditions()
		if uid := pre.GetUid(); uid != "" && uid != ns.GetMetadata().GetUid() {
			return nil, true, apiError(ReasonConflict, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, ns.GetMetadata().GetUid()), nil)
		}
		expected := pre.GetResourceVersion()
		if isDryRun(req) || containsAll(req.GetBody().GetDryRun()) {
			return ns, true, nil
		}
		next := proto.Clone(ns).(*corev1.Namespace)
		next.Metadata.DeletionTimestamp = timestamppb.New(s.cfg.Clock.Now().UTC())
		if next.Spec == nil {
			next.Spec = &corev1.NamespaceSpec{}
		}
		if !slices.Contains(next.Spec.Finalizers, namespaceFinalizer) {
			next.Spec.Finalizers = append(next.Spec.Finalizers, namespaceFinalizer)
		}
		if next.Status == nil {
			next.Status = &corev1.NamespaceStatus{}
		}
		next.Status.Phase = "Terminating"
		precondition := expected
		if precondition == "" {
			precondition = ns.GetMetadata().GetResourceVersion()
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

// namespaceTerminating reports whether ns is being deleted: nothing new may be
// created in it.
func namespaceTerminating(k kindInfo, name string, ns *corev1.Namespace) error {
	if ns.GetMetadata().GetDeletionTimestamp() == nil {
		return nil
	}
	return apiError(ReasonForbidden, fmt.Sprintf("%s %q is forbidden: unable to create new content in namespace %s because it is being terminated",
		k.qualifiedResource(), name, ns.GetMetadata().GetName()), &metav1.StatusDetails{Name: name, Kind: k.Resource})
}

package apiserver

import (
	"context"
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
	return s.markForDeletion(ctx, k, "", req, func(obj fsm.Object) (keep, next fsm.Object) {
		ns := obj.(*corev1.Namespace)
		if ns.GetMetadata().GetDeletionTimestamp() != nil {
			if len(ns.GetSpec().GetFinalizers()) > 0 {
				return ns, nil // already terminating
			}
			return nil, nil
		}
		marked := proto.Clone(ns).(*corev1.Namespace)
		marked.Metadata.DeletionTimestamp = timestamppb.New(s.cfg.Clock.Now().UTC())
		if marked.Spec == nil {
			marked.Spec = &corev1.NamespaceSpec{}
		}
		if !slices.Contains(marked.Spec.Finalizers, namespaceFinalizer) {
			marked.Spec.Finalizers = append(marked.Spec.Finalizers, namespaceFinalizer)
		}
		if marked.Status == nil {
			marked.Status = &corev1.NamespaceStatus{}
		}
		marked.Status.Phase = "Terminating"
		return nil, marked
	})
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

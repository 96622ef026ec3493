package apiserver

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// Graceful deletion of pods, as in Kubernetes. DELETE of a pod that a node
// may be running does not remove it: it sets deletionTimestamp to now plus
// the grace period and deletionGracePeriodSeconds to that period, and the
// pod shows as Terminating. The node agent stops the containers (SIGTERM,
// SIGKILL when the period is over) and then deletes the pod with a grace
// period of 0, which removes it (or hands it to markDeleted when finalizers
// remain). A pod no node runs — not scheduled, or finished — goes at once.
// A second DELETE may shorten the period, never lengthen it.

// podGracePeriod is the grace period a DELETE of pod asks for: the
// request's (query parameter, else body; a negative one is 1), else the
// pod's terminationGracePeriodSeconds, else 30; 0 when no node runs the pod.
func podGracePeriod(pod *corev1.Pod, req *metav1.DeleteRequest) int64 {
	period := int64(30)
	if spec := pod.GetSpec(); spec != nil && spec.TerminationGracePeriodSeconds != nil {
		period = *spec.TerminationGracePeriodSeconds
	}
	if req.GracePeriodSeconds != nil {
		period = req.GetGracePeriodSeconds()
	} else if b := req.GetBody(); b != nil && b.GracePeriodSeconds != nil {
		period = *b.GracePeriodSeconds
	}
	if period < 0 {
		period = 1 // as Kubernetes treats a negative request
	}
	phase := pod.GetStatus().GetPhase()
	if pod.GetSpec().GetNodeName() == "" || phase == "Succeeded" || phase == "Failed" {
		period = 0
	}
	return period
}

// deletePodGracefully marks a pod for graceful deletion and returns it with
// done=true, or returns done=false when the pod must go now (grace period 0):
// the caller then deletes it (markDeleted first, for finalizers).
// Preconditions in req apply to the marking write.
func (s *Server) deletePodGracefully(ctx context.Context, k *kindInfo, ns string, req *metav1.DeleteRequest, policy string) (fsm.Object, bool, error) {
	return s.markForDeletion(ctx, k, ns, req, func(obj fsm.Object) (keep, next fsm.Object) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		period := podGracePeriod(pod, req)
		if period == 0 {
			return nil, nil
		}
		md := pod.GetMetadata()
		deadline := s.cfg.Clock.Now().UTC().Add(time.Duration(period) * time.Second).Truncate(time.Second)
		if dt := md.GetDeletionTimestamp(); dt != nil && md.DeletionGracePeriodSeconds != nil && *md.DeletionGracePeriodSeconds > 0 &&
			!deadline.Before(dt.AsTime()) {
			return pod, nil // already terminating, no later than asked
		}
		marked := proto.Clone(pod).(*corev1.Pod)
		marked.Metadata.DeletionTimestamp = timestamppb.New(deadline)
		marked.Metadata.DeletionGracePeriodSeconds = proto.Int64(period)
		marked.Metadata.Finalizers = finalizersFor(k.Kind.Kind, md.GetFinalizers(), policy)
		return nil, marked
	})
}

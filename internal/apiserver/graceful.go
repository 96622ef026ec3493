package apiserver

import (
	"context"
	"errors"
	"fmt"
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
// request's (query parameter, else body), else the pod's
// terminationGracePeriodSeconds, else 30; 0 when no node runs the pod.
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
	phase := pod.GetStatus().GetPhase()
	if pod.GetSpec().GetNodeName() == "" || phase == "Succeeded" || phase == "Failed" || period < 0 {
		period = 0
	}
	return period
}

// deletePodGracefully marks a pod for graceful deletion and returns it with
// done=true, or returns done=false when the pod must go now (grace period 0):
// the caller then deletes it (markDeleted first, for finalizers).
// Preconditions in req apply to the marking write.
func (s *Server) deletePodGracefully(ctx context.Context, k *kindInfo, ns string, req *metav1.DeleteRequest, policy string) (fsm.Object, bool, error) {
	name := req.GetName()
	pre := req.GetBody().GetPreconditions()
	for attempt := 0; ; attempt++ {
		obj, ok := s.fsm.View().Get(k.Kind.Kind, ns, name)
		if !ok {
			return nil, true, notFound(*k, name)
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, false, nil
		}
		md := pod.GetMetadata()
		if uid := pre.GetUid(); uid != "" && uid != md.GetUid() {
			return nil, true, apiError(ReasonConflict, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, md.GetUid()),
				&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource})
		}
		period := podGracePeriod(pod, req)
		if period == 0 {
			return nil, false, nil
		}
		now := s.cfg.Clock.Now().UTC()
		deadline := now.Add(time.Duration(period) * time.Second).Truncate(time.Second)
		if dt := md.GetDeletionTimestamp(); dt != nil && md.DeletionGracePeriodSeconds != nil && *md.DeletionGracePeriodSeconds > 0 &&
			!deadline.Before(dt.AsTime()) {
			return pod, true, nil // already terminating, no sooner than asked
		}
		next := proto.Clone(pod).(*corev1.Pod)
		nmd := next.GetMetadata()
		nmd.DeletionTimestamp = timestamppb.New(deadline)
		nmd.DeletionGracePeriodSeconds = proto.Int64(period)
		nmd.Finalizers = finalizersFor(k.Kind.Kind, md.GetFinalizers(), policy)
		if isDryRun(req) || containsAll(req.GetBody().GetDryRun()) {
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

package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// bind implements POST pods/{name}/binding: it sets spec.nodeName of a pod that has
// none and marks it PodScheduled, in one write conditioned on the pod's
// resourceVersion (the binding's metadata.resourceVersion when given, else the
// version read here, retried a few times against concurrent status writes). A pod
// already bound, being deleted, or with another UID is a Conflict. Binds are not
// grouped into one multi-object Raft entry: concurrent binds are grouped by Raft's
// batched apply (one disk write and one replication round per group), and each
// keeps a resourceVersion of its own, which watch resumption relies on.
func (s *Server) bind(ctx context.Context, k *kindInfo, req *corev1.CreateBindingRequest) (*metav1.Status, error) {
	ns, name := req.GetNamespace(), req.GetName()
	b := req.GetBody()
	if b == nil {
		return nil, badRequest("the request body must be a Binding object")
	}
	if n := b.GetMetadata().GetName(); n != "" && n != name {
		return nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", n, name)
	}
	if n := b.GetMetadata().GetNamespace(); n != "" && n != ns {
		return nil, badRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", n, ns)
	}
	var errs field.ErrorList
	target := b.GetTarget()
	if target.GetName() == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if kd := target.GetKind(); kd != "" && kd != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), kd, []string{"Node"}))
	}
	expected := b.GetMetadata().GetResourceVersion()
	if expected != "" {
		if _, err := strconv.ParseUint(expected, 10, 64); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "resourceVersion"), expected, "must be a Raft index as returned by the server"))
		}
	}
	if len(errs) > 0 {
		return nil, invalid(*k, name, errs)
	}
	for attempt := 0; ; attempt++ {
		old, ok := s.fsm.View().Get("Pod", ns, name)
		if !ok {
			return nil, notFound(*k, name)
		}
		pod := proto.Clone(old).(*corev1.Pod)
		md := pod.GetMetadata()
		switch {
		case b.GetMetadata().GetUid() != "" && b.GetMetadata().GetUid() != md.GetUid():
			return nil, bindConflict(name, fmt.Sprintf("the UID in the binding (%s) does not match the pod's (%s)", b.GetMetadata().GetUid(), md.GetUid()))
		case md.GetDeletionTimestamp() != nil:
			return nil, bindConflict(name, fmt.Sprintf("pod %s is being deleted, cannot be assigned to a host", name))
		case pod.GetSpec().GetNodeName() != "":
			return nil, bindConflict(name, fmt.Sprintf("pod %s is already assigned to node %q", name, pod.GetSpec().GetNodeName()))
		}
		if pod.Spec == nil {
			pod.Spec = &corev1.PodSpec{}
		}
		pod.Spec.NodeName = target.GetName()
		setPodScheduled(pod, s.cfg.Clock.Now().UTC())
		if isDryRun(req) {
			return &metav1.Status{Status: "Success", Code: 201}, nil
		}
		precondition := expected
		if precondition == "" {
			precondition = md.GetResourceVersion()
		}
		_, err := s.put(ctx, k, pod, false, precondition)
		if errors.Is(err, fsm.ErrConflict) && expected == "" && attempt < 5 {
			continue // a status write came between: read again
		}
		if err != nil {
			return nil, statusFromStore(*k, name, err)
		}
		return &metav1.Status{Status: "Success", Code: 201}, nil
	}
}

func bindConflict(name, msg string) error {
	return apiError(ReasonConflict, fmt.Sprintf("Operation cannot be fulfilled on pods/binding %q: %s", name, msg),
		&metav1.StatusDetails{Name: name, Kind: "pods/binding"})
}

// setPodScheduled sets the PodScheduled condition to True, as the binding
// subresource does in Kubernetes.
func setPodScheduled(pod *corev1.Pod, now time.Time) {
	if pod.Status == nil {
		pod.Status = &corev1.PodStatus{}
	}
	for _, c := range pod.Status.Conditions {
		if c.GetType() == "PodScheduled" {
			if c.Status != "True" {
				c.Status, c.Reason, c.Message = "True", "", ""
				c.LastTransitionTime = timestamppb.New(now)
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, &corev1.PodCondition{Type: "PodScheduled", Status: "True", LastTransitionTime: timestamppb.New(now)})
}

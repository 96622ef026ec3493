package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/util/validation/field"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	autoscalingv1 "github.com/rafter-dev/rafter/gen/rafter/autoscaling/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// The scale subresource (autoscaling/v1 Scale) of the kinds whose spec has
// replicas and a selector (kinds.Kind.HasScale: Deployments, ReplicaSets,
// StatefulSets). A Scale is a view of its parent: spec.replicas, status.replicas,
// the selector as a string, and the parent's identity and resourceVersion.

const scaleAPIVersion = "autoscaling/v1"

// getScale implements GET .../{name}/scale: a read like Get of the parent.
func (s *Server) getScale(ctx context.Context, k *kindInfo, req *metav1.GetRequest) (*autoscalingv1.Scale, error) {
	obj, err := s.get(ctx, k, req)
	if err != nil {
		return nil, err
	}
	parent, ok := obj.(fsm.Object)
	if !ok {
		return nil, apiError(ReasonInternal, fmt.Sprintf("%s %q: stored object has no metadata", k.qualifiedResource(), req.GetName()), nil)
	}
	return scaleOf(*k, parent)
}

// updateScale implements PUT .../{name}/scale: it sets the parent's spec.replicas
// in one write conditioned on the parent's resourceVersion, through the same store
// path as an update of the parent (its defaults and validation included). The
// Scale's metadata.resourceVersion, when set, is that precondition and a stale one
// is a Conflict; without it the version read here is used and the write is retried
// a few times against concurrent writers, as unconditional updates are.
// metadata.uid, when set, must be the parent's. Leader only (the caller forwards).
func (s *Server) updateScale(ctx context.Context, k *kindInfo, req *appsv1.UpdateScaleRequest) (*autoscalingv1.Scale, error) {
	ns, name := req.GetNamespace(), req.GetName()
	sc := req.GetBody()
	if sc == nil {
		return nil, badRequest("the request body must be a Scale object")
	}
	if av := sc.GetApiVersion(); av != "" && av != scaleAPIVersion {
		return nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", av, scaleAPIVersion)
	}
	if kd := sc.GetKind(); kd != "" && kd != "Scale" {
		return nil, badRequest("the kind in the data (%s) does not match the expected kind (Scale)", kd)
	}
	smd := sc.GetMetadata()
	if n := smd.GetName(); n != "" && n != name {
		return nil, badRequest("the name of the object (%s) does not match the name on the URL (%s)", n, name)
	}
	if n := smd.GetNamespace(); n != "" && n != ns {
		return nil, badRequest("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", n, ns)
	}
	var errs field.ErrorList
	expected := smd.GetResourceVersion()
	if expected != "" {
		if _, err := strconv.ParseUint(expected, 10, 64); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "resourceVersion"), expected, "must be a Raft index as returned by the server"))
		}
	}
	want := sc.GetSpec().GetReplicas()
	if want < 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "replicas"), want, "must be greater than or equal to 0"))
	}
	if len(errs) > 0 {
		return nil, invalidScale(name, errs)
	}
	for attempt := 0; ; attempt++ {
		old, ok := s.fsm.View().Get(k.Kind.Kind, ns, name)
		if !ok {
			return nil, notFound(*k, name)
		}
		omd := old.GetMetadata()
		if uid := smd.GetUid(); uid != "" && uid != omd.GetUid() {
			return nil, apiError(ReasonConflict,
				fmt.Sprintf("Operation cannot be fulfilled on %s/scale.%s %q: Precondition failed: UID in precondition: %s, UID in object meta: %s",
					k.Resource, k.Group, name, uid, omd.GetUid()),
				&metav1.StatusDetails{Name: name, Group: k.Group, Kind: k.Resource + "/scale"})
		}
		if expected != "" && expected != omd.GetResourceVersion() {
			return nil, statusFromStore(*k, name, fsm.ErrConflict)
		}
		current, err := scaleOf(*k, old)
		if err != nil {
			return nil, err
		}
		if current.GetSpec().GetReplicas() == want {
			return current, nil // nothing to write, as Kubernetes skips a no-op update
		}
		obj := proto.Clone(old).(fsm.Object)
		if err := setReplicas(*k, obj, want); err != nil {
			return nil, err
		}
		st := k.strategy
		if st.defaults != nil {
			st.defaults(obj)
		}
		verrs := validateMeta(*k, obj)
		if st.validate != nil {
			verrs = append(verrs, st.validate(obj, old)...)
		}
		if len(verrs) > 0 {
			return nil, invalid(*k, name, verrs)
		}
		if isDryRun(req) {
			return scaleOf(*k, obj)
		}
		precondition := expected
		if precondition == "" {
			precondition = omd.GetResourceVersion()
		}
		stored, err := s.put(ctx, k, obj, false, precondition)
		if errors.Is(err, fsm.ErrConflict) && expected == "" && attempt < 5 {
			continue // another write came between: read again and reapply
		}
		if err != nil {
			return nil, statusFromStore(*k, name, err)
		}
		return scaleOf(*k, stored)
	}
}

// invalidScale is Kubernetes' 422 for a Scale: `Scale.autoscaling "web" is
// invalid: spec.replicas: ...`, one cause per field.
func invalidScale(name string, errs field.ErrorList) error {
	details := &metav1.StatusDetails{Name: name, Group: "autoscaling", Kind: "Scale"}
	for _, e := range errs {
		details.Causes = append(details.Causes, &metav1.StatusCause{
			Reason: string(e.Type), Message: e.ErrorBody(), Field: e.Field,
		})
	}
	return apiError(ReasonInvalid, fmt.Sprintf("Scale.autoscaling %q is invalid: %s", name, errs.ToAggregate().Error()), details)
}

// scaleFields finds spec, spec.replicas, spec.selector and status.replicas of a
// scalable kind's message. Every kind with HasScale has them (tools/k8sproto
// generates the subresource only then); anything else is an internal error.
func scaleFields(k kindInfo, m protoreflect.Message) (spec, replicas, selector, status, statusReplicas protoreflect.FieldDescriptor, err error) {
	fields := m.Descriptor().Fields()
	spec, status = fields.ByName("spec"), fields.ByName("status")
	if spec != nil && spec.Message() != nil {
		replicas = spec.Message().Fields().ByName("replicas")
		selector = spec.Message().Fields().ByName("selector")
	}
	if status != nil && status.Message() != nil {
		statusReplicas = status.Message().Fields().ByName("replicas")
	}
	if replicas == nil || replicas.Kind() != protoreflect.Int32Kind || selector == nil || selector.Message() == nil ||
		statusReplicas == nil || statusReplicas.Kind() != protoreflect.Int32Kind {
		return nil, nil, nil, nil, nil, apiError(ReasonInternal, fmt.Sprintf("%s has no scale subresource", k.qualifiedResource()), nil)
	}
	return spec, replicas, selector, status, statusReplicas, nil
}

// scaleOf builds the Scale of obj without changing obj (which may be the store's).
// An unset spec.replicas is 1, the API's default.
func scaleOf(k kindInfo, obj fsm.Object) (*autoscalingv1.Scale, error) {
	m := obj.ProtoReflect()
	specFD, replicasFD, selectorFD, statusFD, statusReplicasFD, err := scaleFields(k, m)
	if err != nil {
		return nil, err
	}
	spec := m.Get(specFD).Message()
	replicas := int32(1)
	if spec.Has(replicasFD) {
		replicas = int32(spec.Get(replicasFD).Int())
	}
	var sel *metav1.LabelSelector
	if spec.Has(selectorFD) {
		sel, _ = spec.Get(selectorFD).Message().Interface().(*metav1.LabelSelector)
	}
	selector, err := selectorOf(sel)
	if err != nil {
		return nil, apiError(ReasonInternal, fmt.Sprintf("%s %q: spec.selector: %v", k.qualifiedResource(), obj.GetMetadata().GetName(), err), nil)
	}
	md := obj.GetMetadata()
	return &autoscalingv1.Scale{
		ApiVersion: scaleAPIVersion, Kind: "Scale",
		Metadata: &metav1.ObjectMeta{
			Name: md.GetName(), Namespace: md.GetNamespace(), Uid: md.GetUid(),
			ResourceVersion: md.GetResourceVersion(), CreationTimestamp: md.GetCreationTimestamp(),
		},
		Spec: &autoscalingv1.ScaleSpec{Replicas: replicas},
		Status: &autoscalingv1.ScaleStatus{
			Replicas: int32(m.Get(statusFD).Message().Get(statusReplicasFD).Int()),
			Selector: selector.String(),
		},
	}, nil
}

// setReplicas sets obj's spec.replicas; obj must be the caller's own copy.
func setReplicas(k kindInfo, obj fsm.Object, replicas int32) error {
	m := obj.ProtoReflect()
	specFD, replicasFD, _, _, _, err := scaleFields(k, m)
	if err != nil {
		return err
	}
	m.Mutable(specFD).Message().Set(replicasFD, protoreflect.ValueOfInt32(replicas))
	return nil
}

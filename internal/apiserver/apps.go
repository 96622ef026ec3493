package apiserver

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	k8smeta "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// workload is what Deployments, ReplicaSets, DaemonSets and StatefulSets share: a
// selector over the pods they make from a template.
type workload struct {
	replicas **int32 // nil for DaemonSets
	selector *metav1.LabelSelector
	template **corev1.PodTemplateSpec
}

func workloadOf(obj fsm.Object) workload {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if o.Spec == nil {
			o.Spec = &appsv1.DeploymentSpec{}
		}
		return workload{replicas: &o.Spec.Replicas, selector: o.Spec.Selector, template: &o.Spec.Template}
	case *appsv1.ReplicaSet:
		if o.Spec == nil {
			o.Spec = &appsv1.ReplicaSetSpec{}
		}
		return workload{replicas: &o.Spec.Replicas, selector: o.Spec.Selector, template: &o.Spec.Template}
	case *appsv1.StatefulSet:
		if o.Spec == nil {
			o.Spec = &appsv1.StatefulSetSpec{}
		}
		return workload{replicas: &o.Spec.Replicas, selector: o.Spec.Selector, template: &o.Spec.Template}
	case *appsv1.DaemonSet:
		if o.Spec == nil {
			o.Spec = &appsv1.DaemonSetSpec{}
		}
		return workload{selector: o.Spec.Selector, template: &o.Spec.Template}
	}
	panic("workloadOf: not a workload") // only registered for the four kinds above
}

func init() {
	workloadSupported := []string{"spec.replicas", "spec.selector", "spec.minReadySeconds",
		"spec.revisionHistoryLimit", "spec.template.metadata"}
	workloadSupported = append(workloadSupported, prefixed("spec.template.spec.", podSpecSupported)...)

	strategies["Deployment"] = strategy{
		name:          apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) { obj.(*appsv1.Deployment).Status = nil },
		defaults: func(obj fsm.Object) {
			d := obj.(*appsv1.Deployment)
			defaultWorkload(obj)
			s := d.Spec
			if s.Strategy == nil {
				s.Strategy = &appsv1.DeploymentStrategy{}
			}
			if s.Strategy.Type == "" {
				s.Strategy.Type = "RollingUpdate"
			}
			if s.Strategy.Type == "RollingUpdate" {
				if s.Strategy.RollingUpdate == nil {
					s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
				}
				if s.Strategy.RollingUpdate.MaxSurge == nil {
					s.Strategy.RollingUpdate.MaxSurge = structpb.NewStringValue("25%")
				}
				if s.Strategy.RollingUpdate.MaxUnavailable == nil {
					s.Strategy.RollingUpdate.MaxUnavailable = structpb.NewStringValue("25%")
				}
			}
			if s.RevisionHistoryLimit == nil {
				s.RevisionHistoryLimit = proto.Int32(10)
			}
			if s.ProgressDeadlineSeconds == nil {
				s.ProgressDeadlineSeconds = proto.Int32(600)
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			d := obj.(*appsv1.Deployment)
			errs := validateWorkload(obj, old)
			st := d.GetSpec().GetStrategy()
			path := field.NewPath("spec", "strategy")
			switch st.GetType() {
			case "RollingUpdate":
				ru := st.GetRollingUpdate()
				errs = append(errs, validateIntOrPercent(ru.GetMaxSurge(), path.Child("rollingUpdate", "maxSurge"))...)
				errs = append(errs, validateIntOrPercent(ru.GetMaxUnavailable(), path.Child("rollingUpdate", "maxUnavailable"))...)
				if isZero(ru.GetMaxSurge()) && isZero(ru.GetMaxUnavailable()) {
					errs = append(errs, field.Invalid(path.Child("rollingUpdate", "maxUnavailable"), 0, "may not be 0 when `maxSurge` is 0"))
				}
			case "Recreate":
				if st.GetRollingUpdate() != nil {
					errs = append(errs, field.Forbidden(path.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
				}
			default:
				errs = append(errs, field.NotSupported(path.Child("type"), st.GetType(), []string{"Recreate", "RollingUpdate"}))
			}
			return errs
		},
		supported: slices.Concat(workloadSupported, []string{"spec.strategy", "spec.paused", "spec.progressDeadlineSeconds"}),
	}
	strategies["ReplicaSet"] = strategy{
		name:          apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) { obj.(*appsv1.ReplicaSet).Status = nil },
		defaults:      defaultWorkload,
		validate:      validateWorkload,
		supported:     workloadSupported,
	}
	strategies["StatefulSet"] = strategy{
		name:          apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) { obj.(*appsv1.StatefulSet).Status = nil },
		defaults: func(obj fsm.Object) {
			defaultWorkload(obj)
			s := obj.(*appsv1.StatefulSet).Spec
			if s.PodManagementPolicy == "" {
				s.PodManagementPolicy = "OrderedReady"
			}
			if s.UpdateStrategy == nil {
				s.UpdateStrategy = &appsv1.StatefulSetUpdateStrategy{}
			}
			if s.UpdateStrategy.Type == "" {
				s.UpdateStrategy.Type = "RollingUpdate"
			}
			if s.UpdateStrategy.Type == "RollingUpdate" && s.UpdateStrategy.RollingUpdate == nil {
				s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: proto.Int32(0)}
			}
			if s.RevisionHistoryLimit == nil {
				s.RevisionHistoryLimit = proto.Int32(10)
			}
			for _, t := range s.VolumeClaimTemplates {
				if t.Spec != nil && t.Spec.VolumeMode == nil {
					t.Spec.VolumeMode = proto.String("Filesystem")
				}
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			s := obj.(*appsv1.StatefulSet).GetSpec()
			errs := validateWorkload(obj, old)
			path := field.NewPath("spec")
			if p := s.GetPodManagementPolicy(); p != "OrderedReady" && p != "Parallel" {
				errs = append(errs, field.NotSupported(path.Child("podManagementPolicy"), p, []string{"OrderedReady", "Parallel"}))
			}
			for i, t := range s.GetVolumeClaimTemplates() {
				tp := path.Child("volumeClaimTemplates").Index(i)
				errs = append(errs, validateDNSLabel(t.GetMetadata().GetName(), tp.Child("metadata", "name"))...)
				errs = append(errs, validatePVCSpec(t.GetSpec(), tp.Child("spec"))...)
			}
			if old != nil {
				o := old.(*appsv1.StatefulSet).GetSpec()
				if s.GetServiceName() != o.GetServiceName() {
					errs = append(errs, field.Forbidden(path.Child("serviceName"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
				}
			}
			return errs
		},
		supported: slices.Concat(workloadSupported, []string{"spec.serviceName", "spec.volumeClaimTemplates",
			"spec.podManagementPolicy", "spec.updateStrategy", "spec.persistentVolumeClaimRetentionPolicy", "spec.ordinals"}),
	}
	strategies["DaemonSet"] = strategy{
		name:          apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) { obj.(*appsv1.DaemonSet).Status = nil },
		defaults: func(obj fsm.Object) {
			defaultWorkload(obj)
			s := obj.(*appsv1.DaemonSet).Spec
			if s.UpdateStrategy == nil {
				s.UpdateStrategy = &appsv1.DaemonSetUpdateStrategy{}
			}
			if s.UpdateStrategy.Type == "" {
				s.UpdateStrategy.Type = "RollingUpdate"
			}
			if s.UpdateStrategy.Type == "RollingUpdate" && s.UpdateStrategy.RollingUpdate == nil {
				s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{
					MaxUnavailable: structpb.NewNumberValue(1), MaxSurge: structpb.NewNumberValue(0)}
			}
			if s.RevisionHistoryLimit == nil {
				s.RevisionHistoryLimit = proto.Int32(10)
			}
		},
		validate:  validateWorkload,
		supported: slices.Concat(workloadSupported, []string{"spec.updateStrategy"}),
	}
}

func isZero(v *structpb.Value) bool {
	p, ok := intOrString(v)
	if !ok {
		return false
	}
	return p.IntValue() == 0 && (p.StrVal == "" || p.StrVal == "0%")
}

func defaultWorkload(obj fsm.Object) {
	w := workloadOf(obj)
	if w.replicas != nil && *w.replicas == nil {
		*w.replicas = proto.Int32(1)
	}
	if *w.template == nil {
		*w.template = &corev1.PodTemplateSpec{}
	}
	t := *w.template
	if t.Spec == nil {
		t.Spec = &corev1.PodSpec{}
	}
	defaultPodSpec(t.Spec)
}

// validateWorkload checks what every workload kind shares.
func validateWorkload(obj, old fsm.Object) field.ErrorList {
	w := workloadOf(obj)
	path := field.NewPath("spec")
	var errs field.ErrorList
	if w.replicas != nil && *w.replicas != nil && **w.replicas < 0 {
		errs = append(errs, field.Invalid(path.Child("replicas"), **w.replicas, "must be greater than or equal to 0"))
	}
	if w.selector == nil {
		errs = append(errs, field.Required(path.Child("selector"), ""))
	} else {
		errs = append(errs, validateSelector(w.selector, path.Child("selector"))...)
		if len(w.selector.GetMatchLabels())+len(w.selector.GetMatchExpressions()) == 0 {
			errs = append(errs, field.Invalid(path.Child("selector"), "{}", "empty selector is not allowed: it would match every pod"))
		}
	}
	t := *w.template
	tp := path.Child("template")
	if sel, err := selectorOf(w.selector); err == nil && w.selector != nil && !sel.Empty() &&
		!sel.Matches(labels.Set(t.GetMetadata().GetLabels())) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), t.GetMetadata().GetLabels(), "`selector` does not match template `labels`"))
	}
	// A StatefulSet's containers mount its volumeClaimTemplates by name.
	var claims []string
	if sts, ok := obj.(*appsv1.StatefulSet); ok {
		for _, c := range sts.GetSpec().GetVolumeClaimTemplates() {
			claims = append(claims, c.GetMetadata().GetName())
		}
	}
	errs = append(errs, validatePodSpec(t.GetSpec(), tp.Child("spec"), claims...)...)
	if rp := t.GetSpec().GetRestartPolicy(); rp != "" && rp != "Always" {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), rp, []string{"Always"}))
	}
	if old != nil && !proto.Equal(workloadOf(old).selector, w.selector) {
		errs = append(errs, field.Invalid(path.Child("selector"), w.selector.String(), "field is immutable"))
	}
	return errs
}

// selectorOf converts a LabelSelector message into a matcher. A nil selector
// matches nothing, as in Kubernetes.
func selectorOf(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil {
		return labels.Nothing(), nil
	}
	var ks k8smeta.LabelSelector
	if err := convert(sel, &ks); err != nil {
		return nil, err
	}
	return k8smeta.LabelSelectorAsSelector(&ks)
}

var accessModes = sets.New("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")

func validatePVCSpec(s *corev1.PersistentVolumeClaimSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.GetAccessModes()) == 0 {
		errs = append(errs, field.Required(path.Child("accessModes"), "at least 1 access mode is required"))
	}
	for i, m := range s.GetAccessModes() {
		if !accessModes.Has(m) {
			errs = append(errs, field.NotSupported(path.Child("accessModes").Index(i), m, sets.List(accessModes)))
		}
	}
	if _, ok := s.GetResources().GetRequests()["storage"]; !ok {
		errs = append(errs, field.Required(path.Child("resources", "requests").Key("storage"), ""))
	}
	errs = append(errs, validateResourceList(s.GetResources().GetRequests(), path.Child("resources", "requests"))...)
	return errs
}

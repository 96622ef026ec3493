package apiserver

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	k8smeta "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

// strategy is what differs between kinds; the resource server does everything else
// once for all of them. Every function may be nil.
type strategy struct {
	// name validates metadata.name (prefix: generateName is being checked).
	name apivalidation.ValidateNameFunc
	// prepareCreate resets what users may not set on create (usually status).
	prepareCreate func(obj fsm.Object)
	// defaults fills Kubernetes' defaults, on create and on update.
	defaults func(obj fsm.Object)
	// validate checks obj; old is nil on create.
	validate func(obj, old fsm.Object) field.ErrorList
	// allocate assigns leader-decided values (ClusterIPs, NodePorts) and returns the
	// keys it reserved until the proposal finishes.
	allocate func(a *allocator, v *fsm.View, obj, old fsm.Object) ([]string, field.ErrorList)
	// supported lists the field paths the system acts on (see warnings.go); nil
	// means every field is acted on.
	supported []string
}

// strategyFor returns the strategy of a kind; kinds without one get metadata
// validation only.
func strategyFor(kind string) strategy {
	if s, ok := strategies[kind]; ok {
		return s
	}
	return strategy{name: apivalidation.NameIsDNSSubdomain}
}

// strategies is filled by the per-kind files' init functions.
var strategies = map[string]strategy{}

// validateMeta checks metadata with Kubernetes' own rules (name, generateName,
// labels, annotations, ownerReferences, finalizers).
func validateMeta(k kindInfo, obj fsm.Object) field.ErrorList {
	path := field.NewPath("metadata")
	md := obj.GetMetadata()
	if md == nil {
		return field.ErrorList{field.Required(path, "")}
	}
	km := k8smeta.ObjectMeta{
		Name: md.GetName(), GenerateName: md.GetGenerateName(), Namespace: md.GetNamespace(),
		Labels: md.GetLabels(), Annotations: md.GetAnnotations(), Finalizers: md.GetFinalizers(),
	}
	for _, r := range md.GetOwnerReferences() {
		km.OwnerReferences = append(km.OwnerReferences, k8smeta.OwnerReference{
			APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), UID: types.UID(r.GetUid()),
			Controller: r.Controller, BlockOwnerDeletion: r.BlockOwnerDeletion,
		})
	}
	nameFn := k.strategy.name
	if nameFn == nil {
		nameFn = apivalidation.NameIsDNSSubdomain
	}
	return apivalidation.ValidateObjectMeta(&km, k.Namespaced, nameFn, path)
}

// validateMetaUpdate adds Kubernetes' immutability rules for metadata.
func validateMetaUpdate(obj, old fsm.Object) field.ErrorList {
	path := field.NewPath("metadata")
	var errs field.ErrorList
	n, o := obj.GetMetadata(), old.GetMetadata()
	if n.GetName() != o.GetName() {
		errs = append(errs, field.Invalid(path.Child("name"), n.GetName(), "field is immutable"))
	}
	if n.GetNamespace() != o.GetNamespace() {
		errs = append(errs, field.Invalid(path.Child("namespace"), n.GetNamespace(), "field is immutable"))
	}
	if n.GetUid() != "" && n.GetUid() != o.GetUid() {
		errs = append(errs, field.Invalid(path.Child("uid"), n.GetUid(), "field is immutable"))
	}
	return errs
}

// convert copies a generated message into the matching apimachinery Go type through
// JSON, so Kubernetes' own validation functions can run on it. Only for messages
// without int64 fields (protojson quotes those, encoding/json refuses them).
func convert(m proto.Message, out any) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// validateSelector checks a LabelSelector with Kubernetes' rules.
func validateSelector(sel *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if sel == nil {
		return nil
	}
	var ks k8smeta.LabelSelector
	if err := convert(sel, &ks); err != nil {
		return field.ErrorList{field.Invalid(path, "", err.Error())}
	}
	return metavalidation.ValidateLabelSelector(&ks, metavalidation.LabelSelectorValidationOptions{}, path)
}

// intOrString decodes an int-or-string field (targetPort, maxSurge). ok is false
// when the value is neither an integer nor a string.
func intOrString(v *structpb.Value) (intstr.IntOrString, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if k.NumberValue != float64(int32(k.NumberValue)) {
			return intstr.IntOrString{}, false
		}
		return intstr.FromInt32(int32(k.NumberValue)), true
	case *structpb.Value_StringValue:
		return intstr.FromString(k.StringValue), true
	default:
		return intstr.IntOrString{}, false
	}
}

// validatePortNumOrName checks an int-or-string port reference (targetPort, probe
// ports): 1-65535 or an IANA service name.
func validatePortNumOrName(v *structpb.Value, path *field.Path) field.ErrorList {
	p, ok := intOrString(v)
	if !ok {
		return field.ErrorList{field.Invalid(path, v.AsInterface(), "must be an integer or a string")}
	}
	var errs field.ErrorList
	if p.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(p.IntValue()) {
			errs = append(errs, field.Invalid(path, p.IntValue(), msg))
		}
	} else {
		for _, msg := range validation.IsValidPortName(p.StrVal) {
			errs = append(errs, field.Invalid(path, p.StrVal, msg))
		}
	}
	return errs
}

// validateIntOrPercent checks maxSurge/maxUnavailable style values.
func validateIntOrPercent(v *structpb.Value, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	p, ok := intOrString(v)
	if !ok {
		return field.ErrorList{field.Invalid(path, v.AsInterface(), "must be an integer or a percentage")}
	}
	if p.Type == intstr.Int {
		if p.IntValue() < 0 {
			return field.ErrorList{field.Invalid(path, p.IntValue(), "must be greater than or equal to 0")}
		}
		return nil
	}
	s := p.StrVal
	if !strings.HasSuffix(s, "%") {
		return field.ErrorList{field.Invalid(path, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')")}
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d%%", &n); err != nil || n < 0 || fmt.Sprintf("%d%%", n) != s {
		return field.ErrorList{field.Invalid(path, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')")}
	}
	return nil
}

// fieldName returns a message field descriptor by JSON name, or nil.
func fieldName(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	return m.Descriptor().Fields().ByJSONName(name)
}

// canonicalQuantities rewrites every quantity (the values of map<string, Value>
// fields: resources, capacity, ...) into Kubernetes' canonical string form, as the
// Kubernetes API server stores them: `cpu: 1.5` becomes "1500m", `memory: 1e9`
// becomes "1G". Values that do not parse are left for validation to reject.
func canonicalQuantities(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if md := fd.MapValue().Message(); md != nil && md.FullName() == "google.protobuf.Value" {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					if q, err := quantity(mv.Message().Interface().(*structpb.Value)); err == nil {
						v.Map().Set(k, protoreflect.ValueOfMessage(structpb.NewStringValue(q.String()).ProtoReflect()))
					}
					return true
				})
			} else if md != nil && !isWellKnown(md) {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					canonicalQuantities(mv.Message())
					return true
				})
			}
		case fd.Message() != nil && isWellKnown(fd.Message()):
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				canonicalQuantities(v.List().Get(i).Message())
			}
		case fd.Message() != nil:
			canonicalQuantities(v.Message())
		}
		return true
	})
}

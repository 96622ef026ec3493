package apiserver

import (
	"google.golang.org/protobuf/proto"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	networkingv1 "github.com/rafter-dev/rafter/gen/rafter/networking/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

func init() {
	strategies["Namespace"] = strategy{
		name: apivalidation.ValidateNamespaceName,
		prepareCreate: func(obj fsm.Object) {
			obj.(*corev1.Namespace).Status = &corev1.NamespaceStatus{Phase: "Active"}
		},
		defaults: func(obj fsm.Object) {
			ns := obj.(*corev1.Namespace)
			if ns.Metadata.Labels == nil {
				ns.Metadata.Labels = map[string]string{}
			}
			// Kubernetes labels every namespace with its own name.
			ns.Metadata.Labels["kubernetes.io/metadata.name"] = ns.Metadata.Name
		},
	}
	strategies["Node"] = strategy{
		name:      apivalidation.NameIsDNSSubdomain,
		supported: []string{"spec.podCIDR", "spec.podCIDRs", "spec.unschedulable", "spec.taints"},
	}
	strategies["ConfigMap"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		validate: func(obj, old fsm.Object) field.ErrorList {
			cm := obj.(*corev1.ConfigMap)
			var errs field.ErrorList
			for k := range cm.GetData() {
				errs = append(errs, validateConfigKey(k, field.NewPath("data"))...)
				if _, dup := cm.GetBinaryData()[k]; dup {
					errs = append(errs, field.Invalid(field.NewPath("data"), k, "duplicate of key present in binaryData"))
				}
			}
			for k := range cm.GetBinaryData() {
				errs = append(errs, validateConfigKey(k, field.NewPath("binaryData"))...)
			}
			if old != nil {
				o := old.(*corev1.ConfigMap)
				same := proto.Equal(&corev1.ConfigMap{Data: cm.Data, BinaryData: cm.BinaryData}, &corev1.ConfigMap{Data: o.Data, BinaryData: o.BinaryData})
				errs = append(errs, validateImmutable(o.GetImmutable(), cm.GetImmutable(), same)...)
			}
			return errs
		},
	}
	strategies["Secret"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		defaults: func(obj fsm.Object) {
			s := obj.(*corev1.Secret)
			if s.Type == "" {
				s.Type = "Opaque"
			}
			// stringData is write-only: it is merged into data, as Kubernetes does.
			if len(s.StringData) > 0 {
				if s.Data == nil {
					s.Data = map[string][]byte{}
				}
				for k, v := range s.StringData {
					s.Data[k] = []byte(v)
				}
				s.StringData = nil
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			s := obj.(*corev1.Secret)
			var errs field.ErrorList
			for k := range s.GetData() {
				errs = append(errs, validateConfigKey(k, field.NewPath("data"))...)
			}
			if old != nil && old.(*corev1.Secret).GetType() != s.GetType() {
				errs = append(errs, field.Invalid(field.NewPath("type"), s.GetType(), "field is immutable"))
			}
			if old != nil {
				o := old.(*corev1.Secret)
				same := proto.Equal(&corev1.Secret{Data: s.Data}, &corev1.Secret{Data: o.Data})
				errs = append(errs, validateImmutable(o.GetImmutable(), s.GetImmutable(), same)...)
			}
			return errs
		},
	}
	strategies["PersistentVolume"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) {
			obj.(*corev1.PersistentVolume).Status = &corev1.PersistentVolumeStatus{Phase: "Pending"}
		},
		defaults: func(obj fsm.Object) {
			pv := obj.(*corev1.PersistentVolume)
			if pv.Spec == nil {
				pv.Spec = &corev1.PersistentVolumeSpec{}
			}
			if pv.Spec.PersistentVolumeReclaimPolicy == "" {
				pv.Spec.PersistentVolumeReclaimPolicy = "Retain"
			}
			if pv.Spec.VolumeMode == nil {
				v := "Filesystem"
				pv.Spec.VolumeMode = &v
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			s := obj.(*corev1.PersistentVolume).GetSpec()
			path := field.NewPath("spec")
			var errs field.ErrorList
			if len(s.GetAccessModes()) == 0 {
				errs = append(errs, field.Required(path.Child("accessModes"), ""))
			}
			if _, ok := s.GetCapacity()["storage"]; !ok {
				errs = append(errs, field.Required(path.Child("capacity").Key("storage"), ""))
			}
			errs = append(errs, validateResourceList(s.GetCapacity(), path.Child("capacity"))...)
			return errs
		},
		supported: []string{"spec.capacity", "spec.accessModes", "spec.hostPath", "spec.local",
			"spec.storageClassName", "spec.persistentVolumeReclaimPolicy", "spec.claimRef",
			"spec.volumeMode", "spec.nodeAffinity"},
	}
	strategies["PersistentVolumeClaim"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = &corev1.PersistentVolumeClaimStatus{Phase: "Pending"}
		},
		defaults: func(obj fsm.Object) {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			if pvc.Spec != nil && pvc.Spec.VolumeMode == nil {
				v := "Filesystem"
				pvc.Spec.VolumeMode = &v
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			return validatePVCSpec(obj.(*corev1.PersistentVolumeClaim).GetSpec(), field.NewPath("spec"))
		},
		supported: []string{"spec.accessModes", "spec.resources.requests", "spec.storageClassName",
			"spec.volumeName", "spec.volumeMode", "spec.selector"},
	}
	strategies["Ingress"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) {
			obj.(*networkingv1.Ingress).Status = nil
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			ing := obj.(*networkingv1.Ingress)
			path := field.NewPath("spec", "rules")
			var errs field.ErrorList
			for i, r := range ing.GetSpec().GetRules() {
				for j, p := range r.GetHttp().GetPaths() {
					pp := path.Index(i).Child("http", "paths").Index(j)
					switch pt := p.GetPathType(); pt {
					case "Exact", "Prefix", "ImplementationSpecific":
					case "":
						errs = append(errs, field.Required(pp.Child("pathType"), "pathType must be specified"))
					default:
						errs = append(errs, field.NotSupported(pp.Child("pathType"), pt, []string{"Exact", "ImplementationSpecific", "Prefix"}))
					}
					if p.GetBackend().GetService() == nil && p.GetBackend().GetResource() == nil {
						errs = append(errs, field.Required(pp.Child("backend"), "one of service or resource is required"))
					}
				}
			}
			return errs
		},
		supported: []string{"spec.rules", "spec.defaultBackend", "spec.ingressClassName"},
	}
	strategies["StorageClass"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		defaults: func(obj fsm.Object) {
			sc := obj.(*storagev1.StorageClass)
			if sc.ReclaimPolicy == nil {
				v := "Delete"
				sc.ReclaimPolicy = &v
			}
			if sc.VolumeBindingMode == nil {
				v := "Immediate"
				sc.VolumeBindingMode = &v
			}
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			sc := obj.(*storagev1.StorageClass)
			if sc.GetProvisioner() == "" {
				return field.ErrorList{field.Required(field.NewPath("provisioner"), "")}
			}
			return nil
		},
	}
	for _, k := range []string{"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} {
		strategies[k] = strategy{name: path.ValidatePathSegmentName}
	}
}

func validateConfigKey(k string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsConfigMapKey(k) {
		errs = append(errs, field.Invalid(path, k, msg))
	}
	return errs
}

// validateImmutable rejects changes to the data of an object marked immutable, and
// unmarking it.
func validateImmutable(wasImmutable, nowImmutable, sameData bool) field.ErrorList {
	if !wasImmutable {
		return nil
	}
	var errs field.ErrorList
	if !nowImmutable {
		errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
	}
	if !sameData {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	return errs
}

package printers

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/api/resource"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
)

func init() {
	register("PersistentVolume", []column{
		{name: "NAME"}, {name: "CAPACITY"}, {name: "ACCESS MODES"}, {name: "RECLAIM POLICY"}, {name: "STATUS"},
		{name: "CLAIM"}, {name: "STORAGECLASS"}, {name: "VOLUMEATTRIBUTESCLASS"}, {name: "REASON"}, {name: "AGE"},
		{name: "VOLUMEMODE", wide: true},
	}, persistentVolumeRow)
	register("PersistentVolumeClaim", []column{
		{name: "NAME"}, {name: "STATUS"}, {name: "VOLUME"}, {name: "CAPACITY"}, {name: "ACCESS MODES"},
		{name: "STORAGECLASS"}, {name: "VOLUMEATTRIBUTESCLASS"}, {name: "AGE"},
		{name: "VOLUMEMODE", wide: true},
	}, persistentVolumeClaimRow)
	register("StorageClass", []column{
		{name: "NAME"}, {name: "PROVISIONER"}, {name: "RECLAIMPOLICY"}, {name: "VOLUMEBINDINGMODE"},
		{name: "ALLOWVOLUMEEXPANSION"}, {name: "AGE"},
	}, storageClassRow)
}

// betaStorageClass is the annotation that named a volume's class before
// storageClassName; kubectl still prefers it.
const betaStorageClass = "volume.beta.kubernetes.io/storage-class"

func persistentVolumeRow(pv *corev1.PersistentVolume, c rowContext) []string {
	spec, md := cmp.Or(pv.GetSpec(), &corev1.PersistentVolumeSpec{}), pv.GetMetadata()
	claim := ""
	if ref := spec.GetClaimRef(); ref != nil {
		claim = ref.GetNamespace() + "/" + ref.GetName()
	}
	phase := pv.GetStatus().GetPhase()
	if md.GetDeletionTimestamp() != nil {
		phase = "Terminating"
	}
	class, ok := md.GetAnnotations()[betaStorageClass]
	if !ok {
		class = spec.GetStorageClassName()
	}
	return []string{
		md.GetName(),
		quantity(spec.GetCapacity()["storage"]),
		accessModes(spec.GetAccessModes()),
		spec.GetPersistentVolumeReclaimPolicy(),
		phase,
		claim,
		class,
		orUnset(spec.VolumeAttributesClassName),
		pv.GetStatus().GetReason(),
		c.age(md),
		orUnset(spec.VolumeMode),
	}
}

// persistentVolumeClaimRow shows capacity and access modes only once the claim
// is bound to a volume, as kubectl does.
func persistentVolumeClaimRow(pvc *corev1.PersistentVolumeClaim, c rowContext) []string {
	spec, md := cmp.Or(pvc.GetSpec(), &corev1.PersistentVolumeClaimSpec{}), pvc.GetMetadata()
	phase := pvc.GetStatus().GetPhase()
	if md.GetDeletionTimestamp() != nil {
		phase = "Terminating"
	}
	var capacity, modes string
	if spec.GetVolumeName() != "" {
		modes = accessModes(pvc.GetStatus().GetAccessModes())
		capacity = quantity(pvc.GetStatus().GetCapacity()["storage"])
	}
	class, ok := md.GetAnnotations()[betaStorageClass]
	if !ok {
		class = spec.GetStorageClassName()
	}
	return []string{
		md.GetName(),
		phase,
		spec.GetVolumeName(),
		capacity,
		modes,
		class,
		orUnset(spec.VolumeAttributesClassName),
		c.age(md),
		orUnset(spec.VolumeMode),
	}
}

// storageClassRow marks the default class and shows the API server's defaults
// for unset fields, as kubectl does.
func storageClassRow(sc *storagev1.StorageClass, c rowContext) []string {
	md := sc.GetMetadata()
	name := md.GetName()
	ann := md.GetAnnotations()
	if ann["storageclass.kubernetes.io/is-default-class"] == "true" || ann["storageclass.beta.kubernetes.io/is-default-class"] == "true" {
		name += " (default)"
	}
	reclaim := "Delete"
	if sc.ReclaimPolicy != nil {
		reclaim = sc.GetReclaimPolicy()
	}
	binding := "Immediate"
	if sc.VolumeBindingMode != nil {
		binding = sc.GetVolumeBindingMode()
	}
	return []string{
		name,
		sc.GetProvisioner(),
		reclaim,
		binding,
		strconv.FormatBool(sc.GetAllowVolumeExpansion()),
		c.age(md),
	}
}

// accessModes is kubectl's short form of a volume's access modes, in its fixed
// order: "RWO,ROX,RWX,RWOP".
func accessModes(modes []string) string {
	var short []string
	for _, m := range []struct{ long, short string }{
		{"ReadWriteOnce", "RWO"}, {"ReadOnlyMany", "ROX"}, {"ReadWriteMany", "RWX"}, {"ReadWriteOncePod", "RWOP"},
	} {
		if slices.Contains(modes, m.long) {
			short = append(short, m.short)
		}
	}
	return strings.Join(short, ",")
}

// quantity writes a quantity (a string or a number) in canonical form, as kubectl
// does: "10Gi", "1500M". No quantity is "0"; one that does not parse is shown as
// it is.
func quantity(v *structpb.Value) string {
	var s string
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		s = k.StringValue
	case *structpb.Value_NumberValue:
		s = strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	default:
		return "0"
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return s
	}
	return q.String()
}

// orUnset is *s, or kubectl's "<unset>" for nil.
func orUnset(s *string) string {
	if s == nil {
		return "<unset>"
	}
	return *s
}

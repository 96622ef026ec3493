package ctrl

import (
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	k8smeta "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Helpers shared by the workload controllers (ReplicaSet, Deployment, and later
// DaemonSet and StatefulSet): pod readiness and availability, controller
// references, label selectors, and pods built from templates. All are pure.

// PodTemplateHashLabel is the label a Deployment adds to its ReplicaSets'
// selector, template and metadata so that the pods of its ReplicaSets never
// overlap (Kubernetes' DefaultDeploymentUniqueLabelKey).
const PodTemplateHashLabel = "pod-template-hash"

// PodDeletionCostAnnotation ranks a ReplicaSet's pods for scale-down: lower cost
// goes first (Kubernetes' controller.kubernetes.io/pod-deletion-cost, an int32).
const PodDeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// Pod phases and condition values used by the controllers (Kubernetes' strings).
const (
	podPending   = "Pending"
	podRunning   = "Running"
	podSucceeded = "Succeeded"
	podFailed    = "Failed"
	podUnknown   = "Unknown"

	condTrue    = "True"
	condFalse   = "False"
	condUnknown = "Unknown"
)

// PodTemplateHash returns the pod-template-hash of template: FNV-1a (32 bits, as
// Kubernetes) over the template's deterministic protobuf encoding, then, when
// collisionCount is set, its value as 4 little-endian bytes; the decimal sum is
// written in Kubernetes' safe alphabet (rand.SafeEncodeString: consonants and
// digits that cannot spell words), so it is a valid label value and name suffix
// of at most 10 characters. Equal templates give equal hashes within one build.
// Deterministic protobuf encoding is not promised across protobuf library
// versions, which is harmless: the hash only names new ReplicaSets; existing ones
// are matched by TemplatesEqual, never by hash, so an upgrade that changes a hash
// does not start a rollout (Kubernetes matches the same way for the same reason).
// A collision with an existing ReplicaSet's name is resolved by the caller
// bumping collisionCount.
func PodTemplateHash(template *corev1.PodTemplateSpec, collisionCount *int32) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(template) // never fails for a generated message
	h := fnv.New32a()
	h.Write(b)
	if collisionCount != nil {
		var c [4]byte
		binary.LittleEndian.PutUint32(c[:], uint32(*collisionCount))
		h.Write(c[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// TemplatesEqual reports whether two pod templates are equal once the
// pod-template-hash label is ignored (Kubernetes' EqualIgnoreHash): how a
// Deployment recognises the ReplicaSet that runs its current template.
func TemplatesEqual(a, b *corev1.PodTemplateSpec) bool {
	return proto.Equal(withoutHashLabel(a), withoutHashLabel(b))
}

// withoutHashLabel returns a copy of t without the pod-template-hash label and
// with empty metadata normalised away, so that "no labels left" compares equal
// to "no metadata".
func withoutHashLabel(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	c := cloneTemplate(t)
	if c.Metadata != nil {
		delete(c.Metadata.Labels, PodTemplateHashLabel)
		if proto.Size(c.Metadata) == 0 {
			c.Metadata = nil
		}
	}
	return c
}

// cloneTemplate deep-copies t; a nil template becomes an empty one.
func cloneTemplate(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	if t == nil {
		return &corev1.PodTemplateSpec{}
	}
	return proto.Clone(t).(*corev1.PodTemplateSpec)
}

// NewControllerRef returns the ownerReference a controller puts on what it
// creates or adopts: controller and blockOwnerDeletion set, as Kubernetes'
// metav1.NewControllerRef.
func NewControllerRef(owner *metav1.ObjectMeta, apiVersion, kind string) *metav1.OwnerReference {
	return &metav1.OwnerReference{ApiVersion: apiVersion, Kind: kind, Name: owner.GetName(), Uid: owner.GetUid(),
		Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true)}
}

// controllerRefOf returns the ownerReference marked controller, or nil.
func controllerRefOf(md *metav1.ObjectMeta) *metav1.OwnerReference {
	for _, r := range md.GetOwnerReferences() {
		if r.GetController() {
			return r
		}
	}
	return nil
}

// withoutOwnerUID returns refs without those pointing at uid (a new slice).
func withoutOwnerUID(refs []*metav1.OwnerReference, uid string) []*metav1.OwnerReference {
	var out []*metav1.OwnerReference
	for _, r := range refs {
		if r.GetUid() != uid {
			out = append(out, r)
		}
	}
	return out
}

// SelectorFor converts an API label selector with Kubernetes' semantics: nil
// selects nothing, an empty selector everything; an invalid one (bad key,
// operator or values — the API server rejects those) is an error.
func SelectorFor(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil {
		return labels.Nothing(), nil
	}
	ks := &k8smeta.LabelSelector{MatchLabels: sel.GetMatchLabels()}
	for _, r := range sel.GetMatchExpressions() {
		ks.MatchExpressions = append(ks.MatchExpressions, k8smeta.LabelSelectorRequirement{
			Key: r.GetKey(), Operator: k8smeta.LabelSelectorOperator(r.GetOperator()), Values: r.GetValues()})
	}
	return k8smeta.LabelSelectorAsSelector(ks)
}

// PodFromTemplate builds a pod for a controller to create, as Kubernetes'
// GetPodFromTemplate: labels, annotations, finalizers and spec copied from
// template, metadata.generateName "<owner name>-" (the API server appends a
// random suffix), the owner's namespace, and owner as its ownerReference.
func PodFromTemplate(template *corev1.PodTemplateSpec, namespace, generateName string, owner *metav1.OwnerReference) *corev1.Pod {
	t := cloneTemplate(template)
	md := t.GetMetadata()
	pod := &corev1.Pod{ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{GenerateName: generateName, Namespace: namespace,
			Labels: md.GetLabels(), Annotations: md.GetAnnotations(), Finalizers: md.GetFinalizers()},
		Spec: t.GetSpec()}
	if pod.Spec == nil {
		pod.Spec = &corev1.PodSpec{}
	}
	if owner != nil {
		pod.Metadata.OwnerReferences = []*metav1.OwnerReference{proto.Clone(owner).(*metav1.OwnerReference)}
	}
	return pod
}

// podIsActive reports whether p counts toward a controller's replicas: not
// Succeeded or Failed, and not being deleted (Kubernetes' IsPodActive).
func podIsActive(p *corev1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph != podSucceeded && ph != podFailed && p.GetMetadata().GetDeletionTimestamp() == nil
}

// podIsTerminating reports whether p is being deleted but not yet finished.
func podIsTerminating(p *corev1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph != podSucceeded && ph != podFailed && p.GetMetadata().GetDeletionTimestamp() != nil
}

// podReadyCondition returns p's Ready condition, or nil.
func podReadyCondition(p *corev1.Pod) *corev1.PodCondition {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c
		}
	}
	return nil
}

// IsPodReady reports whether p's Ready condition is True.
func IsPodReady(p *corev1.Pod) bool {
	return podReadyCondition(p).GetStatus() == condTrue
}

// IsPodAvailable reports whether p has been ready for more than minReadySeconds
// at now (Kubernetes' IsPodAvailable: with minReadySeconds 0 ready is enough;
// otherwise the Ready condition's lastTransitionTime + minReadySeconds must be
// strictly before now, and a missing lastTransitionTime never qualifies).
func IsPodAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	at, ok := podAvailableAt(p, minReadySeconds)
	return ok && (minReadySeconds == 0 || now.After(at))
}

// podAvailableAt returns when a ready pod stops waiting for minReadySeconds
// (it is available at any instant strictly after that); ok is false when p is
// not ready or, with minReadySeconds > 0, has no lastTransitionTime.
func podAvailableAt(p *corev1.Pod, minReadySeconds int32) (time.Time, bool) {
	c := podReadyCondition(p)
	if c.GetStatus() != condTrue {
		return time.Time{}, false
	}
	if minReadySeconds == 0 {
		return time.Time{}, true
	}
	if c.GetLastTransitionTime() == nil {
		return time.Time{}, false
	}
	return c.GetLastTransitionTime().AsTime().Add(time.Duration(minReadySeconds) * time.Second), true
}

// podReadyTime is when p last became ready; zero when it is not ready.
func podReadyTime(p *corev1.Pod) time.Time {
	if !IsPodReady(p) {
		return time.Time{}
	}
	return tsTime(podReadyCondition(p).GetLastTransitionTime())
}

// tsTime converts a timestamp, nil being the zero time.
func tsTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// hasLabels reports whether set contains every label of want.
func hasLabels(set, want map[string]string) bool {
	for k, v := range want {
		if got, ok := set[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// cloneStringMap copies m with an extra key (when key is non-empty).
func cloneStringMap(m map[string]string, key, value string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if key != "" {
		out[key] = value
	}
	return out
}

package ctrl

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/labels"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// BurstReplicas caps how many pods one ReconcileReplicaSet creates or deletes,
// as kube-controller-manager's ReplicaSet controller does (burstReplicas = 500).
// A larger difference is closed over several reconciles.
const BurstReplicas = 500

// ReplicaSetActions is what ReconcileReplicaSet decided. Every object in it is a
// copy; objects read from the cache are never modified.
//
// The loop applies the fields in declaration order and stops at the first error
// (requeueing the key): Adopt and Release (updates that carry the pod's
// resourceVersion as read, so a pod changed meanwhile is a Conflict and the next
// reconcile decides again), then Create in SlowStartBatches, then Delete, then
// Status. Like Kubernetes' "expectations", the loop must not reconcile the same
// ReplicaSet again until its cache shows the pods it created and deleted (or the
// calls failed): a reconcile over a cache that lags its own writes would create
// or delete twice.
type ReplicaSetActions struct {
	// Adopt holds orphan pods that match the selector, as read, with a
	// controller ownerReference to the ReplicaSet appended. They already count
	// as the ReplicaSet's pods in this reconcile.
	Adopt []*corev1.Pod
	// Release holds pods the ReplicaSet controls whose labels no longer match
	// its selector, as read, with its ownerReference removed.
	Release []*corev1.Pod
	// Create holds the pods to create (at most BurstReplicas): built from the
	// template by PodFromTemplate, generateName "<replicaset>-".
	Create []*corev1.Pod
	// Delete holds the pods to delete, as read, most deletable first (at most
	// BurstReplicas). Delete with a UID precondition; a resourceVersion
	// precondition also works but fails whenever the node agent updated the pod.
	Delete []*corev1.Pod
	// Status is the ReplicaSet as read with its new status, or nil when the
	// status is unchanged; write it to the status subresource.
	Status *appsv1.ReplicaSet
	// RequeueAfter, when positive, asks for another reconcile after that long:
	// a ready pod will then have passed minReadySeconds and become available.
	RequeueAfter time.Duration
}

// Empty reports whether there is nothing to write.
func (a ReplicaSetActions) Empty() bool {
	return len(a.Adopt)+len(a.Release)+len(a.Create)+len(a.Delete) == 0 && a.Status == nil
}

// ReconcileReplicaSet decides how to bring rs's pods to spec.replicas, as
// Kubernetes' ReplicaSet controller (syncReplicaSet) does. pods are the pods of
// rs's namespace — those matching its selector at least; passing them all is
// fine, since pods of other namespaces are ignored, pods rs controls that no
// longer match are released, and other non-matching pods are ignored. Pure: the
// result depends only on the arguments (now is the time to judge availability
// with minReadySeconds), and its order is deterministic.
//
//   - Pods rs controls (controller ownerReference UID == rs's UID) are its own;
//     matching orphans are adopted and count as its own; pods controlled by
//     anything else are never touched or counted.
//   - Succeeded, Failed and terminating pods (deletionTimestamp set) are not
//     counted, so a replacement is created for them at once; terminating ones
//     show in status.terminatingReplicas.
//   - Missing pods are created, extra ones deleted in Kubernetes'
//     ActivePodsWithRanks order (rankForDeletion); at most BurstReplicas per call.
//   - While rs is being deleted nothing is created, deleted, adopted or
//     released; its status is still kept up to date.
//   - A selector that is unset, empty, invalid or does not select the
//     template's labels yields no actions: the API server rejects all four,
//     and acting on one would claim every pod of the namespace or create pods
//     forever.
func ReconcileReplicaSet(rs *appsv1.ReplicaSet, pods []*corev1.Pod, now time.Time) ReplicaSetActions {
	var out ReplicaSetActions
	md := rs.GetMetadata()
	sel, err := SelectorFor(rs.GetSpec().GetSelector())
	if rs.GetSpec().GetSelector() == nil || err != nil || sel.Empty() ||
		!sel.Matches(labels.Set(rs.GetSpec().GetTemplate().GetMetadata().GetLabels())) {
		return out
	}
	deleting := md.GetDeletionTimestamp() != nil
	ref := NewControllerRef(md, "apps/v1", "ReplicaSet")

	var own, terminating []*corev1.Pod
	for _, p := range sortedPods(pods) {
		pm := p.GetMetadata()
		if pm.GetNamespace() != md.GetNamespace() {
			continue
		}
		owner := controllerRefOf(pm)
		mine := owner != nil && owner.GetUid() == md.GetUid()
		if mine && podIsTerminating(p) {
			terminating = append(terminating, p)
		}
		if !podIsActive(p) {
			continue
		}
		matches := sel.Matches(labels.Set(pm.GetLabels()))
		switch {
		case mine && matches:
			own = append(own, p)
		case mine && !deleting:
			c := proto.Clone(p).(*corev1.Pod)
			c.Metadata.OwnerReferences = withoutOwnerUID(c.Metadata.OwnerReferences, md.GetUid())
			out.Release = append(out.Release, c)
		case owner == nil && matches && !deleting:
			c := proto.Clone(p).(*corev1.Pod)
			c.Metadata.OwnerReferences = append(c.Metadata.OwnerReferences, proto.Clone(ref).(*metav1.OwnerReference))
			out.Adopt = append(out.Adopt, c)
			own = append(own, p)
		}
	}

	if !deleting {
		diff := len(own) - int(replicasOf(rs))
		switch {
		case diff < 0:
			n := min(-diff, BurstReplicas)
			for range n {
				out.Create = append(out.Create, PodFromTemplate(rs.GetSpec().GetTemplate(), md.GetNamespace(), md.GetName()+"-", ref))
			}
		case diff > 0:
			n := min(diff, BurstReplicas)
			for _, p := range rankForDeletion(own, own)[:n] {
				out.Delete = append(out.Delete, proto.Clone(p).(*corev1.Pod))
			}
		}
	}

	status, requeue := replicaSetStatus(rs, own, len(terminating), now)
	old := rs.GetStatus()
	if old == nil {
		old = &appsv1.ReplicaSetStatus{}
	}
	if !proto.Equal(old, status) {
		c := proto.Clone(rs).(*appsv1.ReplicaSet)
		c.Status = status
		out.Status = c
	}
	out.RequeueAfter = requeue
	return out
}

// replicaSetStatus computes rs's status from its active pods (before this
// reconcile's creations and deletions, as Kubernetes does; the next reconcile
// sees those), keeping the fields it does not own (conditions). requeue is how
// long until the next ready pod becomes available, 0 when none is waiting.
func replicaSetStatus(rs *appsv1.ReplicaSet, own []*corev1.Pod, terminating int, now time.Time) (*appsv1.ReplicaSetStatus, time.Duration) {
	st := &appsv1.ReplicaSetStatus{}
	if rs.GetStatus() != nil {
		st = proto.Clone(rs.GetStatus()).(*appsv1.ReplicaSetStatus)
	}
	minReady := rs.GetSpec().GetMinReadySeconds()
	tmplLabels := rs.GetSpec().GetTemplate().GetMetadata().GetLabels()
	var labeled, ready, available int32
	var requeue time.Duration
	for _, p := range own {
		if hasLabels(p.GetMetadata().GetLabels(), tmplLabels) {
			labeled++
		}
		if !IsPodReady(p) {
			continue
		}
		ready++
		if IsPodAvailable(p, minReady, now) {
			available++
		} else if at, ok := podAvailableAt(p, minReady); ok {
			// Available strictly after at: wake a millisecond later.
			if d := at.Sub(now) + time.Millisecond; requeue == 0 || d < requeue {
				requeue = d
			}
		}
	}
	st.Replicas = int32(len(own))
	st.FullyLabeledReplicas = labeled
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	st.TerminatingReplicas = proto.Int32(int32(terminating))
	st.ObservedGeneration = rs.GetMetadata().GetGeneration()
	return st, requeue
}

// replicasOf is rs's spec.replicas; unset means 1, the API server's default.
func replicasOf(rs *appsv1.ReplicaSet) int32 {
	if r := rs.GetSpec().Replicas; r != nil {
		return *r
	}
	return 1
}

// SlowStartBatches splits n creations into batches of 1, 2, 4, ... (the last
// one smaller), as Kubernetes' slowStartBatch: the loop creates one batch at a
// time, concurrently within a batch, and stops at the first batch with an error
// (a quota or admission failure then costs one call, not n).
func SlowStartBatches(n int) []int {
	var out []int
	for size := 1; n > 0; size *= 2 {
		b := min(size, n)
		out = append(out, b)
		n -= b
	}
	return out
}

// sortedPods returns pods ordered by namespace and name, for deterministic
// output whatever the cache's order.
func sortedPods(pods []*corev1.Pod) []*corev1.Pod {
	out := slices.Clone(pods)
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.GetMetadata().GetNamespace(), b.GetMetadata().GetNamespace()),
			cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()),
			cmp.Compare(a.GetMetadata().GetUid(), b.GetMetadata().GetUid()))
	})
	return out
}

// rankForDeletion returns pods sorted most deletable first, in the order of
// Kubernetes' ActivePodsWithRanks:
//
//  1. not yet scheduled (no spec.nodeName) before scheduled;
//  2. Pending before Unknown before Running (other phases rank with Pending);
//  3. not ready before ready;
//  4. lower controller.kubernetes.io/pod-deletion-cost before higher;
//  5. more of related's active pods on the same node before fewer (spreads
//     what is left over nodes);
//  6. both ready: ready more recently before ready longer (a missing time first);
//  7. more container restarts before fewer;
//  8. created more recently before created earlier (a missing time first);
//  9. then by name, so the order never depends on the input's.
//
// Kubernetes' LogarithmicScaleDown (rule 6 compared in log2 buckets of age,
// ties broken by UID) is not implemented: ready times compare exactly.
func rankForDeletion(pods, related []*corev1.Pod) []*corev1.Pod {
	onNode := map[string]int{}
	for _, p := range related {
		if podIsActive(p) {
			onNode[p.GetSpec().GetNodeName()]++
		}
	}
	out := sortedPods(pods)
	slices.SortStableFunc(out, func(a, b *corev1.Pod) int {
		an, bn := a.GetSpec().GetNodeName(), b.GetSpec().GetNodeName()
		if an != bn && (an == "" || bn == "") {
			return boolFirst(an == "", bn == "")
		}
		if c := cmp.Compare(phaseOrdinal(a), phaseOrdinal(b)); c != 0 {
			return c
		}
		ar, br := IsPodReady(a), IsPodReady(b)
		if ar != br {
			return boolFirst(!ar, !br)
		}
		if c := cmp.Compare(deletionCost(a), deletionCost(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(onNode[bn], onNode[an]); c != 0 {
			return c
		}
		if ar && br {
			if c := newerFirst(podReadyTime(a), podReadyTime(b)); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(maxRestarts(b), maxRestarts(a)); c != 0 {
			return c
		}
		return newerFirst(tsTime(a.GetMetadata().GetCreationTimestamp()), tsTime(b.GetMetadata().GetCreationTimestamp()))
	})
	return out
}

// boolFirst orders a before b when only a is true.
func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	default:
		return 1
	}
}

// newerFirst orders a zero time first, then later times before earlier ones
// (Kubernetes' afterOrZero).
func newerFirst(a, b time.Time) int {
	if a.Equal(b) {
		return 0
	}
	if a.IsZero() || b.IsZero() {
		return boolFirst(a.IsZero(), b.IsZero())
	}
	return b.Compare(a)
}

// phaseOrdinal ranks Pending (and any other phase) 0, Unknown 1, Running 2.
func phaseOrdinal(p *corev1.Pod) int {
	switch p.GetStatus().GetPhase() {
	case podUnknown:
		return 1
	case podRunning:
		return 2
	default:
		return 0
	}
}

// deletionCost parses the pod-deletion-cost annotation; absent or invalid is 0.
func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.GetMetadata().GetAnnotations()[PodDeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

// maxRestarts is the highest restartCount among p's containers.
func maxRestarts(p *corev1.Pod) int32 {
	var m int32
	for _, c := range p.GetStatus().GetContainerStatuses() {
		m = max(m, c.GetRestartCount())
	}
	return m
}

// Helpers over lists of ReplicaSets (the Deployment controller's).

func sumReplicas(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += replicasOf(rs)
		}
	}
	return n
}

// activeReplicaSets filters out nil and scaled-to-zero ReplicaSets.
func activeReplicaSets(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && replicasOf(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// olderFirst orders by creationTimestamp, then name (ReplicaSetsByCreationTimestamp).
func olderFirst(a, b *appsv1.ReplicaSet) int {
	ta, tb := tsTime(a.GetMetadata().GetCreationTimestamp()), tsTime(b.GetMetadata().GetCreationTimestamp())
	return cmp.Or(ta.Compare(tb), cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()))
}

func sortedReplicaSets(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := slices.Clone(rss)
	slices.SortFunc(out, func(a, b *appsv1.ReplicaSet) int {
		return cmp.Or(cmp.Compare(a.GetMetadata().GetNamespace(), b.GetMetadata().GetNamespace()),
			cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()))
	})
	return out
}

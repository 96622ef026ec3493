package ctrl

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/labels"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Labels a StatefulSet puts on each pod besides ControllerRevisionHashLabel
// (Kubernetes' keys): the pod's own name, so that a Service can select exactly
// one replica, and its ordinal.
const (
	StatefulSetPodNameLabel = "statefulset.kubernetes.io/pod-name"
	PodIndexLabel           = "apps.kubernetes.io/pod-index"
)

// StatefulSet policy values (Kubernetes' strings).
const (
	ssParallel = "Parallel"
	ssOnDelete = "OnDelete"
	ssDelete   = "Delete" // persistentVolumeClaimRetentionPolicy
)

// StatefulSetActions is what ReconcileStatefulSet decided. Every object in it is
// a copy; objects read from the cache are never modified.
//
// The loop applies the fields in declaration order and stops at the first
// error, requeueing the key: every claim a pod mounts is created before the
// pod. Creates have fixed names, so a reconcile over a cache that lags its own
// writes fails with AlreadyExists rather than creating twice; the loop still
// waits for its writes to show (expectations) so that it neither retries nor
// reports them in vain.
type StatefulSetActions struct {
	// Adopt holds orphan pods named like the set's members ("<set>-<ordinal>")
	// and matching its selector, as read, with a controller ownerReference to
	// the StatefulSet appended.
	Adopt []*corev1.Pod
	// Release holds pods the StatefulSet controls whose labels no longer match
	// its selector, as read, with its ownerReference removed.
	Release []*corev1.Pod
	// UpdateClaims holds the set's existing claims, as read, whose
	// ownerReferences are brought in line with
	// persistentVolumeClaimRetentionPolicy.whenDeleted: a (non-controller)
	// reference to the StatefulSet when Delete, none when Retain.
	UpdateClaims []*corev1.PersistentVolumeClaim
	// CreateClaims holds the claims to create: "<template>-<set>-<ordinal>"
	// from spec.volumeClaimTemplates, for pods about to be created and for
	// Pending pods whose claims are missing.
	CreateClaims []*corev1.PersistentVolumeClaim
	// Create holds the pods to create, lowest ordinal first: one at a time
	// under OrderedReady, every missing one under Parallel.
	Create []*corev1.Pod
	// Delete holds the pods to delete, as read; delete with a UID
	// precondition.
	Delete []*corev1.Pod
	// DeleteClaims holds claims of ordinals scaled away whose pod is gone, as
	// read, when whenScaled is Delete.
	DeleteClaims []*corev1.PersistentVolumeClaim
	// Status is the StatefulSet as read with its new status, or nil when the
	// status is unchanged; write it to the status subresource.
	Status *appsv1.StatefulSet
	// RequeueAfter, when positive, asks for another reconcile after that long:
	// a ready pod will then have passed minReadySeconds and become available.
	RequeueAfter time.Duration
}

// Empty reports whether there is nothing to write.
func (a StatefulSetActions) Empty() bool {
	return len(a.Adopt)+len(a.Release)+len(a.UpdateClaims)+len(a.CreateClaims)+len(a.Create)+
		len(a.Delete)+len(a.DeleteClaims) == 0 && a.Status == nil
}

// ReconcileStatefulSet decides the next step for ss, as Kubernetes' StatefulSet
// controller (defaultStatefulSetControl) does. pods and pvcs are those of ss's
// namespace (all of them is fine). Pure and deterministic; now judges
// availability with minReadySeconds.
//
// Identity: the pod of ordinal i (from spec.ordinals.start, default 0, up to
// start+replicas-1) is "<set>-<i>", with hostname "<set>-<i>", subdomain
// spec.serviceName, labels StatefulSetPodNameLabel, PodIndexLabel and
// ControllerRevisionHashLabel ("<set>-<PodTemplateHash>", the update revision),
// and for each volumeClaimTemplate a volume of that name on claim
// "<template>-<set>-<i>" (replacing a template volume of the same name). The
// claim carries the template's labels plus the selector's matchLabels. Pods
// with other ordinals are condemned.
//
// Each step (Kubernetes' order):
//
//  1. Replicas, lowest ordinal first. A missing pod is created, its claims
//     first. A Failed or Succeeded pod is deleted (it is recreated under the
//     same name next time). Under OrderedReady (the default) the step stops at
//     the first create or delete, and at the first pod that is terminating,
//     not Running and Ready, or not yet available: ordinal i+1 is created only
//     once 0..i are Running and Ready. Parallel never stops.
//  2. Condemned pods, highest ordinal first, once step 1 went through. Under
//     OrderedReady one is deleted per step, and only when every other pod is
//     Running, Ready and available (as Kubernetes documents it; its code lets
//     a healthy pod go while a lower condemned one is unhealthy); the pod
//     itself may be unhealthy. Parallel deletes them all.
//  3. RollingUpdate (the default), once steps 1 and 2 had nothing to do: from
//     the highest ordinal down to spec.updateStrategy.rollingUpdate.partition,
//     the first pod whose revision is not the update revision is deleted
//     (recreated at the new revision by step 1), stopping at any pod that is
//     not healthy: one at a time, each waiting for the previous to be Ready.
//     OnDelete replaces a pod only after someone deleted it.
//
// Claims are never deleted by default (Retain). whenScaled Delete deletes the
// claims of ordinals outside the range once their pod is gone; whenDeleted
// Delete gives claims an ownerReference to the set, which the loop follows
// when the set is gone.
//
// Status: replicas (member pods), readyReplicas, availableReplicas,
// currentReplicas and updatedReplicas (by revision label), currentRevision
// (status.currentRevision, or the update revision at first; it becomes the
// update revision once every pod is updated and ready), updateRevision,
// observedGeneration. There are no ControllerRevisions: a pod below the
// partition that is recreated gets the current template.
//
// While ss is being deleted, or when its selector is unset, empty, invalid or
// does not select the template's labels, nothing is written but the status
// (nothing at all for a bad selector, as for ReplicaSets).
func ReconcileStatefulSet(ss *appsv1.StatefulSet, pods []*corev1.Pod, pvcs []*corev1.PersistentVolumeClaim, now time.Time) StatefulSetActions {
	var out StatefulSetActions
	md, spec := ss.GetMetadata(), ss.GetSpec()
	sel, err := SelectorFor(spec.GetSelector())
	if spec.GetSelector() == nil || err != nil || sel.Empty() ||
		!sel.Matches(labels.Set(spec.GetTemplate().GetMetadata().GetLabels())) {
		return out
	}
	deleting := md.GetDeletionTimestamp() != nil
	var collisions *int32
	if st := ss.GetStatus(); st != nil {
		collisions = st.CollisionCount
	}
	updateRev := md.GetName() + "-" + PodTemplateHash(spec.GetTemplate(), collisions)
	currentRev := ss.GetStatus().GetCurrentRevision()
	if currentRev == "" {
		currentRev = updateRev
	}
	ref := NewControllerRef(md, "apps/v1", "StatefulSet")
	start := int(spec.GetOrdinals().GetStart())
	n := int(ssReplicas(ss))
	monotonic := spec.GetPodManagementPolicy() != ssParallel

	slots := make([]*corev1.Pod, n)
	var members, condemned []*corev1.Pod
	podAt := map[int]bool{} // ordinals with a member pod, in any state
	for _, p := range sortedPods(pods) {
		pm := p.GetMetadata()
		if pm.GetNamespace() != md.GetNamespace() {
			continue
		}
		ord, member := ssOrdinal(md.GetName(), pm.GetName())
		owner := controllerRefOf(pm)
		mine := owner != nil && owner.GetUid() == md.GetUid()
		matches := sel.Matches(labels.Set(pm.GetLabels()))
		switch {
		case mine && matches:
		case mine:
			if !deleting {
				c := proto.CloneOf(p)
				c.Metadata.OwnerReferences = withoutOwnerUID(c.Metadata.OwnerReferences, md.GetUid())
				out.Release = append(out.Release, c)
			}
			continue
		case owner == nil && matches && member && !deleting && podIsActive(p):
			c := proto.CloneOf(p)
			c.Metadata.OwnerReferences = append(c.Metadata.OwnerReferences, proto.CloneOf(ref))
			out.Adopt = append(out.Adopt, c)
		default:
			continue
		}
		if !member {
			continue // owned but misnamed: not a replica, left alone
		}
		members = append(members, p)
		podAt[ord] = true
		if ord >= start && ord < start+n {
			slots[ord-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	slices.SortFunc(condemned, func(a, b *corev1.Pod) int {
		oa, _ := ssOrdinal(md.GetName(), a.GetMetadata().GetName())
		ob, _ := ssOrdinal(md.GetName(), b.GetMetadata().GetName())
		return cmp.Compare(ob, oa)
	})

	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range pvcs {
		if c.GetMetadata().GetNamespace() == md.GetNamespace() {
			claims[c.GetMetadata().GetName()] = c
		}
	}

	if !deleting {
		s := ssSync{ss: ss, ref: ref, updateRev: updateRev, claims: claims, now: now, deleted: map[*corev1.Pod]bool{}}
		s.run(slots, condemned, start, monotonic, &out)
		out.UpdateClaims, out.DeleteClaims = ssClaimRetention(ss, pvcs, podAt, start, n)
	}

	status, requeue := ssStatus(ss, members, currentRev, updateRev, now)
	old := ss.GetStatus()
	if old == nil {
		old = &appsv1.StatefulSetStatus{}
	}
	if !proto.Equal(old, status) {
		c := proto.CloneOf(ss)
		c.Status = status
		out.Status = c
	}
	out.RequeueAfter = requeue
	return out
}

// ssSync is one reconcile's pod decisions (steps 1 to 3 of
// ReconcileStatefulSet).
type ssSync struct {
	ss        *appsv1.StatefulSet
	ref       *metav1.OwnerReference
	updateRev string
	claims    map[string]*corev1.PersistentVolumeClaim // the namespace's, by name
	now       time.Time
	deleted   map[*corev1.Pod]bool // pods this reconcile deletes
	planned   map[string]bool      // claims this reconcile creates
}

func (s *ssSync) run(slots, condemned []*corev1.Pod, start int, monotonic bool, out *StatefulSetActions) {
	minReady := s.ss.GetSpec().GetMinReadySeconds()
	var firstUnhealthy *corev1.Pod
	found := false
	for _, p := range slots {
		if !found && (p == nil || !ssHealthy(p)) {
			firstUnhealthy, found = p, true
		}
	}
	for _, p := range condemned {
		if !found && !ssHealthy(p) {
			firstUnhealthy, found = p, true
		}
	}

	// 1. Replicas, lowest ordinal first.
	for i, p := range slots {
		ord := start + i
		switch {
		case p == nil:
			out.CreateClaims = append(out.CreateClaims, s.missingClaims(ord)...)
			p = ssNewPod(s.ss, s.ref, s.updateRev, ord)
			out.Create = append(out.Create, p)
			slots[i] = p // unhealthy: the rolling update stops here
			if monotonic {
				return
			}
			continue
		case p.GetStatus().GetPhase() == podFailed || p.GetStatus().GetPhase() == podSucceeded:
			if p.GetMetadata().GetDeletionTimestamp() == nil {
				out.Delete = append(out.Delete, proto.CloneOf(p))
				s.deleted[p] = true
			}
			if monotonic {
				return
			}
			continue
		case p.GetStatus().GetPhase() == podPending:
			out.CreateClaims = append(out.CreateClaims, s.missingClaims(ord)...)
		}
		if monotonic && (!ssHealthy(p) || !IsPodAvailable(p, minReady, s.now)) {
			return
		}
	}

	// 2. Condemned pods, highest ordinal first.
	for i, p := range condemned {
		if podIsTerminating(p) {
			if monotonic {
				return
			}
			continue
		}
		if monotonic {
			for _, q := range condemned[i+1:] {
				if !ssHealthy(q) || !IsPodAvailable(q, minReady, s.now) {
					return
				}
			}
			if p != firstUnhealthy && (!ssHealthy(p) || !IsPodAvailable(p, minReady, s.now)) {
				return
			}
		}
		out.Delete = append(out.Delete, proto.CloneOf(p))
		s.deleted[p] = true
		if monotonic {
			return
		}
	}

	// 3. Rolling update, highest ordinal first.
	if s.ss.GetSpec().GetUpdateStrategy().GetType() == ssOnDelete {
		return
	}
	partition := int(s.ss.GetSpec().GetUpdateStrategy().GetRollingUpdate().GetPartition())
	for i := len(slots) - 1; i >= 0 && start+i >= partition; i-- {
		p := slots[i]
		if s.deleted[p] {
			return
		}
		if p.GetMetadata().GetLabels()[ControllerRevisionHashLabel] != s.updateRev && !podIsTerminating(p) {
			out.Delete = append(out.Delete, proto.CloneOf(p))
			return
		}
		if !ssHealthy(p) {
			return
		}
	}
}

// missingClaims builds the claims of ordinal ord that neither exist nor are
// already planned.
func (s *ssSync) missingClaims(ord int) []*corev1.PersistentVolumeClaim {
	var out []*corev1.PersistentVolumeClaim
	for _, t := range s.ss.GetSpec().GetVolumeClaimTemplates() {
		c := ssNewClaim(s.ss, t, ord)
		name := c.GetMetadata().GetName()
		if _, ok := s.claims[name]; ok || s.planned[name] {
			continue
		}
		if s.planned == nil {
			s.planned = map[string]bool{}
		}
		s.planned[name] = true
		out = append(out, c)
	}
	return out
}

// ssClaimRetention applies persistentVolumeClaimRetentionPolicy to the set's
// existing claims (those named "<template>-<set>-<ordinal>"): the claims whose
// ownerReferences must change for whenDeleted, and, with whenScaled Delete,
// the claims of ordinals outside [start, start+n) that no pod uses any more.
func ssClaimRetention(ss *appsv1.StatefulSet, pvcs []*corev1.PersistentVolumeClaim, podAt map[int]bool, start, n int) (update, del []*corev1.PersistentVolumeClaim) {
	md := ss.GetMetadata()
	policy := ss.GetSpec().GetPersistentVolumeClaimRetentionPolicy()
	ownDelete := policy.GetWhenDeleted() == ssDelete
	sorted := slices.Clone(pvcs)
	slices.SortFunc(sorted, func(a, b *corev1.PersistentVolumeClaim) int {
		return cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName())
	})
	for _, c := range sorted {
		cm := c.GetMetadata()
		if cm.GetNamespace() != md.GetNamespace() || cm.GetDeletionTimestamp() != nil {
			continue
		}
		ord, ok := ssClaimOrdinal(ss, cm.GetName())
		if !ok {
			continue
		}
		if policy.GetWhenScaled() == ssDelete && (ord < start || ord >= start+n) && !podAt[ord] {
			del = append(del, proto.CloneOf(c))
			continue
		}
		has := slices.ContainsFunc(cm.GetOwnerReferences(), func(r *metav1.OwnerReference) bool { return r.GetUid() == md.GetUid() })
		if has == ownDelete {
			continue
		}
		u := proto.CloneOf(c)
		if ownDelete {
			u.Metadata.OwnerReferences = append(u.Metadata.OwnerReferences, ssClaimOwnerRef(md))
		} else {
			u.Metadata.OwnerReferences = withoutOwnerUID(u.Metadata.OwnerReferences, md.GetUid())
		}
		update = append(update, u)
	}
	return update, del
}

// ssClaimOwnerRef is the reference whenDeleted Delete puts on a claim: not a
// controller reference, as in Kubernetes.
func ssClaimOwnerRef(md *metav1.ObjectMeta) *metav1.OwnerReference {
	return &metav1.OwnerReference{ApiVersion: "apps/v1", Kind: "StatefulSet", Name: md.GetName(), Uid: md.GetUid()}
}

// ssStatus computes ss's status from its member pods, before this reconcile's
// writes, keeping the fields it does not own (collisionCount, conditions).
func ssStatus(ss *appsv1.StatefulSet, members []*corev1.Pod, currentRev, updateRev string, now time.Time) (*appsv1.StatefulSetStatus, time.Duration) {
	st := &appsv1.StatefulSetStatus{}
	if ss.GetStatus() != nil {
		st = proto.CloneOf(ss.GetStatus())
	}
	minReady := ss.GetSpec().GetMinReadySeconds()
	var replicas, ready, available, current, updated int32
	var requeue time.Duration
	for _, p := range members {
		replicas++
		if p.GetStatus().GetPhase() == podRunning && IsPodReady(p) {
			ready++
			if IsPodAvailable(p, minReady, now) {
				available++
			} else if at, ok := podAvailableAt(p, minReady); ok {
				if d := at.Sub(now) + time.Millisecond; requeue == 0 || d < requeue {
					requeue = d
				}
			}
		}
		if !podIsTerminating(p) {
			switch rev := p.GetMetadata().GetLabels()[ControllerRevisionHashLabel]; rev {
			case currentRev:
				current++
				if rev == updateRev {
					updated++
				}
			case updateRev:
				updated++
			}
		}
	}
	st.ObservedGeneration = ss.GetMetadata().GetGeneration()
	st.Replicas = replicas
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	st.CurrentReplicas = current
	st.UpdatedReplicas = updated
	st.CurrentRevision = currentRev
	st.UpdateRevision = updateRev
	if ss.GetSpec().GetUpdateStrategy().GetType() != ssOnDelete && updated == replicas && ready == replicas {
		st.CurrentReplicas = updated
		st.CurrentRevision = updateRev
	}
	return st, requeue
}

// ssNewPod builds the pod of ordinal ord at revision rev.
func ssNewPod(ss *appsv1.StatefulSet, ref *metav1.OwnerReference, rev string, ord int) *corev1.Pod {
	md, spec := ss.GetMetadata(), ss.GetSpec()
	name := ssPodName(md.GetName(), ord)
	p := PodFromTemplate(spec.GetTemplate(), md.GetNamespace(), "", ref)
	p.Metadata.Name = name
	p.Metadata.Labels = cloneStringMap(p.Metadata.Labels, StatefulSetPodNameLabel, name)
	p.Metadata.Labels[PodIndexLabel] = strconv.Itoa(ord)
	p.Metadata.Labels[ControllerRevisionHashLabel] = rev
	p.Spec.Hostname = name
	p.Spec.Subdomain = spec.GetServiceName()
	tmpls := spec.GetVolumeClaimTemplates()
	if len(tmpls) > 0 {
		volumes := make([]*corev1.Volume, 0, len(tmpls)+len(p.Spec.Volumes))
		claimed := map[string]bool{}
		for _, t := range tmpls {
			tn := t.GetMetadata().GetName()
			claimed[tn] = true
			volumes = append(volumes, &corev1.Volume{Name: tn, PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: ssClaimName(tn, md.GetName(), ord)}})
		}
		for _, v := range p.Spec.Volumes {
			if !claimed[v.GetName()] {
				volumes = append(volumes, v)
			}
		}
		p.Spec.Volumes = volumes
	}
	return p
}

// ssNewClaim builds claim template t's claim for ordinal ord: the template's
// metadata labels plus the selector's matchLabels, its annotations and spec,
// and with whenDeleted Delete an ownerReference to the set.
func ssNewClaim(ss *appsv1.StatefulSet, t *corev1.PersistentVolumeClaim, ord int) *corev1.PersistentVolumeClaim {
	md := ss.GetMetadata()
	tm := t.GetMetadata()
	lbls := cloneStringMap(tm.GetLabels(), "", "")
	for k, v := range ss.GetSpec().GetSelector().GetMatchLabels() {
		lbls[k] = v
	}
	c := &corev1.PersistentVolumeClaim{ApiVersion: "v1", Kind: "PersistentVolumeClaim",
		Metadata: &metav1.ObjectMeta{Name: ssClaimName(tm.GetName(), md.GetName(), ord), Namespace: md.GetNamespace(),
			Labels: lbls, Annotations: cloneStringMap(tm.GetAnnotations(), "", "")},
		Spec: proto.CloneOf(t.GetSpec())}
	if len(c.Metadata.Annotations) == 0 {
		c.Metadata.Annotations = nil
	}
	if ss.GetSpec().GetPersistentVolumeClaimRetentionPolicy().GetWhenDeleted() == ssDelete {
		c.Metadata.OwnerReferences = []*metav1.OwnerReference{ssClaimOwnerRef(md)}
	}
	return c
}

// ssHealthy reports whether p is Running, Ready and not terminating.
func ssHealthy(p *corev1.Pod) bool {
	return p.GetStatus().GetPhase() == podRunning && IsPodReady(p) && p.GetMetadata().GetDeletionTimestamp() == nil
}

// ssReplicas is spec.replicas; unset means 1, the API server's default.
func ssReplicas(ss *appsv1.StatefulSet) int32 {
	if r := ss.GetSpec().Replicas; r != nil {
		return max(*r, 0)
	}
	return 1
}

func ssPodName(set string, ord int) string { return set + "-" + strconv.Itoa(ord) }

func ssClaimName(template, set string, ord int) string {
	return template + "-" + ssPodName(set, ord)
}

// ssOrdinal parses "<set>-<ordinal>"; ok is false for any other name
// (including non-canonical numbers such as "web-01").
func ssOrdinal(set, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, set+"-")
	if !ok {
		return 0, false
	}
	return ssParseOrdinal(rest)
}

// ssClaimOrdinal parses "<template>-<set>-<ordinal>" for one of ss's claim
// templates.
func ssClaimOrdinal(ss *appsv1.StatefulSet, name string) (int, bool) {
	for _, t := range ss.GetSpec().GetVolumeClaimTemplates() {
		if rest, ok := strings.CutPrefix(name, t.GetMetadata().GetName()+"-"+ss.GetMetadata().GetName()+"-"); ok {
			if ord, ok := ssParseOrdinal(rest); ok {
				return ord, true
			}
		}
	}
	return 0, false
}

func ssParseOrdinal(s string) (int, bool) {
	ord, err := strconv.Atoi(s)
	if err != nil || ord < 0 || strconv.Itoa(ord) != s {
		return 0, false
	}
	return ord, true
}

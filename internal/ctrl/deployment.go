package ctrl

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Annotations a Deployment keeps on its ReplicaSets (and itself), with
// Kubernetes' keys and meaning so kubectl habits and tools keep working.
const (
	// RevisionAnnotation numbers a Deployment's rollouts on its ReplicaSets
	// (and on the Deployment: the current one).
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// RevisionHistoryAnnotation lists, comma-separated, the earlier revisions a
	// ReplicaSet served before a rollback made it current again.
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	// DesiredReplicasAnnotation is the Deployment's spec.replicas when the
	// ReplicaSet was last scaled; a difference marks a scaling event.
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	// MaxReplicasAnnotation is spec.replicas + maxSurge when the ReplicaSet was
	// last scaled: the base of proportional scaling.
	MaxReplicasAnnotation = "deployment.kubernetes.io/max-replicas"
	// ChangeCauseAnnotation is the user's note on why a rollout happened; it is
	// copied from the Deployment to the ReplicaSet of the rollout.
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
)

// Deployment condition reasons (Kubernetes' strings).
const (
	ReasonMinimumReplicasAvailable   = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	ReasonNewReplicaSetCreated       = "NewReplicaSetCreated"
	ReasonFoundNewReplicaSet         = "FoundNewReplicaSet"
	ReasonReplicaSetUpdated          = "ReplicaSetUpdated"
	ReasonNewReplicaSetAvailable     = "NewReplicaSetAvailable"
	ReasonProgressDeadlineExceeded   = "ProgressDeadlineExceeded"
	ReasonDeploymentPaused           = "DeploymentPaused"
	ReasonDeploymentResumed          = "DeploymentResumed"
)

const (
	condAvailable   = "Available"
	condProgressing = "Progressing"

	defaultRevisionHistoryLimit    = 10
	defaultProgressDeadlineSeconds = 600
	// maxRevisionHistoryChars bounds RevisionHistoryAnnotation, as Kubernetes'
	// controller flag default.
	maxRevisionHistoryChars = 2000
)

// annotationsNotCopied are the Deployment annotations that are not copied to
// its new ReplicaSet (every other one is, change-cause included).
var annotationsNotCopied = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
	RevisionAnnotation:                  true,
	RevisionHistoryAnnotation:           true,
	DesiredReplicasAnnotation:           true,
	MaxReplicasAnnotation:               true,
	"deprecated.deployment.rollback.to": true,
}

// EventAction is an event the loop should record about the object it
// reconciled (EventRecorder.Record), after the writes succeeded.
type EventAction struct {
	Type    string // Normal or Warning
	Reason  string
	Message string
}

// DeploymentActions is what ReconcileDeployment decided. Every object in it is a
// copy; objects read from the cache are never modified. Each update carries the
// object as read (its resourceVersion is the precondition), modified.
//
// The loop applies the fields in declaration order and stops at the first
// error, requeueing the key: a Conflict means the cache was stale and the next
// reconcile decides again from fresher state. The order keeps every partial
// application within the rollout's bounds: scale-downs come before scale-ups and
// before the new ReplicaSet is created.
type DeploymentActions struct {
	// UpdateReplicaSets holds ReplicaSets as read, modified: adopted (a
	// controller ownerReference added), released (removed), scaled, annotated
	// (revision, desired-replicas, max-replicas, the Deployment's annotations),
	// minReadySeconds synced. Each appears once with all its changes; those
	// whose spec.replicas goes down come first, then the rest, by name.
	UpdateReplicaSets []*appsv1.ReplicaSet
	// CreateReplicaSet is the new ReplicaSet to create, or nil.
	CreateReplicaSet *appsv1.ReplicaSet
	// DeleteReplicaSets holds old ReplicaSets beyond revisionHistoryLimit, as
	// read (all have zero replicas); delete with UID and resourceVersion
	// preconditions. Sorted by name.
	DeleteReplicaSets []*appsv1.ReplicaSet
	// Update is the Deployment as read with new metadata (its revision
	// annotation), or nil; write it to the main resource.
	Update *appsv1.Deployment
	// Status is the Deployment as read with its new status, or nil; write it to
	// the status subresource. When Update is also set, write Status's status
	// onto the object the Update returned (the status subresource takes only
	// the status, and the Update changed the resourceVersion).
	Status *appsv1.Deployment
	// Events to record about the Deployment (ScalingReplicaSet).
	Events []EventAction
	// RequeueAfter, when positive, asks for another reconcile after that long:
	// the rollout's progress deadline will have passed by then.
	RequeueAfter time.Duration
}

// Empty reports whether there is nothing to write.
func (a DeploymentActions) Empty() bool {
	return len(a.UpdateReplicaSets) == 0 && a.CreateReplicaSet == nil && len(a.DeleteReplicaSets) == 0 &&
		a.Update == nil && a.Status == nil
}

// ReconcileDeployment decides the next step of d's rollout, as Kubernetes'
// Deployment controller (syncDeployment) does, with the same arithmetic. rss
// are the ReplicaSets of d's namespace: at least those matching d's selector,
// ideally all of them (then a name collision of a new ReplicaSet is seen before
// the create fails). pods are the pods of the namespace matching d's selector;
// only Recreate looks at them (it waits until the old ones are gone). Pure and
// deterministic; now stamps conditions and judges the progress deadline.
//
// Ownership: ReplicaSets d controls are its own; orphans matching d's selector
// are adopted; those controlled by others are ignored; own ones that no longer
// match are released. The new ReplicaSet is the oldest own one whose template
// equals d's (TemplatesEqual); when none does, one is created, named
// "<deployment>-<PodTemplateHash>", with the hash also in its selector, template
// labels and labels, revision max(old revisions)+1, and d's annotations. An old
// ReplicaSet whose template d takes again (a rollback) becomes the new one and
// gets a new revision, its earlier ones moving to RevisionHistoryAnnotation.
//
// Then, in Kubernetes' order: while d is being deleted only the status is
// synced. A paused d, or a change of spec.replicas (a ReplicaSet's
// desired-replicas annotation differs), only scales: the single active
// ReplicaSet to spec.replicas, or, mid-rollout, every active one in proportion
// to its size, within replicas + maxSurge; paused also keeps the revision
// history trimmed. Otherwise the strategy runs one step:
//
//   - RollingUpdate: scale the new ReplicaSet up to at most replicas + maxSurge
//     pods in total (reconcileNewReplicaSet); if that did nothing, scale old
//     ones down, first by their unavailable pods, then by what is available
//     beyond replicas - maxUnavailable, oldest first (reconcileOldReplicaSets).
//     Counts are the ReplicaSets' spec.replicas and status.availableReplicas,
//     so total pods <= replicas + maxSurge and available >= replicas -
//     maxUnavailable hold while the ReplicaSet controller follows.
//   - Recreate: scale every old ReplicaSet to 0; once none has pods (terminating
//     ones included), create or scale the new one to spec.replicas.
//
// When the rollout is complete, old ReplicaSets beyond revisionHistoryLimit
// with no replicas are deleted, lowest revision first. Status: replicas,
// updatedReplicas, ready/available/unavailableReplicas summed from the
// ReplicaSets' status, observedGeneration, and the Available and Progressing
// conditions with Kubernetes' reasons and messages.
//
// Unset fields take the API server's defaults: replicas 1, strategy
// RollingUpdate with maxSurge and maxUnavailable 25%, revisionHistoryLimit 10,
// progressDeadlineSeconds 600. An unset, empty or invalid selector only updates
// status.observedGeneration, as in Kubernetes.
func ReconcileDeployment(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, pods []*corev1.Pod, now time.Time) DeploymentActions {
	s, ok := newDeploymentSync(d, rss, pods, now)
	if !ok {
		var out DeploymentActions
		if st := cloneDeploymentStatus(d.GetStatus()); st.ObservedGeneration < d.GetMetadata().GetGeneration() {
			st.ObservedGeneration = d.GetMetadata().GetGeneration()
			out.Status = proto.Clone(d).(*appsv1.Deployment)
			out.Status.Status = st
		}
		return out
	}
	switch {
	case d.GetMetadata().GetDeletionTimestamp() != nil:
		newRS, old := s.newAndOld(false)
		s.syncStatus(append(old, newRS), newRS)
	case d.GetSpec().GetPaused():
		s.checkPausedConditions()
		s.syncScale()
	default:
		s.checkPausedConditions()
		if s.isScalingEvent() {
			s.syncScale()
		} else if s.recreate {
			s.rolloutRecreate()
		} else {
			s.rolloutRolling()
		}
	}
	return s.actions(s.d.Status)
}

// deploymentSync is one reconcile's working state: copies of d and of the
// ReplicaSets it owns, changed in place as Kubernetes' controller would change
// them with API calls, then diffed with what was read (actions).
type deploymentSync struct {
	now  time.Time
	orig *appsv1.Deployment
	d    *appsv1.Deployment // working copy: annotations and status change

	replicas       int32 // spec.replicas
	maxSurge       int32 // resolved; 0 for Recreate
	maxUnavailable int32 // resolved; 0 for Recreate
	recreate       bool

	owned    []*appsv1.ReplicaSet // working copies of the ReplicaSets d owns
	released []*appsv1.ReplicaSet // working copies d lets go of
	// read maps a working copy to the ReplicaSet as read, base to its
	// unmodified working copy (nil parts made empty, to diff against).
	read     map[*appsv1.ReplicaSet]*appsv1.ReplicaSet
	base     map[*appsv1.ReplicaSet]*appsv1.ReplicaSet
	names    map[string]bool          // every ReplicaSet name of the namespace seen
	podsByRS map[string][]*corev1.Pod // owner UID -> pods, for Recreate
	created  *appsv1.ReplicaSet
	deletes  []*appsv1.ReplicaSet
	events   []EventAction
}

func newDeploymentSync(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, pods []*corev1.Pod, now time.Time) (*deploymentSync, bool) {
	s := &deploymentSync{now: now, orig: d, d: proto.Clone(d).(*appsv1.Deployment),
		read: map[*appsv1.ReplicaSet]*appsv1.ReplicaSet{}, base: map[*appsv1.ReplicaSet]*appsv1.ReplicaSet{}, names: map[string]bool{}, podsByRS: map[string][]*corev1.Pod{}}
	if s.d.Metadata == nil {
		s.d.Metadata = &metav1.ObjectMeta{}
	}
	if s.d.Status == nil {
		s.d.Status = &appsv1.DeploymentStatus{}
	}
	md := d.GetMetadata()
	sel, err := SelectorFor(d.GetSpec().GetSelector())
	if d.GetSpec().GetSelector() == nil || err != nil || sel.Empty() {
		return s, false
	}
	s.replicas = 1
	if r := d.GetSpec().Replicas; r != nil {
		s.replicas = *r
	}
	s.recreate = d.GetSpec().GetStrategy().GetType() == "Recreate"
	if !s.recreate {
		ru := d.GetSpec().GetStrategy().GetRollingUpdate()
		s.maxSurge, s.maxUnavailable = resolveFenceposts(ru.GetMaxSurge(), ru.GetMaxUnavailable(), s.replicas)
		if s.replicas == 0 {
			s.maxUnavailable = 0
		}
		s.maxUnavailable = min(s.maxUnavailable, s.replicas)
	}

	deleting := md.GetDeletionTimestamp() != nil
	for _, rs := range sortedReplicaSets(rss) {
		rmd := rs.GetMetadata()
		if rmd.GetNamespace() != md.GetNamespace() {
			continue
		}
		s.names[rmd.GetName()] = true
		matches := sel.Matches(labels.Set(rmd.GetLabels()))
		owner := controllerRefOf(rmd)
		switch {
		case owner != nil && owner.GetUid() == md.GetUid() && matches:
			s.owned = append(s.owned, s.working(rs))
		case owner != nil && owner.GetUid() == md.GetUid() && !deleting:
			w := s.working(rs)
			w.Metadata.OwnerReferences = withoutOwnerUID(w.Metadata.OwnerReferences, md.GetUid())
			s.released = append(s.released, w)
		case owner == nil && matches && !deleting && rmd.GetDeletionTimestamp() == nil:
			w := s.working(rs)
			w.Metadata.OwnerReferences = append(w.Metadata.OwnerReferences, NewControllerRef(md, "apps/v1", "Deployment"))
			s.owned = append(s.owned, w)
		}
	}
	ownedUIDs := map[string]bool{}
	for _, rs := range s.owned {
		ownedUIDs[rs.GetMetadata().GetUid()] = true
	}
	for _, p := range pods {
		pm := p.GetMetadata()
		if pm.GetNamespace() != md.GetNamespace() || !sel.Matches(labels.Set(pm.GetLabels())) {
			continue
		}
		if owner := controllerRefOf(pm); owner != nil && ownedUIDs[owner.GetUid()] {
			s.podsByRS[owner.GetUid()] = append(s.podsByRS[owner.GetUid()], p)
		}
	}
	return s, true
}

// working returns a working copy of rs (metadata, spec and status present).
func (s *deploymentSync) working(rs *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	w := proto.Clone(rs).(*appsv1.ReplicaSet)
	if w.Metadata == nil {
		w.Metadata = &metav1.ObjectMeta{}
	}
	if w.Spec == nil {
		w.Spec = &appsv1.ReplicaSetSpec{}
	}
	if w.Status == nil {
		w.Status = &appsv1.ReplicaSetStatus{}
	}
	s.read[w] = rs
	s.base[w] = proto.Clone(w).(*appsv1.ReplicaSet)
	return w
}

// changed reports whether this reconcile modified the working copy w.
func (s *deploymentSync) changed(w *appsv1.ReplicaSet) bool {
	return !proto.Equal(w, s.base[w])
}

// actions diffs the working state with what was read.
func (s *deploymentSync) actions(status *appsv1.DeploymentStatus) DeploymentActions {
	out := DeploymentActions{Events: s.events}
	if s.created != nil {
		out.CreateReplicaSet = proto.Clone(s.created).(*appsv1.ReplicaSet)
		out.CreateReplicaSet.Status = nil
	}
	updated := map[*appsv1.ReplicaSet]bool{}
	for _, w := range slices.Concat(s.owned, s.released) {
		if s.changed(w) {
			out.UpdateReplicaSets = append(out.UpdateReplicaSets, w)
			updated[s.read[w]] = true
		}
	}
	slices.SortStableFunc(out.UpdateReplicaSets, func(a, b *appsv1.ReplicaSet) int {
		da, db := replicasOf(a) < replicasOf(s.base[a]), replicasOf(b) < replicasOf(s.base[b])
		return cmp.Or(boolFirst(da, db), cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()))
	})
	for _, w := range s.deletes {
		if rs := s.read[w]; !updated[rs] {
			out.DeleteReplicaSets = append(out.DeleteReplicaSets, rs)
		}
	}
	if origMD := s.orig.GetMetadata(); !proto.Equal(cmp.Or(origMD, &metav1.ObjectMeta{}), s.d.GetMetadata()) {
		u := proto.Clone(s.orig).(*appsv1.Deployment)
		u.Metadata = proto.Clone(s.d.Metadata).(*metav1.ObjectMeta)
		out.Update = u
	}
	if !proto.Equal(cloneDeploymentStatus(s.orig.GetStatus()), status) {
		u := proto.Clone(s.orig).(*appsv1.Deployment)
		u.Status = proto.Clone(status).(*appsv1.DeploymentStatus)
		out.Status = u
	}
	out.RequeueAfter = s.requeueAfter(status)
	return out
}

func cloneDeploymentStatus(st *appsv1.DeploymentStatus) *appsv1.DeploymentStatus {
	if st == nil {
		return &appsv1.DeploymentStatus{}
	}
	return proto.Clone(st).(*appsv1.DeploymentStatus)
}

// --- new and old ReplicaSets, revisions ---

// newAndOld returns the new ReplicaSet (nil when there is none and create is
// false, or when its name collides) and the old ones, syncing revisions and
// annotations on the way (getAllReplicaSetsAndSyncRevision).
func (s *deploymentSync) newAndOld(create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	existing := s.findNew()
	var old []*appsv1.ReplicaSet
	for _, rs := range s.owned {
		if rs != existing {
			old = append(old, rs)
		}
	}
	return s.syncNew(existing, old, create), old
}

// findNew is the oldest ReplicaSet running d's template (FindNewReplicaSet).
func (s *deploymentSync) findNew() *appsv1.ReplicaSet {
	if s.created != nil {
		return s.created
	}
	byAge := slices.Clone(s.owned)
	slices.SortFunc(byAge, olderFirst)
	for _, rs := range byAge {
		if TemplatesEqual(rs.GetSpec().GetTemplate(), s.d.GetSpec().GetTemplate()) {
			return rs
		}
	}
	return nil
}

// syncNew updates the existing new ReplicaSet's annotations and
// minReadySeconds, or creates it when create is set (getNewReplicaSet).
func (s *deploymentSync) syncNew(existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) *appsv1.ReplicaSet {
	newRevision := strconv.FormatInt(maxRevision(old)+1, 10)
	if existing != nil {
		if existing != s.created {
			s.setNewReplicaSetAnnotations(existing, newRevision, true)
			existing.Spec.MinReadySeconds = s.d.GetSpec().GetMinReadySeconds()
		}
		s.setDeploymentRevision(existing.GetMetadata().GetAnnotations()[RevisionAnnotation])
		if s.hasProgressDeadline() && getCondition(s.d.Status, condProgressing) == nil {
			s.setCondition(s.d.Status, condProgressing, condTrue, ReasonFoundNewReplicaSet,
				fmt.Sprintf("Found new replica set %q", existing.GetMetadata().GetName()))
		}
		return existing
	}
	if !create {
		return nil
	}
	md := s.d.GetMetadata()
	hash := PodTemplateHash(s.d.GetSpec().GetTemplate(), s.d.Status.CollisionCount)
	name := md.GetName() + "-" + hash
	if s.names[name] {
		// Another ReplicaSet has the name: bump collisionCount so that the next
		// reconcile (woken by this status write) computes another hash.
		s.d.Status.CollisionCount = proto.Int32(s.d.Status.GetCollisionCount() + 1)
		return nil
	}
	tmpl := cloneTemplate(s.d.GetSpec().GetTemplate())
	if tmpl.Metadata == nil {
		tmpl.Metadata = &metav1.ObjectMeta{}
	}
	tmpl.Metadata.Labels = cloneStringMap(tmpl.Metadata.Labels, PodTemplateHashLabel, hash)
	sel := proto.Clone(s.d.GetSpec().GetSelector()).(*metav1.LabelSelector)
	sel.MatchLabels = cloneStringMap(sel.MatchLabels, PodTemplateHashLabel, hash)
	rs := &appsv1.ReplicaSet{ApiVersion: "apps/v1", Kind: "ReplicaSet",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: md.GetNamespace(),
			Labels:          cloneStringMap(tmpl.Metadata.Labels, "", ""),
			OwnerReferences: []*metav1.OwnerReference{NewControllerRef(md, "apps/v1", "Deployment")}},
		Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(0), MinReadySeconds: s.d.GetSpec().GetMinReadySeconds(),
			Selector: sel, Template: tmpl},
		Status: &appsv1.ReplicaSetStatus{}}
	n := s.newRSNewReplicas(append(slices.Clone(old), rs), rs)
	rs.Spec.Replicas = proto.Int32(n)
	s.setNewReplicaSetAnnotations(rs, newRevision, false)
	s.created = rs
	if n > 0 {
		s.event("ScalingReplicaSet", fmt.Sprintf("Scaled up replica set %s from 0 to %d", name, n))
	}
	s.setDeploymentRevision(newRevision)
	if s.hasProgressDeadline() {
		s.setCondition(s.d.Status, condProgressing, condTrue, ReasonNewReplicaSetCreated,
			fmt.Sprintf("Created new replica set %q", name))
	}
	return rs
}

// setNewReplicaSetAnnotations copies d's annotations to rs, raises its revision
// to newRevision (recording the one it had in RevisionHistoryAnnotation), and
// for a ReplicaSet being created sets desired-replicas and max-replicas
// (SetNewReplicaSetAnnotations).
func (s *deploymentSync) setNewReplicaSetAnnotations(rs *appsv1.ReplicaSet, newRevision string, exists bool) {
	md := rs.Metadata
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	for k, v := range s.d.GetMetadata().GetAnnotations() {
		if !annotationsNotCopied[k] {
			md.Annotations[k] = v
		}
	}
	oldRevision, had := md.Annotations[RevisionAnnotation]
	oldRev, err := strconv.ParseInt(oldRevision, 10, 64)
	if err != nil {
		if oldRevision != "" {
			return
		}
		oldRev = 0
	}
	newRev, _ := strconv.ParseInt(newRevision, 10, 64)
	if oldRev < newRev {
		md.Annotations[RevisionAnnotation] = newRevision
		if had {
			md.Annotations[RevisionHistoryAnnotation] = appendRevisionHistory(md.Annotations[RevisionHistoryAnnotation], oldRevision)
		}
	}
	if !exists {
		setReplicasAnnotations(rs, s.replicas, s.replicas+s.maxSurge)
	}
}

// appendRevisionHistory appends rev to the comma-separated history, dropping
// the oldest entries to stay within maxRevisionHistoryChars.
func appendRevisionHistory(history, rev string) string {
	if history == "" {
		return rev
	}
	revs := append(strings.Split(history, ","), rev)
	for len(revs) > 1 && len(strings.Join(revs, ",")) > maxRevisionHistoryChars {
		revs = revs[1:]
	}
	return strings.Join(revs, ",")
}

func (s *deploymentSync) setDeploymentRevision(rev string) {
	if rev == "" {
		return
	}
	if s.d.Metadata.Annotations[RevisionAnnotation] != rev {
		s.d.Metadata.Annotations = cloneStringMap(s.d.Metadata.Annotations, RevisionAnnotation, rev)
	}
}

// revisionOf parses rs's revision annotation; absent or invalid is 0.
func revisionOf(rs *appsv1.ReplicaSet) int64 {
	v, err := strconv.ParseInt(rs.GetMetadata().GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revisionOf(rs))
	}
	return m
}

// --- strategies ---

// rolloutRolling is one step of a RollingUpdate (rolloutRolling).
func (s *deploymentSync) rolloutRolling() {
	newRS, old := s.newAndOld(true)
	if newRS == nil {
		return // name collision: only the collisionCount is written
	}
	all := append(slices.Clone(old), newRS)
	if s.reconcileNewReplicaSet(all, newRS) {
		s.syncRolloutStatus(all, newRS)
		return
	}
	if s.reconcileOldReplicaSets(all, activeReplicaSets(old), newRS) {
		s.syncRolloutStatus(all, newRS)
		return
	}
	if s.complete(s.d.Status) {
		s.cleanup(old)
	}
	s.syncRolloutStatus(all, newRS)
}

func (s *deploymentSync) reconcileNewReplicaSet(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) bool {
	cur := replicasOf(newRS)
	switch {
	case cur == s.replicas:
		return false
	case cur > s.replicas:
		return s.scaleAndRecord(newRS, s.replicas)
	}
	return s.scaleAndRecord(newRS, s.newRSNewReplicas(all, newRS))
}

// newRSNewReplicas is the size the new ReplicaSet may grow to now
// (NewRSNewReplicas): for RollingUpdate, up to replicas + maxSurge pods in all
// ReplicaSets together and never beyond replicas; for Recreate, replicas.
func (s *deploymentSync) newRSNewReplicas(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if s.recreate {
		return s.replicas
	}
	current := sumReplicas(all)
	maxTotal := s.replicas + s.maxSurge
	if current >= maxTotal {
		return replicasOf(newRS)
	}
	up := min(maxTotal-current, s.replicas-replicasOf(newRS))
	return replicasOf(newRS) + up
}

// reconcileOldReplicaSets scales old ReplicaSets down by what availability
// allows (reconcileOldReplicaSets): at most
// sum(spec.replicas) - (replicas - maxUnavailable) - unavailable pods of the new
// ReplicaSet, spent first on old ReplicaSets' unavailable pods.
func (s *deploymentSync) reconcileOldReplicaSets(all, oldActive []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) bool {
	if sumReplicas(oldActive) == 0 {
		return false
	}
	minAvailable := s.replicas - s.maxUnavailable
	newUnavailable := replicasOf(newRS) - newRS.GetStatus().GetAvailableReplicas()
	maxScaledDown := sumReplicas(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false
	}
	cleaned := s.cleanupUnhealthyReplicas(oldActive, maxScaledDown)
	scaled := s.scaleDownOldForRollingUpdate(all, oldActive)
	return cleaned+scaled > 0
}

// cleanupUnhealthyReplicas scales old ReplicaSets down by their unavailable
// pods, oldest first, at most maxCleanup in all; the ReplicaSet controller
// deletes not-ready pods first, so availability does not drop.
func (s *deploymentSync) cleanupUnhealthyReplicas(old []*appsv1.ReplicaSet, maxCleanup int32) int32 {
	old = slices.Clone(old)
	slices.SortFunc(old, olderFirst)
	var total int32
	for _, rs := range old {
		if total >= maxCleanup {
			break
		}
		cur, avail := replicasOf(rs), rs.GetStatus().GetAvailableReplicas()
		if cur == 0 || cur <= avail {
			continue
		}
		n := min(maxCleanup-total, cur-avail)
		s.scaleAndRecord(rs, cur-n)
		total += n
	}
	return total
}

// scaleDownOldForRollingUpdate scales old ReplicaSets down, oldest first, by the
// available pods beyond replicas - maxUnavailable.
func (s *deploymentSync) scaleDownOldForRollingUpdate(all, old []*appsv1.ReplicaSet) int32 {
	minAvailable := s.replicas - s.maxUnavailable
	// A ReplicaSet just scaled down may still report the pods it is deleting as
	// available; only spec.replicas of them will remain.
	var available int32
	for _, rs := range all {
		available += min(rs.GetStatus().GetAvailableReplicas(), replicasOf(rs))
	}
	if available <= minAvailable {
		return 0
	}
	old = slices.Clone(old)
	slices.SortFunc(old, olderFirst)
	want := available - minAvailable
	var total int32
	for _, rs := range old {
		if total >= want {
			break
		}
		cur := replicasOf(rs)
		if cur == 0 {
			continue
		}
		n := min(cur, want-total)
		s.scaleAndRecord(rs, cur-n)
		total += n
	}
	return total
}

// rolloutRecreate is one step of a Recreate rollout (rolloutRecreate).
func (s *deploymentSync) rolloutRecreate() {
	newRS, old := s.newAndOld(false)
	all := append(slices.Clone(old), newRS)
	scaledDown := false
	for _, rs := range activeReplicaSets(old) {
		if s.scaleAndRecord(rs, 0) {
			scaledDown = true
		}
	}
	if scaledDown || s.oldPodsRunning(newRS, old) {
		s.syncRolloutStatus(all, newRS)
		return
	}
	if newRS == nil {
		newRS, old = s.newAndOld(true)
		if newRS == nil {
			return // name collision
		}
		all = append(slices.Clone(old), newRS)
	}
	s.scaleAndRecord(newRS, s.replicas)
	if s.complete(s.d.Status) {
		s.cleanup(old)
	}
	s.syncRolloutStatus(all, newRS)
}

// oldPodsRunning reports whether an old ReplicaSet still counts pods in its
// status, or any pod of one is not Succeeded or Failed (terminating included).
func (s *deploymentSync) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	for _, rs := range old {
		if rs.GetStatus().GetReplicas() > 0 {
			return true
		}
	}
	for _, rs := range old {
		for _, p := range s.podsByRS[rs.GetMetadata().GetUid()] {
			if ph := p.GetStatus().GetPhase(); ph != podSucceeded && ph != podFailed {
				return true
			}
		}
	}
	return false
}

// --- scaling events and pause ---

// isScalingEvent reports whether an active ReplicaSet was last scaled for
// another spec.replicas than d's (isScalingEvent).
func (s *deploymentSync) isScalingEvent() bool {
	newRS, old := s.newAndOld(false)
	for _, rs := range activeReplicaSets(append(slices.Clone(old), newRS)) {
		if desired, ok := desiredReplicasAnnotation(rs); ok && desired != s.replicas {
			return true
		}
	}
	return false
}

// syncScale scales without rollout progress, then syncs status (sync).
func (s *deploymentSync) syncScale() {
	newRS, old := s.newAndOld(false)
	s.scale(newRS, old)
	if s.d.GetSpec().GetPaused() {
		s.cleanup(old)
	}
	s.syncStatus(append(slices.Clone(old), newRS), newRS)
}

// scale brings the ReplicaSets to spec.replicas (scale): the only active one
// (or, with none, the newest) takes it all; a saturated new ReplicaSet makes
// the old ones 0; otherwise, for RollingUpdate, the difference between
// replicas + maxSurge and the current total is spread over the active
// ReplicaSets in proportion to their size, larger ones first, the rounding
// leftover going to the first.
func (s *deploymentSync) scale(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) {
	if rs := findActiveOrLatest(newRS, old); rs != nil {
		if replicasOf(rs) != s.replicas {
			s.scaleAndRecord(rs, s.replicas)
		}
		return
	}
	if s.isSaturated(newRS) {
		for _, rs := range activeReplicaSets(old) {
			s.scaleAndRecord(rs, 0)
		}
		return
	}
	if s.recreate {
		return
	}
	active := activeReplicaSets(append(slices.Clone(old), newRS))
	allowed := int32(0)
	if s.replicas > 0 {
		allowed = s.replicas + s.maxSurge
	}
	toAdd := allowed - sumReplicas(active)
	op := ""
	switch {
	case toAdd > 0:
		slices.SortFunc(active, func(a, b *appsv1.ReplicaSet) int {
			return cmp.Or(cmp.Compare(replicasOf(b), replicasOf(a)), olderFirst(b, a))
		})
		op = "up"
	case toAdd < 0:
		slices.SortFunc(active, func(a, b *appsv1.ReplicaSet) int {
			return cmp.Or(cmp.Compare(replicasOf(b), replicasOf(a)), olderFirst(a, b))
		})
		op = "down"
	}
	sizes := make([]int32, len(active))
	var added int32
	for i, rs := range active {
		sizes[i] = replicasOf(rs)
		if toAdd != 0 {
			p := s.proportion(rs, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, rs := range active {
		if i == 0 && toAdd != 0 {
			sizes[0] = max(sizes[0]+toAdd-added, 0)
		}
		s.scaleReplicaSet(rs, sizes[i], op)
	}
}

// proportion is rs's share of toAdd (GetReplicaSetProportion), bounded by what
// is left to add.
func (s *deploymentSync) proportion(rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	if replicasOf(rs) == 0 || toAdd == added {
		return 0
	}
	f := s.fraction(rs)
	if toAdd > 0 {
		return min(f, toAdd-added)
	}
	return max(f, toAdd-added)
}

// fraction is how much rs would change if it kept its share of the
// Deployment's maximum size (getReplicaSetFraction), based on the max-replicas
// it was last scaled for (or status.replicas when the annotation is missing).
func (s *deploymentSync) fraction(rs *appsv1.ReplicaSet) int32 {
	if s.replicas == 0 {
		return -replicasOf(rs)
	}
	maxNow := s.replicas + s.maxSurge
	before, ok := maxReplicasAnnotation(rs)
	if !ok || before == 0 {
		before = s.d.Status.GetReplicas()
		if before == 0 {
			return 0
		}
	}
	size := float64(replicasOf(rs)) * float64(maxNow) / float64(before)
	return int32(math.Round(size)) - replicasOf(rs)
}

// isSaturated reports whether the new ReplicaSet runs all of spec.replicas,
// available, and was scaled for it.
func (s *deploymentSync) isSaturated(rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := desiredReplicasAnnotation(rs)
	return ok && desired == s.replicas && replicasOf(rs) == s.replicas && rs.GetStatus().GetAvailableReplicas() == s.replicas
}

// checkPausedConditions sets Progressing to Unknown/DeploymentPaused when d is
// paused and to DeploymentResumed when it no longer is, unless the deadline
// has already been reported exceeded.
func (s *deploymentSync) checkPausedConditions() {
	if !s.hasProgressDeadline() {
		return
	}
	c := getCondition(s.d.Status, condProgressing)
	if c.GetReason() == ReasonProgressDeadlineExceeded {
		return
	}
	pausedCond := c.GetReason() == ReasonDeploymentPaused
	switch paused := s.d.GetSpec().GetPaused(); {
	case paused && !pausedCond:
		s.setCondition(s.d.Status, condProgressing, condUnknown, ReasonDeploymentPaused, "Deployment is paused")
	case !paused && pausedCond:
		s.setCondition(s.d.Status, condProgressing, condUnknown, ReasonDeploymentResumed, "Deployment is resumed")
	}
}

// --- scaling one ReplicaSet ---

// scaleAndRecord scales rs to n when it is not already there
// (scaleReplicaSetAndRecordEvent).
func (s *deploymentSync) scaleAndRecord(rs *appsv1.ReplicaSet, n int32) bool {
	cur := replicasOf(rs)
	if cur == n {
		return false
	}
	op := "down"
	if n > cur {
		op = "up"
	}
	return s.scaleReplicaSet(rs, n, op)
}

// scaleReplicaSet sets rs's replicas and its desired-/max-replicas annotations
// and reports whether the size changed (scaleReplicaSet).
func (s *deploymentSync) scaleReplicaSet(rs *appsv1.ReplicaSet, n int32, op string) bool {
	cur := replicasOf(rs)
	setReplicasAnnotations(rs, s.replicas, s.replicas+s.maxSurge)
	if cur == n {
		return false
	}
	rs.Spec.Replicas = proto.Int32(n)
	s.event("ScalingReplicaSet", fmt.Sprintf("Scaled %s replica set %s from %d to %d", op, rs.GetMetadata().GetName(), cur, n))
	return true
}

func setReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) {
	rs.Metadata.Annotations = cloneStringMap(rs.Metadata.Annotations, DesiredReplicasAnnotation, strconv.Itoa(int(desired)))
	rs.Metadata.Annotations[MaxReplicasAnnotation] = strconv.Itoa(int(maxReplicas))
}

func desiredReplicasAnnotation(rs *appsv1.ReplicaSet) (int32, bool) {
	return int32Annotation(rs, DesiredReplicasAnnotation)
}

func maxReplicasAnnotation(rs *appsv1.ReplicaSet) (int32, bool) {
	return int32Annotation(rs, MaxReplicasAnnotation)
}

func int32Annotation(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.GetMetadata().GetAnnotations()[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	return int32(n), err == nil
}

func (s *deploymentSync) event(reason, msg string) {
	s.events = append(s.events, EventAction{Type: "Normal", Reason: reason, Message: msg})
}

// --- history cleanup ---

// cleanup deletes old ReplicaSets beyond revisionHistoryLimit, lowest revision
// first, skipping any with replicas (spec or status), an unobserved spec, a
// deletion in progress, or a change in this reconcile (cleanupDeployment).
func (s *deploymentSync) cleanup(old []*appsv1.ReplicaSet) {
	limit := int32(defaultRevisionHistoryLimit)
	if l := s.d.GetSpec().RevisionHistoryLimit; l != nil {
		limit = *l
	}
	if limit == math.MaxInt32 {
		return
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.GetMetadata().GetDeletionTimestamp() == nil {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(limit)
	if diff <= 0 {
		return
	}
	slices.SortFunc(alive, func(a, b *appsv1.ReplicaSet) int {
		return cmp.Or(cmp.Compare(revisionOf(a), revisionOf(b)), olderFirst(a, b))
	})
	for _, rs := range alive[:diff] {
		if rs.GetStatus().GetReplicas() != 0 || replicasOf(rs) != 0 ||
			rs.GetMetadata().GetGeneration() > rs.GetStatus().GetObservedGeneration() || s.changed(rs) {
			continue
		}
		s.deletes = append(s.deletes, rs)
	}
}

// --- status ---

// calculateStatus sums the ReplicaSets' status into d's, keeping d's
// conditions and collisionCount, and sets the Available condition.
func (s *deploymentSync) calculateStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) *appsv1.DeploymentStatus {
	st := &appsv1.DeploymentStatus{ObservedGeneration: s.d.GetMetadata().GetGeneration(),
		CollisionCount: s.d.Status.CollisionCount}
	var total int32
	for _, rs := range all {
		if rs == nil {
			continue
		}
		rst := rs.GetStatus()
		total += replicasOf(rs)
		st.Replicas += rst.GetReplicas()
		st.ReadyReplicas += rst.GetReadyReplicas()
		st.AvailableReplicas += rst.GetAvailableReplicas()
		if rst.TerminatingReplicas != nil {
			st.TerminatingReplicas = proto.Int32(st.GetTerminatingReplicas() + rst.GetTerminatingReplicas())
		}
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.GetStatus().GetReplicas()
	}
	st.UnavailableReplicas = max(total-st.AvailableReplicas, 0)
	for _, c := range s.d.Status.GetConditions() {
		st.Conditions = append(st.Conditions, proto.Clone(c).(*appsv1.DeploymentCondition))
	}
	if st.AvailableReplicas >= s.replicas-s.maxUnavailable {
		s.setCondition(st, condAvailable, condTrue, ReasonMinimumReplicasAvailable, "Deployment has minimum availability.")
	} else {
		s.setCondition(st, condAvailable, condFalse, ReasonMinimumReplicasUnavailable, "Deployment does not have minimum availability.")
	}
	return st
}

// syncStatus sets the counts and Available, leaving Progressing alone
// (syncDeploymentStatus).
func (s *deploymentSync) syncStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) {
	s.d.Status = s.calculateStatus(all, newRS)
}

// syncRolloutStatus also judges progress (syncRolloutStatus): Progressing is
// NewReplicaSetAvailable once the rollout is complete, ReplicaSetUpdated
// (lastUpdateTime now) while counts move, and False/ProgressDeadlineExceeded
// when nothing moved for progressDeadlineSeconds.
func (s *deploymentSync) syncRolloutStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) {
	st := s.calculateStatus(all, newRS)
	if !s.hasProgressDeadline() {
		removeCondition(st, condProgressing)
	}
	cur := getCondition(s.d.Status, condProgressing)
	completeBefore := st.Replicas == st.UpdatedReplicas && cur.GetReason() == ReasonNewReplicaSetAvailable
	if s.hasProgressDeadline() && !completeBefore {
		subject := fmt.Sprintf("Deployment %q", s.d.GetMetadata().GetName())
		if newRS != nil {
			subject = fmt.Sprintf("ReplicaSet %q", newRS.GetMetadata().GetName())
		}
		switch {
		case s.complete(st):
			s.setCondition(st, condProgressing, condTrue, ReasonNewReplicaSetAvailable, subject+" has successfully progressed.")
		case s.progressing(st):
			c := s.newCondition(condProgressing, condTrue, ReasonReplicaSetUpdated, subject+" is progressing.")
			if cur != nil && cur.GetStatus() == condTrue {
				c.LastTransitionTime = cur.LastTransitionTime
			}
			removeCondition(st, condProgressing)
			st.Conditions = append(st.Conditions, c)
		case s.timedOut(st):
			s.setCondition(st, condProgressing, condFalse, ReasonProgressDeadlineExceeded, subject+" has timed out progressing.")
		}
	}
	s.d.Status = st
}

// complete: all replicas updated, available, none old, and the spec observed.
func (s *deploymentSync) complete(st *appsv1.DeploymentStatus) bool {
	return st.GetUpdatedReplicas() == s.replicas && st.GetReplicas() == s.replicas &&
		st.GetAvailableReplicas() == s.replicas && st.GetObservedGeneration() >= s.d.GetMetadata().GetGeneration()
}

// progressing: more updated, ready or available pods, or fewer old ones, than
// the status as read says.
func (s *deploymentSync) progressing(st *appsv1.DeploymentStatus) bool {
	old := s.d.Status
	return st.UpdatedReplicas > old.GetUpdatedReplicas() ||
		st.Replicas-st.UpdatedReplicas < old.GetReplicas()-old.GetUpdatedReplicas() ||
		st.ReadyReplicas > old.GetReadyReplicas() || st.AvailableReplicas > old.GetAvailableReplicas()
}

// timedOut: Progressing was last updated more than progressDeadlineSeconds
// before now (and the rollout had not completed).
func (s *deploymentSync) timedOut(st *appsv1.DeploymentStatus) bool {
	c := getCondition(st, condProgressing)
	switch {
	case c == nil, c.GetReason() == ReasonNewReplicaSetAvailable:
		return false
	case c.GetReason() == ReasonProgressDeadlineExceeded:
		return true
	}
	return tsTime(c.GetLastUpdateTime()).Add(s.progressDeadline()).Before(s.now)
}

// requeueAfter is when the progress deadline of a rollout in progress passes
// (requeueStuckDeployment), plus a second; 0 when there is nothing to wait for.
func (s *deploymentSync) requeueAfter(st *appsv1.DeploymentStatus) time.Duration {
	c := getCondition(st, condProgressing)
	if !s.hasProgressDeadline() || c == nil || s.complete(st) || s.d.GetSpec().GetPaused() {
		return 0
	}
	switch c.GetReason() {
	case ReasonProgressDeadlineExceeded, ReasonNewReplicaSetAvailable:
		return 0
	}
	after := tsTime(c.GetLastUpdateTime()).Add(s.progressDeadline()).Sub(s.now)
	return max(after, 0) + time.Second
}

func (s *deploymentSync) hasProgressDeadline() bool {
	p := s.d.GetSpec().ProgressDeadlineSeconds
	return p == nil || *p != math.MaxInt32
}

func (s *deploymentSync) progressDeadline() time.Duration {
	sec := int32(defaultProgressDeadlineSeconds)
	if p := s.d.GetSpec().ProgressDeadlineSeconds; p != nil {
		sec = *p
	}
	return time.Duration(sec) * time.Second
}

func (s *deploymentSync) newCondition(typ, status, reason, msg string) *appsv1.DeploymentCondition {
	now := timestamppb.New(s.now)
	return &appsv1.DeploymentCondition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastUpdateTime: now, LastTransitionTime: proto.Clone(now).(*timestamppb.Timestamp)}
}

// setCondition sets a condition unless one with the same status and reason is
// there; lastTransitionTime is kept when the status does not change
// (SetDeploymentCondition).
func (s *deploymentSync) setCondition(st *appsv1.DeploymentStatus, typ, status, reason, msg string) {
	cur := getCondition(st, typ)
	if cur != nil && cur.GetStatus() == status && cur.GetReason() == reason {
		return
	}
	c := s.newCondition(typ, status, reason, msg)
	if cur != nil && cur.GetStatus() == status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, typ)
	st.Conditions = append(st.Conditions, c)
}

func getCondition(st *appsv1.DeploymentStatus, typ string) *appsv1.DeploymentCondition {
	for _, c := range st.GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

func removeCondition(st *appsv1.DeploymentStatus, typ string) {
	st.Conditions = slices.DeleteFunc(slices.Clone(st.Conditions), func(c *appsv1.DeploymentCondition) bool {
		return c.GetType() == typ
	})
}

// --- small helpers ---

// resolveFenceposts resolves maxSurge (rounding up) and maxUnavailable
// (rounding down) against replicas (ResolveFenceposts). Unset or unparsable
// values are 25%, the API server's default; when both resolve to 0,
// maxUnavailable is 1 so that the rollout can move.
func resolveFenceposts(maxSurge, maxUnavailable *structpb.Value, replicas int32) (int32, int32) {
	surge := scaledIntOrPercent(maxSurge, replicas, true)
	unavailable := scaledIntOrPercent(maxUnavailable, replicas, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

func scaledIntOrPercent(v *structpb.Value, total int32, roundUp bool) int32 {
	def := intstr.FromString("25%")
	iv := def
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		iv = intstr.FromInt32(int32(k.NumberValue))
	case *structpb.Value_StringValue:
		iv = intstr.FromString(k.StringValue)
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&iv, int(total), roundUp)
	if err != nil {
		n, _ = intstr.GetScaledValueFromIntOrPercent(&def, int(total), roundUp)
	}
	return int32(max(n, 0))
}

// findActiveOrLatest is the only active ReplicaSet, or the newest one when none
// is active, or nil when several are (FindActiveOrLatest).
func findActiveOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	active := activeReplicaSets(append(slices.Clone(old), newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return slices.MaxFunc(old, olderFirst)
	case 1:
		return active[0]
	}
	return nil
}

// --- rollout history ---

// ErrRevisionNotFound means the requested revision is not among the Deployment's
// ReplicaSets (or, for revision 0, there is no previous one).
var ErrRevisionNotFound = errors.New("revision not found")

// DeploymentRevision is one entry of a Deployment's rollout history.
type DeploymentRevision struct {
	Revision    int64
	ReplicaSet  string // name
	ChangeCause string // the kubernetes.io/change-cause annotation
	// Template is the ReplicaSet's pod template without the pod-template-hash
	// label: what `rollout undo` copies into the Deployment's spec.template.
	Template *corev1.PodTemplateSpec
	// Annotations are the ReplicaSet's annotations a Deployment passes on
	// (change-cause and the user's own): what `rollout undo` copies back onto
	// the Deployment, as kubectl does.
	Annotations map[string]string
}

// RolloutHistory lists the revisions of the ReplicaSets d controls, oldest
// first (what `rollout history` prints). A ReplicaSet without a valid revision
// annotation is left out. Pure.
func RolloutHistory(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) []DeploymentRevision {
	var out []DeploymentRevision
	for _, rs := range rss {
		owner := controllerRefOf(rs.GetMetadata())
		if owner == nil || owner.GetUid() != d.GetMetadata().GetUid() {
			continue
		}
		rev, err := strconv.ParseInt(rs.GetMetadata().GetAnnotations()[RevisionAnnotation], 10, 64)
		if err != nil || rev <= 0 {
			continue
		}
		ann := map[string]string{}
		for k, v := range rs.GetMetadata().GetAnnotations() {
			if !annotationsNotCopied[k] {
				ann[k] = v
			}
		}
		out = append(out, DeploymentRevision{Revision: rev, ReplicaSet: rs.GetMetadata().GetName(),
			ChangeCause: ann[ChangeCauseAnnotation], Template: withoutHashLabel(rs.GetSpec().GetTemplate()), Annotations: ann})
	}
	slices.SortFunc(out, func(a, b DeploymentRevision) int {
		return cmp.Or(cmp.Compare(a.Revision, b.Revision), cmp.Compare(a.ReplicaSet, b.ReplicaSet))
	})
	return out
}

// TemplateForRevision returns the history entry to roll d back to: revision rev,
// or with rev 0 the one before the current (highest) revision, as
// `kubectl rollout undo [--to-revision]`. The CLI then copies its Template (and
// Annotations) into d; the controller finds the old ReplicaSet equal to it and
// makes it new again with the next revision number. It returns
// ErrRevisionNotFound (wrapped) when there is no such revision. Pure.
func TemplateForRevision(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, rev int64) (DeploymentRevision, error) {
	h := RolloutHistory(d, rss)
	if rev == 0 {
		if len(h) < 2 {
			return DeploymentRevision{}, fmt.Errorf("%w: no rollout history before the current revision of deployment %q", ErrRevisionNotFound, d.GetMetadata().GetName())
		}
		return h[len(h)-2], nil
	}
	for _, r := range h {
		if r.Revision == rev {
			return r, nil
		}
	}
	return DeploymentRevision{}, fmt.Errorf("%w: revision %d of deployment %q", ErrRevisionNotFound, rev, d.GetMetadata().GetName())
}

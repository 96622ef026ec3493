package ctrl

import (
	"cmp"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// ControllerRevisionHashLabel marks the pods of a DaemonSet or StatefulSet with
// the revision of the template they were made from (Kubernetes' key). A
// DaemonSet's pods carry PodTemplateHash of its template; a StatefulSet's carry
// "<statefulset>-<PodTemplateHash>", its status.updateRevision.
const ControllerRevisionHashLabel = "controller-revision-hash"

// Taint effects, node taints and DaemonSet update strategies (Kubernetes'
// strings).
const (
	dsNoSchedule = "NoSchedule"
	dsNoExecute  = "NoExecute"

	dsTaintNotReady    = "node.kubernetes.io/not-ready"
	dsTaintUnreachable = "node.kubernetes.io/unreachable"

	dsOnDelete = "OnDelete"
)

// dsTolerations are the tolerations every DaemonSet pod gets on top of its
// template's (Kubernetes' AddOrUpdateDaemonPodTolerations): node problems must
// neither evict a daemon nor keep it off a cordoned or pressured node. The
// network-unavailable one is added only for hostNetwork pods.
var dsTolerations = []*corev1.Toleration{
	{Key: dsTaintNotReady, Operator: "Exists", Effect: dsNoExecute},
	{Key: dsTaintUnreachable, Operator: "Exists", Effect: dsNoExecute},
	{Key: "node.kubernetes.io/disk-pressure", Operator: "Exists", Effect: dsNoSchedule},
	{Key: "node.kubernetes.io/memory-pressure", Operator: "Exists", Effect: dsNoSchedule},
	{Key: "node.kubernetes.io/pid-pressure", Operator: "Exists", Effect: dsNoSchedule},
	{Key: "node.kubernetes.io/unschedulable", Operator: "Exists", Effect: dsNoSchedule},
}

var dsHostNetworkToleration = &corev1.Toleration{Key: "node.kubernetes.io/network-unavailable", Operator: "Exists", Effect: dsNoSchedule}

// DaemonSetActions is what ReconcileDaemonSet decided. Every object in it is a
// copy; objects read from the cache are never modified.
//
// The loop applies the fields in declaration order and stops at the first
// error, requeueing the key: Adopt and Release (pod updates carrying the
// resourceVersion read), Create (in SlowStartBatches), Delete (with a UID
// precondition), then Status. As with ReplicaSets, the loop must not reconcile
// the same DaemonSet again until its cache shows the pods it created and
// deleted (expectations), or it would create a second pod for a node.
type DaemonSetActions struct {
	// Adopt holds orphan pods matching the selector, as read, with a controller
	// ownerReference to the DaemonSet appended.
	Adopt []*corev1.Pod
	// Release holds pods the DaemonSet controls whose labels no longer match
	// its selector, as read, with its ownerReference removed.
	Release []*corev1.Pod
	// Create holds the pods to create, by node name (at most BurstReplicas).
	// Each is unbound, generateName "<daemonset>-", and carries a required node
	// affinity on metadata.name for its node, so the scheduler places it there.
	Create []*corev1.Pod
	// Delete holds the pods to delete, as read (at most BurstReplicas in the
	// manage step; a rolling update adds up to maxUnavailable more).
	Delete []*corev1.Pod
	// Status is the DaemonSet as read with its new status, or nil when the
	// status is unchanged; write it to the status subresource.
	Status *appsv1.DaemonSet
	// RequeueAfter, when positive, asks for another reconcile after that long:
	// a ready pod will then have passed minReadySeconds and become available.
	RequeueAfter time.Duration
}

// Empty reports whether there is nothing to write.
func (a DaemonSetActions) Empty() bool {
	return len(a.Adopt)+len(a.Release)+len(a.Create)+len(a.Delete) == 0 && a.Status == nil
}

// ReconcileDaemonSet decides how to run exactly one pod of ds on every eligible
// node, as Kubernetes' DaemonSet controller (syncDaemonSet) does. nodes are all
// the cluster's nodes; pods are the pods of ds's namespace (all of them is
// fine: others are ignored). Pure and deterministic; now judges availability
// with minReadySeconds.
//
// A node is eligible (its pod "should run") when the template's nodeName (if
// any) names it, its labels match the template's nodeSelector and required
// node affinity, and every NoSchedule or NoExecute taint on it is tolerated by
// the template's tolerations plus those every daemon pod gets (not-ready and
// unreachable NoExecute; disk-, memory-, pid-pressure and unschedulable
// NoSchedule). Like the scheduler, a node whose Ready condition is not True
// counts as tainted not-ready (Unknown: unreachable) NoSchedule, which Kubernetes'
// node lifecycle controller would have added. A pod already on a node may stay
// while only NoSchedule taints are untolerated; an untolerated NoExecute taint,
// or labels that stopped matching, get it deleted.
//
//   - Ownership is as for ReplicaSets: pods ds controls; matching orphans are
//     adopted, non-matching owned pods released.
//   - A pod belongs to the node in spec.nodeName or, while unbound, to the node
//     its metadata.name node affinity names.
//   - Eligible node without a pod: one is created. Failed and Succeeded pods
//     are deleted (the replacement comes in the next reconcile). Several live
//     pods on one node: all but the oldest scheduled one are deleted. Pods on
//     ineligible nodes, on nodes that no longer exist, or with no target node
//     are deleted.
//   - Only when that step has nothing to do, a RollingUpdate (the default)
//     deletes out-of-date pods — those whose ControllerRevisionHashLabel is not
//     PodTemplateHash(template, status.collisionCount) — that are not
//     available, and available ones while fewer than maxUnavailable (default
//     1; a percentage of desiredNumberScheduled, rounded up) eligible nodes
//     lack an available up-to-date pod; the next reconcile recreates them.
//     OnDelete replaces a pod only after someone deleted it. maxSurge is not
//     supported (treated as 0).
//   - Status counts over eligible nodes: desiredNumberScheduled,
//     currentNumberScheduled (having a pod), numberReady, numberAvailable and
//     updatedNumberScheduled (of each node's oldest pod), numberUnavailable;
//     numberMisscheduled counts pods on ineligible nodes; observedGeneration.
//   - While ds is being deleted, or when its selector is unset, empty, invalid
//     or does not select the template's labels, nothing is written but the
//     status (nothing at all for a bad selector, as for ReplicaSets).
func ReconcileDaemonSet(ds *appsv1.DaemonSet, nodes []*corev1.Node, pods []*corev1.Pod, now time.Time) DaemonSetActions {
	var out DaemonSetActions
	md, spec := ds.GetMetadata(), ds.GetSpec()
	sel, err := SelectorFor(spec.GetSelector())
	if spec.GetSelector() == nil || err != nil || sel.Empty() ||
		!sel.Matches(labels.Set(spec.GetTemplate().GetMetadata().GetLabels())) {
		return out
	}
	deleting := md.GetDeletionTimestamp() != nil
	var collisions *int32
	if st := ds.GetStatus(); st != nil {
		collisions = st.CollisionCount
	}
	hash := PodTemplateHash(spec.GetTemplate(), collisions)
	ref := NewControllerRef(md, "apps/v1", "DaemonSet")

	nodeByName := make(map[string]*corev1.Node, len(nodes))
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		name := n.GetMetadata().GetName()
		if _, dup := nodeByName[name]; !dup {
			names = append(names, name)
		}
		nodeByName[name] = n
	}
	slices.Sort(names)

	byNode := map[string][]*corev1.Pod{}
	var stray []*corev1.Pod // own pods whose node is unknown or gone
	for _, p := range sortedPods(pods) {
		pm := p.GetMetadata()
		if pm.GetNamespace() != md.GetNamespace() || pm.GetDeletionTimestamp() != nil {
			continue
		}
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
		case owner == nil && matches && !deleting && podIsActive(p):
			c := proto.CloneOf(p)
			c.Metadata.OwnerReferences = append(c.Metadata.OwnerReferences, proto.CloneOf(ref))
			out.Adopt = append(out.Adopt, c)
		default:
			continue
		}
		node, ok := dsTargetNode(p)
		if _, exists := nodeByName[node]; !ok || !exists {
			stray = append(stray, p)
			continue
		}
		byNode[node] = append(byNode[node], p)
	}

	template := spec.GetTemplate().GetSpec()
	tolerations := dsPodTolerations(template)
	shouldRun := make(map[string]bool, len(names))
	var desired []string
	for _, name := range names {
		run, keep := dsNodeFit(nodeByName[name], template, tolerations)
		shouldRun[name] = run
		if run {
			desired = append(desired, name)
		}
		if deleting {
			continue
		}
		ps := byNode[name]
		switch {
		case run && len(ps) == 0:
			if len(out.Create) < BurstReplicas {
				out.Create = append(out.Create, dsNewPod(ds, ref, hash, tolerations, name))
			}
		case keep:
			var live []*corev1.Pod
			for _, p := range ps {
				if podIsActive(p) {
					live = append(live, p)
				} else {
					out.Delete = append(out.Delete, p)
				}
			}
			if len(live) > 1 {
				slices.SortStableFunc(live, dsOlderScheduledFirst)
				out.Delete = append(out.Delete, live[1:]...)
			}
		default:
			out.Delete = append(out.Delete, ps...)
		}
	}
	if !deleting {
		out.Delete = append(out.Delete, stray...)
		out.Delete = out.Delete[:min(len(out.Delete), BurstReplicas)]
		if len(out.Create)+len(out.Delete) == 0 && spec.GetUpdateStrategy().GetType() != dsOnDelete {
			out.Delete = dsRollingUpdate(ds, desired, byNode, hash, now)
		}
		for i, p := range out.Delete {
			out.Delete[i] = proto.CloneOf(p)
		}
	}

	status, requeue := dsStatus(ds, names, shouldRun, byNode, hash, now)
	old := ds.GetStatus()
	if old == nil {
		old = &appsv1.DaemonSetStatus{}
	}
	if !proto.Equal(old, status) {
		c := proto.CloneOf(ds)
		c.Status = status
		out.Status = c
	}
	out.RequeueAfter = requeue
	return out
}

// dsRollingUpdate picks the out-of-date pods to delete now, as Kubernetes'
// rollingUpdate without surge: every old pod that is not available, and
// available old pods while the budget maxUnavailable - (eligible nodes
// without an available new pod) lasts. desired are the eligible nodes, sorted.
func dsRollingUpdate(ds *appsv1.DaemonSet, desired []string, byNode map[string][]*corev1.Pod, hash string, now time.Time) []*corev1.Pod {
	maxUnavailable := dsMaxUnavailable(ds.GetSpec().GetUpdateStrategy().GetRollingUpdate().GetMaxUnavailable(), len(desired))
	minReady := ds.GetSpec().GetMinReadySeconds()
	unavailable := 0
	var replace, candidates []*corev1.Pod
	for _, name := range desired {
		newPod, oldPod, ok := dsUpdatedPodsOnNode(byNode[name], hash)
		if !ok {
			continue
		}
		switch {
		case (oldPod == nil) == (newPod == nil):
			unavailable++ // the manage step creates or deletes here
		case newPod != nil:
			if !IsPodAvailable(newPod, minReady, now) {
				unavailable++
			}
		case !IsPodAvailable(oldPod, minReady, now):
			replace = append(replace, oldPod)
		case unavailable < maxUnavailable:
			candidates = append(candidates, oldPod)
		}
	}
	budget := min(max(maxUnavailable-unavailable, 0), len(candidates))
	return append(replace, candidates[:budget]...)
}

// dsUpdatedPodsOnNode splits a node's pods into the up-to-date one and the old
// one; ok is false when there are two of either kind.
func dsUpdatedPodsOnNode(pods []*corev1.Pod, hash string) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, p := range pods {
		if p.GetMetadata().GetLabels()[ControllerRevisionHashLabel] == hash {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}

// dsMaxUnavailable resolves maxUnavailable against the desired number of
// pods, rounding up; unset or unparsable means 1, and 0 becomes 1 when any
// pod is desired, so that a rollout can move (maxSurge is not supported).
func dsMaxUnavailable(v *structpb.Value, desired int) int {
	iv := intstr.FromInt32(1)
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		iv = intstr.FromInt32(int32(k.NumberValue))
	case *structpb.Value_StringValue:
		iv = intstr.FromString(k.StringValue)
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&iv, desired, true)
	if err != nil {
		n = 1
	}
	if n <= 0 && desired > 0 {
		n = 1
	}
	return n
}

// dsStatus computes ds's status from its pods by node, before this
// reconcile's writes, keeping the fields it does not own (collisionCount,
// conditions). requeue is how long until the next ready pod becomes available.
func dsStatus(ds *appsv1.DaemonSet, names []string, shouldRun map[string]bool, byNode map[string][]*corev1.Pod, hash string, now time.Time) (*appsv1.DaemonSetStatus, time.Duration) {
	st := &appsv1.DaemonSetStatus{}
	if ds.GetStatus() != nil {
		st = proto.CloneOf(ds.GetStatus())
	}
	minReady := ds.GetSpec().GetMinReadySeconds()
	var desired, current, ready, available, updated, misscheduled int32
	var requeue time.Duration
	for _, name := range names {
		ps := byNode[name]
		if !shouldRun[name] {
			if len(ps) > 0 {
				misscheduled++
			}
			continue
		}
		desired++
		if len(ps) == 0 {
			continue
		}
		current++
		p := slices.MinFunc(ps, dsOlderScheduledFirst)
		if IsPodReady(p) {
			ready++
			if IsPodAvailable(p, minReady, now) {
				available++
			} else if at, ok := podAvailableAt(p, minReady); ok {
				if d := at.Sub(now) + time.Millisecond; requeue == 0 || d < requeue {
					requeue = d
				}
			}
		}
		if p.GetMetadata().GetLabels()[ControllerRevisionHashLabel] == hash {
			updated++
		}
	}
	st.DesiredNumberScheduled = desired
	st.CurrentNumberScheduled = current
	st.NumberMisscheduled = misscheduled
	st.NumberReady = ready
	st.NumberAvailable = available
	st.NumberUnavailable = max(desired-available, 0)
	st.UpdatedNumberScheduled = updated
	st.ObservedGeneration = ds.GetMetadata().GetGeneration()
	return st, requeue
}

// dsOlderScheduledFirst orders bound pods before unbound ones, then older
// before newer, then by name (Kubernetes' podByCreationTimestampAndPhase).
func dsOlderScheduledFirst(a, b *corev1.Pod) int {
	an, bn := a.GetSpec().GetNodeName() != "", b.GetSpec().GetNodeName() != ""
	if an != bn {
		return boolFirst(an, bn)
	}
	return cmp.Or(tsTime(a.GetMetadata().GetCreationTimestamp()).Compare(tsTime(b.GetMetadata().GetCreationTimestamp())),
		cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()))
}

// dsNewPod builds ds's pod for node: the template with the revision label, the
// daemon tolerations, and a required node affinity that only node satisfies
// (Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity: it replaces the
// template's required terms, which the controller has already checked).
func dsNewPod(ds *appsv1.DaemonSet, ref *metav1.OwnerReference, hash string, tolerations []*corev1.Toleration, node string) *corev1.Pod {
	md := ds.GetMetadata()
	p := PodFromTemplate(ds.GetSpec().GetTemplate(), md.GetNamespace(), md.GetName()+"-", ref)
	p.Metadata.Labels = cloneStringMap(p.Metadata.Labels, ControllerRevisionHashLabel, hash)
	p.Spec.Tolerations = make([]*corev1.Toleration, len(tolerations))
	for i, t := range tolerations {
		p.Spec.Tolerations[i] = proto.CloneOf(t)
	}
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	if p.Spec.Affinity.NodeAffinity == nil {
		p.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
		NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchFields: []*corev1.NodeSelectorRequirement{
			{Key: "metadata.name", Operator: "In", Values: []string{node}}}}}}
	return p
}

// dsTargetNode is the node a daemon pod is on or meant for: spec.nodeName, or
// while unbound the value of its first metadata.name In requirement with one
// value (Kubernetes' GetTargetNodeName).
func dsTargetNode(p *corev1.Pod) (string, bool) {
	if n := p.GetSpec().GetNodeName(); n != "" {
		return n, true
	}
	for _, t := range p.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().GetNodeSelectorTerms() {
		for _, r := range t.GetMatchFields() {
			if r.GetKey() == "metadata.name" && r.GetOperator() == "In" {
				if len(r.GetValues()) != 1 {
					return "", false
				}
				return r.GetValues()[0], true
			}
		}
	}
	return "", false
}

// dsPodTolerations returns spec's tolerations followed by those of
// dsTolerations (and, with hostNetwork, network-unavailable) that spec does not
// already carry. The result shares its elements with spec and dsTolerations.
func dsPodTolerations(spec *corev1.PodSpec) []*corev1.Toleration {
	out := slices.Clone(spec.GetTolerations())
	extra := dsTolerations
	if spec.GetHostNetwork() {
		extra = append(slices.Clone(extra), dsHostNetworkToleration)
	}
	for _, t := range extra {
		if !slices.ContainsFunc(out, func(o *corev1.Toleration) bool {
			return o.GetKey() == t.GetKey() && o.GetOperator() == t.GetOperator() &&
				o.GetEffect() == t.GetEffect() && o.GetValue() == t.GetValue()
		}) {
			out = append(out, t)
		}
	}
	return out
}

// dsNodeFit reports whether a pod with spec and tolerations should run on node
// and whether one already there may keep running (Kubernetes'
// NodeShouldRunDaemonPod): nodeName, nodeSelector and required node affinity
// must match for both; an untolerated NoSchedule taint only stops new pods,
// an untolerated NoExecute taint removes running ones too.
func dsNodeFit(node *corev1.Node, spec *corev1.PodSpec, tolerations []*corev1.Toleration) (shouldRun, shouldContinue bool) {
	name := node.GetMetadata().GetName()
	if n := spec.GetNodeName(); n != "" && n != name {
		return false, false
	}
	nodeLabels := node.GetMetadata().GetLabels()
	for k, v := range spec.GetNodeSelector() {
		if got, ok := nodeLabels[k]; !ok || got != v {
			return false, false
		}
	}
	if req := spec.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil &&
		!dsMatchesNodeSelector(req, name, nodeLabels) {
		return false, false
	}
	shouldRun, shouldContinue = true, true
	for _, t := range dsNodeTaints(node) {
		if dsTolerates(tolerations, t) {
			continue
		}
		shouldRun = false
		if t.GetEffect() == dsNoExecute {
			shouldContinue = false
		}
	}
	return shouldRun, shouldContinue
}

// dsNodeTaints returns node's NoSchedule and NoExecute taints plus, as the
// scheduler derives it, not-ready (Ready False or missing) or unreachable
// (Ready Unknown) NoSchedule when the node does not carry that taint already.
func dsNodeTaints(node *corev1.Node) []*corev1.Taint {
	var out []*corev1.Taint
	for _, t := range node.GetSpec().GetTaints() {
		if t.GetEffect() == dsNoSchedule || t.GetEffect() == dsNoExecute {
			out = append(out, t)
		}
	}
	implied := dsTaintNotReady
	for _, c := range node.GetStatus().GetConditions() {
		if c.GetType() != "Ready" {
			continue
		}
		switch c.GetStatus() {
		case condTrue:
			implied = ""
		case condUnknown:
			implied = dsTaintUnreachable
		}
		break
	}
	if implied != "" && !slices.ContainsFunc(out, func(t *corev1.Taint) bool {
		return t.GetKey() == implied && t.GetEffect() == dsNoSchedule
	}) {
		out = append(out, &corev1.Taint{Key: implied, Effect: dsNoSchedule})
	}
	return out
}

// dsTolerates reports whether any of tols tolerates taint (Kubernetes'
// ToleratesTaint): an empty effect matches every effect, an empty key with
// Exists every key; Exists ignores the value; an empty operator means Equal.
func dsTolerates(tols []*corev1.Toleration, taint *corev1.Taint) bool {
	for _, t := range tols {
		if t.GetEffect() != "" && t.GetEffect() != taint.GetEffect() {
			continue
		}
		if t.GetKey() != "" && t.GetKey() != taint.GetKey() {
			continue
		}
		switch t.GetOperator() {
		case "Exists":
			return true
		case "", "Equal":
			if t.GetValue() == taint.GetValue() {
				return true
			}
		}
	}
	return false
}

// dsMatchesNodeSelector reports whether a node (its name and labels) matches
// any term of a required node affinity; requirements within a term are ANDed.
// An empty term, or one with a malformed requirement, matches nothing (as in
// Kubernetes' nodeaffinity helper); matchFields know only metadata.name with In
// or NotIn and one value.
func dsMatchesNodeSelector(ns *corev1.NodeSelector, name string, nodeLabels map[string]string) bool {
	for _, term := range ns.GetNodeSelectorTerms() {
		if len(term.GetMatchExpressions()) == 0 && len(term.GetMatchFields()) == 0 {
			continue
		}
		if dsTermMatches(term, name, nodeLabels) {
			return true
		}
	}
	return false
}

var dsSelectorOps = map[string]selection.Operator{
	"In": selection.In, "NotIn": selection.NotIn, "Exists": selection.Exists,
	"DoesNotExist": selection.DoesNotExist, "Gt": selection.GreaterThan, "Lt": selection.LessThan,
}

func dsTermMatches(term *corev1.NodeSelectorTerm, name string, nodeLabels map[string]string) bool {
	for _, r := range term.GetMatchExpressions() {
		op, ok := dsSelectorOps[r.GetOperator()]
		if !ok {
			return false
		}
		req, err := labels.NewRequirement(r.GetKey(), op, r.GetValues())
		if err != nil || !req.Matches(labels.Set(nodeLabels)) {
			return false
		}
	}
	for _, r := range term.GetMatchFields() {
		if r.GetKey() != "metadata.name" || len(r.GetValues()) != 1 {
			return false
		}
		switch r.GetOperator() {
		case "In":
			if r.GetValues()[0] != name {
				return false
			}
		case "NotIn":
			if r.GetValues()[0] == name {
				return false
			}
		default:
			return false
		}
	}
	return true
}

package ctrl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Kubernetes' names for what the node lifecycle controller reads and writes.
const (
	// nlLeaseNamespace holds one Lease per node, named after the node.
	nlLeaseNamespace = "kube-node-lease"
	// nlTaintUnreachable is the taint of a node whose Lease expired.
	nlTaintUnreachable = "node.kubernetes.io/unreachable"
	nlNoExecute        = "NoExecute"
	nlNoSchedule       = "NoSchedule"
	// nlRetryDelay is how soon a pass whose writes failed is retried.
	nlRetryDelay = time.Second
)

// NodeLifecycleConfig configures the node lifecycle controller. The durations
// mean what kube-controller-manager's flags of similar names mean.
type NodeLifecycleConfig struct {
	// NodeGracePeriod is how long a node's Lease may go unrenewed before the
	// node is marked unreachable (--node-monitor-grace-period).
	NodeGracePeriod time.Duration
	// NodeStartupGracePeriod is the grace of a node none of whose Leases this
	// controller has seen yet (a node still starting); the larger of it and
	// NodeGracePeriod applies (--node-startup-grace-period).
	NodeStartupGracePeriod time.Duration
	// PodEvictionTimeout is how long pods stay on an unreachable node, counted
	// from when it became unreachable, before they are deleted; a pod that
	// tolerates the unreachable NoExecute taint stays its tolerationSeconds
	// instead, or for good without them (--pod-eviction-timeout).
	PodEvictionTimeout time.Duration
	// MonitorPeriod is the longest time between two passes over the nodes when
	// nothing happens (--node-monitor-period). Passes also run on changes and
	// exactly when a grace period or eviction timeout ends.
	MonitorPeriod time.Duration
	// Workers is how many nodes are written to at once.
	Workers int
	// OrphanQuarantine is how long a pod must stay bound to a node that does
	// not exist before it is removed without grace, as Kubernetes' pod
	// garbage collector does: no agent is left to stop it and confirm. The
	// wait covers a node and a pod bound to it reaching this controller's
	// caches in the other order.
	OrphanQuarantine time.Duration
}

// DefaultNodeLifecycleConfig returns Kubernetes' defaults: 40s grace, 1m
// startup grace, eviction after 5m, a pass at least every 5s.
func DefaultNodeLifecycleConfig() NodeLifecycleConfig {
	return NodeLifecycleConfig{NodeGracePeriod: 40 * time.Second, NodeStartupGracePeriod: time.Minute,
		PodEvictionTimeout: 5 * time.Minute, MonitorPeriod: 5 * time.Second, Workers: 8, OrphanQuarantine: 40 * time.Second}
}

// Validate checks the settings.
func (c NodeLifecycleConfig) Validate() error {
	if c.NodeGracePeriod <= 0 || c.MonitorPeriod <= 0 {
		return fmt.Errorf("node lifecycle: grace period (%s) and monitor period (%s) must be positive", c.NodeGracePeriod, c.MonitorPeriod)
	}
	if c.NodeStartupGracePeriod < 0 || c.PodEvictionTimeout < 0 || c.OrphanQuarantine < 0 {
		return fmt.Errorf("node lifecycle: startup grace period (%s), pod eviction timeout (%s) and orphan quarantine (%s) must not be negative",
			c.NodeStartupGracePeriod, c.PodEvictionTimeout, c.OrphanQuarantine)
	}
	if c.Workers < 1 {
		return fmt.Errorf("node lifecycle: workers must be at least 1, got %d", c.Workers)
	}
	return nil
}

// NodeHeartbeat is what the controller knows of a node's liveness, on its own
// clock: never the Lease's renewTime itself, which was read from the node's
// clock, so skew between machines cannot make a node look dead or alive.
type NodeHeartbeat struct {
	// ObservedAt is when this controller last saw the node's Lease renewTime
	// change, or first saw the node or its Lease; a new leader therefore gives
	// every node a full grace period.
	ObservedAt time.Time
	// LeaseSeen reports whether a Lease of the node has been seen; until then
	// the node gets NodeStartupGracePeriod.
	LeaseSeen bool
}

// NodeLifecycleView is the snapshot DecideNodeLifecycle judges.
type NodeLifecycleView struct {
	Nodes []*corev1.Node
	// Heartbeats by node name; a node missing here counts as seen just now.
	Heartbeats map[string]NodeHeartbeat
	// PodsOn returns the pods bound to a node, in any order.
	PodsOn func(node string) []*corev1.Pod
	// EvictionsResumed is when the controller last left disruption mode (zero
	// if it never was in it): eviction timeouts count from no earlier than this.
	EvictionsResumed time.Time
}

// NodeLifecycleDecision is what DecideNodeLifecycle wants done.
type NodeLifecycleDecision struct {
	// Nodes are the nodes with writes to make, by name.
	Nodes []NodeActions
	// Unreachable names the nodes judged unreachable, sorted.
	Unreachable []string
	// Disrupted: every node is unreachable, which more likely means the
	// control plane cannot hear the nodes than that they all died, so no
	// NoExecute taints are kept and no pods evicted (Kubernetes' "master
	// disruption mode").
	Disrupted bool
	// Next is the earliest time at which the decision would change without any
	// event (a grace period or eviction timeout ending); zero if none.
	Next time.Time
}

func (d *NodeLifecycleDecision) wakeAt(t time.Time) {
	if d.Next.IsZero() || t.Before(d.Next) {
		d.Next = t
	}
}

// NodeActions are the writes for one node, applied in field order. Every
// object is a modified clone carrying the resourceVersion it was read at.
type NodeActions struct {
	// Node is the node as read.
	Node *corev1.Node
	// Status, when not nil, is Node with its Ready condition (and the other
	// kubelet conditions present) set to Unknown, for UpdateStatus.
	Status *corev1.Node
	// SetTaints asks for spec.taints to become Taints (an Update).
	SetTaints bool
	Taints    []*corev1.Taint
	// PodsNotReady are pods on the node with their Ready condition set to
	// False, for UpdateStatus, so that Services stop sending them traffic.
	PodsNotReady []*corev1.Pod
	// Evict are pods to delete, each with its UID as precondition.
	Evict []*corev1.Pod
}

func (a NodeActions) empty() bool {
	return a.Status == nil && !a.SetTaints && len(a.PodsNotReady) == 0 && len(a.Evict) == 0
}

// DecideNodeLifecycle judges every node at now, as kube-controller-manager's
// node lifecycle controller with taint-based eviction does:
//
//   - A node is unreachable once now reaches its heartbeat's ObservedAt plus
//     its grace period. It then gets Ready=Unknown (reason NodeStatusUnknown),
//     the taints node.kubernetes.io/unreachable:NoSchedule and :NoExecute, and
//     its ready pods get Ready=False.
//   - Its pods are evicted PodEvictionTimeout after it became unreachable
//     (that instant, or EvictionsResumed if later), except pods being deleted,
//     DaemonSet pods (which tolerate the node by design), and pods tolerating
//     the unreachable NoExecute taint: those leave after their smallest
//     tolerationSeconds (at once if <= 0), or never without any.
//   - A reachable node loses the unreachable taints; its Ready condition is
//     the node agent's to set again.
//   - When every node is unreachable, NoExecute taints are withheld (removed)
//     and nothing is evicted; see NodeLifecycleDecision.Disrupted.
//
// It is pure: inputs are read, never modified.
func DecideNodeLifecycle(cfg NodeLifecycleConfig, view NodeLifecycleView, now time.Time) NodeLifecycleDecision {
	nodes := slices.Clone(view.Nodes)
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return cmp.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName()) })
	var d NodeLifecycleDecision
	expiry := make([]time.Time, len(nodes))
	unreachable := make([]bool, len(nodes))
	for i, n := range nodes {
		name := n.GetMetadata().GetName()
		hb, ok := view.Heartbeats[name]
		if !ok {
			hb = NodeHeartbeat{ObservedAt: now}
		}
		grace := cfg.NodeGracePeriod
		if !hb.LeaseSeen {
			grace = max(grace, cfg.NodeStartupGracePeriod)
		}
		expiry[i] = hb.ObservedAt.Add(grace)
		unreachable[i] = !now.Before(expiry[i])
		if unreachable[i] {
			d.Unreachable = append(d.Unreachable, name)
		} else {
			d.wakeAt(expiry[i])
		}
	}
	d.Disrupted = len(nodes) > 0 && len(d.Unreachable) == len(nodes)
	for i, n := range nodes {
		a := NodeActions{Node: n}
		if !unreachable[i] {
			a.Taints, a.SetTaints = nlWithTaints(n.GetSpec().GetTaints(), false, false, now)
		} else {
			a.Status = nlMarkUnknown(n, now)
			a.Taints, a.SetTaints = nlWithTaints(n.GetSpec().GetTaints(), true, !d.Disrupted, now)
			since := expiry[i]
			if view.EvictionsResumed.After(since) {
				since = view.EvictionsResumed
			}
			var pods []*corev1.Pod
			if view.PodsOn != nil {
				pods = slices.Clone(view.PodsOn(n.GetMetadata().GetName()))
			}
			slices.SortFunc(pods, func(a, b *corev1.Pod) int { return cmp.Compare(KeyOf(a), KeyOf(b)) })
			for _, p := range pods {
				if p.GetMetadata().GetDeletionTimestamp() != nil {
					continue
				}
				if !d.Disrupted {
					if at, ok := nlEvictAt(p, since, cfg.PodEvictionTimeout); ok {
						if !now.Before(at) {
							a.Evict = append(a.Evict, p)
							continue
						}
						d.wakeAt(at)
					}
				}
				if np := nlMarkPodNotReady(p, now); np != nil {
					a.PodsNotReady = append(a.PodsNotReady, np)
				}
			}
		}
		if !a.empty() {
			d.Nodes = append(d.Nodes, a)
		}
	}
	return d
}

// nlEvictAt returns when p must leave a node unreachable since since; ok is
// false when it may stay for good.
func nlEvictAt(p *corev1.Pod, since time.Time, timeout time.Duration) (time.Time, bool) {
	if ref := controllerRefOf(p.GetMetadata()); ref != nil && ref.GetKind() == "DaemonSet" {
		return time.Time{}, false
	}
	tolerated, forever := false, true
	var secs int64
	for _, t := range p.GetSpec().GetTolerations() {
		if !nlToleratesUnreachable(t) {
			continue
		}
		tolerated = true
		if t.TolerationSeconds == nil {
			continue
		}
		s := max(t.GetTolerationSeconds(), 0)
		if forever || s < secs {
			secs, forever = s, false
		}
	}
	switch {
	case !tolerated:
		return since.Add(timeout), true
	case forever:
		return time.Time{}, false
	default:
		return since.Add(time.Duration(secs) * time.Second), true
	}
}

// nlToleratesUnreachable reports whether t tolerates the unreachable NoExecute
// taint (Kubernetes' Toleration.ToleratesTaint: an empty effect matches every
// effect, an empty key with Exists every key; the taint has no value).
func nlToleratesUnreachable(t *corev1.Toleration) bool {
	if t.GetEffect() != "" && t.GetEffect() != nlNoExecute {
		return false
	}
	if t.GetKey() != "" && t.GetKey() != nlTaintUnreachable {
		return false
	}
	switch t.GetOperator() {
	case "Exists":
		return true
	case "", "Equal":
		return t.GetKey() != "" && t.GetValue() == ""
	}
	return false
}

// nlKubeletConditions are the node conditions set to Unknown, besides Ready,
// when they are present (Kubernetes' nodeConditionsToUpdate).
var nlKubeletConditions = []string{"MemoryPressure", "DiskPressure", "PIDPressure"}

// nlMarkUnknown returns n with Ready and the other kubelet conditions set to
// Unknown, or nil when they already are.
func nlMarkUnknown(n *corev1.Node, now time.Time) *corev1.Node {
	var out *corev1.Node
	clone := func() {
		if out == nil {
			out = proto.Clone(n).(*corev1.Node)
			if out.Status == nil {
				out.Status = &corev1.NodeStatus{}
			}
		}
	}
	ts := timestamppb.New(now)
	ready := false
	for i, c := range n.GetStatus().GetConditions() {
		isReady := c.GetType() == "Ready"
		ready = ready || isReady
		if (!isReady && !slices.Contains(nlKubeletConditions, c.GetType())) || c.GetStatus() == condUnknown {
			continue
		}
		clone()
		oc := out.Status.Conditions[i]
		oc.Status, oc.Reason, oc.Message, oc.LastTransitionTime = condUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.", ts
	}
	if !ready {
		clone()
		out.Status.Conditions = append(out.Status.Conditions, &corev1.NodeCondition{Type: "Ready", Status: condUnknown,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.",
			LastHeartbeatTime: n.GetMetadata().GetCreationTimestamp(), LastTransitionTime: ts})
	}
	return out
}

// nlWithTaints returns cur with the unreachable NoSchedule taint present iff
// noSchedule and the NoExecute one iff noExecute (new ones stamped now, other
// taints untouched), and whether that differs from cur.
func nlWithTaints(cur []*corev1.Taint, noSchedule, noExecute bool, now time.Time) ([]*corev1.Taint, bool) {
	want := map[string]bool{nlNoSchedule: noSchedule, nlNoExecute: noExecute}
	have := map[string]bool{}
	out := make([]*corev1.Taint, 0, len(cur)+2)
	changed := false
	for _, t := range cur {
		if t.GetKey() == nlTaintUnreachable {
			if w, ours := want[t.GetEffect()]; ours {
				if !w || have[t.GetEffect()] {
					changed = true
					continue
				}
				have[t.GetEffect()] = true
			}
		}
		out = append(out, t)
	}
	for _, eff := range []string{nlNoSchedule, nlNoExecute} {
		if want[eff] && !have[eff] {
			out = append(out, &corev1.Taint{Key: nlTaintUnreachable, Effect: eff, TimeAdded: timestamppb.New(now)})
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	if len(out) == 0 {
		out = nil
	}
	return out, true
}

// nlMarkPodNotReady returns p with its Ready condition set to False (as
// Kubernetes' MarkPodsNotReady), or nil when p is terminal or not ready.
func nlMarkPodNotReady(p *corev1.Pod, now time.Time) *corev1.Pod {
	if ph := p.GetStatus().GetPhase(); ph == podSucceeded || ph == podFailed || !IsPodReady(p) {
		return nil
	}
	out := proto.Clone(p).(*corev1.Pod)
	for _, c := range out.Status.Conditions {
		if c.GetType() == "Ready" {
			c.Status, c.LastTransitionTime = condFalse, timestamppb.New(now)
		}
	}
	return out
}

// NodeLifecycle is the leader-run loop around DecideNodeLifecycle: informers
// on Nodes, node Leases (namespace kube-node-lease) and pods; a tracker that
// turns Lease renewals into times on the injected clock; and passes over all
// nodes, run when something relevant changes, when a grace period or eviction
// timeout ends, and at least every MonitorPeriod. Writes carry the
// resourceVersion (pods deleted: the UID) they were decided on, so a deposed
// leader's writes fail. What it remembers lives for one Run (one leadership
// term): a new term gives every node a full grace period again.
type NodeLifecycle struct {
	conn   grpc.ClientConnInterface
	cfg    NodeLifecycleConfig
	clock  Clock
	logger *slog.Logger
	shared *Informers // nil: Run uses informers of its own
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (c *NodeLifecycle) UseInformers(f *Informers) { c.shared = f }

// NewNodeLifecycle returns the controller for the API behind conn.
func NewNodeLifecycle(conn grpc.ClientConnInterface, cfg NodeLifecycleConfig, clock Clock, logger *slog.Logger) (*NodeLifecycle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil || logger == nil {
		return nil, errors.New("node lifecycle: clock and logger are required")
	}
	return &NodeLifecycle{conn: conn, cfg: cfg, clock: clock, logger: logger}, nil
}

// nlRun is the state of one Run.
type nlRun struct {
	*NodeLifecycle
	nodes    corev1.NodesClient
	pods     corev1.PodsClient
	events   *EventRecorder
	nodeInf  *Informer[*corev1.Node]
	leaseInf *Informer[*coordinationv1.Lease]
	podInf   *Informer[*corev1.Pod]
	tracker  *nlTracker
	wake     chan struct{} // 1 slot: a pass is due

	// Owned by the pass goroutine.
	disrupted bool
	resumed   time.Time
	orphans   map[string]time.Time // pod UID -> first seen bound to a missing node
}

// nlPodsByNode indexes pods by spec.nodeName.
const nlPodsByNode = IndexNodeName

// Run watches and acts until ctx ends, then returns nil; it returns an error
// only when it cannot start. Run may be called again after it returned.
func (c *NodeLifecycle) Run(ctx context.Context) error {
	r := &nlRun{NodeLifecycle: c, nodes: corev1.NewNodesClient(c.conn), pods: corev1.NewPodsClient(c.conn), orphans: map[string]time.Time{},
		events:  NewEventRecorder(corev1.NewEventsClient(c.conn), "node-controller", c.clock, c.logger),
		tracker: newNLTracker(), wake: make(chan struct{}, 1)}
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, c.shared, c.conn, c.clock, c.logger)
	if err != nil {
		return err
	}
	r.nodeInf, r.leaseInf, r.podInf = f.Nodes(), f.NodeLeases(), f.Pods()
	r.podInf.EnsureIndex(IndexNodeName, IndexPodByNodeName)
	_ = r.nodeInf.AddHandler(HandlerFuncs[*corev1.Node]{
		Add: func(n *corev1.Node) {
			r.tracker.sawNode(n.GetMetadata().GetName(), c.clock.Now())
			r.poke()
		},
		Update: func(old, n *corev1.Node) {
			if readyStatus(old) != readyStatus(n) || !nlTaintsEqual(old.GetSpec().GetTaints(), n.GetSpec().GetTaints()) {
				r.poke()
			}
		},
		Delete: func(n *corev1.Node) {
			r.tracker.forget(n.GetMetadata().GetName())
			r.poke()
		},
	})
	onLease := func(l *coordinationv1.Lease) {
		name := l.GetMetadata().GetName()
		if r.tracker.sawLease(name, l.GetSpec().GetRenewTime(), c.clock.Now()) && r.tracker.isFlagged(name) {
			r.poke()
		}
	}
	_ = r.leaseInf.AddHandler(HandlerFuncs[*coordinationv1.Lease]{Add: onLease, Update: func(_, l *coordinationv1.Lease) { onLease(l) }})
	onPod := func(p *corev1.Pod) {
		if n := p.GetSpec().GetNodeName(); n != "" && r.tracker.isFlagged(n) {
			r.poke()
		}
	}
	_ = r.podInf.AddHandler(HandlerFuncs[*corev1.Pod]{Add: onPod, Update: func(_, p *corev1.Pod) { onPod(p) }})

	g.Go(func() error { return r.events.Run(ctx) })
	g.Go(func() error {
		for _, s := range []interface{ WaitSynced(context.Context) error }{r.nodeInf, r.leaseInf, r.podInf} {
			if err := s.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		r.loop(ctx)
		return nil
	})
	return g.Wait()
}

func (r *nlRun) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *nlRun) loop(ctx context.Context) {
	for {
		next, failed := r.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := r.cfg.MonitorPeriod
		if failed {
			wait = min(wait, nlRetryDelay)
		}
		if !next.IsZero() {
			wait = min(wait, next.Sub(r.clock.Now()))
		}
		t := r.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C():
		case <-r.wake:
		}
		t.Stop()
	}
}

// pass decides over the caches and applies the decision; it returns when the
// next pass is due without any event, and whether a write failed.
func (r *nlRun) pass(ctx context.Context) (time.Time, bool) {
	now := r.clock.Now()
	view := NodeLifecycleView{Nodes: r.nodeInf.List(), Heartbeats: r.tracker.snapshot(), PodsOn: r.podsOn, EvictionsResumed: r.resumed}
	d := DecideNodeLifecycle(r.cfg, view, now)
	if d.Disrupted != r.disrupted {
		r.disrupted = d.Disrupted
		if d.Disrupted {
			r.logger.Warn("every node is unreachable: assuming the control plane cannot reach them; no pods are evicted until one is back",
				"nodes", len(view.Nodes))
		} else {
			r.logger.Info("a node is reachable again: leaving disruption mode; eviction timeouts start over")
			r.resumed = now
			view.EvictionsResumed = now
			d = DecideNodeLifecycle(r.cfg, view, now)
		}
	}
	r.tracker.setFlagged(d.Unreachable)
	orphans, next := OrphanedPods(r.podInf.List(), func(n string) bool { _, ok := r.nodeInf.Get("", n); return ok },
		r.orphans, now, r.cfg.OrphanQuarantine)
	if !next.IsZero() {
		d.wakeAt(next)
	}
	failed := r.removeOrphans(ctx, orphans)
	if len(d.Nodes) == 0 {
		return d.Next, failed
	}
	g := errgroup.Group{}
	g.SetLimit(r.cfg.Workers)
	var mu sync.Mutex // guards failed
	for _, a := range d.Nodes {
		g.Go(func() error {
			if err := r.apply(ctx, a); err != nil {
				mu.Lock()
				failed = true
				mu.Unlock()
				if ctx.Err() == nil {
					r.logger.Debug("node lifecycle write failed; will retry", "node", a.Node.GetMetadata().GetName(), "err", err)
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	return d.Next, failed
}

// OrphanedPods returns the pods bound to a node that does not exist and
// that have been so, by seen, for at least quarantine at now; and when the
// next one will be due (zero if none waits). seen maps pod UIDs to when each
// was first found orphaned: OrphanedPods adds the new ones and drops those
// no longer orphaned or no longer there. Pods are returned sorted by key.
func OrphanedPods(pods []*corev1.Pod, nodeExists func(string) bool, seen map[string]time.Time, now time.Time, quarantine time.Duration) ([]*corev1.Pod, time.Time) {
	var due []*corev1.Pod
	var next time.Time
	still := make(map[string]bool, len(seen))
	for _, p := range pods {
		n := p.GetSpec().GetNodeName()
		if n == "" || nodeExists(n) {
			continue
		}
		uid := p.GetMetadata().GetUid()
		still[uid] = true
		first, ok := seen[uid]
		if !ok {
			first = now
			seen[uid] = now
		}
		if at := first.Add(quarantine); now.Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		due = append(due, p)
	}
	for uid := range seen {
		if !still[uid] {
			delete(seen, uid)
		}
	}
	slices.SortFunc(due, func(a, b *corev1.Pod) int { return cmp.Compare(KeyOf(a), KeyOf(b)) })
	return due, next
}

// removeOrphans deletes pods bound to missing nodes at once (grace period 0,
// their UID as precondition); it reports whether a delete failed.
func (r *nlRun) removeOrphans(ctx context.Context, pods []*corev1.Pod) bool {
	failed := false
	zero := int64(0)
	for _, p := range pods {
		md := p.GetMetadata()
		_, err := r.pods.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(), GracePeriodSeconds: &zero,
			Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
		switch {
		case err == nil:
			r.logger.Info("removed pod bound to a node that does not exist", "pod", KeyOf(p), "node", p.GetSpec().GetNodeName())
		case status.Code(err) != codes.NotFound:
			failed = true
			if ctx.Err() == nil {
				r.logger.Debug("remove orphaned pod failed; will retry", "pod", KeyOf(p), "err", err)
			}
		}
	}
	return failed
}

func (r *nlRun) podsOn(node string) []*corev1.Pod {
	pods, _ := r.podInf.ByIndex(nlPodsByNode, node)
	return pods
}

// apply makes one node's writes in order; a failed node write stops it, pod
// writes are all attempted.
func (r *nlRun) apply(ctx context.Context, a NodeActions) error {
	node := a.Node
	name := node.GetMetadata().GetName()
	if a.Status != nil {
		out, err := r.nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: name, Body: a.Status})
		if err != nil {
			return fmt.Errorf("mark node %s unknown: %w", name, err)
		}
		r.logger.Info("node unreachable: lease not renewed", "node", name)
		r.events.Record(Ref("Node", "v1", node.GetMetadata()), "Normal", "NodeNotReady", fmt.Sprintf("Node %s status is now: NodeNotReady", name))
		node = out
	}
	if a.SetTaints {
		next := proto.Clone(node).(*corev1.Node)
		if next.Spec == nil {
			next.Spec = &corev1.NodeSpec{}
		}
		next.Spec.Taints = a.Taints
		if _, err := r.nodes.Update(ctx, &corev1.UpdateNodeRequest{Name: name, Body: next}); err != nil {
			return fmt.Errorf("taint node %s: %w", name, err)
		}
		tainted := slices.ContainsFunc(a.Taints, func(t *corev1.Taint) bool { return t.GetKey() == nlTaintUnreachable })
		r.logger.Info("node unreachable taints updated", "node", name, "tainted", tainted)
	}
	var errs []error
	for _, p := range a.PodsNotReady {
		md := p.GetMetadata()
		_, err := r.pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: md.GetNamespace(), Name: md.GetName(), Body: p})
		switch {
		case err == nil:
			r.events.Record(Ref("Pod", "v1", md), "Warning", "NodeNotReady", "Node is not ready")
		case status.Code(err) != codes.NotFound:
			errs = append(errs, fmt.Errorf("mark pod %s not ready: %w", KeyOf(p), err))
		}
	}
	for _, p := range a.Evict {
		md := p.GetMetadata()
		_, err := r.pods.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(),
			Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
		switch {
		case err == nil:
			r.logger.Info("evicted pod from unreachable node", "pod", KeyOf(p), "node", name)
			r.events.Record(Ref("Pod", "v1", md), "Normal", "TaintManagerEviction", "Marking for deletion Pod "+KeyOf(p))
		case status.Code(err) != codes.NotFound:
			errs = append(errs, fmt.Errorf("evict pod %s: %w", KeyOf(p), err))
		}
	}
	return errors.Join(errs...)
}

func nlTaintsEqual(a, b []*corev1.Taint) bool {
	return slices.EqualFunc(a, b, func(x, y *corev1.Taint) bool { return proto.Equal(x, y) })
}

// nlTracker turns what the informers see into NodeHeartbeats on the
// controller's clock. Informer handlers and the pass goroutine call it.
type nlTracker struct {
	mu sync.Mutex // guards beats and flagged
	// beats holds, by node name, the heartbeat and the Lease renewTime last
	// seen (nil: none yet).
	beats map[string]*nlBeat
	// flagged holds the nodes the last pass judged unreachable: their Lease
	// renewals and pod changes wake a pass at once.
	flagged map[string]bool
}

type nlBeat struct {
	NodeHeartbeat
	renew *timestamppb.Timestamp
}

func newNLTracker() *nlTracker {
	return &nlTracker{beats: map[string]*nlBeat{}, flagged: map[string]bool{}}
}

// sawNode starts the heartbeat of a node first seen at now.
func (t *nlTracker) sawNode(name string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.beats[name] == nil {
		t.beats[name] = &nlBeat{NodeHeartbeat: NodeHeartbeat{ObservedAt: now}}
	}
}

// sawLease records a node's Lease with the given renewTime at now, and
// reports whether that counts as a heartbeat: the first Lease seen of the
// node, or a renewTime different from the last one seen.
func (t *nlTracker) sawLease(name string, renew *timestamppb.Timestamp, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.beats[name]
	if b == nil {
		b = &nlBeat{}
		t.beats[name] = b
	}
	if b.LeaseSeen && proto.Equal(b.renew, renew) {
		return false
	}
	b.LeaseSeen, b.ObservedAt, b.renew = true, now, renew
	return true
}

// forget drops a deleted node.
func (t *nlTracker) forget(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.beats, name)
	delete(t.flagged, name)
}

func (t *nlTracker) snapshot() map[string]NodeHeartbeat {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]NodeHeartbeat, len(t.beats))
	for name, b := range t.beats {
		out[name] = b.NodeHeartbeat
	}
	return out
}

func (t *nlTracker) setFlagged(names []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.flagged)
	for _, n := range names {
		t.flagged[n] = true
	}
}

func (t *nlTracker) isFlagged(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.flagged[name]
}

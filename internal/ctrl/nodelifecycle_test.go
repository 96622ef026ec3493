package ctrl

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func nlNode(name, ready string, taints ...*corev1.Taint) *corev1.Node {
	n := &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, ResourceVersion: "7"}, Spec: &corev1.NodeSpec{Taints: taints}, Status: &corev1.NodeStatus{}}
	if ready != "" {
		n.Status.Conditions = []*corev1.NodeCondition{{Type: "Ready", Status: ready, Reason: "KubeletReady"}}
	}
	return n
}

type nlPodOpt func(*corev1.Pod)

func nlPod(name, node string, opts ...nlPodOpt) *corev1.Pod {
	p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Uid: "uid-" + name},
		Spec:   &corev1.PodSpec{NodeName: node, Containers: []*corev1.Container{{Name: "c", Image: "img"}}},
		Status: &corev1.PodStatus{Phase: podRunning, Conditions: []*corev1.PodCondition{{Type: "Ready", Status: condTrue}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func nlTolerate(key, op, effect string, secs *int64) nlPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, &corev1.Toleration{Key: key, Operator: op, Effect: effect, TolerationSeconds: secs})
	}
}

func nlOwnedBy(kind string) nlPodOpt {
	return func(p *corev1.Pod) {
		p.Metadata.OwnerReferences = []*metav1.OwnerReference{{Kind: kind, Name: "owner", Uid: "owner-uid", Controller: proto.Bool(true)}}
	}
}

func nlTestConfig() NodeLifecycleConfig {
	return DefaultNodeLifecycleConfig() // 40s grace, 1m startup grace, 5m eviction
}

func TestNodeLifecycleConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*NodeLifecycleConfig)
		ok   bool
	}{
		{"defaults", func(*NodeLifecycleConfig) {}, true},
		{"zero eviction timeout", func(c *NodeLifecycleConfig) { c.PodEvictionTimeout = 0 }, true},
		{"zero grace", func(c *NodeLifecycleConfig) { c.NodeGracePeriod = 0 }, false},
		{"negative startup grace", func(c *NodeLifecycleConfig) { c.NodeStartupGracePeriod = -1 }, false},
		{"negative eviction timeout", func(c *NodeLifecycleConfig) { c.PodEvictionTimeout = -time.Second }, false},
		{"zero monitor period", func(c *NodeLifecycleConfig) { c.MonitorPeriod = 0 }, false},
		{"no workers", func(c *NodeLifecycleConfig) { c.Workers = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultNodeLifecycleConfig()
			tc.edit(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNodeEvictAt(t *testing.T) {
	since := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	timeout := 5 * time.Minute
	for _, tc := range []struct {
		name  string
		opts  []nlPodOpt
		after time.Duration // -1: never
	}{
		{"plain pod", nil, timeout},
		{"ReplicaSet pod", []nlPodOpt{nlOwnedBy("ReplicaSet")}, timeout},
		{"DaemonSet pod", []nlPodOpt{nlOwnedBy("DaemonSet")}, -1},
		{"tolerates for good", []nlPodOpt{nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", nil)}, -1},
		{"tolerates 30s", []nlPodOpt{nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", proto.Int64(30))}, 30 * time.Second},
		{"tolerates 30s with Equal", []nlPodOpt{nlTolerate(nlTaintUnreachable, "Equal", "NoExecute", proto.Int64(30))}, 30 * time.Second},
		{"tolerates 600s, longer than the timeout", []nlPodOpt{nlTolerate(nlTaintUnreachable, "", "NoExecute", proto.Int64(600))}, 10 * time.Minute},
		{"negative seconds", []nlPodOpt{nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", proto.Int64(-5))}, 0},
		{"smallest seconds win", []nlPodOpt{
			nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", proto.Int64(100)),
			nlTolerate(nlTaintUnreachable, "Exists", "", proto.Int64(30))}, 30 * time.Second},
		{"seconds win over for good", []nlPodOpt{
			nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", nil),
			nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", proto.Int64(100))}, 100 * time.Second},
		{"tolerates everything", []nlPodOpt{nlTolerate("", "Exists", "", nil)}, -1},
		{"only NoSchedule tolerated", []nlPodOpt{nlTolerate(nlTaintUnreachable, "Exists", "NoSchedule", nil)}, timeout},
		{"other key", []nlPodOpt{nlTolerate("node.kubernetes.io/not-ready", "Exists", "NoExecute", nil)}, timeout},
		{"wrong value", []nlPodOpt{func(p *corev1.Pod) {
			p.Spec.Tolerations = []*corev1.Toleration{{Key: nlTaintUnreachable, Operator: "Equal", Value: "x", Effect: "NoExecute"}}
		}}, timeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := nlEvictAt(nlPod("p", "n", tc.opts...), since, timeout)
			switch {
			case tc.after < 0 && ok:
				t.Fatalf("evict at %s, want never", at.Sub(since))
			case tc.after >= 0 && !ok:
				t.Fatalf("never evicted, want after %s", tc.after)
			case tc.after >= 0 && !at.Equal(since.Add(tc.after)):
				t.Fatalf("evict after %s, want %s", at.Sub(since), tc.after)
			}
		})
	}
}

func TestNodeWithTaints(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	other := &corev1.Taint{Key: "dedicated", Value: "gpu", Effect: "NoSchedule"}
	ns := &corev1.Taint{Key: nlTaintUnreachable, Effect: nlNoSchedule, TimeAdded: timestamppb.New(now.Add(-time.Hour))}
	ne := &corev1.Taint{Key: nlTaintUnreachable, Effect: nlNoExecute, TimeAdded: timestamppb.New(now.Add(-time.Hour))}
	str := func(ts []*corev1.Taint) []string {
		var out []string
		for _, t := range ts {
			added := "-"
			if t.GetTimeAdded() != nil {
				added = t.GetTimeAdded().AsTime().Sub(now).String()
			}
			out = append(out, fmt.Sprintf("%s:%s@%s", t.GetKey(), t.GetEffect(), added))
		}
		return out
	}
	for _, tc := range []struct {
		name                  string
		cur                   []*corev1.Taint
		noSchedule, noExecute bool
		changed               bool
		want                  []string
	}{
		{"add both, keep others", []*corev1.Taint{other}, true, true, true,
			[]string{"dedicated:NoSchedule@-", nlTaintUnreachable + ":NoSchedule@0s", nlTaintUnreachable + ":NoExecute@0s"}},
		{"already there", []*corev1.Taint{ns, other, ne}, true, true, false, nil},
		{"disrupted: drop NoExecute", []*corev1.Taint{ns, ne}, true, false, true, []string{nlTaintUnreachable + ":NoSchedule@-1h0m0s"}},
		{"reachable: drop both", []*corev1.Taint{ns, other, ne}, false, false, true, []string{"dedicated:NoSchedule@-"}},
		{"reachable, untainted", []*corev1.Taint{other}, false, false, false, nil},
		{"duplicate removed", []*corev1.Taint{ns, ns, ne}, true, true, true,
			[]string{nlTaintUnreachable + ":NoSchedule@-1h0m0s", nlTaintUnreachable + ":NoExecute@-1h0m0s"}},
		{"reachable, none at all", nil, false, false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := nlWithTaints(tc.cur, tc.noSchedule, tc.noExecute, now)
			if changed != tc.changed {
				t.Fatalf("changed = %v, want %v", changed, tc.changed)
			}
			if g := str(got); !slices.Equal(g, tc.want) {
				t.Fatalf("taints = %v, want %v", g, tc.want)
			}
		})
	}
}

func TestNodeMarkUnknown(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	n := nlNode("a", condTrue)
	hb := timestamppb.New(now.Add(-time.Minute))
	n.Status.Conditions[0].LastHeartbeatTime = hb
	n.Status.Conditions = append(n.Status.Conditions,
		&corev1.NodeCondition{Type: "MemoryPressure", Status: condFalse},
		&corev1.NodeCondition{Type: "NetworkUnavailable", Status: condFalse})
	before := proto.Clone(n)
	got := nlMarkUnknown(n, now)
	if !proto.Equal(n, before) {
		t.Fatal("input modified")
	}
	c := got.GetStatus().GetConditions()
	if c[0].GetStatus() != condUnknown || c[0].GetReason() != "NodeStatusUnknown" || c[0].GetMessage() != "Kubelet stopped posting node status." ||
		!c[0].GetLastTransitionTime().AsTime().Equal(now) || !proto.Equal(c[0].GetLastHeartbeatTime(), hb) {
		t.Errorf("Ready = %v", c[0])
	}
	if c[1].GetStatus() != condUnknown {
		t.Errorf("MemoryPressure = %v, want Unknown", c[1])
	}
	if c[2].GetStatus() != condFalse {
		t.Errorf("NetworkUnavailable = %v, want untouched", c[2])
	}
	if again := nlMarkUnknown(got, now.Add(time.Second)); again != nil {
		t.Errorf("marking an Unknown node again = %v, want nil", again)
	}
	never := nlMarkUnknown(nlNode("b", ""), now)
	if c := never.GetStatus().GetConditions(); len(c) != 1 || c[0].GetType() != "Ready" || c[0].GetStatus() != condUnknown || c[0].GetReason() != "NodeStatusNeverUpdated" {
		t.Errorf("node without conditions: %v", c)
	}
}

// nlWorld is a node lifecycle simulation: nodes, pods and leases stepped on a
// fake clock, with each decision applied as the loop would.
type nlWorld struct {
	t       *testing.T
	cfg     NodeLifecycleConfig
	clk     *fakeClock
	tracker *nlTracker
	nodes   map[string]*corev1.Node
	pods    map[string]*corev1.Pod
	renews  map[string]time.Time // each node's last renewTime, on a skewed node clock
	evicted []string
	resumed time.Time
}

func newNLWorld(t *testing.T, nodes ...string) *nlWorld {
	w := &nlWorld{t: t, cfg: nlTestConfig(), clk: newFakeClock(), tracker: newNLTracker(),
		nodes: map[string]*corev1.Node{}, pods: map[string]*corev1.Pod{}, renews: map[string]time.Time{}}
	for _, n := range nodes {
		w.nodes[n] = nlNode(n, condTrue)
		w.tracker.sawNode(n, w.clk.Now())
		w.renew(n)
	}
	return w
}

// renew renews n's Lease with a renewTime on n's own clock, which is badly
// skewed (years behind) so that any use of it would show.
func (w *nlWorld) renew(n string) {
	r, ok := w.renews[n]
	if !ok {
		r = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	w.renews[n] = r.Add(time.Second)
	w.tracker.sawLease(n, timestamppb.New(w.renews[n]), w.clk.Now())
}

func (w *nlWorld) decide() NodeLifecycleDecision {
	var nodes []*corev1.Node
	for _, n := range w.nodes {
		nodes = append(nodes, n)
	}
	view := NodeLifecycleView{Nodes: nodes, Heartbeats: w.tracker.snapshot(), EvictionsResumed: w.resumed,
		PodsOn: func(node string) []*corev1.Pod {
			var out []*corev1.Pod
			for _, p := range w.pods {
				if p.GetSpec().GetNodeName() == node {
					out = append(out, p)
				}
			}
			return out
		}}
	return DecideNodeLifecycle(w.cfg, view, w.clk.Now())
}

// step decides and applies the decision.
func (w *nlWorld) step() NodeLifecycleDecision {
	d := w.decide()
	for _, a := range d.Nodes {
		name := a.Node.GetMetadata().GetName()
		if a.Status != nil {
			w.nodes[name] = a.Status
		}
		if a.SetTaints {
			n := proto.Clone(w.nodes[name]).(*corev1.Node)
			n.Spec.Taints = a.Taints
			w.nodes[name] = n
		}
		for _, p := range a.PodsNotReady {
			w.pods[p.GetMetadata().GetName()] = p
		}
		for _, p := range a.Evict {
			delete(w.pods, p.GetMetadata().GetName())
			w.evicted = append(w.evicted, p.GetMetadata().GetName())
		}
	}
	w.tracker.setFlagged(d.Unreachable)
	return d
}

func (w *nlWorld) elapsed(at time.Time) time.Duration {
	return at.Sub(newFakeClock().Now())
}

func (w *nlWorld) tainted(n string) []string {
	var out []string
	for _, t := range w.nodes[n].GetSpec().GetTaints() {
		if t.GetKey() == nlTaintUnreachable {
			out = append(out, t.GetEffect())
		}
	}
	return out
}

func TestNodeLifecycleTimeline(t *testing.T) {
	w := newNLWorld(t, "a", "b")
	w.pods["plain"] = nlPod("plain", "a")
	w.pods["ds"] = nlPod("ds", "a", nlOwnedBy("DaemonSet"))
	w.pods["tol60"] = nlPod("tol60", "a", nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", proto.Int64(60)))
	w.pods["tolforever"] = nlPod("tolforever", "a", nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", nil))
	w.pods["onb"] = nlPod("onb", "b")

	// b keeps renewing every 10s; a stops after its first Lease.
	tick := func(d time.Duration) {
		for left := d; left > 0; {
			s := min(left, 10*time.Second)
			w.clk.Advance(s)
			left -= s
			w.renew("b")
		}
	}
	d := w.step()
	if len(d.Nodes) != 0 || d.Disrupted {
		t.Fatalf("fresh nodes: %+v", d)
	}
	if got := w.elapsed(d.Next); got != 40*time.Second {
		t.Fatalf("next pass after %s, want 40s (a's grace)", got)
	}

	// The Lease is re-read without a new renewTime: not a heartbeat.
	w.clk.Advance(39 * time.Second)
	w.renew("b")
	if w.tracker.sawLease("a", timestamppb.New(w.renews["a"]), w.clk.Now()) {
		t.Fatal("an unchanged renewTime counted as a heartbeat")
	}
	if d := w.step(); len(d.Nodes) != 0 || len(d.Unreachable) != 0 {
		t.Fatalf("at 39s: %+v", d)
	}
	w.clk.Advance(time.Second)
	d = w.step()
	if !slices.Equal(d.Unreachable, []string{"a"}) || len(d.Nodes) != 1 || d.Disrupted {
		t.Fatalf("at 40s: unreachable %v, %d nodes to write, disrupted %v", d.Unreachable, len(d.Nodes), d.Disrupted)
	}
	a := d.Nodes[0]
	if a.Status == nil || readyStatus(a.Status) != condUnknown || !a.SetTaints || len(a.Evict) != 0 {
		t.Fatalf("at 40s a gets %+v", a)
	}
	if got := w.tainted("a"); !slices.Equal(got, []string{nlNoSchedule, nlNoExecute}) {
		t.Fatalf("a's unreachable taints = %v", got)
	}
	if got := names(a.PodsNotReady); !slices.Equal(got, []string{"ds", "plain", "tol60", "tolforever"}) {
		t.Fatalf("pods marked not ready: %v", got)
	}
	if IsPodReady(w.pods["plain"]) || !IsPodReady(w.pods["onb"]) {
		t.Fatal("readiness of pods after the node went unreachable")
	}
	if got := w.elapsed(d.Next); got != 79*time.Second {
		t.Fatalf("next pass at %s, want 79s (b's grace)", got)
	}

	// Nothing more to write until an eviction is due: tol60 at 40s+60s.
	w.clk.Advance(9 * time.Second)
	w.renew("b")
	if d := w.step(); len(d.Nodes) != 0 {
		t.Fatalf("an idle pass wrote %+v", d.Nodes)
	}
	tick(51*time.Second - time.Nanosecond)
	if d := w.step(); len(d.Nodes) != 0 {
		t.Fatalf("before tol60's time: %+v", d.Nodes[0])
	}
	w.clk.Advance(time.Nanosecond)
	w.step()
	if !slices.Equal(w.evicted, []string{"tol60"}) {
		t.Fatalf("evicted at 100s: %v, want tol60", w.evicted)
	}
	// plain goes 5m after a became unreachable.
	tick(40*time.Second + 5*time.Minute - 100*time.Second - time.Nanosecond)
	w.step()
	if len(w.evicted) != 1 {
		t.Fatalf("evicted before the timeout: %v", w.evicted)
	}
	w.clk.Advance(time.Nanosecond)
	d = w.step()
	if !slices.Equal(w.evicted, []string{"tol60", "plain"}) {
		t.Fatalf("evicted at 5m40s: %v", w.evicted)
	}
	if _, ok := w.pods["ds"]; !ok {
		t.Fatal("DaemonSet pod evicted")
	}
	if _, ok := w.pods["tolforever"]; !ok {
		t.Fatal("pod tolerating the taint for good evicted")
	}
	if _, ok := w.pods["onb"]; !ok {
		t.Fatal("pod of a live node evicted")
	}

	// a renews (with a renewTime still years in the past): taints go, the
	// Ready condition is left for the node agent.
	w.clk.Advance(time.Second)
	w.renew("a")
	d = w.step()
	if len(d.Unreachable) != 0 || len(d.Nodes) != 1 || d.Nodes[0].Status != nil || !d.Nodes[0].SetTaints {
		t.Fatalf("after a renewed: %+v", d)
	}
	if got := w.tainted("a"); len(got) != 0 {
		t.Fatalf("a still tainted: %v", got)
	}
	if d := w.step(); len(d.Nodes) != 0 {
		t.Fatalf("a second pass wrote %+v", d.Nodes)
	}
}

func TestNodeLifecycleStartupGrace(t *testing.T) {
	w := newNLWorld(t)
	w.nodes["new"] = nlNode("new", "")
	w.tracker.sawNode("new", w.clk.Now()) // no Lease yet
	d := w.step()
	if got := w.elapsed(d.Next); got != time.Minute {
		t.Fatalf("a node without Lease is due after %s, want the 1m startup grace", got)
	}
	w.clk.Advance(time.Minute)
	d = w.step()
	if len(d.Nodes) != 1 || d.Nodes[0].Status == nil {
		t.Fatalf("after 1m: %+v", d)
	}
	if c := w.nodes["new"].GetStatus().GetConditions(); len(c) != 1 || c[0].GetReason() != "NodeStatusNeverUpdated" {
		t.Fatalf("conditions %v", c)
	}
	// Its Lease appears: that is a heartbeat.
	w.renew("new")
	if d := w.step(); len(d.Unreachable) != 0 {
		t.Fatalf("still unreachable after its Lease appeared: %v", d.Unreachable)
	}
}

func TestNodeLifecycleDisruption(t *testing.T) {
	w := newNLWorld(t, "a", "b")
	w.pods["p"] = nlPod("p", "a")
	w.clk.Advance(10 * time.Minute) // no Lease renewed at all
	d := w.step()
	if !d.Disrupted || len(d.Unreachable) != 2 {
		t.Fatalf("every node unreachable: disrupted=%v unreachable=%v", d.Disrupted, d.Unreachable)
	}
	if len(w.evicted) != 0 {
		t.Fatalf("evicted in disruption: %v", w.evicted)
	}
	for _, n := range []string{"a", "b"} {
		if got := w.tainted(n); !slices.Equal(got, []string{nlNoSchedule}) {
			t.Fatalf("%s taints in disruption: %v, want NoSchedule only", n, got)
		}
		if readyStatus(w.nodes[n]) != condUnknown {
			t.Fatalf("%s not marked Unknown", n)
		}
	}
	if IsPodReady(w.pods["p"]) {
		t.Fatal("pods of unreachable nodes stay ready in disruption")
	}

	// b comes back: a gets its NoExecute taint, and the eviction timeout
	// starts over from when disruption ended (the loop's EvictionsResumed).
	w.renew("b")
	w.resumed = w.clk.Now()
	d = w.step()
	if d.Disrupted || !slices.Equal(d.Unreachable, []string{"a"}) {
		t.Fatalf("after b is back: %+v", d)
	}
	if got := w.tainted("a"); !slices.Equal(got, []string{nlNoSchedule, nlNoExecute}) {
		t.Fatalf("a's taints: %v", got)
	}
	if len(w.evicted) != 0 {
		t.Fatalf("evicted at once after disruption: %v", w.evicted)
	}
	if got := d.Next.Sub(w.resumed); got != 40*time.Second {
		t.Fatalf("next pass %s after resuming, want 40s (b's grace; eviction after 5m)", got)
	}
	for range 30 {
		w.clk.Advance(10 * time.Second)
		w.renew("b")
		w.step()
	}
	if !slices.Equal(w.evicted, []string{"p"}) {
		t.Fatalf("evicted 5m after disruption ended: %v", w.evicted)
	}
}

func TestNodeLifecycleIgnoresDeletingAndRespectsAlreadyMarked(t *testing.T) {
	w := newNLWorld(t, "a", "b")
	deleting := nlPod("deleting", "a")
	deleting.Metadata.DeletionTimestamp = timestamppb.New(w.clk.Now())
	w.pods["deleting"] = deleting
	w.pods["done"] = nlPod("done", "a", func(p *corev1.Pod) { p.Status.Phase = podSucceeded })
	// a was already marked by an earlier leader.
	w.nodes["a"] = nlMarkUnknown(w.nodes["a"], w.clk.Now())
	w.nodes["a"].Spec.Taints, _ = nlWithTaints(nil, true, true, w.clk.Now())
	for range 5 {
		w.clk.Advance(10 * time.Second)
		w.renew("b")
	}
	d := w.step()
	if len(d.Nodes) != 0 {
		t.Fatalf("a marked node with nothing due: %+v", d.Nodes[0])
	}
	for range 30 {
		w.clk.Advance(10 * time.Second)
		w.renew("b")
		w.step()
	}
	if !slices.Equal(w.evicted, []string{"done"}) {
		t.Fatalf("evicted %v, want only the finished pod (the deleting one is on its way)", w.evicted)
	}
}

func TestDecideNodeLifecycleDoesNotModifyInputs(t *testing.T) {
	w := newNLWorld(t, "a", "b")
	w.nodes["a"].Spec.Taints = []*corev1.Taint{{Key: "x", Effect: "NoSchedule"}}
	w.pods["p"] = nlPod("p", "a")
	w.pods["q"] = nlPod("q", "a", nlTolerate(nlTaintUnreachable, "Exists", "", nil))
	w.clk.Advance(40*time.Second + 5*time.Minute)
	w.renew("b")
	before := map[string]proto.Message{}
	for k, n := range w.nodes {
		before["node/"+k] = proto.Clone(n)
	}
	for k, p := range w.pods {
		before["pod/"+k] = proto.Clone(p)
	}
	d := w.decide()
	if len(d.Nodes) != 1 || len(d.Nodes[0].Evict) != 1 || len(d.Nodes[0].PodsNotReady) != 1 {
		t.Fatalf("decision %+v", d)
	}
	for k, n := range w.nodes {
		if !proto.Equal(n, before["node/"+k]) {
			t.Errorf("node %s modified", k)
		}
	}
	for k, p := range w.pods {
		if !proto.Equal(p, before["pod/"+k]) {
			t.Errorf("pod %s modified", k)
		}
	}
}

// nlLeaseRenewer renews the Leases of the named nodes every 100ms in the
// test's place, until stopped.
type nlLeaseRenewer struct {
	mu    sync.Mutex // guards alive
	alive map[string]bool
}

func (r *nlLeaseRenewer) set(node string, alive bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alive[node] = alive
}

func (r *nlLeaseRenewer) run(ctx context.Context, t *testing.T, leases coordinationv1.LeasesClient) {
	for ctx.Err() == nil {
		r.mu.Lock()
		var live []string
		for n, ok := range r.alive {
			if ok {
				live = append(live, n)
			}
		}
		r.mu.Unlock()
		for _, n := range live {
			l := &coordinationv1.Lease{Metadata: &metav1.ObjectMeta{Name: n, Namespace: nlLeaseNamespace},
				Spec: &coordinationv1.LeaseSpec{HolderIdentity: proto.String(n), LeaseDurationSeconds: proto.Int32(40),
					RenewTime: timestamppb.Now()}}
			if _, err := leases.Update(ctx, &coordinationv1.UpdateLeaseRequest{Namespace: nlLeaseNamespace, Name: n, Body: l}); err != nil && ctx.Err() == nil {
				t.Logf("renew lease %s: %v", n, err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestNodeLifecycleAgainstCluster(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	nodes := corev1.NewNodesClient(c.Peers[1].Conn)
	pods := corev1.NewPodsClient(c.Peers[2].Conn)
	leases := coordinationv1.NewLeasesClient(c.Peers[1].Conn)
	for _, n := range []string{"live", "dead"} {
		node := schedNode(n, "2")
		created, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: node})
		if err != nil {
			t.Fatal(err)
		}
		node.Metadata = created.Metadata
		if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: n, Body: node}); err != nil {
			t.Fatal(err)
		}
		if _, err := leases.Create(ctx, &coordinationv1.CreateLeaseRequest{Namespace: nlLeaseNamespace, Body: &coordinationv1.Lease{
			Metadata: &metav1.ObjectMeta{Name: n}, Spec: &coordinationv1.LeaseSpec{HolderIdentity: proto.String(n), RenewTime: timestamppb.Now()}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The DaemonSet pod's owner exists, as it would.
	ds, err := appsv1.NewDaemonSetsClient(c.Peers[0].Conn).Create(ctx, &appsv1.CreateDaemonSetRequest{Namespace: "default", Body: &appsv1.DaemonSet{
		Metadata: &metav1.ObjectMeta{Name: "agent"},
		Spec: &appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "img"}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	mk := []*corev1.Pod{
		nlPod("evict-me", "dead"),
		nlPod("tolerant", "dead", nlTolerate(nlTaintUnreachable, "Exists", "NoExecute", nil)),
		nlPod("ds-pod", "dead", func(p *corev1.Pod) {
			p.Metadata.OwnerReferences = []*metav1.OwnerReference{NewControllerRef(ds.GetMetadata(), "apps/v1", "DaemonSet")}
		}),
		nlPod("elsewhere", "live"),
	}
	for _, p := range mk {
		st := p.Status
		p.Metadata.Uid, p.Status = "", nil
		created, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: p})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = st
		if _, err := pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: "default", Name: created.Metadata.Name, Body: created}); err != nil {
			t.Fatal(err)
		}
	}

	renewer := &nlLeaseRenewer{alive: map[string]bool{"live": true, "dead": true}}
	rctx, stopRenewing := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	go func() { defer close(renewDone); renewer.run(rctx, t, leases) }()
	t.Cleanup(func() { stopRenewing(); <-renewDone })

	cfg := DefaultNodeLifecycleConfig()
	cfg.NodeGracePeriod, cfg.NodeStartupGracePeriod, cfg.PodEvictionTimeout, cfg.MonitorPeriod = 2*time.Second, 2*time.Second, 3*time.Second, 500*time.Millisecond
	cfg.OrphanQuarantine = time.Second
	nl, err := NewNodeLifecycle(c.Peers[0].Conn, cfg, RealClock(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- nl.Run(lctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("node lifecycle: %v", err)
		}
	})

	getNode := func(name string) *corev1.Node {
		n, err := nodes.Get(ctx, &metav1.GetRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	unreachableTaints := func(n *corev1.Node) []string {
		var out []string
		for _, t := range n.GetSpec().GetTaints() {
			if t.GetKey() == nlTaintUnreachable {
				out = append(out, t.GetEffect())
			}
		}
		slices.Sort(out)
		return out
	}
	podExists := func(name string) bool {
		_, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		return err == nil
	}
	// An evicted pod is Terminating: no agent is left on the dead node to
	// stop it and remove it.
	podTerminating := func(name string) bool {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		return err == nil && p.GetMetadata().GetDeletionTimestamp() != nil
	}

	renewer.set("dead", false)
	c.WaitFor(20*time.Second, "dead node Ready=Unknown and tainted", func() bool {
		n := getNode("dead")
		for _, cond := range n.GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && (cond.GetStatus() != condUnknown || cond.GetReason() != "NodeStatusUnknown" ||
				cond.GetMessage() != "Kubelet stopped posting node status.") {
				return false
			}
		}
		return slices.Equal(unreachableTaints(n), []string{nlNoExecute, nlNoSchedule})
	})
	c.WaitFor(20*time.Second, "tolerant pod marked not ready", func() bool {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "tolerant"})
		return err == nil && !IsPodReady(p)
	})
	c.WaitFor(20*time.Second, "evict-me evicted", func() bool { return podTerminating("evict-me") })
	for _, name := range []string{"tolerant", "ds-pod", "elsewhere"} {
		if !podExists(name) || podTerminating(name) {
			t.Errorf("pod %s was evicted", name)
		}
	}
	if n := getNode("live"); readyStatus(n) != condTrue || len(unreachableTaints(n)) != 0 {
		t.Errorf("the live node was touched: %v %v", n.GetStatus().GetConditions(), n.GetSpec().GetTaints())
	}
	events := corev1.NewEventsClient(c.Peers[0].Conn)
	c.WaitFor(10*time.Second, "NodeNotReady and TaintManagerEviction events", func() bool {
		list, err := events.List(ctx, &metav1.ListRequest{})
		if err != nil {
			return false
		}
		var nodeEv, podEv bool
		for _, e := range list.GetItems() {
			io := e.GetInvolvedObject()
			nodeEv = nodeEv || (e.GetReason() == "NodeNotReady" && io.GetKind() == "Node" && io.GetName() == "dead")
			podEv = podEv || (e.GetReason() == "TaintManagerEviction" && io.GetKind() == "Pod" && io.GetName() == "evict-me")
		}
		return nodeEv && podEv
	})

	renewer.set("dead", true)
	c.WaitFor(20*time.Second, "taints removed once the Lease renews", func() bool {
		return len(unreachableTaints(getNode("dead"))) == 0
	})
	if !podExists("tolerant") || !podExists("ds-pod") {
		t.Error("pods that stayed through the outage are gone")
	}

	// A node removed from the API takes its pods with it, the Terminating
	// one included: nothing would ever finish them.
	if _, err := nodes.Delete(ctx, &metav1.DeleteRequest{Name: "dead"}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(20*time.Second, "the deleted node's pods removed", func() bool {
		return !podExists("evict-me") && !podExists("tolerant") && !podExists("ds-pod")
	})
	if !podExists("elsewhere") {
		t.Error("a pod on a node still there was removed")
	}
}

func TestOrphanedPodsWaitOutTheQuarantine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := 40 * time.Second
	pods := []*corev1.Pod{nlPod("b", "gone"), nlPod("a", "gone"), nlPod("kept", "here"), nlPod("pending", "")}
	for i, p := range pods {
		p.Metadata.Uid = fmt.Sprint("uid-", i)
	}
	exists := func(n string) bool { return n == "here" }
	seen := map[string]time.Time{}

	due, next := OrphanedPods(pods, exists, seen, t0, q)
	if len(due) != 0 || !next.Equal(t0.Add(q)) || len(seen) != 2 {
		t.Fatalf("first sight: due %v, next %v, seen %v; want none due, next at +40s, 2 seen", due, next, seen)
	}
	due, next = OrphanedPods(pods, exists, seen, t0.Add(q-time.Millisecond), q)
	if len(due) != 0 || !next.Equal(t0.Add(q)) {
		t.Fatalf("just before the quarantine ends: due %v, next %v", due, next)
	}
	due, next = OrphanedPods(pods, exists, seen, t0.Add(q), q)
	if len(due) != 2 || due[0].GetMetadata().GetName() != "a" || due[1].GetMetadata().GetName() != "b" || !next.IsZero() {
		t.Fatalf("quarantine over: due %v, next %v; want a and b, sorted, nothing waiting", due, next)
	}
	// A pod whose node came (back) is forgotten: a later orphaning starts over.
	exists = func(n string) bool { return true }
	if due, _ := OrphanedPods(pods, exists, seen, t0.Add(2*q), q); len(due) != 0 || len(seen) != 0 {
		t.Fatalf("nodes back: due %v, seen %v; want none", due, seen)
	}
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// podEvent is one event of a pod watch.
type podEvent struct {
	typ string
	pod *corev1.Pod
}

// podRecorder keeps every event of one pod watch in the order the server sent
// them, which is the order of the writes: a test reads from it what happened
// before what.
type podRecorder struct {
	mu     sync.Mutex // guards events and err
	events []podEvent
	err    error // why the stream ended before the test did
}

// recordPods watches the default namespace's pods matching selector from the
// current resourceVersion on, so that every later change is recorded however
// late the server sets up the watch, until the test ends.
func (c *cluster) recordPods(ctx context.Context, pods corev1.PodsClient, selector string) *podRecorder {
	c.t.Helper()
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: selector})
	if err != nil {
		c.t.Fatalf("list pods %s: %v", selector, err)
	}
	if n := len(list.GetItems()); n > 0 {
		c.t.Fatalf("%d pods match %s before the test made any", n, selector)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := pods.Watch(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: selector,
		ResourceVersion: list.GetMetadata().GetResourceVersion()})
	if err != nil {
		cancel()
		c.t.Fatalf("watch pods %s: %v", selector, err)
	}
	r := &podRecorder{}
	done := make(chan struct{})
	c.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			ev, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					r.mu.Lock()
					r.err = err
					r.mu.Unlock()
				}
				return
			}
			r.mu.Lock()
			r.events = append(r.events, podEvent{ev.GetType(), ev.GetObject()})
			r.mu.Unlock()
		}
	}()
	return r
}

// snapshot returns the events so far, or an error if the watch broke (the
// events would then have a gap).
func (r *podRecorder) snapshot() ([]podEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, fmt.Errorf("the pod watch ended: %w", r.err)
	}
	return slices.Clone(r.events), nil
}

// targetNode is the node a pod is bound to or, while unbound, the one a
// DaemonSet's node affinity (metadata.name In [node]) meant it for.
func targetNode(p *corev1.Pod) string {
	if n := p.GetSpec().GetNodeName(); n != "" {
		return n
	}
	for _, t := range p.GetSpec().GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().GetNodeSelectorTerms() {
		for _, r := range t.GetMatchFields() {
			if r.GetKey() == "metadata.name" && r.GetOperator() == "In" && len(r.GetValues()) == 1 {
				return r.GetValues()[0]
			}
		}
	}
	return ""
}

// controlledBy reports whether p's controller reference is the object of kind
// and uid.
func controlledBy(p *corev1.Pod, kind, uid string) bool {
	for _, r := range p.GetMetadata().GetOwnerReferences() {
		if r.GetController() {
			return r.GetKind() == kind && r.GetUid() == uid
		}
	}
	return false
}

// daemonPodsOn checks that the pods labelled app=app are exactly one Running
// and Ready pod controlled by the DaemonSet uid on each node of want, and no
// other, and returns their names by node.
func daemonPodsOn(ctx context.Context, pods corev1.PodsClient, app, uid string, want ...string) (map[string]string, error) {
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	byNode := map[string]string{}
	var problems []string
	for _, p := range list.GetItems() {
		name, node := p.GetMetadata().GetName(), targetNode(p)
		switch {
		case !controlledBy(p, "DaemonSet", uid):
			problems = append(problems, fmt.Sprintf("%s is not controlled by the DaemonSet: %v", name, p.GetMetadata().GetOwnerReferences()))
		case !slices.Contains(want, node):
			problems = append(problems, fmt.Sprintf("%s is on or meant for node %q", name, node))
		case byNode[node] != "":
			problems = append(problems, fmt.Sprintf("%s and %s both on %s", byNode[node], name, node))
		case p.GetSpec().GetNodeName() == "" || p.GetStatus().GetPhase() != "Running" || !podReady(p) ||
			p.GetMetadata().GetDeletionTimestamp() != nil:
			problems = append(problems, fmt.Sprintf("%s on %q: phase %s, ready %v, deleting %v", name, p.GetSpec().GetNodeName(),
				p.GetStatus().GetPhase(), podReady(p), p.GetMetadata().GetDeletionTimestamp() != nil))
		}
		byNode[node] = name
	}
	for _, n := range want {
		if byNode[n] == "" {
			problems = append(problems, "no pod on "+n)
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return byNode, nil
}

// TestDaemonSetCoversNodeAddedLater: a DaemonSet created over two hollow nodes
// runs exactly one Running and Ready pod it controls on each; a node joining
// later gets its own pod, while a node carrying a NoSchedule taint the
// DaemonSet does not tolerate gets none, and the first two pods stay as they
// were. A watch started before the DaemonSet checks that no pod was ever made
// for the tainted node and none was deleted.
func TestDaemonSetCoversNodeAddedLater(t *testing.T) {
	c := newCluster(t, 3)
	c.startHollow(2, "da")
	c.waitNodes(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(1))
	nodes := corev1.NewNodesClient(c.conn(0))
	dsets := appsv1.NewDaemonSetsClient(c.conn(2))
	rec := c.recordPods(ctx, pods, "app=agent")

	manifest := `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "registry.local/agent:v1", resources: {requests: {cpu: 50m}}}]
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ds, err := dsets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	uid := ds.GetMetadata().GetUid()
	var first map[string]string
	c.eventually(30*time.Second, "one Running pod of the DaemonSet on each of da-0 and da-1", func() error {
		first, err = daemonPodsOn(ctx, pods, "agent", uid, "da-0", "da-1")
		return err
	})

	// The tainted node exists, tainted, before its agent registers it (as with
	// the kubelet's --register-with-taints): the agent adopts it as it is.
	taint := &corev1.Taint{Key: "dedicated", Value: "infra", Effect: "NoSchedule"}
	if _, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: &corev1.Node{ApiVersion: "v1", Kind: "Node",
		Metadata: &metav1.ObjectMeta{Name: "dt-0"}, Spec: &corev1.NodeSpec{Taints: []*corev1.Taint{taint}}}}); err != nil {
		t.Fatalf("create the tainted node: %v", err)
	}
	c.startHollow(1, "dt", "--hollow-node-cidr=10.203.0.0/16")
	c.waitNodes(3)
	n, err := nodes.Get(ctx, &metav1.GetRequest{Name: "dt-0"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(n.GetSpec().GetTaints(), func(tn *corev1.Taint) bool {
		return tn.GetKey() == "dedicated" && tn.GetValue() == "infra" && tn.GetEffect() == "NoSchedule"
	}) {
		t.Fatalf("dt-0 lost its taint when its agent registered it: %v", n.GetSpec().GetTaints())
	}

	// The new node joins after the tainted one is Ready: the pass that makes
	// its pod sees the tainted node too, and would make one there as well.
	c.startHollow(1, "db", "--hollow-node-cidr=10.204.0.0/16")
	c.waitNodes(4)
	var all map[string]string
	c.eventually(30*time.Second, "one Running pod of the DaemonSet on each of da-0, da-1 and db-0, none on dt-0", func() error {
		all, err = daemonPodsOn(ctx, pods, "agent", uid, "da-0", "da-1", "db-0")
		return err
	})
	for _, node := range []string{"da-0", "da-1"} {
		if all[node] != first[node] {
			t.Errorf("the pod on %s changed from %s to %s when nodes joined", node, first[node], all[node])
		}
	}
	c.eventually(30*time.Second, "DaemonSet status counts 3 nodes", func() error {
		ds, err := dsets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "agent"})
		if err != nil {
			return err
		}
		st := ds.GetStatus()
		if st.GetDesiredNumberScheduled() != 3 || st.GetCurrentNumberScheduled() != 3 || st.GetNumberReady() != 3 ||
			st.GetUpdatedNumberScheduled() != 3 || st.GetNumberMisscheduled() != 0 {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})

	events, err := rec.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]string{} // pod -> the node it was made for
	for _, ev := range events {
		name, node := ev.pod.GetMetadata().GetName(), targetNode(ev.pod)
		if node == "dt-0" {
			t.Errorf("%s %s: a pod for the tainted node dt-0", ev.typ, name)
		}
		if ev.typ == "DELETED" || ev.pod.GetMetadata().GetDeletionTimestamp() != nil {
			t.Errorf("%s %s on %s: a DaemonSet pod was deleted", ev.typ, name, node)
		}
		if ev.typ == "ADDED" {
			created[name] = node
		}
	}
	if len(created) != 3 || created[all["db-0"]] != "db-0" {
		t.Errorf("the watch saw pods created %v, want one each for da-0, da-1 and db-0 (%v)", created, all)
	}
}

// TestStatefulSetOrderedReadyCreateAndReverseScaleDown: a StatefulSet web of 3
// replicas under OrderedReady, on hollow nodes slow to start pods, creates
// web-0, web-1 and web-2 one at a time: a watch started before the StatefulSet
// shows each added only once every lower ordinal was Running and Ready. Each
// pod mounts its own claim data-web-<i>. Scaled to 1, it deletes web-2, leaves
// web-1 alone while web-2 is still terminating, deletes web-1 once web-2 is
// gone, never touches web-0 and keeps all three claims.
//
// Hollow nodes stop a pod at once, so every pod carries a finalizer the test
// holds, as a slow kubelet would: a deleted pod stays terminating until the
// test lets it go.
func TestStatefulSetOrderedReadyCreateAndReverseScaleDown(t *testing.T) {
	c := newCluster(t, 3)
	c.startHollow(2, "sa", "--hollow-start-delay=500ms")
	c.waitNodes(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(1))
	ssets := appsv1.NewStatefulSetsClient(c.conn(2))
	pvcs := corev1.NewPersistentVolumeClaimsClient(c.conn(0))
	rec := c.recordPods(ctx, pods, "app=web")

	manifest := `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, finalizers: [` + holdFinalizer + `]}
    spec:
      containers:
      - name: web
        image: "registry.local/web:v1"
        resources: {requests: {cpu: 100m}}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ss, err := ssets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	uid := ss.GetMetadata().GetUid()
	names := []string{"web-0", "web-1", "web-2"}
	c.eventually(30*time.Second, "web-0, web-1 and web-2 Running", func() error {
		running, err := runningPods(ctx, pods, "web")
		if err != nil || len(running) != 3 || running["web-0"] == "" || running["web-1"] == "" || running["web-2"] == "" {
			return fmt.Errorf("running %v (%v)", running, err)
		}
		return nil
	})
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, p := range list.GetItems() {
		name := p.GetMetadata().GetName()
		uids[name] = p.GetMetadata().GetUid()
		if !controlledBy(p, "StatefulSet", uid) {
			t.Errorf("%s is not controlled by the StatefulSet: %v", name, p.GetMetadata().GetOwnerReferences())
		}
		if !slices.ContainsFunc(p.GetSpec().GetVolumes(), func(v *corev1.Volume) bool {
			return v.GetName() == "data" && v.GetPersistentVolumeClaim().GetClaimName() == "data-"+name
		}) {
			t.Errorf("%s does not mount claim data-%s: %v", name, name, p.GetSpec().GetVolumes())
		}
		if p.GetSpec().GetHostname() != name || p.GetSpec().GetSubdomain() != "web" {
			t.Errorf("%s: hostname %q, subdomain %q", name, p.GetSpec().GetHostname(), p.GetSpec().GetSubdomain())
		}
	}
	claimsExist := func() error {
		cl, err := pvcs.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return err
		}
		have := map[string]*corev1.PersistentVolumeClaim{}
		for _, pvc := range cl.GetItems() {
			have[pvc.GetMetadata().GetName()] = pvc
		}
		for _, n := range names {
			pvc := have["data-"+n]
			switch {
			case pvc == nil:
				return fmt.Errorf("claim data-%s missing (claims: %v)", n, keys(have))
			case pvc.GetMetadata().GetDeletionTimestamp() != nil:
				return fmt.Errorf("claim data-%s is being deleted", n)
			case pvc.GetMetadata().GetLabels()["app"] != "web":
				return fmt.Errorf("claim data-%s lacks the selector's labels: %v", n, pvc.GetMetadata().GetLabels())
			}
		}
		return nil
	}
	if err := claimsExist(); err != nil {
		t.Fatal(err)
	}

	events, err := rec.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOrderedCreation(events, names); err != nil {
		t.Errorf("OrderedReady broken: %v\n%s", err, eventLog(events))
	}
	scaleFrom := len(events)

	if out := c.ctl("scale", "statefulset/web", "--replicas=1"); !strings.Contains(out, "statefulset.apps/web scaled") {
		t.Fatalf("scale: %q", out)
	}
	getPod := func(name string) (*corev1.Pod, error) {
		return pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
	}
	// The status counts a terminating pod as neither current nor updated: once
	// it shows fewer than 3 updated of 3, the controller has made a pass over
	// web-2 terminating, the pass that would have deleted web-1 too.
	c.eventually(30*time.Second, "web-2 terminating, and the StatefulSet status showing it", func() error {
		p, err := getPod("web-2")
		if err != nil || p.GetMetadata().GetDeletionTimestamp() == nil {
			return fmt.Errorf("web-2: %s (%v)", podState(p), err)
		}
		ss, err := ssets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
		if err != nil {
			return err
		}
		if st := ss.GetStatus(); st.GetObservedGeneration() != ss.GetMetadata().GetGeneration() ||
			st.GetReplicas() != 3 || st.GetUpdatedReplicas() >= 3 {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	for _, name := range []string{"web-0", "web-1"} {
		if p, err := getPod(name); err != nil || p.GetMetadata().GetDeletionTimestamp() != nil {
			t.Fatalf("%s while web-2 is still terminating: %s (%v)", name, podState(p), err)
		}
	}
	c.releasePod(ctx, pods, "web-2")
	c.eventually(30*time.Second, "web-2 gone and web-1 terminating", func() error {
		if p, err := getPod("web-2"); status.Code(err) != codes.NotFound {
			return fmt.Errorf("web-2: %s (%v)", podState(p), err)
		}
		if p, err := getPod("web-1"); err != nil || p.GetMetadata().GetDeletionTimestamp() == nil {
			return fmt.Errorf("web-1: %s (%v)", podState(p), err)
		}
		return nil
	})
	c.releasePod(ctx, pods, "web-1")
	c.eventually(30*time.Second, "only web-0 left, and the status says so", func() error {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		var left []string
		for _, p := range list.GetItems() {
			left = append(left, p.GetMetadata().GetName())
		}
		if len(left) != 1 || left[0] != "web-0" {
			return fmt.Errorf("pods %v", left)
		}
		ss, err := ssets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
		if err != nil {
			return err
		}
		if st := ss.GetStatus(); st.GetReplicas() != 1 || st.GetReadyReplicas() != 1 {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	events, err = rec.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkReverseDeletion(events[scaleFrom:], uids); err != nil {
		t.Errorf("scale-down order broken: %v\n%s", err, eventLog(events[scaleFrom:]))
	}
	// The claims outlive their pods (the default retention policy, Retain):
	// the status above was written by a pass after both deletions, the one
	// that would have deleted their claims.
	if err := claimsExist(); err != nil {
		t.Errorf("after the scale-down: %v", err)
	}
}

// holdFinalizer keeps a deleted pod terminating until releasePod removes it.
const holdFinalizer = "e2e.rafter.dev/hold"

// releasePod removes holdFinalizer from a pod, letting its deletion finish.
func (c *cluster) releasePod(ctx context.Context, pods corev1.PodsClient, name string) {
	c.t.Helper()
	c.eventually(10*time.Second, "release "+name, func() error {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		if err != nil {
			return err
		}
		p.Metadata.Finalizers = slices.DeleteFunc(p.Metadata.Finalizers, func(f string) bool { return f == holdFinalizer })
		_, err = pods.Update(ctx, &corev1.UpdatePodRequest{Namespace: "default", Name: name, Body: p})
		return err // a Conflict is retried on a fresh read
	})
}

// checkOrderedCreation checks, over a watch's events in write order, that each
// pod of names was first added only while every pod before it was Running,
// Ready and not terminating, and that all of them were added.
func checkOrderedCreation(events []podEvent, names []string) error {
	latest := map[string]*corev1.Pod{}
	added := map[string]bool{}
	for i, ev := range events {
		name := ev.pod.GetMetadata().GetName()
		if ev.typ == "ADDED" && !added[name] {
			added[name] = true
			k := slices.Index(names, name)
			if k < 0 {
				return fmt.Errorf("event %d: unexpected pod %s added", i, name)
			}
			for _, before := range names[:k] {
				p := latest[before]
				if p == nil || p.GetStatus().GetPhase() != "Running" || !podReady(p) || p.GetMetadata().GetDeletionTimestamp() != nil {
					return fmt.Errorf("event %d: %s added while %s was %s", i, name, before, podState(p))
				}
			}
		}
		if ev.typ == "DELETED" {
			delete(latest, name)
		} else {
			latest[name] = ev.pod
		}
	}
	for _, n := range names {
		if !added[n] {
			return fmt.Errorf("the watch never saw %s added", n)
		}
	}
	return nil
}

// checkReverseDeletion checks, over the events of a scale-down from 3 to 1,
// that web-2 started terminating and was gone (DELETED) before web-1 started
// terminating, that both went, and that web-0 (of the uid in uids) was neither
// touched nor replaced.
func checkReverseDeletion(events []podEvent, uids map[string]string) error {
	firstSign := map[string]int{} // pod -> index of its first deletionTimestamp or DELETED
	gone := map[string]int{}      // pod -> index of its DELETED
	for i, ev := range events {
		md := ev.pod.GetMetadata()
		name := md.GetName()
		if md.GetUid() != uids[name] {
			return fmt.Errorf("event %d: %s %s with uid %s, a new pod (had %s)", i, ev.typ, name, md.GetUid(), uids[name])
		}
		if ev.typ == "DELETED" || md.GetDeletionTimestamp() != nil {
			if _, seen := firstSign[name]; !seen {
				firstSign[name] = i
			}
		}
		if ev.typ == "DELETED" {
			gone[name] = i
		}
	}
	if i, ok := firstSign["web-0"]; ok {
		return fmt.Errorf("event %d: web-0 is being deleted", i)
	}
	g2, gone2 := gone["web-2"]
	_, gone1 := gone["web-1"]
	s2, s1 := firstSign["web-2"], firstSign["web-1"] // set when gone is
	switch {
	case !gone2 || !gone1:
		return fmt.Errorf("web-2 or web-1 not seen gone (first signs %v, gone %v)", firstSign, gone)
	case s2 == g2:
		return fmt.Errorf("web-2 was never seen terminating before it went (event %d): nothing held it", g2)
	case s1 < g2:
		return fmt.Errorf("web-1 started terminating at event %d, before web-2 was gone at event %d", s1, g2)
	}
	return nil
}

func podState(p *corev1.Pod) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprintf("phase %s, ready %v, deleting %v", p.GetStatus().GetPhase(), podReady(p), p.GetMetadata().GetDeletionTimestamp() != nil)
}

func eventLog(events []podEvent) string {
	var b strings.Builder
	for i, ev := range events {
		fmt.Fprintf(&b, "%3d %-8s %s rv=%s %s\n", i, ev.typ, ev.pod.GetMetadata().GetName(),
			ev.pod.GetMetadata().GetResourceVersion(), podState(ev.pod))
	}
	return b.String()
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

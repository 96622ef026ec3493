package ctrl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// startSetsLoops runs the Sets controllers and the scheduler against peer 0's
// API for the duration of the test.
func startSetsLoops(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	sets, err := NewSets(c.Peers[0].Conn, RealClock(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	scfg := DefaultSchedulerConfig()
	scfg.Logger, scfg.RetryUnschedulable = discardLogger(), 500*time.Millisecond
	s, err := NewScheduler(c.Peers[0].Conn, scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	g.Go(func() error { return sets.Run(ctx) })
	g.Go(func() error { return s.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("loops: %v", err)
		}
	})
}

// setsKubelet stands in for the node agents, which do not run here: it marks
// every bound pod Running and Ready, and deletes (grace period 0) every pod
// marked for deletion, as an agent does once its containers stopped.
func setsKubelet(t *testing.T, conn grpc.ClientConnInterface) {
	t.Helper()
	pods := corev1.NewPodsClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if list, err := pods.List(ctx, &metav1.ListRequest{}); err == nil {
				for _, p := range list.GetItems() {
					if md := p.GetMetadata(); md.GetDeletionTimestamp() != nil {
						zero := int64(0)
						_, _ = pods.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(), GracePeriodSeconds: &zero,
							Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
						continue
					}
					if p.GetSpec().GetNodeName() == "" || (p.GetStatus().GetPhase() == podRunning && IsPodReady(p)) {
						continue
					}
					p.Status.Phase = podRunning
					p.Status.Conditions = append(slices.DeleteFunc(p.Status.Conditions, func(c *corev1.PodCondition) bool { return c.GetType() == "Ready" }),
						&corev1.PodCondition{Type: "Ready", Status: condTrue, LastTransitionTime: timestamppb.Now()})
					// A conflict means the pod moved on: the next round sees it.
					_, _ = pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: p.GetMetadata().GetNamespace(), Name: p.GetMetadata().GetName(), Body: p})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// setsAddNode registers a Ready node.
func setsAddNode(t *testing.T, conn grpc.ClientConnInterface, name string) {
	t.Helper()
	ctx := context.Background()
	nodes := corev1.NewNodesClient(conn)
	n := schedNode(name, "4")
	created, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: n})
	if err != nil {
		t.Fatal(err)
	}
	n.Metadata = created.Metadata
	if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: name, Body: n}); err != nil {
		t.Fatal(err)
	}
}

// setsRetry retries f on Conflict (gRPC Aborted: a status write raced it).
func setsRetry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if status.Code(err) != codes.Aborted || time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

func setsOwnedBy(p *corev1.Pod, kind, name string) bool {
	ref := controllerRefOf(p.GetMetadata())
	return ref.GetKind() == kind && ref.GetName() == name
}

func TestSetsDaemonSetCoversNodes(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	setsAddNode(t, c.Peers[1].Conn, "n0")
	setsAddNode(t, c.Peers[1].Conn, "n1")
	startSetsLoops(t, c)
	setsKubelet(t, c.Peers[2].Conn)

	pods := corev1.NewPodsClient(c.Peers[1].Conn)
	dsets := appsv1.NewDaemonSetsClient(c.Peers[2].Conn)
	lbl := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{Metadata: &metav1.ObjectMeta{Name: "agent", Namespace: "default"},
		Spec: &appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbl},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "agent", Image: "agent:1"}}}}}}
	if _, err := dsets.Create(ctx, &appsv1.CreateDaemonSetRequest{Namespace: "default", Body: ds}); err != nil {
		t.Fatal(err)
	}

	// covered reports whether exactly the given nodes run one Ready pod of the
	// DaemonSet each, with image.
	covered := func(image string, want ...string) func() bool {
		return func() bool {
			list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default"})
			if err != nil {
				return false
			}
			var got []string
			for _, p := range list.GetItems() {
				if !setsOwnedBy(p, "DaemonSet", "agent") {
					continue
				}
				if !IsPodReady(p) || p.GetSpec().GetContainers()[0].GetImage() != image {
					return false
				}
				got = append(got, p.GetSpec().GetNodeName())
			}
			slices.Sort(got)
			return slices.Equal(got, want)
		}
	}
	statusIs := func(desired, ready, updated int32) func() bool {
		return func() bool {
			d, err := dsets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "agent"})
			st := d.GetStatus()
			return err == nil && st.GetDesiredNumberScheduled() == desired && st.GetCurrentNumberScheduled() == desired &&
				st.GetNumberReady() == ready && st.GetNumberAvailable() == ready && st.GetUpdatedNumberScheduled() == updated &&
				st.GetNumberMisscheduled() == 0 && st.GetObservedGeneration() == d.GetMetadata().GetGeneration()
		}
	}
	c.WaitFor(20*time.Second, "a ready pod on n0 and n1", covered("agent:1", "n0", "n1"))
	c.WaitFor(10*time.Second, "status 2/2", statusIs(2, 2, 2))

	setsAddNode(t, c.Peers[2].Conn, "n2")
	c.WaitFor(20*time.Second, "a ready pod on n0, n1 and the new n2", covered("agent:1", "n0", "n1", "n2"))
	c.WaitFor(10*time.Second, "status 3/3", statusIs(3, 3, 3))

	// A rolling update replaces every pod, one node at a time.
	setsRetry(t, "update the DaemonSet", func() error {
		cur, err := dsets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "agent"})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "agent:2"
		_, err = dsets.Update(ctx, &appsv1.UpdateDaemonSetRequest{Namespace: "default", Name: "agent", Body: cur})
		return err
	})
	c.WaitFor(30*time.Second, "agent:2 on every node", covered("agent:2", "n0", "n1", "n2"))
	c.WaitFor(10*time.Second, "status 3/3 updated", statusIs(3, 3, 3))

	// Events name the pods created.
	events := corev1.NewEventsClient(c.Peers[0].Conn)
	c.WaitFor(10*time.Second, "SuccessfulCreate events", func() bool {
		list, err := events.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range list.GetItems() {
			if e.GetReason() == "SuccessfulCreate" && e.GetInvolvedObject().GetKind() == "DaemonSet" &&
				e.GetSource().GetComponent() == "daemonset-controller" {
				return true
			}
		}
		return false
	})
}

// setsPodLog records a namespace's pod watch events in order.
type setsPodLog struct {
	mu     sync.Mutex // guards events
	events []setsPodEvent
}

type setsPodEvent struct {
	typ, name string
	ready     bool
}

func (l *setsPodLog) snapshot() []setsPodEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// watchPods records every pod event of namespace ns from now on.
func watchPods(t *testing.T, conn grpc.ClientConnInterface, ns string) *setsPodLog {
	t.Helper()
	pods := corev1.NewPodsClient(conn)
	lw := NewGRPCListWatcher(pods.List, pods.Watch, &metav1.ListRequest{Namespace: ns})
	ctx, cancel := context.WithCancel(context.Background())
	_, rv, err := lw.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	stream, err := lw.Watch(ctx, rv)
	if err != nil {
		t.Fatal(err)
	}
	log := &setsPodLog{}
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				done <- err
				return
			}
			if ev.Type == EventBookmark {
				continue
			}
			log.mu.Lock()
			log.events = append(log.events, setsPodEvent{typ: ev.Type, name: ev.Object.GetMetadata().GetName(), ready: IsPodReady(ev.Object)})
			log.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
			t.Errorf("pod watch ended early: %v", err)
		}
	})
	return log
}

func TestSetsStatefulSetOrderedAndScaledDown(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := context.Background()
	for i := range 3 {
		setsAddNode(t, c.Peers[1].Conn, fmt.Sprintf("n%d", i))
	}
	log := watchPods(t, c.Peers[2].Conn, "default")
	startSetsLoops(t, c)
	setsKubelet(t, c.Peers[2].Conn)

	ssets := appsv1.NewStatefulSetsClient(c.Peers[1].Conn)
	pvcs := corev1.NewPersistentVolumeClaimsClient(c.Peers[2].Conn)
	pods := corev1.NewPodsClient(c.Peers[0].Conn)
	lbl := map[string]string{"app": "web"}
	ss := &appsv1.StatefulSet{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.StatefulSetSpec{Replicas: proto.Int32(3), ServiceName: "web", Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbl},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1",
					VolumeMounts: []*corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}}}},
			VolumeClaimTemplates: []*corev1.PersistentVolumeClaim{{Metadata: &metav1.ObjectMeta{Name: "data"},
				Spec: &corev1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
					Resources: &corev1.VolumeResourceRequirements{Requests: map[string]*structpb.Value{"storage": structpb.NewStringValue("1Gi")}}}}}}}
	if _, err := ssets.Create(ctx, &appsv1.CreateStatefulSetRequest{Namespace: "default", Body: ss}); err != nil {
		t.Fatal(err)
	}
	readyStatus := func(replicas int32) func() bool {
		return func() bool {
			cur, err := ssets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
			st := cur.GetStatus()
			return err == nil && st.GetReplicas() == replicas && st.GetReadyReplicas() == replicas &&
				st.GetUpdatedReplicas() == replicas && st.GetCurrentRevision() == st.GetUpdateRevision() && st.GetUpdateRevision() != "" &&
				st.GetObservedGeneration() == cur.GetMetadata().GetGeneration()
		}
	}
	c.WaitFor(30*time.Second, "web-0..2 Ready", readyStatus(3))

	// Strict order: web-(i+1) is added only after web-i was seen Ready.
	events := log.snapshot()
	readyAt := map[string]int{}
	for i, e := range events {
		if _, seen := readyAt[e.name]; !seen && e.ready {
			readyAt[e.name] = i
		}
	}
	for i, e := range events {
		if e.typ != EventAdded {
			continue
		}
		var ord int
		if _, err := fmt.Sscanf(e.name, "web-%d", &ord); err != nil {
			t.Fatalf("unexpected pod %q", e.name)
		}
		if ord == 0 {
			continue
		}
		prev := fmt.Sprintf("web-%d", ord-1)
		if at, ok := readyAt[prev]; !ok || at > i {
			t.Fatalf("%s was created (event %d) before %s was Ready (event %d): %v", e.name, i, prev, at, events)
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("web-%d", i)
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		claim := fmt.Sprintf("data-web-%d", i)
		if p.GetSpec().GetHostname() != name || p.GetSpec().GetSubdomain() != "web" || p.GetMetadata().GetLabels()[StatefulSetPodNameLabel] != name ||
			p.GetSpec().GetVolumes()[0].GetPersistentVolumeClaim().GetClaimName() != claim {
			t.Fatalf("pod %s: %v", name, p)
		}
		if _, err := pvcs.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: claim}); err != nil {
			t.Fatalf("claim %s: %v", claim, err)
		}
	}

	// Scale to 1: web-2 goes, then web-1; their claims stay.
	setsRetry(t, "scale to 1", func() error {
		cur, err := ssets.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
		if err != nil {
			return err
		}
		cur.Spec.Replicas = proto.Int32(1)
		_, err = ssets.Update(ctx, &appsv1.UpdateStatefulSetRequest{Namespace: "default", Name: "web", Body: cur})
		return err
	})
	c.WaitFor(30*time.Second, "only web-0 left", readyStatus(1))
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(list.GetItems()); !slices.Equal(got, []string{"web-0"}) {
		t.Fatalf("pods = %v, want web-0", got)
	}
	var deleted []string
	for _, e := range log.snapshot() {
		if e.typ == EventDeleted {
			deleted = append(deleted, e.name)
		}
	}
	if !slices.Equal(deleted, []string{"web-2", "web-1"}) {
		t.Fatalf("deleted %v, want web-2 then web-1", deleted)
	}
	claims, err := pvcs.List(ctx, &metav1.ListRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(claims.GetItems()); !slices.Equal(got, []string{"data-web-0", "data-web-1", "data-web-2"}) {
		t.Fatalf("claims = %v, want all three kept", got)
	}
}

func TestSetsExpectations(t *testing.T) {
	clk := newFakeClock()
	e := newSetsExpectations(clk)
	if !e.satisfied("ns/a") {
		t.Fatal("a key never expected is not satisfied")
	}

	// Counted: a DaemonSet's creates and deletes.
	e.expect("ns/a", 2, 1, nil)
	e.observeCount("ns/a", true)
	e.observeCount("ns/a", false)
	if e.satisfied("ns/a") {
		t.Fatal("satisfied with one create still unseen")
	}
	e.lower("ns/a", 1, 0, nil) // that create failed
	if !e.satisfied("ns/a") {
		t.Fatal("not satisfied once every write was seen or given back")
	}

	// Named: a StatefulSet's pods and claims; other keys are not disturbed.
	e.expect("ns/web", 0, 0, []string{"+pvc ns/data-web-0", "+pod ns/web-0"})
	e.expect("ns/db", 0, 0, []string{"-pod ns/db-1"})
	e.observeName("+pod ns/web-0")
	e.observeName("+pod ns/other")
	if e.satisfied("ns/web") {
		t.Fatal("satisfied while the claim is unseen")
	}
	e.observeName("+pvc ns/data-web-0")
	if !e.satisfied("ns/web") || e.satisfied("ns/db") {
		t.Fatal("web should be satisfied, db not")
	}

	// A new pass replaces the old expectations; forget drops them.
	e.expect("ns/db", 0, 0, []string{"+pod ns/db-1"})
	e.observeName("-pod ns/db-1") // the old pass's token is gone
	if e.satisfied("ns/db") {
		t.Fatal("the replaced pass's token satisfied the new one")
	}
	e.forget("ns/db")
	if !e.satisfied("ns/db") || len(e.tokens) != 0 {
		t.Fatalf("forget left %v", e.tokens)
	}

	// Writes that never show stop blocking after expectationTimeout.
	e.expect("ns/lost", 1, 0, []string{"+pod ns/lost-0"})
	clk.Advance(expectationTimeout)
	if e.satisfied("ns/lost") {
		t.Fatal("gave up before the timeout")
	}
	clk.Advance(time.Millisecond)
	if !e.satisfied("ns/lost") || len(e.tokens) != 0 {
		t.Fatal("still waiting after the timeout")
	}
}

// setsNoConn is an API connection for tests that never use it.
type setsNoConn struct{}

func (setsNoConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return errors.New("no API in this test")
}

func (setsNoConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("no API in this test")
}

// TestSetsPodMarkedForDeletionMeetsExpectations: a delete that finalizers hold
// back shows as soon as the pod is marked, so the set is reconciled again (and
// sees the pod terminating) without waiting for expectationTimeout, which the
// fake clock never reaches. A DaemonSet counts such a delete once, not again
// when the pod goes.
func TestSetsPodMarkedForDeletionMeetsExpectations(t *testing.T) {
	s, err := NewSets(setsNoConn{}, newFakeClock(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	pod := func(kind, owner, name string, marked bool) *corev1.Pod {
		p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Namespace: "default", Name: name, Uid: "uid-" + name,
			Finalizers:      []string{"example.com/hold"},
			OwnerReferences: []*metav1.OwnerReference{{Kind: kind, Name: owner, Uid: "uid-" + owner, Controller: proto.Bool(true)}}}}
		if marked {
			p.Metadata.DeletionTimestamp = timestamppb.Now()
		}
		return p
	}

	// StatefulSet: the named delete is met by the mark, and the later removal
	// finds nothing left to meet.
	web2, web2Marked := pod("StatefulSet", "web", "web-2", false), pod("StatefulSet", "web", "web-2", true)
	s.ssWait.expect("default/web", 0, 0, []string{"-pod default/web-2"})
	s.onPodUpdate(web2, web2)
	if s.ssWait.satisfied("default/web") {
		t.Fatal("statefulset: satisfied by an update that deleted nothing")
	}
	s.onPodUpdate(web2, web2Marked)
	if !s.ssWait.satisfied("default/web") {
		t.Fatal("statefulset: web-2 marked for deletion does not meet its expected delete")
	}
	s.podEvent(web2Marked, podGone)
	if !s.ssWait.satisfied("default/web") {
		t.Fatal("statefulset: web-2's removal undid its expectation")
	}

	// DaemonSet: counted once when marked; a pod deleted at once counts when
	// it goes.
	a, aMarked := pod("DaemonSet", "agent", "agent-a", false), pod("DaemonSet", "agent", "agent-a", true)
	s.dsWait.expect("default/agent", 0, 1, nil)
	s.onPodUpdate(aMarked, aMarked) // a later update of a pod already marked
	if s.dsWait.satisfied("default/agent") {
		t.Fatal("daemonset: satisfied by an update that marked nothing new")
	}
	s.onPodUpdate(a, aMarked)
	if !s.dsWait.satisfied("default/agent") {
		t.Fatal("daemonset: agent-a marked for deletion does not meet the expected delete")
	}
	s.dsWait.expect("default/agent", 0, 1, nil) // the next pass deletes agent-b
	s.podEvent(aMarked, podGone)
	if s.dsWait.satisfied("default/agent") {
		t.Fatal("daemonset: agent-a's removal, counted when it was marked, met agent-b's delete")
	}
	s.podEvent(pod("DaemonSet", "agent", "agent-b", false), podGone)
	if !s.dsWait.satisfied("default/agent") {
		t.Fatal("daemonset: agent-b deleted at once does not meet its expected delete")
	}
}

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func createNode(t *testing.T, c *testcluster.Cluster, name string) {
	t.Helper()
	_, err := corev1.NewNodesClient(c.Peers[0].Conn).Create(testCtx(t), &corev1.CreateNodeRequest{
		Body: &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name}}})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

func unschedulable(t *testing.T, c *testcluster.Cluster, name string) bool {
	t.Helper()
	n, err := corev1.NewNodesClient(c.Peers[0].Conn).Get(testCtx(t), &metav1.GetRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return n.GetSpec().GetUnschedulable()
}

// boundPod is a pod on node, with an optional controller reference and annotations.
func boundPod(ns, name, node string, owner *metav1.OwnerReference, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:     &corev1.PodSpec{NodeName: node, Containers: []*corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	if owner != nil {
		p.Metadata.OwnerReferences = []*metav1.OwnerReference{owner}
	}
	return p
}

func TestCordonUncordon(t *testing.T) {
	c := testcluster.New(t, 3)
	createNode(t, c, "n1")
	wantCtl(t, c, "node/n1 cordoned\n", "", 0, "cordon", "n1")
	if !unschedulable(t, c, "n1") {
		t.Fatal("n1 is schedulable after cordon")
	}
	wantCtl(t, c, "node/n1 already cordoned\n", "", 0, "cordon", "n1")
	wantCtl(t, c, "node/n1 uncordoned\n", "", 0, "uncordon", "n1")
	if unschedulable(t, c, "n1") {
		t.Fatal("n1 is unschedulable after uncordon")
	}
	wantCtl(t, c, "node/n1 already uncordoned\n", "", 0, "uncordon", "n1")
	wantCtl(t, c, "", "Error from server (NotFound): nodes \"nope\" not found\n", 1, "cordon", "n1", "nope")
	if unschedulable(t, c, "n1") {
		t.Fatal("cordon changed n1 although another named node does not exist")
	}
	wantCtl(t, c, "", "error: USAGE: cordon NODE [flags]\n", 1, "cordon")
}

func TestDrain(t *testing.T) {
	c := testcluster.New(t, 3)
	createNode(t, c, "n1")
	createNode(t, c, "n2")
	ds, err := appsv1.NewDaemonSetsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateDaemonSetRequest{
		Namespace: "kube-system",
		Body: &appsv1.DaemonSet{Metadata: &metav1.ObjectMeta{Name: "agent"}, Spec: &appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: template("agent", "agent:1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rsRef := controllerRef("apps/v1", "ReplicaSet", "web-h1", "uid-web-h1")
	pods := []*corev1.Pod{
		boundPod("default", "web-1", "n1", rsRef, nil),
		boundPod("default", "web-2", "n2", rsRef, nil),
		boundPod("kube-system", "agent-n1", "n1", controllerRef("apps/v1", "DaemonSet", "agent", ds.GetMetadata().GetUid()), nil),
		boundPod("kube-system", "etcd-n1", "n1", controllerRef("v1", "Node", "n1", "uid-n1"), map[string]string{mirrorAnnotation: "x"}),
	}
	podsClient := corev1.NewPodsClient(c.Peers[0].Conn)
	for _, p := range pods {
		if _, err := podsClient.Create(testCtx(t), &corev1.CreatePodRequest{Namespace: p.Metadata.Namespace, Body: p}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(ns, name string) bool {
		_, err := podsClient.Get(testCtx(t), &metav1.GetRequest{Namespace: ns, Name: name})
		if err != nil && status.Code(err) != codes.NotFound {
			t.Fatal(err)
		}
		return err == nil
	}
	refused := func(errLines ...string) string {
		return "error: unable to drain node \"n1\", aborting command...\n\nThere are pending nodes to be drained:\n n1\n" +
			strings.Join(errLines, "\n") + "\n"
	}

	wantCtl(t, c, "node/n1 cordoned\n", refused("error: cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/agent-n1"), 1,
		"drain", "n1")
	if !unschedulable(t, c, "n1") || !exists("default", "web-1") {
		t.Fatal("a refused drain should leave the node cordoned and its pods in place")
	}

	bare := boundPod("default", "bare", "n1", nil, nil)
	if _, err := podsClient.Create(testCtx(t), &corev1.CreatePodRequest{Namespace: "default", Body: bare}); err != nil {
		t.Fatal(err)
	}
	wantCtl(t, c, "node/n1 already cordoned\n", refused(
		"cannot delete Pods that declare no controller (use --force to override): default/bare",
		"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/agent-n1"), 1,
		"drain", "n1")
	wantCtl(t, c, "node/n1 already cordoned\n", refused(
		"error: cannot delete Pods that declare no controller (use --force to override): default/bare"), 1,
		"drain", "n1", "--ignore-daemonsets")

	wantCtl(t, c,
		"node/n1 already cordoned\n"+
			"evicting pod default/bare\nevicting pod default/web-1\n"+
			"pod/bare evicted\npod/web-1 evicted\n"+
			"node/n1 drained\n",
		"WARNING: deleting Pods that declare no controller: default/bare; ignoring DaemonSet-managed Pods: kube-system/agent-n1\n", 0,
		"drain", "n1", "--ignore-daemonsets", "--force", "--grace-period=0")
	for _, p := range []struct {
		ns, name string
		kept     bool
	}{{"default", "bare", false}, {"default", "web-1", false}, {"default", "web-2", true},
		{"kube-system", "agent-n1", true}, {"kube-system", "etcd-n1", true}} {
		if got := exists(p.ns, p.name); got != p.kept {
			t.Errorf("pod %s/%s exists: %v, want %v", p.ns, p.name, got, p.kept)
		}
	}
	wantCtl(t, c, "node/n1 already cordoned\nnode/n1 drained\n", "WARNING: ignoring DaemonSet-managed Pods: kube-system/agent-n1\n", 0,
		"drain", "n1", "--ignore-daemonsets")
	wantCtl(t, c, "", "Error from server (NotFound): nodes \"nope\" not found\n", 1, "drain", "nope")
}

// TestDrainFilters checks drain's decision for each kind of pod, as kubectl makes it.
func TestDrainFilters(t *testing.T) {
	ds := controllerRef("apps/v1", "DaemonSet", "agent", "u1")
	gone := controllerRef("apps/v1", "DaemonSet", "gone", "u2")
	rs := controllerRef("apps/v1", "ReplicaSet", "web", "u3")
	withEmptyDir := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Volumes = []*corev1.Volume{{Name: "scratch", EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		return p
	}
	finished := func(p *corev1.Pod) *corev1.Pod {
		p.Status = &corev1.PodStatus{Phase: "Succeeded"}
		return p
	}
	daemonSetExists := func(_, name string) error {
		if name == "gone" {
			return status.Error(codes.NotFound, `daemonsets.apps "gone" not found`)
		}
		return nil
	}
	cases := []struct {
		name   string
		opts   drainOptions
		pod    *corev1.Pod
		delete bool
		reason string
		msg    string
	}{
		{"replica set pod", drainOptions{}, boundPod("ns", "p", "n", rs, nil), true, "", ""},
		{"daemon set pod", drainOptions{}, boundPod("ns", "p", "n", ds, nil), false, "error", daemonSetFatal},
		{"daemon set pod, ignored", drainOptions{ignoreDaemonSets: true}, boundPod("ns", "p", "n", ds, nil), false, "warning", daemonSetWarning},
		{"finished daemon set pod", drainOptions{}, finished(boundPod("ns", "p", "n", ds, nil)), true, "", ""},
		{"orphaned daemon set pod", drainOptions{}, boundPod("ns", "p", "n", gone, nil), false, "error", `daemonsets.apps "gone" not found`},
		// Passing later filters replace the warning, as in kubectl.
		{"orphaned daemon set pod, forced", drainOptions{force: true}, boundPod("ns", "p", "n", gone, nil), true, "", ""},
		{"mirror pod", drainOptions{}, boundPod("ns", "p", "n", nil, map[string]string{mirrorAnnotation: "x"}), false, "skip", ""},
		{"emptyDir", drainOptions{}, withEmptyDir(boundPod("ns", "p", "n", rs, nil)), false, "error", localStorageFatal},
		// The controller filter comes last and, passing, replaces the warning (kubectl's order).
		{"emptyDir, allowed", drainOptions{deleteEmptyDirData: true}, withEmptyDir(boundPod("ns", "p", "n", rs, nil)), true, "", ""},
		{"emptyDir, allowed, bare", drainOptions{deleteEmptyDirData: true}, withEmptyDir(boundPod("ns", "p", "n", nil, nil)), false, "error", unmanagedFatal},
		{"bare", drainOptions{}, boundPod("ns", "p", "n", nil, nil), false, "error", unmanagedFatal},
		{"bare, forced", drainOptions{force: true}, boundPod("ns", "p", "n", nil, nil), true, "warning", unmanagedWarning},
		{"finished bare pod", drainOptions{}, finished(boundPod("ns", "p", "n", nil, nil)), true, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.opts.filter(tc.pod, daemonSetExists)
			if d.delete != tc.delete || d.reason != tc.reason || d.msg != tc.msg {
				t.Errorf("delete %v, %q %q; want %v, %q %q", d.delete, d.reason, d.msg, tc.delete, tc.reason, tc.msg)
			}
		})
	}

	list := podDeleteList{
		{pod: boundPod("a", "1", "n", nil, nil), reason: "error", msg: unmanagedFatal},
		{pod: boundPod("b", "2", "n", nil, nil), reason: "error", msg: daemonSetFatal},
		{pod: boundPod("c", "3", "n", nil, nil), reason: "error", msg: unmanagedFatal},
		{pod: boundPod("d", "4", "n", nil, nil), delete: true, reason: "warning", msg: unmanagedWarning},
		{pod: boundPod("e", "5", "n", nil, nil), delete: true, reason: "warning", msg: localStorageWarning},
		{pod: boundPod("f", "6", "n", nil, nil), delete: true},
	}
	var errs []string
	for _, err := range list.errors() {
		errs = append(errs, err.Error())
	}
	wantErrs := []string{
		"cannot delete Pods that declare no controller (use --force to override): a/1, c/3",
		"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): b/2",
	}
	if !reflect.DeepEqual(errs, wantErrs) {
		t.Errorf("errors:\n%q\nwant\n%q", errs, wantErrs)
	}
	if w, want := list.warnings(), "deleting Pods that declare no controller: d/4; deleting Pods with local storage: e/5"; w != want {
		t.Errorf("warnings %q, want %q", w, want)
	}
	if got := len(list.pods()); got != 3 {
		t.Errorf("%d pods to evict, want 3", got)
	}
	if got := joinErrors([]error{errors.New("a"), fmt.Errorf("b")}); got != "[a, b]" {
		t.Errorf("joinErrors = %q", got)
	}
}

// TestDrainTimeout makes pod eviction a no-op, as a long grace period would, so that
// drain gives up waiting.
func TestDrainTimeout(t *testing.T) {
	c := testcluster.New(t, 3)
	createNode(t, c, "n1")
	p := boundPod("default", "web-1", "n1", controllerRef("apps/v1", "ReplicaSet", "web-h1", "uid-web-h1"), nil)
	if _, err := corev1.NewPodsClient(c.Peers[0].Conn).Create(testCtx(t), &corev1.CreatePodRequest{Namespace: "default", Body: p}); err != nil {
		t.Fatal(err)
	}
	var grace []int64
	lingering := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch method {
		case corev1.Pods_Evict_FullMethodName:
			grace = append(grace, req.(*corev1.CreateEvictionRequest).GetBody().GetDeleteOptions().GetGracePeriodSeconds())
			return nil
		case corev1.Pods_Delete_FullMethodName:
			t.Errorf("drain deleted a pod instead of evicting it: %v", req)
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	var out, errOut bytes.Buffer
	runIntercepted(t, c, lingering, &out, &errOut, newDrain, "n1", "--timeout=1500ms", "--grace-period=20")
	timedOut := `error when waiting for pod "web-1" in namespace "default" to terminate: global timeout reached: 1.5s`
	wantOut := "node/n1 cordoned\nevicting pod default/web-1\n"
	wantErr := "There are pending pods in node \"n1\" when an error occurred: " + timedOut + "\npod/web-1\n" +
		"error: unable to drain node \"n1\", aborting command...\n\nThere are pending nodes to be drained:\n n1\n" +
		"error: " + timedOut + "\n"
	if out.String() != wantOut || errOut.String() != wantErr {
		t.Errorf("stdout:\n%q\nwant:\n%q\nstderr:\n%q\nwant:\n%q", out.String(), wantOut, errOut.String(), wantErr)
	}
	if !reflect.DeepEqual(grace, []int64{20}) {
		t.Errorf("evictions with grace periods %v, want [20]", grace)
	}
}

// TestDrainEvicts checks that drain evicts through pods/eviction (never a plain
// delete), with kubectl's Eviction body, and reports a refused eviction in
// kubectl's words.
func TestDrainEvicts(t *testing.T) {
	c := testcluster.New(t, 3)
	createNode(t, c, "n1")
	ds, err := appsv1.NewDaemonSetsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateDaemonSetRequest{
		Namespace: "kube-system",
		Body: &appsv1.DaemonSet{Metadata: &metav1.ObjectMeta{Name: "agent"}, Spec: &appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: template("agent", "agent:1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rsRef := controllerRef("apps/v1", "ReplicaSet", "web-h1", "uid-web-h1")
	podsClient := corev1.NewPodsClient(c.Peers[0].Conn)
	for _, p := range []*corev1.Pod{
		boundPod("default", "web-1", "n1", rsRef, nil),
		boundPod("kube-system", "agent-n1", "n1", controllerRef("apps/v1", "DaemonSet", "agent", ds.GetMetadata().GetUid()), nil),
	} {
		if _, err := podsClient.Create(testCtx(t), &corev1.CreatePodRequest{Namespace: p.Metadata.Namespace, Body: p}); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(ns, name string) bool {
		_, err := podsClient.Get(testCtx(t), &metav1.GetRequest{Namespace: ns, Name: name})
		if err != nil && status.Code(err) != codes.NotFound {
			t.Fatal(err)
		}
		return err == nil
	}

	// A refused eviction (as a disruption budget would refuse one) stops the drain.
	refuse := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == corev1.Pods_Evict_FullMethodName {
			return status.Error(codes.Aborted, "Operation cannot be fulfilled on pods \"web-1\": refused")
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	var out, errOut bytes.Buffer
	runIntercepted(t, c, refuse, &out, &errOut, newDrain, "n1", "--ignore-daemonsets")
	failed := `error when evicting pods/"web-1" -n "default": Operation cannot be fulfilled on pods "web-1": refused`
	wantOut := "node/n1 cordoned\nevicting pod default/web-1\n"
	wantErr := "WARNING: ignoring DaemonSet-managed Pods: kube-system/agent-n1\n" +
		"There are pending pods in node \"n1\" when an error occurred: " + failed + "\npod/web-1\n" +
		"error: unable to drain node \"n1\", aborting command...\n\nThere are pending nodes to be drained:\n n1\n" +
		"error: " + failed + "\n"
	if out.String() != wantOut || errOut.String() != wantErr {
		t.Errorf("refused eviction:\nstdout:\n%q\nwant:\n%q\nstderr:\n%q\nwant:\n%q", out.String(), wantOut, errOut.String(), wantErr)
	}
	if !exists("default", "web-1") {
		t.Fatal("web-1 is gone although its eviction was refused")
	}

	// An evicted pod is Terminating until its node's agent has stopped it.
	playNodeAgent(t, c)
	var evictions []*corev1.CreateEvictionRequest
	record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch method {
		case corev1.Pods_Evict_FullMethodName:
			evictions = append(evictions, req.(*corev1.CreateEvictionRequest))
		case corev1.Pods_Delete_FullMethodName:
			t.Errorf("drain deleted a pod instead of evicting it: %v", req)
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	out.Reset()
	errOut.Reset()
	runIntercepted(t, c, record, &out, &errOut, newDrain, "n1", "--ignore-daemonsets", "--grace-period=5")
	wantOut = "node/n1 already cordoned\nevicting pod default/web-1\npod/web-1 evicted\nnode/n1 drained\n"
	if out.String() != wantOut || errOut.String() != "WARNING: ignoring DaemonSet-managed Pods: kube-system/agent-n1\n" {
		t.Errorf("drain:\nstdout:\n%q\nwant:\n%q\nstderr:\n%q", out.String(), wantOut, errOut.String())
	}
	if len(evictions) != 1 {
		t.Fatalf("%d evictions, want 1: %v", len(evictions), evictions)
	}
	ev := evictions[0]
	body := ev.GetBody()
	if ev.GetNamespace() != "default" || ev.GetName() != "web-1" || body.GetApiVersion() != "policy/v1" || body.GetKind() != "Eviction" ||
		body.GetMetadata().GetName() != "web-1" || body.GetMetadata().GetNamespace() != "default" ||
		body.GetDeleteOptions().GetGracePeriodSeconds() != 5 {
		t.Errorf("eviction request %v", ev)
	}
	if exists("default", "web-1") || !exists("kube-system", "agent-n1") {
		t.Errorf("after drain: web-1 exists %v (want false), agent-n1 exists %v (want true)",
			exists("default", "web-1"), exists("kube-system", "agent-n1"))
	}
}

// playNodeAgent does, until the test ends, the part of a node agent that
// ends graceful deletion: every pod marked for deletion is deleted with a
// grace period of 0, as an agent does once the containers have stopped.
func playNodeAgent(t *testing.T, c *testcluster.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	pods := corev1.NewPodsClient(c.Peers[1].Conn)
	go func() {
		defer close(done)
		zero := int64(0)
		for ctx.Err() == nil {
			list, err := pods.List(ctx, &metav1.ListRequest{})
			for _, p := range list.GetItems() {
				md := p.GetMetadata()
				if err == nil && md.GetDeletionTimestamp() != nil {
					_, _ = pods.Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(), GracePeriodSeconds: &zero,
						Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func TestScale(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 1, "nginx:1")
	replicas := func() int32 { return getDeployment(t, c, "web").GetSpec().GetReplicas() }

	wantCtl(t, c, "deployment.apps/web scaled\n", "", 0, "scale", "deployment/web", "--replicas=3")
	if got := replicas(); got != 3 {
		t.Fatalf("spec.replicas = %d after scaling to 3", got)
	}
	wantCtl(t, c, "deployment.apps/web scaled\n", "", 0, "scale", "deploy", "web", "--replicas=4", "--current-replicas=3")
	wantCtl(t, c, "", "error: Expected replicas to be 2, was 4\n", 1, "scale", "deployment/web", "--replicas=5", "--current-replicas=2")
	rv := getDeployment(t, c, "web").GetMetadata().GetResourceVersion()
	wantCtl(t, c, "", fmt.Sprintf("error: Expected resource version to be 1, was %s\n", rv), 1,
		"scale", "deployment/web", "--replicas=5", "--resource-version=1")
	wantCtl(t, c, "deployment.apps/web scaled\n", "", 0, "scale", "deployment/web", "--replicas=0", "--resource-version="+rv)
	if got := replicas(); got != 0 {
		t.Fatalf("spec.replicas = %d after scaling to 0", got)
	}

	wantCtl(t, c, "", "error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0\n", 1, "scale", "deployment/web")
	wantCtl(t, c, "", "error: pods cannot be scaled\n", 1, "scale", "pod/web", "--replicas=1")
	wantCtl(t, c, "", "Error from server (NotFound): deployments.apps \"nope\" not found\n", 1, "scale", "deployment/nope", "--replicas=1")

	// A stateful set, and --timeout: without a controller status.replicas never follows.
	_, err := appsv1.NewStatefulSetsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateStatefulSetRequest{
		Namespace: "default",
		Body: &appsv1.StatefulSet{Metadata: &metav1.ObjectMeta{Name: "kv"}, Spec: &appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "kv"}}, Template: template("kv", "kv:1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCtl(t, c, "", "error: timed out waiting for \"kv\" to be synced\n", 1, "scale", "sts/kv", "--replicas=2", "--timeout=100ms")
	wantCtl(t, c, "statefulset.apps/kv scaled\n", "", 0, "scale", "sts/kv", "--replicas=0", "--timeout=5s")
}

// TestScaleConflict makes another client write the deployment between scale's read
// of the scale subresource and its write.
func TestScaleConflict(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 2, "nginx:1")
	deployments := appsv1.NewDeploymentsClient(c.Peers[1].Conn)
	// meddle changes the deployment with a Get and a conditional Update.
	meddle := func(change func(d *appsv1.Deployment)) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := deployments.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
		if err != nil {
			t.Error(err)
			return
		}
		change(d)
		if _, err := deployments.Update(ctx, &appsv1.UpdateDeploymentRequest{Namespace: "default", Name: "web", Body: d}); err != nil {
			t.Error(err)
		}
	}
	label := func(v string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) { d.Metadata.Labels = map[string]string{"meddled": v} }
	}

	cases := []struct {
		name    string
		args    []string
		meddles int // writes by the other client, one before each of scale's first updates
		change  func(i int) func(*appsv1.Deployment)
		out     string
		err     string
		want    int32 // spec.replicas afterwards
	}{
		// Without preconditions the Scale carries no resourceVersion: the server
		// applies it to the latest version, keeping the other client's write.
		{name: "unconditional", args: []string{"--replicas=3"}, meddles: 1,
			change: func(i int) func(*appsv1.Deployment) { return label(fmt.Sprint(i)) },
			out:    "deployment.apps/web scaled\n", want: 3},
		{name: "precondition still holds", args: []string{"--replicas=4", "--current-replicas=3"}, meddles: 2,
			change: func(i int) func(*appsv1.Deployment) { return label(fmt.Sprint(i)) },
			out:    "deployment.apps/web scaled\n", want: 4},
		{name: "precondition broken by the other write", args: []string{"--replicas=5", "--current-replicas=4"}, meddles: 1,
			change: func(int) func(*appsv1.Deployment) {
				return func(d *appsv1.Deployment) { d.Spec.Replicas = proto.Int32(7) }
			},
			err: "error: Expected replicas to be 4, was 7\n", want: 7},
		{name: "gives up", args: []string{"--replicas=1", "--current-replicas=7"}, meddles: 100,
			change: func(i int) func(*appsv1.Deployment) { return label(fmt.Sprint(i)) },
			err:    "Error from server (Conflict): ", want: 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			updates := 0
			interfere := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				if method == appsv1.Deployments_UpdateScale_FullMethodName && updates < tc.meddles {
					meddle(tc.change(updates))
					updates++
				}
				return invoke(ctx, method, req, reply, cc, opts...)
			}
			var out, errOut bytes.Buffer
			runIntercepted(t, c, interfere, &out, &errOut, newScale, append([]string{"deployment/web"}, tc.args...)...)
			if out.String() != tc.out || !strings.HasPrefix(errOut.String(), tc.err) || (tc.err == "") != (errOut.Len() == 0) {
				t.Errorf("stdout %q, want %q\nstderr %q, want %q...", out.String(), tc.out, errOut.String(), tc.err)
			}
			d := getDeployment(t, c, "web")
			if got := d.GetSpec().GetReplicas(); got != tc.want {
				t.Errorf("spec.replicas = %d, want %d", got, tc.want)
			}
			if want := min(tc.meddles, 4); updates != want { // a first try and three retries at most
				t.Errorf("the other client wrote %d times before scale's updates, want %d", updates, want)
			}
			if tc.meddles == 1 && d.GetMetadata().GetLabels()["meddled"] != "0" && tc.out != "" {
				t.Errorf("the other client's write was lost: labels %v", d.GetMetadata().GetLabels())
			}
		})
	}
}

// TestScaleUsesSubresource checks which calls scale makes: one UpdateScale without
// resourceVersion when there are no preconditions; a GetScale and an UpdateScale
// carrying the read resourceVersion when there are. The parent is never written
// directly.
func TestScaleUsesSubresource(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 1, "nginx:1")
	_, err := appsv1.NewReplicaSetsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateReplicaSetRequest{
		Namespace: "default",
		Body: &appsv1.ReplicaSet{Metadata: &metav1.ObjectMeta{Name: "rs"}, Spec: &appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "rs"}}, Template: template("rs", "rs:1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	type call struct{ method, rv string }
	cases := []struct {
		args  []string
		calls func(rv string) []call
		out   string
	}{
		{[]string{"deployment/web", "--replicas=2"}, func(string) []call {
			return []call{{appsv1.Deployments_UpdateScale_FullMethodName, ""}}
		}, "deployment.apps/web scaled\n"},
		{[]string{"deployment/web", "--replicas=3", "--current-replicas=2"}, func(rv string) []call {
			return []call{{appsv1.Deployments_GetScale_FullMethodName, ""}, {appsv1.Deployments_UpdateScale_FullMethodName, rv}}
		}, "deployment.apps/web scaled\n"},
		{[]string{"rs", "rs", "--replicas=5"}, func(string) []call {
			return []call{{appsv1.ReplicaSets_UpdateScale_FullMethodName, ""}}
		}, "replicaset.apps/rs scaled\n"},
	}
	for _, tc := range cases {
		rv := getDeployment(t, c, "web").GetMetadata().GetResourceVersion()
		var calls []call
		record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			cl := call{method: method}
			if r, ok := req.(*appsv1.UpdateScaleRequest); ok {
				cl.rv = r.GetBody().GetMetadata().GetResourceVersion()
			}
			calls = append(calls, cl)
			return invoke(ctx, method, req, reply, cc, opts...)
		}
		var out, errOut bytes.Buffer
		runIntercepted(t, c, record, &out, &errOut, newScale, tc.args...)
		if out.String() != tc.out || errOut.Len() != 0 {
			t.Errorf("scale %v: stdout %q stderr %q, want %q", tc.args, out.String(), errOut.String(), tc.out)
		}
		if want := tc.calls(rv); fmt.Sprint(calls) != fmt.Sprint(want) {
			t.Errorf("scale %v made calls %v, want %v", tc.args, calls, want)
		}
	}
	if got := getDeployment(t, c, "web").GetSpec().GetReplicas(); got != 3 {
		t.Errorf("deployment at %d replicas, want 3", got)
	}
	rs, err := appsv1.NewReplicaSetsClient(c.Peers[0].Conn).Get(testCtx(t), &metav1.GetRequest{Namespace: "default", Name: "rs"})
	if err != nil || rs.GetSpec().GetReplicas() != 5 {
		t.Errorf("replica set at %d replicas (%v), want 5", rs.GetSpec().GetReplicas(), err)
	}
}

// TestScaleResourceVersionRace: a --resource-version that held when scale read
// the Scale but not when it wrote fails with kubectl's precondition text on the
// retry, and the other client's size stays.
func TestScaleResourceVersionRace(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 2, "nginx:1")
	rv := getDeployment(t, c, "web").GetMetadata().GetResourceVersion()
	deployments := appsv1.NewDeploymentsClient(c.Peers[1].Conn)
	meddled := false
	interfere := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == appsv1.Deployments_UpdateScale_FullMethodName && !meddled {
			meddled = true
			d := getDeployment(t, c, "web")
			d.Spec.Replicas = proto.Int32(6)
			if _, err := deployments.Update(ctx, &appsv1.UpdateDeploymentRequest{Namespace: "default", Name: "web", Body: d}); err != nil {
				t.Error(err)
			}
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	var out, errOut bytes.Buffer
	runIntercepted(t, c, interfere, &out, &errOut, newScale, "deployment/web", "--replicas=3", "--resource-version="+rv)
	d := getDeployment(t, c, "web")
	want := fmt.Sprintf("error: Expected resource version to be %s, was %s\n", rv, d.GetMetadata().GetResourceVersion())
	if out.Len() != 0 || errOut.String() != want {
		t.Errorf("stdout %q, stderr %q; want no output and %q", out.String(), errOut.String(), want)
	}
	if got := d.GetSpec().GetReplicas(); got != 6 {
		t.Errorf("spec.replicas = %d, want the other client's 6", got)
	}
}

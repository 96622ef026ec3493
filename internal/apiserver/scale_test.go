package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	autoscalingv1 "github.com/rafter-dev/rafter/gen/rafter/autoscaling/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func scaleBody(name, rv string, replicas int) string {
	md := fmt.Sprintf(`{"name":%q}`, name)
	if rv != "" {
		md = fmt.Sprintf(`{"name":%q,"resourceVersion":%q}`, name, rv)
	}
	return fmt.Sprintf(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":%s,"spec":{"replicas":%d}}`, md, replicas)
}

// TestScaleSubresourceREST: GET and PUT .../scale through the gateway of every
// peer (writes through followers are forwarded), with Kubernetes' codes and texts.
func TestScaleSubresourceREST(t *testing.T) {
	c := testcluster.New(t, 3)
	code, body, _ := c.Do(0, "POST", deployPath, deployment("web",
		`{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["front","edge"]}]}`,
		`{"app":"web","tier":"front"}`, ""))
	if code != 201 {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	parent := decode(t, body)
	scalePath := deployPath + "/web/scale"

	code, body, _ = c.Do(1, "GET", scalePath, "")
	if code != 200 {
		t.Fatalf("get scale: %d %s", code, body)
	}
	sc := decode(t, body)
	for _, f := range []struct {
		path []any
		want any
	}{
		{[]any{"apiVersion"}, "autoscaling/v1"},
		{[]any{"kind"}, "Scale"},
		{[]any{"metadata", "name"}, "web"},
		{[]any{"metadata", "namespace"}, "default"},
		{[]any{"metadata", "uid"}, get(parent, "metadata", "uid")},
		{[]any{"metadata", "resourceVersion"}, get(parent, "metadata", "resourceVersion")},
		{[]any{"metadata", "creationTimestamp"}, get(parent, "metadata", "creationTimestamp")},
		{[]any{"spec", "replicas"}, float64(1)},
		// Kubernetes' selector string: requirements sorted by key, sets sorted.
		{[]any{"status", "selector"}, "app=web,tier in (edge,front)"},
	} {
		if got := get(sc, f.path...); got != f.want || got == nil {
			t.Errorf("scale %v = %v, want %v", f.path, got, f.want)
		}
	}

	code, body, _ = c.Do(2, "PUT", scalePath, scaleBody("web", "", 3))
	if code != 200 {
		t.Fatalf("put scale: %d %s", code, body)
	}
	sc = decode(t, body)
	code, body, _ = c.Do(0, "GET", deployPath+"/web", "")
	d := decode(t, body)
	if code != 200 || get(d, "spec", "replicas") != float64(3) || get(d, "metadata", "generation") != float64(2) {
		t.Fatalf("deployment after scaling to 3 (want replicas 3, generation 2): %d %s", code, body)
	}
	if get(sc, "spec", "replicas") != float64(3) || get(sc, "metadata", "resourceVersion") != get(d, "metadata", "resourceVersion") {
		t.Fatalf("scale answer %v does not show the stored deployment %v", sc, d["metadata"])
	}
	oldRV := fmt.Sprint(get(parent, "metadata", "resourceVersion"))

	// status.replicas comes from the parent's status.
	code, body, _ = c.Do(1, "PUT", deployPath+"/web/status", `{"metadata":{"name":"web"},"status":{"replicas":2}}`)
	if code != 200 {
		t.Fatalf("put status: %d %s", code, body)
	}
	rv := fmt.Sprint(get(decode(t, body), "metadata", "resourceVersion"))
	runCases(t, c, []apiCase{
		{"status replicas", "GET", scalePath, "", 200, []string{`"status":{"replicas":2,"selector":"app=web,tier in (edge,front)"}`}, nil},
		{"stale resourceVersion", "PUT", scalePath, scaleBody("web", oldRV, 5), 409,
			[]string{`"reason":"Conflict"`, `Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again`}, nil},
		{"negative replicas", "PUT", scalePath, scaleBody("web", "", -1), 422,
			[]string{`"reason":"Invalid"`, `Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`,
				`"field":"spec.replicas"`, `"kind":"Scale"`, `"group":"autoscaling"`}, nil},
		{"bad resourceVersion", "PUT", scalePath, scaleBody("web", "abc", 5), 422, []string{`"field":"metadata.resourceVersion"`}, nil},
		{"name mismatch", "PUT", scalePath, scaleBody("other", "", 5), 400,
			[]string{"the name of the object (other) does not match the name on the URL (web)"}, nil},
		{"wrong kind", "PUT", scalePath, `{"kind":"Deployment","spec":{"replicas":5}}`, 400,
			[]string{"the kind in the data (Deployment) does not match the expected kind (Scale)"}, nil},
		{"uid precondition", "PUT", scalePath, `{"metadata":{"name":"web","uid":"not-the-uid"},"spec":{"replicas":5}}`, 409,
			[]string{`Operation cannot be fulfilled on deployments/scale.apps \"web\": Precondition failed: UID in precondition: not-the-uid`}, nil},
		{"missing parent, get", "GET", deployPath + "/nope/scale", "", 404,
			[]string{`"reason":"NotFound"`, `deployments.apps \"nope\" not found`}, nil},
		{"missing parent, put", "PUT", deployPath + "/nope/scale", scaleBody("nope", "", 1), 404,
			[]string{`deployments.apps \"nope\" not found`}, nil},
		{"dry run", "PUT", scalePath + "?dryRun=All", scaleBody("web", "", 9), 200, []string{`"replicas":9`}, nil},
		{"unchanged by the dry run", "GET", deployPath + "/web", "", 200, []string{`"replicas":3`}, []string{`"replicas":9`}},
		{"current resourceVersion", "PUT", scalePath, scaleBody("web", rv, 0), 200, []string{`"spec":{}`}, nil},
		{"scaled to zero", "GET", deployPath + "/web", "", 200, []string{`"replicas":0`}, nil},
		{"daemon sets have no scale", "GET", "/apis/apps/v1/namespaces/default/daemonsets/web/scale", "", 404, nil, nil},
	})

	// ReplicaSets and StatefulSets have the subresource too.
	rs := `{"metadata":{"name":"rs"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"rs"}},"template":{"metadata":{"labels":{"app":"rs"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`
	if code, b, _ := c.Do(0, "POST", "/apis/apps/v1/namespaces/default/replicasets", rs); code != 201 {
		t.Fatalf("create replica set: %d %s", code, b)
	}
	sts := `{"metadata":{"name":"kv"},"spec":{"serviceName":"kv","selector":{"matchLabels":{"app":"kv"}},"template":{"metadata":{"labels":{"app":"kv"}},"spec":{"containers":[{"name":"c","image":"kv"}]}}}}`
	if code, b, _ := c.Do(0, "POST", "/apis/apps/v1/namespaces/default/statefulsets", sts); code != 201 {
		t.Fatalf("create stateful set: %d %s", code, b)
	}
	runCases(t, c, []apiCase{
		{"replica set scale", "GET", "/apis/apps/v1/namespaces/default/replicasets/rs/scale", "", 200,
			[]string{`"spec":{"replicas":2}`, `"selector":"app=rs"`}, nil},
		{"replica set put", "PUT", "/apis/apps/v1/namespaces/default/replicasets/rs/scale", scaleBody("rs", "", 4), 200,
			[]string{`"spec":{"replicas":4}`}, nil},
		{"replica set scaled", "GET", "/apis/apps/v1/namespaces/default/replicasets/rs", "", 200, []string{`"replicas":4`}, nil},
		{"stateful set put", "PUT", "/apis/apps/v1/namespaces/default/statefulsets/kv/scale", scaleBody("kv", "", 5), 200,
			[]string{`"spec":{"replicas":5}`, `"selector":"app=kv"`}, nil},
		{"stateful set scaled", "GET", "/apis/apps/v1/namespaces/default/statefulsets/kv", "", 200, []string{`"replicas":5`}, nil},
		{"stateful set missing", "GET", "/apis/apps/v1/namespaces/default/statefulsets/nope/scale", "", 404,
			[]string{`statefulsets.apps \"nope\" not found`}, nil},
	})
}

// TestScaleSubresourceGRPC: GetScale and UpdateScale on the Deployments service,
// called on a follower, with gRPC codes that carry Kubernetes' meaning.
func TestScaleSubresourceGRPC(t *testing.T) {
	c := testcluster.New(t, 3)
	code, body, _ := c.Do(0, "POST", deployPath, deployment("web", `{"matchLabels":{"app":"web"}}`, `{"app":"web"}`, ""))
	if code != 201 {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	follower := (c.Leader() + 1) % len(c.Peers)
	deployments := appsv1.NewDeploymentsClient(c.Peers[follower].Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sc, err := deployments.GetScale(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.GetSpec().GetReplicas() != 1 || sc.GetStatus().GetSelector() != "app=web" || sc.GetKind() != "Scale" {
		t.Fatalf("scale %v", sc)
	}
	stale := sc.GetMetadata().GetResourceVersion()
	sc.Spec.Replicas = 4
	got, err := deployments.UpdateScale(ctx, &appsv1.UpdateScaleRequest{Namespace: "default", Name: "web", Body: sc})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSpec().GetReplicas() != 4 || got.GetMetadata().GetResourceVersion() == stale {
		t.Fatalf("updated scale %v", got)
	}
	d, err := deployments.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil || d.GetSpec().GetReplicas() != 4 {
		t.Fatalf("deployment after UpdateScale: %v %v", d.GetSpec(), err)
	}

	for _, tc := range []struct {
		name string
		req  *appsv1.UpdateScaleRequest
		code codes.Code
		msg  string
	}{
		{"stale resourceVersion", &appsv1.UpdateScaleRequest{Namespace: "default", Name: "web", Body: &autoscalingv1.Scale{
			Metadata: &metav1.ObjectMeta{ResourceVersion: stale}, Spec: &autoscalingv1.ScaleSpec{Replicas: 2}}},
			codes.Aborted, "the object has been modified"},
		{"negative replicas", &appsv1.UpdateScaleRequest{Namespace: "default", Name: "web", Body: &autoscalingv1.Scale{
			Spec: &autoscalingv1.ScaleSpec{Replicas: -3}}},
			codes.InvalidArgument, "spec.replicas: Invalid value: -3: must be greater than or equal to 0"},
		{"missing", &appsv1.UpdateScaleRequest{Namespace: "default", Name: "nope", Body: &autoscalingv1.Scale{}},
			codes.NotFound, `deployments.apps "nope" not found`},
		{"no body", &appsv1.UpdateScaleRequest{Namespace: "default", Name: "web"},
			codes.InvalidArgument, "the request body must be a Scale object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deployments.UpdateScale(ctx, tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("err %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
	if _, err := deployments.GetScale(ctx, &metav1.GetRequest{Namespace: "default", Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetScale of a missing deployment: %v", err)
	}
	d, err = deployments.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil || d.GetSpec().GetReplicas() != 4 {
		t.Fatalf("a refused UpdateScale changed the deployment: %v %v", d.GetSpec(), err)
	}
}

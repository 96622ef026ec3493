package apiserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	policyv1 "github.com/rafter-dev/rafter/gen/rafter/policy/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

const podsPath = "/api/v1/namespaces/default/pods"

func createPod(t *testing.T, c *testcluster.Cluster, name, extraMeta string) map[string]any {
	t.Helper()
	body := `{"metadata":{"name":"` + name + `"` + extraMeta + `},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	code, b, _ := c.Do(0, "POST", podsPath, body)
	if code != 201 {
		t.Fatalf("create pod %s: %d %s", name, code, b)
	}
	return decode(t, b)
}

func eviction(name, deleteOptions string) string {
	b := `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"` + name + `","namespace":"default"}`
	if deleteOptions != "" {
		b += `,"deleteOptions":` + deleteOptions
	}
	return b + "}"
}

// TestPodEvictionREST: POST pods/{name}/eviction deletes the pod and answers 201
// with a Success Status, honouring the deleteOptions' preconditions and dryRun.
func TestPodEvictionREST(t *testing.T) {
	c := testcluster.New(t, 3)
	web := createPod(t, c, "web", "")
	uid, rv := get(web, "metadata", "uid").(string), get(web, "metadata", "resourceVersion").(string)
	runCases(t, c, []apiCase{
		{"missing pod", "POST", podsPath + "/nope/eviction", eviction("nope", ""), 404,
			[]string{`"reason":"NotFound"`, `pods \"nope\" not found`}, nil},
		{"name mismatch", "POST", podsPath + "/web/eviction", eviction("other", ""), 400,
			[]string{`"reason":"BadRequest"`, "name in URL does not match name in Eviction object"}, nil},
		{"no name", "POST", podsPath + "/web/eviction", `{"deleteOptions":{}}`, 400,
			[]string{"name in URL does not match name in Eviction object"}, nil},
		{"wrong kind", "POST", podsPath + "/web/eviction", `{"kind":"Binding","metadata":{"name":"web"}}`, 400,
			[]string{"the kind in the data (Binding) does not match the expected kind (Eviction)"}, nil},
		{"unknown field", "POST", podsPath + "/web/eviction", `{"metadata":{"name":"web"},"deleteOptions":{"gracePeriod":1}}`, 400, nil, nil},
		{"stale resourceVersion", "POST", podsPath + "/web/eviction", eviction("web", `{"preconditions":{"resourceVersion":"1"}}`), 409,
			[]string{`"reason":"Conflict"`}, nil},
		{"other uid", "POST", podsPath + "/web/eviction", eviction("web", `{"preconditions":{"uid":"not-the-uid"}}`), 409,
			[]string{`"reason":"Conflict"`, "Precondition failed: UID in precondition: not-the-uid"}, nil},
		{"dry run", "POST", podsPath + "/web/eviction", eviction("web", `{"dryRun":["All"]}`), 201, []string{`"status":"Success"`}, nil},
		{"dry run query", "POST", podsPath + "/web/eviction?dryRun=All", eviction("web", ""), 201, []string{`"status":"Success"`}, nil},
		{"still there", "GET", podsPath + "/web", "", 200, nil, nil},
		{"evict", "POST", podsPath + "/web/eviction",
			eviction("web", `{"gracePeriodSeconds":0,"preconditions":{"uid":"`+uid+`","resourceVersion":"`+rv+`"}}`), 201,
			[]string{`"kind":"Status"`, `"apiVersion":"v1"`, `"status":"Success"`, `"code":201`}, nil},
		{"gone", "GET", podsPath + "/web", "", 404, nil, nil},
		{"evict again", "POST", podsPath + "/web/eviction", eviction("web", ""), 404, []string{`pods \"web\" not found`}, nil},
	})

	// A pod held by a finalizer is only marked for deletion; the eviction still
	// answers 201 (a DELETE can answer 200 or 202), through every peer.
	createPod(t, c, "held", `,"finalizers":["example.com/hold"]`)
	for i := range c.Peers {
		code, b, _ := c.Do(i, "POST", podsPath+"/held/eviction", eviction("held", ""))
		if code != 201 || !strings.Contains(string(b), `"status":"Success"`) {
			t.Fatalf("evict a pod with a finalizer through peer %d: %d %s, want 201 Success", i, code, b)
		}
	}
	code, b, _ := c.Do(2, "GET", podsPath+"/held", "")
	if code != 200 || !strings.Contains(string(b), `"deletionTimestamp"`) {
		t.Fatalf("evicted pod with a finalizer: %d %s, want it marked for deletion", code, b)
	}
}

// TestPodEvictionGRPC: the Evict rpc of the Pods service, called on a follower.
func TestPodEvictionGRPC(t *testing.T) {
	c := testcluster.New(t, 3)
	createPod(t, c, "web", "")
	follower := (c.Leader() + 1) % len(c.Peers)
	pods := corev1.NewPodsClient(c.Peers[follower].Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev := func(name, rv string) *corev1.CreateEvictionRequest {
		e := &policyv1.Eviction{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"}}
		if rv != "" {
			e.DeleteOptions = &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}
		}
		return &corev1.CreateEvictionRequest{Namespace: "default", Name: name, Body: e}
	}
	if _, err := pods.Evict(ctx, ev("nope", "")); status.Code(err) != codes.NotFound {
		t.Fatalf("evict a missing pod: %v, want NotFound", err)
	}
	if _, err := pods.Evict(ctx, ev("web", "1")); status.Code(err) != codes.Aborted {
		t.Fatalf("evict with a stale resourceVersion: %v, want Aborted (409 Conflict)", err)
	}
	st, err := pods.Evict(ctx, ev("web", ""))
	if err != nil || st.GetStatus() != "Success" || st.GetCode() != 201 {
		t.Fatalf("evict: %v %v", st, err)
	}
	if _, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"}); status.Code(err) != codes.NotFound {
		t.Fatalf("evicted pod still readable: %v", err)
	}
}

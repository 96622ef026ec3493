package apiserver_test

import (
	"strings"
	"testing"

	"github.com/rafter-dev/rafter/internal/testcluster"
)

// TestDeleteWaitsForFinalizers: an object with finalizers is only marked by
// DELETE (200 with deletionTimestamp set; 202 when the body asks for cascading
// deletion with orphanDependents: false, as Kubernetes answers), may then lose
// finalizers but gain none, and goes when the last one is removed. Requests go
// to every peer, so the 202 also survives forwarding to the leader.
func TestDeleteWaitsForFinalizers(t *testing.T) {
	c := testcluster.New(t, 3)
	const cmPath = "/api/v1/namespaces/default/configmaps"
	if code, b, _ := c.Do(0, "POST", cmPath, `{"metadata":{"name":"held","finalizers":["example.com/hold"]},"data":{"a":"1"}}`); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	for i := range 3 {
		code, b, _ := c.Do(i, "DELETE", cmPath+"/held", "")
		if code != 200 || !strings.Contains(string(b), `"deletionTimestamp"`) {
			t.Fatalf("delete through peer %d: %d %s, want 200 with a deletionTimestamp", i, code, b)
		}
		code, b, _ = c.Do(i, "DELETE", cmPath+"/held", `{"orphanDependents":false}`)
		if code != 202 || !strings.Contains(string(b), `"deletionTimestamp"`) {
			t.Fatalf("delete with orphanDependents false through peer %d: %d %s, want 202 with a deletionTimestamp", i, code, b)
		}
	}
	code, b, _ := c.Do(1, "GET", cmPath+"/held", "")
	if code != 200 || !strings.Contains(string(b), `"deletionTimestamp"`) || !strings.Contains(string(b), "example.com/hold") {
		t.Fatalf("marked object: %d %s", code, b)
	}
	runCases(t, c, []apiCase{
		{"no new finalizer on a deleted object", "PUT", cmPath + "/held",
			`{"metadata":{"name":"held","finalizers":["example.com/hold","example.com/more"]},"data":{"a":"1"}}`,
			422, []string{`"field":"metadata.finalizers"`, "no new finalizers can be added if the object is being deleted"}, nil},
		{"other updates still work", "PUT", cmPath + "/held",
			`{"metadata":{"name":"held","finalizers":["example.com/hold"]},"data":{"a":"2"}}`, 200, []string{`"a":"2"`, `"deletionTimestamp"`}, nil},
		{"removing the last finalizer removes the object", "PUT", cmPath + "/held",
			`{"metadata":{"name":"held","finalizers":[]},"data":{"a":"2"}}`, 200, []string{`"name":"held"`}, nil},
		{"gone", "GET", cmPath + "/held", "", 404, nil, nil},
		{"bad propagation policy", "DELETE", "/apis/apps/v1/namespaces/default/deployments/d?propagationPolicy=Sideways", "",
			422, []string{`"field":"propagationPolicy"`, `Unsupported value: \"Sideways\"`}, nil},
	})

	// A plain object deleted in the foreground has nothing to wait for: it goes.
	if code, b, _ := c.Do(0, "POST", cmPath, `{"metadata":{"name":"plain"}}`); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	if code, b, _ := c.Do(2, "DELETE", cmPath+"/plain?propagationPolicy=Foreground", ""); code != 200 {
		t.Fatalf("foreground delete of a ConfigMap: %d %s", code, b)
	}
	if code, _, _ := c.Do(2, "GET", cmPath+"/plain", ""); code != 404 {
		t.Fatalf("ConfigMap still there after delete: %d", code)
	}
}

// TestPropagationPoliciesSetFinalizers: Foreground and Orphan deletes of an owner
// kind leave it marked with the garbage collector's finalizer; deleting again
// with the other policy swaps the finalizer, as in Kubernetes.
func TestPropagationPoliciesSetFinalizers(t *testing.T) {
	c := testcluster.New(t, 3)
	const dPath = "/apis/apps/v1/namespaces/default/deployments"
	if code, b, _ := c.Do(0, "POST", dPath, deployment("d", `{"matchLabels":{"app":"d"}}`, `{"app":"d"}`, "")); code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	runCases(t, c, []apiCase{
		{"foreground", "DELETE", dPath + "/d?propagationPolicy=Foreground", "", 200, []string{`"finalizers":["foregroundDeletion"]`, `"deletionTimestamp"`}, nil},
		{"then orphan", "DELETE", dPath + "/d?propagationPolicy=Orphan", "", 200, []string{`"finalizers":["orphan"]`}, []string{"foregroundDeletion"}},
		{"still there", "GET", dPath + "/d", "", 200, []string{`"finalizers":["orphan"]`}, nil},
		{"background keeps what holds it", "DELETE", dPath + "/d", "", 200, []string{`"finalizers":["orphan"]`}, nil},
	})
}

package apiserver_test

import (
	"strings"
	"testing"

	"github.com/rafter-dev/rafter/internal/testcluster"
)

func TestPodBinding(t *testing.T) {
	c := testcluster.New(t, 3)
	pod := `{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	if code, b, _ := c.Do(0, "POST", "/api/v1/namespaces/default/pods", pod); code != 201 {
		t.Fatalf("create pod: %d %s", code, b)
	}
	binding := func(node string) string {
		return `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"apiVersion":"v1","kind":"Node","name":"` + node + `"}}`
	}
	cases := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"no target", "/api/v1/namespaces/default/pods/web/binding", `{"metadata":{"name":"web"},"target":{}}`, 422, "target.name: Required value"},
		{"wrong kind", "/api/v1/namespaces/default/pods/web/binding", `{"target":{"kind":"Pod","name":"x"}}`, 422, "target.kind: Unsupported value"},
		{"name mismatch", "/api/v1/namespaces/default/pods/web/binding", `{"metadata":{"name":"other"},"target":{"name":"n1"}}`, 400, "does not match the name on the URL"},
		{"missing pod", "/api/v1/namespaces/default/pods/nope/binding", `{"target":{"name":"n1"}}`, 404, `pods \"nope\" not found`},
		{"stale precondition", "/api/v1/namespaces/default/pods/web/binding", `{"metadata":{"resourceVersion":"1"},"target":{"name":"n1"}}`, 409, "the object has been modified"},
		{"bind", "/api/v1/namespaces/default/pods/web/binding", binding("n1"), 201, `"status":"Success"`},
		{"bind again", "/api/v1/namespaces/default/pods/web/binding", binding("n2"), 409, `pod web is already assigned to node \"n1\"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b, _ := c.Do(1, "POST", tc.path, tc.body)
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d containing %q", code, b, tc.code, tc.want)
			}
		})
	}
	code, b, _ := c.Do(2, "GET", "/api/v1/namespaces/default/pods/web", "")
	if code != 200 || !strings.Contains(string(b), `"nodeName":"n1"`) || !strings.Contains(string(b), `"type":"PodScheduled","status":"True"`) {
		t.Fatalf("bound pod: %d %s", code, b)
	}
}

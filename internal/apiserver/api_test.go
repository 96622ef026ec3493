package apiserver_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/rafter-dev/rafter/internal/testcluster"
)

// apiCase is one REST request and what must come back.
type apiCase struct {
	name, method, path, body string
	code                     int
	contains                 []string // substrings of the body
	absent                   []string
}

func runCases(t *testing.T, c *testcluster.Cluster, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := c.Do(1, tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(body), s) {
					t.Errorf("body does not contain %s: %s", s, body)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(string(body), s) {
					t.Errorf("body contains %s: %s", s, body)
				}
			}
		})
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

func get(m map[string]any, path ...any) any {
	var cur any = m
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, _ := cur.(map[string]any)
			cur = mm[k]
		case int:
			l, _ := cur.([]any)
			if k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

const svcPath = "/api/v1/namespaces/default/services"

func svc(name, spec string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q},"spec":%s}`, name, spec)
}

func TestServiceTypesAndAllocation(t *testing.T) {
	c := testcluster.New(t, 3)
	code, body, _ := c.Do(0, "POST", svcPath, svc("web", `{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":"http"}]}`))
	if code != 201 {
		t.Fatalf("create ClusterIP service: %d %s", code, body)
	}
	web := decode(t, body)
	ip := fmt.Sprint(get(web, "spec", "clusterIP"))
	addr, err := netip.ParseAddr(ip)
	if err != nil || !netip.MustParsePrefix("10.96.0.0/12").Contains(addr) {
		t.Fatalf("clusterIP %q not allocated from 10.96.0.0/12", ip)
	}
	if get(web, "spec", "type") != "ClusterIP" || get(web, "spec", "ports", 0, "protocol") != "TCP" || get(web, "spec", "ports", 0, "targetPort") != "http" {
		t.Fatalf("defaults not applied: %s", body)
	}

	code, body, _ = c.Do(2, "POST", svcPath, svc("np", `{"type":"NodePort","selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":8080},{"name":"dns","port":53,"protocol":"UDP"}]}`))
	if code != 201 {
		t.Fatalf("create NodePort service: %d %s", code, body)
	}
	np := decode(t, body)
	var ports []float64
	for i := 0; i < 2; i++ {
		p, _ := get(np, "spec", "ports", i, "nodePort").(float64)
		if p < 30000 || p > 32767 {
			t.Fatalf("nodePort %v not in 30000-32767: %s", p, body)
		}
		ports = append(ports, p)
	}
	if ports[0] == ports[1] {
		t.Fatalf("two ports got the same nodePort %v", ports[0])
	}
	taken := int(ports[0])

	runCases(t, c, []apiCase{
		{"clusterIP outside the service CIDR", "POST", svcPath, svc("out", `{"clusterIP":"192.168.1.1","ports":[{"port":80}]}`), 422,
			[]string{`"field":"spec.clusterIP"`, "not in the valid range"}, nil},
		{"clusterIP already allocated", "POST", svcPath, svc("dup", fmt.Sprintf(`{"clusterIP":%q,"ports":[{"port":80}]}`, ip)), 422,
			[]string{`"field":"spec.clusterIP"`, "already allocated"}, nil},
		{"nodePort below the range", "POST", svcPath, svc("low", `{"type":"NodePort","ports":[{"port":80,"nodePort":29999}]}`), 422,
			[]string{`"field":"spec.ports[0].nodePort"`, "30000-32767"}, nil},
		{"nodePort already allocated", "POST", svcPath, svc("taken", fmt.Sprintf(`{"type":"NodePort","ports":[{"port":80,"nodePort":%d}]}`, taken)), 422,
			[]string{`"field":"spec.ports[0].nodePort"`, "already allocated"}, nil},
		{"nodePort on a ClusterIP service", "POST", svcPath, svc("cip", `{"ports":[{"port":80,"nodePort":30555}]}`), 422,
			[]string{`"field":"spec.ports[0].nodePort"`}, nil},
		{"unknown type", "POST", svcPath, svc("weird", `{"type":"Magic","ports":[{"port":80}]}`), 422,
			[]string{`"field":"spec.type"`}, nil},
		{"port out of range", "POST", svcPath, svc("bigport", `{"ports":[{"port":70000}]}`), 422,
			[]string{`"field":"spec.ports[0].port"`}, nil},
		{"bad targetPort name", "POST", svcPath, svc("badtp", `{"ports":[{"port":80,"targetPort":"not_a_name"}]}`), 422,
			[]string{`"field":"spec.ports[0].targetPort"`}, nil},
		{"two unnamed ports", "POST", svcPath, svc("twoports", `{"ports":[{"port":80},{"port":81}]}`), 422,
			[]string{`"field":"spec.ports[0].name"`}, nil},
		{"service name must be a DNS-1035 label", "POST", svcPath, svc("1abc", `{"ports":[{"port":80}]}`), 422,
			[]string{`"field":"metadata.name"`}, nil},
		{"headless", "POST", svcPath, svc("db", `{"clusterIP":"None","selector":{"app":"db"},"ports":[{"port":5432}]}`), 201,
			[]string{`"clusterIP":"None"`}, []string{`"nodePort"`}},
		{"headless without ports", "POST", svcPath, svc("db2", `{"clusterIP":"None","selector":{"app":"db"}}`), 201, nil, nil},
		{"ExternalName", "POST", svcPath, svc("ext", `{"type":"ExternalName","externalName":"db.example.com"}`), 201,
			[]string{`"externalName":"db.example.com"`}, []string{`"clusterIP"`}},
		{"ExternalName without a name", "POST", svcPath, svc("ext2", `{"type":"ExternalName"}`), 422,
			[]string{`"field":"spec.externalName"`}, nil},
		{"LoadBalancer gets node ports", "POST", svcPath, svc("lb", `{"type":"LoadBalancer","selector":{"app":"web"},"ports":[{"port":443}]}`), 201,
			[]string{`"nodePort":3`, `"clusterIP":"10.`}, nil},
	})

	// An update that omits the allocated values keeps them; changing clusterIP is refused.
	code, body, _ = c.Do(1, "PUT", svcPath+"/np", svc("np", `{"type":"NodePort","selector":{"app":"web2"},"ports":[{"name":"http","port":80,"targetPort":8080},{"name":"dns","port":53,"protocol":"UDP"}]}`))
	if code != 200 {
		t.Fatalf("update NodePort service: %d %s", code, body)
	}
	upd := decode(t, body)
	if get(upd, "spec", "clusterIP") != get(np, "spec", "clusterIP") || get(upd, "spec", "ports", 0, "nodePort") != get(np, "spec", "ports", 0, "nodePort") {
		t.Fatalf("update lost allocations: before %v after %v", np["spec"], upd["spec"])
	}
	runCases(t, c, []apiCase{
		{"clusterIP is immutable", "PUT", svcPath + "/web", svc("web", `{"clusterIP":"10.96.0.99","ports":[{"port":80}]}`), 422,
			[]string{`"field":"spec.clusterIP"`, "immutable"}, nil},
	})

	// Deleting a service releases its node port for others.
	if code, body, _ := c.Do(0, "DELETE", svcPath+"/np", ""); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body, _ := c.Do(2, "POST", svcPath, svc("reuse", fmt.Sprintf(`{"type":"NodePort","ports":[{"port":80,"nodePort":%d}]}`, taken))); code != 201 {
		t.Fatalf("reuse of a released nodePort: %d %s", code, body)
	}
}

func TestLabelSelectors(t *testing.T) {
	c := testcluster.New(t, 3)
	for _, o := range []struct{ name, labels string }{
		{"a", `{"env":"prod","tier":"web"}`}, {"b", `{"env":"dev","tier":"web"}`},
		{"c", `{"env":"prod"}`}, {"d", `{}`},
	} {
		body := fmt.Sprintf(`{"metadata":{"name":%q,"labels":%s},"data":{"k":"v"}}`, o.name, o.labels)
		if code, b, _ := c.Do(0, "POST", "/api/v1/namespaces/default/configmaps", body); code != 201 {
			t.Fatalf("create %s: %d %s", o.name, code, b)
		}
	}
	cases := map[string][]string{
		"env=prod":              {"a", "c"},
		"env==prod":             {"a", "c"},
		"env!=prod":             {"b", "d"},
		"env in (dev,qa)":       {"b"},
		"env notin (prod)":      {"b", "d"},
		"tier":                  {"a", "b"},
		"!tier":                 {"c", "d"},
		"env=prod,tier=web":     {"a"},
		"env in (prod),!tier":   {"c"},
		"":                      {"a", "b", "c", "d"},
		"tier notin (web),env":  {"c"},
		"env=prod,env in (dev)": nil,
	}
	for sel, want := range cases {
		t.Run(sel, func(t *testing.T) {
			q := strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "!", "%21", "=", "%3D", ",", "%2C").Replace(sel)
			code, b, _ := c.Do(2, "GET", "/api/v1/namespaces/default/configmaps?labelSelector="+q, "")
			if code != 200 {
				t.Fatalf("%d %s", code, b)
			}
			var got []string
			for _, it := range get(decode(t, b), "items").([]any) {
				got = append(got, fmt.Sprint(get(it.(map[string]any), "metadata", "name")))
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("selector %q: got %v, want %v", sel, got, want)
			}
		})
	}
	runCases(t, c, []apiCase{
		{"malformed selector", "GET", "/api/v1/namespaces/default/configmaps?labelSelector=env%20in%20prod", "", 400, []string{`"reason":"BadRequest"`}, nil},
		{"unsupported field selector", "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=spec.foo%3Dx", "", 400, []string{"field label not supported"}, nil},
		{"field selector on name", "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Db", "", 200, []string{`"name":"b"`}, []string{`"name":"a"`}},
	})
}

const deployPath = "/apis/apps/v1/namespaces/default/deployments"

func deployment(name, selector, labels, extra string) string {
	return fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q},"spec":{"selector":%s,
	"template":{"metadata":{"labels":%s},"spec":{"containers":[{"name":"app","image":"nginx:1.27"%s}]}}}}`, name, selector, labels, extra)
}

func TestWorkloadSelectorsValidationAndWarnings(t *testing.T) {
	c := testcluster.New(t, 3)
	code, body, hdr := c.Do(1, "POST", deployPath, deployment("web", `{"matchExpressions":[{"key":"app","operator":"In","values":["web"]}]}`, `{"app":"web"}`,
		`,"securityContext":{"runAsUser":1000},"lifecycle":{"preStop":{"exec":{"command":["sleep","1"]}}}`))
	if code != 201 {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	warning := strings.Join(hdr.Values("Warning"), "\n")
	for _, want := range []string{"spec.template.spec.containers[0].securityContext", "spec.template.spec.containers[0].lifecycle"} {
		if !strings.Contains(warning, want) {
			t.Errorf("Warning header %q does not name %s", warning, want)
		}
	}
	d := decode(t, body)
	if get(d, "spec", "replicas") != float64(1) || get(d, "spec", "strategy", "rollingUpdate", "maxSurge") != "25%" ||
		get(d, "spec", "template", "spec", "containers", 0, "securityContext", "runAsUser") == nil {
		t.Fatalf("defaults or stored fields missing: %s", body)
	}
	if _, _, hdr := c.Do(1, "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"plain"}}`); len(hdr.Values("Warning")) != 0 {
		t.Errorf("plain ConfigMap got warnings: %v", hdr.Values("Warning"))
	}
	runCases(t, c, []apiCase{
		{"selector does not match template", "POST", deployPath, deployment("x", `{"matchLabels":{"app":"x"}}`, `{"app":"y"}`, ""), 422,
			[]string{`"field":"spec.template.metadata.labels"`}, nil},
		{"set-based selector does not match", "POST", deployPath, deployment("x2", `{"matchExpressions":[{"key":"app","operator":"NotIn","values":["y"]}]}`, `{"app":"y"}`, ""), 422,
			[]string{`"field":"spec.template.metadata.labels"`}, nil},
		{"invalid operator", "POST", deployPath, deployment("x3", `{"matchExpressions":[{"key":"app","operator":"Maybe","values":["y"]}]}`, `{"app":"y"}`, ""), 422,
			[]string{`spec.selector.matchExpressions[0].operator`}, nil},
		{"missing selector", "POST", deployPath, `{"metadata":{"name":"x4"},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"b"}]}}}}`, 422,
			[]string{`"field":"spec.selector"`}, nil},
		{"container without image", "POST", deployPath, `{"metadata":{"name":"x5"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"a"}]}}}}`, 422,
			[]string{`"field":"spec.template.spec.containers[0].image"`}, nil},
		{"bad quantity", "POST", deployPath, deployment("x6", `{"matchLabels":{"a":"b"}}`, `{"a":"b"}`, `,"resources":{"limits":{"cpu":"lots"}}`), 422,
			[]string{`spec.template.spec.containers[0].resources.limits[cpu]`}, nil},
		{"quantities as numbers and strings", "POST", deployPath, deployment("x7", `{"matchLabels":{"a":"b"}}`, `{"a":"b"}`, `,"resources":{"limits":{"cpu":1.5,"memory":"128Mi","ephemeral-storage":1e9},"requests":{"cpu":"500m"}}`), 201,
			[]string{`"cpu":"1500m"`, `"memory":"128Mi"`, `"cpu":"500m"`, `"ephemeral-storage":"1G"`}, nil},
		{"bad maxSurge", "POST", deployPath, `{"metadata":{"name":"x8"},"spec":{"strategy":{"rollingUpdate":{"maxSurge":"lots"}},"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"a","image":"b"}]}}}}`, 422,
			[]string{`spec.strategy.rollingUpdate.maxSurge`}, nil},
	})

	// The selector is immutable.
	d["spec"].(map[string]any)["selector"] = map[string]any{"matchLabels": map[string]any{"app": "web", "v": "2"}}
	d["spec"].(map[string]any)["template"].(map[string]any)["metadata"] = map[string]any{"labels": map[string]any{"app": "web", "v": "2"}}
	b, _ := json.Marshal(d)
	runCases(t, c, []apiCase{
		{"selector is immutable", "PUT", deployPath + "/web", string(b), 422, []string{`"field":"spec.selector"`, "immutable"}, nil},
	})
}

func TestMetadataRulesAndNamespaces(t *testing.T) {
	c := testcluster.New(t, 3)
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if code, b, _ := c.Do(2, "GET", "/api/v1/namespaces/"+ns, ""); code != 200 {
			t.Fatalf("namespace %s: %d %s", ns, code, b)
		}
	}
	code, body, _ := c.Do(0, "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"m","labels":{"app":"x"}},"data":{"a":"1"}}`)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	m := decode(t, body)
	uid := fmt.Sprint(get(m, "metadata", "uid"))
	runCases(t, c, []apiCase{
		{"name too long", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"` + strings.Repeat("a", 254) + `"}}`, 422, []string{`"field":"metadata.name"`}, nil},
		{"name missing", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{}}`, 422, []string{`"field":"metadata.name"`}, nil},
		{"generateName", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"generateName":"gen-"}}`, 201, []string{`"name":"gen-`}, nil},
		{"bad label key", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"l1","labels":{"bad key":"v"}}}`, 422, []string{`"field":"metadata.labels"`}, nil},
		{"bad label value", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"l2","labels":{"k":"bad value!"}}}`, 422, []string{`metadata.labels`}, nil},
		{"bad configmap key", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"l3"},"data":{"a/b":"v"}}`, 422, []string{`"field":"data"`}, nil},
		{"namespace mismatch", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"n1","namespace":"kube-system"}}`, 400, []string{"does not match the namespace"}, nil},
		{"wrong kind in body", "POST", "/api/v1/namespaces/default/configmaps", `{"kind":"Secret","metadata":{"name":"n2"}}`, 400, []string{"does not match the expected kind"}, nil},
		{"name mismatch on update", "PUT", "/api/v1/namespaces/default/configmaps/m", `{"metadata":{"name":"other"}}`, 400, []string{"does not match the name on the URL"}, nil},
		{"uid is immutable", "PUT", "/api/v1/namespaces/default/configmaps/m", `{"metadata":{"name":"m","uid":"1234"}}`, 422, []string{`"field":"metadata.uid"`}, nil},
		{"update of a missing object", "PUT", "/api/v1/namespaces/default/configmaps/zzz", `{"metadata":{"name":"zzz"}}`, 404, []string{`"reason":"NotFound"`}, nil},
		{"get of a missing object", "GET", "/api/v1/namespaces/default/configmaps/zzz", "", 404, []string{`configmaps \"zzz\" not found`}, nil},
		{"create twice", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"m"}}`, 409, []string{`"reason":"AlreadyExists"`}, nil},
		{"system namespace cannot be deleted", "DELETE", "/api/v1/namespaces/default", "", 403, []string{"may not be deleted"}, nil},
		{"namespace name must be a DNS label", "POST", "/api/v1/namespaces", `{"metadata":{"name":"a.b"}}`, 422, []string{`"field":"metadata.name"`}, nil},
		{"secret stringData becomes data", "POST", "/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s"},"stringData":{"pw":"hunter2"}}`, 201, []string{`"pw":"aHVudGVyMg=="`, `"type":"Opaque"`}, []string{"stringData"}},
		{"secret data must be base64", "POST", "/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s2"},"data":{"pw":"not base64!"}}`, 400, []string{"data"}, nil},
		{"all-namespaces list", "GET", "/api/v1/configmaps", "", 200, []string{`"kind":"ConfigMapList"`, `"name":"m"`}, nil},
		{"dry run changes nothing", "POST", "/api/v1/namespaces/default/configmaps?dryRun=All", `{"metadata":{"name":"dry"}}`, 201, []string{`"name":"dry"`}, nil},
		{"dry-run object is absent", "GET", "/api/v1/namespaces/default/configmaps/dry", "", 404, nil, nil},
		{"stale read option", "GET", "/api/v1/namespaces/default/configmaps/m?resourceVersion=0", "", 200, []string{uid}, nil},
	})

	// An update without resourceVersion keeps uid and creationTimestamp and bumps
	// generation only when data changes.
	code, body, _ = c.Do(2, "PUT", "/api/v1/namespaces/default/configmaps/m", `{"metadata":{"name":"m","labels":{"app":"y"}},"data":{"a":"1"}}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	u := decode(t, body)
	if get(u, "metadata", "uid") != uid || get(u, "metadata", "creationTimestamp") != get(m, "metadata", "creationTimestamp") || get(u, "metadata", "generation") != get(m, "metadata", "generation") {
		t.Fatalf("label-only update changed identity or generation: before %v after %v", m["metadata"], u["metadata"])
	}

	// Deleting a namespace takes its contents with it.
	if code, b, _ := c.Do(0, "POST", "/api/v1/namespaces", `{"metadata":{"name":"team"}}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	if code, b, _ := c.Do(1, "POST", "/api/v1/namespaces/team/configmaps", `{"metadata":{"name":"x"}}`); code != 201 {
		t.Fatalf("%d %s", code, b)
	}
	if code, b, _ := c.Do(2, "DELETE", "/api/v1/namespaces/team", ""); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	// No namespace controller runs here: the namespace stays Terminating with its
	// contents (internal/ctrl's TestNamespaceDeletion covers the rest).
	runCases(t, c, []apiCase{
		{"terminating", "GET", "/api/v1/namespaces/team", "", 200, []string{`"phase":"Terminating"`, `"finalizers":["kubernetes"]`, `"deletionTimestamp"`}, nil},
		{"deleting again changes nothing", "DELETE", "/api/v1/namespaces/team", "", 200, []string{`"phase":"Terminating"`}, nil},
		{"contents stay until the controller deletes them", "GET", "/api/v1/namespaces/team/configmaps/x", "", 200, nil, nil},
		{"no new content", "POST", "/api/v1/namespaces/team/configmaps", `{"metadata":{"name":"y"}}`, 403, []string{`unable to create new content in namespace team because it is being terminated`}, nil},
	})
}

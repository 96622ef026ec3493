package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	networkingv1 "github.com/rafter-dev/rafter/gen/rafter/networking/v1"
	rbacv1 "github.com/rafter-dev/rafter/gen/rafter/rbac/v1"
)

// ids lists objects as "Kind/namespace/name@index", in order.
func ids(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s/%s/%s@%d", o.Kind.Kind, o.Namespace, o.Name, o.Index))
	}
	return out
}

// get returns the decoded message of the object with that kind and name.
func get[M proto.Message](t *testing.T, objs []Object, kind, name string) M {
	t.Helper()
	for _, o := range objs {
		if o.Kind.Kind == kind && o.Name == name {
			m, ok := o.Msg.(M)
			if !ok {
				t.Fatalf("%s/%s: message is %T", kind, name, o.Msg)
			}
			return m
		}
	}
	var zero M
	t.Fatalf("no %s/%s among %v", kind, name, ids(objs))
	return zero
}

func wantString(t *testing.T, what string, v *structpb.Value, want string) {
	t.Helper()
	if _, ok := v.GetKind().(*structpb.Value_StringValue); !ok || v.GetStringValue() != want {
		t.Errorf("%s = %v, want the string %q", what, v, want)
	}
}

func wantNumber(t *testing.T, what string, v *structpb.Value, want float64) {
	t.Helper()
	if _, ok := v.GetKind().(*structpb.Value_NumberValue); !ok || v.GetNumberValue() != want {
		t.Errorf("%s = %v, want the number %v", what, v, want)
	}
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// TestDecodeGood decodes manifests written in the shapes of the Kubernetes
// documentation's examples: all must decode, and fields must land where
// Kubernetes would put them.
func TestDecodeGood(t *testing.T) {
	tests := []struct {
		file  string
		want  []string
		check func(t *testing.T, objs []Object)
	}{
		{"deployment.yaml", []string{"Deployment/shop/storefront@0"}, func(t *testing.T, objs []Object) {
			d := get[*appsv1.Deployment](t, objs, "Deployment", "storefront")
			check(t, "replicas", d.GetSpec().GetReplicas(), 3)
			ru := d.GetSpec().GetStrategy().GetRollingUpdate()
			wantString(t, "maxSurge", ru.GetMaxSurge(), "25%")
			wantNumber(t, "maxUnavailable", ru.GetMaxUnavailable(), 0)
			c := d.GetSpec().GetTemplate().GetSpec().GetContainers()[0]
			check(t, "ports[1].containerPort", c.GetPorts()[1].GetContainerPort(), 9100)
			wantNumber(t, "limits[cpu]", c.GetResources().GetLimits()["cpu"], 1)
			wantString(t, "limits[memory]", c.GetResources().GetLimits()["memory"], "128Mi")
			wantString(t, "requests[cpu]", c.GetResources().GetRequests()["cpu"], "250m")
			check(t, "env[1] secretKeyRef", c.GetEnv()[1].GetValueFrom().GetSecretKeyRef().GetKey(), "password")
			check(t, "env[0] configMapKeyRef", c.GetEnv()[0].GetValueFrom().GetConfigMapKeyRef().GetName(), "storefront-config")
			wantString(t, "divisor", c.GetEnv()[3].GetValueFrom().GetResourceFieldRef().GetDivisor(), "1Mi")
			wantString(t, "readinessProbe port", c.GetReadinessProbe().GetHttpGet().GetPort(), "http")
			wantNumber(t, "livenessProbe port", c.GetLivenessProbe().GetHttpGet().GetPort(), 8080)
			check(t, "labels", d.GetMetadata().GetLabels()["app.kubernetes.io/name"], "storefront")
		}},
		{"services.yaml", []string{
			"Service/shop/storefront@0", "Service/shop/storefront-nodeport@1", "Service/shop/storefront-public@2",
			"Service/shop/storefront-pods@3", "Service/shop/payments@4",
		}, func(t *testing.T, objs []Object) {
			ci := get[*corev1.Service](t, objs, "Service", "storefront")
			check(t, "ClusterIP type", ci.GetSpec().GetType(), "ClusterIP")
			wantString(t, "named targetPort", ci.GetSpec().GetPorts()[0].GetTargetPort(), "http")
			np := get[*corev1.Service](t, objs, "Service", "storefront-nodeport")
			check(t, "nodePort", np.GetSpec().GetPorts()[0].GetNodePort(), 30080)
			wantNumber(t, "numeric targetPort", np.GetSpec().GetPorts()[0].GetTargetPort(), 8080)
			lb := get[*corev1.Service](t, objs, "Service", "storefront-public")
			check(t, "LoadBalancer ports", len(lb.GetSpec().GetPorts()), 2)
			check(t, "externalTrafficPolicy", lb.GetSpec().GetExternalTrafficPolicy(), "Local")
			hl := get[*corev1.Service](t, objs, "Service", "storefront-pods")
			check(t, "headless clusterIP", hl.GetSpec().GetClusterIP(), "None")
			en := get[*corev1.Service](t, objs, "Service", "payments")
			check(t, "externalName", en.GetSpec().GetExternalName(), "payments.example.internal")
		}},
		{"statefulset.yaml", []string{"Service//kv@0", "StatefulSet//kv@1"}, func(t *testing.T, objs []Object) {
			s := get[*appsv1.StatefulSet](t, objs, "StatefulSet", "kv")
			check(t, "serviceName", s.GetSpec().GetServiceName(), "kv")
			vct := s.GetSpec().GetVolumeClaimTemplates()[0]
			check(t, "claim template name", vct.GetMetadata().GetName(), "data")
			wantString(t, "claim storage", vct.GetSpec().GetResources().GetRequests()["storage"], "1Gi")
			check(t, "headless", get[*corev1.Service](t, objs, "Service", "kv").GetSpec().GetClusterIP(), "None")
		}},
		{"daemonset.yaml", []string{"DaemonSet/kube-system/log-shipper@0"}, func(t *testing.T, objs []Object) {
			d := get[*appsv1.DaemonSet](t, objs, "DaemonSet", "log-shipper")
			tol := d.GetSpec().GetTemplate().GetSpec().GetTolerations()
			check(t, "tolerations", len(tol), 2)
			check(t, "tolerationSeconds", tol[1].GetTolerationSeconds(), 300)
			wantNumber(t, "maxUnavailable", d.GetSpec().GetUpdateStrategy().GetRollingUpdate().GetMaxUnavailable(), 1)
		}},
		{"replicaset.yaml", []string{"ReplicaSet//cart@0"}, func(t *testing.T, objs []Object) {
			r := get[*appsv1.ReplicaSet](t, objs, "ReplicaSet", "cart")
			check(t, "matchExpressions", r.GetSpec().GetSelector().GetMatchExpressions()[0].GetValues(), []string{"backend"})
		}},
		{"pod-probes-volumes.yaml", []string{"Pod//reporting@0"}, func(t *testing.T, objs []Object) {
			p := get[*corev1.Pod](t, objs, "Pod", "reporting")
			check(t, "initContainers", p.GetSpec().GetInitContainers()[0].GetName(), "wait-for-db")
			c := p.GetSpec().GetContainers()[0]
			check(t, "startupProbe exec", c.GetStartupProbe().GetExec().GetCommand(), []string{"cat", "/tmp/started"})
			wantString(t, "livenessProbe port", c.GetLivenessProbe().GetHttpGet().GetPort(), "http")
			wantNumber(t, "readinessProbe tcpSocket port", c.GetReadinessProbe().GetTcpSocket().GetPort(), 8080)
			check(t, "runAsUser", c.GetSecurityContext().GetRunAsUser(), 1000)
			v := p.GetSpec().GetVolumes()
			check(t, "volumes", len(v), 5)
			wantString(t, "emptyDir sizeLimit", v[0].GetEmptyDir().GetSizeLimit(), "500Mi")
			check(t, "configMap defaultMode (YAML octal 0644)", v[1].GetConfigMap().GetDefaultMode(), 0o644)
			check(t, "secret", v[2].GetSecret().GetSecretName(), "reporting-credentials")
			check(t, "hostPath", v[3].GetHostPath().GetPath(), "/etc/localtime")
			check(t, "persistentVolumeClaim", v[4].GetPersistentVolumeClaim().GetClaimName(), "reports")
		}},
		{"configmaps.yaml", []string{"ConfigMap/shop/storefront-config@0", "ConfigMap//empty-values@1"}, func(t *testing.T, objs []Object) {
			cm := get[*corev1.ConfigMap](t, objs, "ConfigMap", "storefront-config")
			check(t, "multi-line data", cm.GetData()["app.properties"], "color.good=purple\ncolor.bad=yellow\nallow.textmode=true\n")
			check(t, "quoted bool", cm.GetData()["feature.dark-mode"], "true")
			if !strings.HasSuffix(cm.GetData()["nginx.conf"], "}\n}") {
				t.Errorf("nginx.conf with |- kept a trailing newline: %q", cm.GetData()["nginx.conf"])
			}
			e := get[*corev1.ConfigMap](t, objs, "ConfigMap", "empty-values")
			if v, ok := e.GetData()["nothing"]; !ok || v != "" {
				t.Errorf(`data[nothing] (YAML "nothing:") = %q, %v; want "" as Kubernetes reads it`, v, ok)
			}
			check(t, "binaryData length", len(e.GetBinaryData()["logo.png"]), 70)
		}},
		{"secrets.yaml", []string{"Secret/shop/storefront-db@0", "Secret//reporting-credentials@1", "Secret//both@2"}, func(t *testing.T, objs []Object) {
			s := get[*corev1.Secret](t, objs, "Secret", "storefront-db")
			check(t, "data[password]", string(s.GetData()["password"]), "s3cr3t-password")
			sd := get[*corev1.Secret](t, objs, "Secret", "reporting-credentials")
			check(t, "stringData[password]", sd.GetStringData()["password"], "not base64, and that is fine")
			b := get[*corev1.Secret](t, objs, "Secret", "both")
			check(t, "URL-safe base64", string(b.GetData()["url-safe"]), "hi???>")
			check(t, "unpadded base64", string(b.GetData()["unpadded"]), "hi")
		}},
		{"ingress.yaml", []string{"Ingress/shop/shop@0"}, func(t *testing.T, objs []Object) {
			i := get[*networkingv1.Ingress](t, objs, "Ingress", "shop")
			paths := i.GetSpec().GetRules()[0].GetHttp().GetPaths()
			check(t, "pathType", paths[1].GetPathType(), "Exact")
			check(t, "port name", paths[0].GetBackend().GetService().GetPort().GetName(), "http")
			check(t, "port number", paths[1].GetBackend().GetService().GetPort().GetNumber(), 7000)
			check(t, "tls", i.GetSpec().GetTls()[0].GetSecretName(), "shop-tls")
		}},
		{"pv-pvc.yaml", []string{"PersistentVolume//reports-pv@0", "PersistentVolumeClaim//reports@1"}, func(t *testing.T, objs []Object) {
			pv := get[*corev1.PersistentVolume](t, objs, "PersistentVolume", "reports-pv")
			wantString(t, "capacity", pv.GetSpec().GetCapacity()["storage"], "10Gi")
			pvc := get[*corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim", "reports")
			wantString(t, "request", pvc.GetSpec().GetResources().GetRequests()["storage"], "3Gi")
		}},
		{"namespaces.yaml", []string{"Namespace//shop@0", "Namespace//monitoring@1"}, func(t *testing.T, objs []Object) {
			ns := get[*corev1.Namespace](t, objs, "Namespace", "monitoring")
			if ns.GetMetadata().GetCreationTimestamp() != nil {
				t.Errorf("creationTimestamp: null should leave it unset")
			}
		}},
		{"rbac.yaml", []string{
			"ServiceAccount/shop/deployer@0", "Role/shop/pod-reader@1", "RoleBinding/shop/read-pods@2",
			"ClusterRole//secret-reader@3", "ClusterRoleBinding//read-secrets-global@4",
		}, func(t *testing.T, objs []Object) {
			r := get[*rbacv1.Role](t, objs, "Role", "pod-reader")
			check(t, "core apiGroup", r.GetRules()[0].GetApiGroups(), []string{""})
			rb := get[*rbacv1.RoleBinding](t, objs, "RoleBinding", "read-pods")
			check(t, "roleRef", rb.GetRoleRef().GetName(), "pod-reader")
			check(t, "subjects", len(rb.GetSubjects()), 2)
			cr := get[*rbacv1.ClusterRole](t, objs, "ClusterRole", "secret-reader")
			check(t, "nonResourceURLs", cr.GetRules()[1].GetNonResourceURLs(), []string{"/healthz", "/healthz/*"})
			sa := get[*corev1.ServiceAccount](t, objs, "ServiceAccount", "deployer")
			check(t, "automountServiceAccountToken", sa.GetAutomountServiceAccountToken(), false)
		}},
		{"flow-style.yaml", []string{"Service//hello@0", "Deployment//hello@1"}, func(t *testing.T, objs []Object) {
			s := get[*corev1.Service](t, objs, "Service", "hello")
			wantNumber(t, "targetPort", s.GetSpec().GetPorts()[0].GetTargetPort(), 9376)
			d := get[*appsv1.Deployment](t, objs, "Deployment", "hello")
			wantString(t, "cpu", d.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetResources().GetLimits()["cpu"], "500m")
		}},
		{"document-end.yaml", []string{"ConfigMap//ended-one@0", "ConfigMap//ended-two@1", "ConfigMap//after-end-marker@2"}, nil},
		{"list.yaml", []string{
			"ServiceAccount//builder@0", "Deployment//builder@0",
			"ConfigMap//typed-list-item-a@1", "ConfigMap//typed-list-item-b@1",
		}, func(t *testing.T, objs []Object) {
			cm := get[*corev1.ConfigMap](t, objs, "ConfigMap", "typed-list-item-b")
			check(t, "typed list item kind", cm.GetKind(), "ConfigMap")
			check(t, "typed list item data", cm.GetData()["k"], "v")
		}},
		{"app.json", []string{"Deployment//api@0", "Service//api@1"}, func(t *testing.T, objs []Object) {
			d := get[*appsv1.Deployment](t, objs, "Deployment", "api")
			wantNumber(t, "cpu", d.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetResources().GetRequests()["cpu"], 0.5)
			wantNumber(t, "maxSurge", d.GetSpec().GetStrategy().GetRollingUpdate().GetMaxSurge(), 1)
			wantString(t, "maxUnavailable", d.GetSpec().GetStrategy().GetRollingUpdate().GetMaxUnavailable(), "10%")
		}},
	}

	files, err := filepath.Glob("testdata/good/*")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata/good", tt.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			objs, errs := Decode(path, data)
			for _, err := range errs {
				t.Errorf("unexpected error: %v", err)
			}
			if got := ids(objs); !slices.Equal(got, tt.want) {
				t.Fatalf("objects = %v, want %v", got, tt.want)
			}
			for _, o := range objs {
				if o.Source != path {
					t.Errorf("%s: Source = %q", o.Name, o.Source)
				}
				if meta := o.Msg.ProtoReflect().Descriptor().Fields().ByName("metadata"); !o.Msg.ProtoReflect().Has(meta) {
					t.Errorf("%s: metadata not set", o.Name)
				}
				// JSON is what Msg was read from.
				m := o.Msg.ProtoReflect().New().Interface()
				if err := protojson.Unmarshal(o.JSON, m); err != nil || !proto.Equal(m, o.Msg) {
					t.Errorf("%s: JSON %s does not decode to Msg (%v)", o.Name, o.JSON, err)
				}
			}
			if tt.check != nil {
				tt.check(t, objs)
			}
		})
	}
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
}

// The documents around each bad one in TestDecodeBad: a bad document must not
// stop them. The bad document starts on line 5.
const (
	goodBefore = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before}\n---\n"
	goodAfter  = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: after}\n"
)

const supported = "ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet, Deployment, Endpoints, Event, Ingress, Lease, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicaSet, Role, RoleBinding, Secret, Service, ServiceAccount, StatefulSet, StorageClass"

// TestDecodeBad: each bad document, between two good ones, gives exactly one
// one-line *Error naming where, no Object, and leaves the good ones decoded.
func TestDecodeBad(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
`
	tests := []struct {
		name string
		doc  string
		want string // the whole message, or a prefix of it when it ends in "..."
	}{
		{"unknown field nested", deployment + "        imagePullPolcy: Always\n",
			`bad.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"`},
		{"unknown field deep in a list", deployment + "        ports:\n        - containerPort: 80\n        - containerPort: 443\n          hostPorts: 8443\n",
			`bad.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].ports[1].hostPorts: unknown field "hostPorts"`},
		{"unknown top-level field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nspec: {}\n",
			`bad.yaml: document 2 (ConfigMap/c): spec: unknown field "spec"`},
		{"field names are case-sensitive", "apiVersion: v1\nkind: ConfigMap\nmetadata: {Name: c, name: c}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.Name: unknown field "Name"`},
		{"several problems in one document", deployment + "        imagePullPolcy: Always\n  replicas: two\n",
			`bad.yaml: document 2 (Deployment/web): spec.replicas: expected integer, got string "two"; spec.template.spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"`},
		{"wrong type: string for integer", deployment + "  replicas: \"3\"\n",
			`bad.yaml: document 2 (Deployment/web): spec.replicas: expected integer, got string "3"`},
		{"wrong type: object for array", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: {name: c, image: i}\n",
			`bad.yaml: document 2 (Pod/p): spec.containers: expected array, got object`},
		{"wrong type: boolean label value", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {enabled: true}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.labels[enabled]: expected string, got boolean true`},
		{"wrong type: number for string", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {version: 1.10}\n",
			`bad.yaml: document 2 (ConfigMap/c): data[version]: expected string, got number 1.1`},
		{"wrong type: string for boolean", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nimmutable: \"yes\"\n",
			`bad.yaml: document 2 (Secret/s): immutable: expected boolean, got string "yes"`},
		{"integer out of range", deployment + "        ports: [{containerPort: 99999999999}]\n",
			`bad.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].ports[0].containerPort: 99999999999 is out of range for int32`},
		{"fraction for integer", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80.5}]}\n",
			`bad.yaml: document 2 (Service/s): spec.ports[0].port: expected integer, got number 80.5`},
		{"targetPort neither integer nor string", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: [80]}]}\n",
			`bad.yaml: document 2 (Service/s): spec.ports[0].targetPort: expected integer or string, got array`},
		{"maxSurge fraction", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {strategy: {rollingUpdate: {maxSurge: 0.25}}}\n",
			`bad.yaml: document 2 (Deployment/d): spec.strategy.rollingUpdate.maxSurge: expected integer or string, got number 0.25`},
		{"bad base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  username: YWRtaW4=\n  password: hunter2!\n",
			`bad.yaml: document 2 (Secret/s): data[password]: illegal base64 data at input byte 7`},
		{"base64 that is not a string", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {count: 12}\n",
			`bad.yaml: document 2 (Secret/s): data[count]: expected base64-encoded string, got number 12`},
		{"bad quantity", deployment + "        resources: {limits: {cpu: 2 cores}}\n",
			`bad.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].resources.limits[cpu]: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{"bad quantity type", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {resources: {requests: {storage: {size: 1Gi}}}}\n",
			`bad.yaml: document 2 (PersistentVolumeClaim/c): spec.resources.requests[storage]: expected quantity (a string or a number), got object`},
		{"bad singular quantity", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}], volumes: [{name: v, emptyDir: {sizeLimit: 1 GB}}]}\n",
			`bad.yaml: document 2 (Pod/p): spec.volumes[0].emptyDir.sizeLimit: quantities must match the regular expression ...`},
		{"bad label key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {\"bad key\": x}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.labels[bad key]: Invalid value: "bad key": name part must consist of alphanumeric characters, ...`},
		{"bad label value", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {app: web app}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.labels[app]: Invalid value: "web app": a valid label must be an empty string or consist of alphanumeric characters, ...`},
		{"bad label in a pod template", strings.Replace(deployment, "labels: {app: web}", "labels: {app: web, tier: -front}", 1),
			`bad.yaml: document 2 (Deployment/web): spec.template.metadata.labels[tier]: Invalid value: "-front": a valid label must be ...`},
		{"bad annotation key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations: {\"example.com/a b\": x}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.annotations[example.com/a b]: Invalid value: "example.com/a b": name part must consist of ...`},
		{"missing name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: default\ndata: {a: b}\n",
			`bad.yaml: document 2 (ConfigMap): metadata.name: Required value`},
		{"missing metadata", "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n",
			`bad.yaml: document 2 (ConfigMap): metadata.name: Required value`},
		{"bad timestamp", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, creationTimestamp: yesterday}\n",
			`bad.yaml: document 2 (ConfigMap/c): metadata.creationTimestamp: expected an RFC 3339 time such as "2006-01-02T15:04:05Z", got "yesterday"`},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  name: d\n",
			`bad.yaml: line 9: key "name" already set in map`},
		{"tab indentation", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: c\n",
			`bad.yaml: line 8: found character that cannot start any token (a tab is used for indentation; YAML allows only spaces)`},
		{"yaml syntax error", "apiVersion: v1\nkind: ConfigMap\nmetadata: name: c\n",
			`bad.yaml: line 7: mapping values are not allowed in this context`},
		{"unsupported kind Job", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec: {template: {spec: {containers: [{name: pi, image: perl}], restartPolicy: Never}}}\n",
			`bad.yaml: document 2 (Job/pi): kind "Job" (batch/v1) is not supported; supported kinds: ` + supported},
		{"unsupported kind CronJob", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n",
			`bad.yaml: document 2 (CronJob/nightly): kind "CronJob" (batch/v1) is not supported; supported kinds: ` + supported},
		{"unsupported kind HorizontalPodAutoscaler", "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n",
			`bad.yaml: document 2 (HorizontalPodAutoscaler/web): kind "HorizontalPodAutoscaler" (autoscaling/v2) is not supported; supported kinds: ` + supported},
		{"unsupported kind NetworkPolicy", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\n",
			`bad.yaml: document 2 (NetworkPolicy/deny): kind "NetworkPolicy" (networking.k8s.io/v1) is not supported; supported kinds: ` + supported},
		{"unsupported kind CustomResourceDefinition", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: crontabs.stable.example.com}\n",
			`bad.yaml: document 2 (CustomResourceDefinition/crontabs.stable.example.com): kind "CustomResourceDefinition" (apiextensions.k8s.io/v1) is not supported; supported kinds: ` + supported},
		{"kind in the wrong case", "apiVersion: apps/v1\nkind: deployment\nmetadata: {name: d}\n",
			`bad.yaml: document 2 (deployment/d): kind "deployment" (apps/v1) is not supported; did you mean "Deployment"?`},
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\n",
			`bad.yaml: document 2 (Deployment/web): kind "Deployment" is not served in apiVersion "extensions/v1beta1"; use apiVersion: apps/v1`},
		{"missing kind", "apiVersion: v1\nmetadata: {name: c}\ndata: {a: b}\n",
			`bad.yaml: document 2 (name c): kind: Required value`},
		{"missing apiVersion", "kind: ConfigMap\nmetadata: {name: c}\n",
			`bad.yaml: document 2 (ConfigMap/c): apiVersion: Required value`},
		{"not an object", "just some words\n",
			`bad.yaml: document 2: expected a manifest (an object with apiVersion and kind), got string "just some words"`},
		{"list with a bad item", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: fine}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}, spec: {}}\n- {apiVersion: batch/v1, kind: Job, metadata: {name: j}}\n",
			`bad.yaml: document 2 (ConfigMap/x): items[1].spec: unknown field "spec"; items[2]: kind "Job" (batch/v1) is not supported; supported kinds: ` + supported},
		{"list with an unknown field", "apiVersion: v1\nkind: List\nitem: []\n",
			`bad.yaml: document 2 (List): item: unknown field "item"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := Decode("bad.yaml", []byte(goodBefore+tt.doc+goodAfter))
			if got := ids(objs); !slices.Equal(got, []string{"ConfigMap//before@0", "ConfigMap//after@2"}) {
				t.Errorf("objects = %v, want only the good documents around the bad one", got)
			}
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			var e *Error
			if !errors.As(errs[0], &e) {
				t.Fatalf("error %T is not an *Error", errs[0])
			}
			if e.Source != "bad.yaml" || e.Index != 1 {
				t.Errorf("Source, Index = %q, %d; want bad.yaml, 1", e.Source, e.Index)
			}
			msg := e.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !strings.HasPrefix(msg, prefix) {
					t.Errorf("error:\n  %s\nwant it to start with:\n  %s", msg, prefix)
				}
			} else if msg != tt.want {
				t.Errorf("error:\n  %s\nwant:\n  %s", msg, tt.want)
			}
		})
	}
}

// TestSyntaxErrorLineInFile: the line of a YAML error is the line within the
// file, not within the document, and the other documents still decode.
func TestSyntaxErrorLineInFile(t *testing.T) {
	tests := []struct {
		file     string
		wantObjs []string
		wantErr  string
	}{
		{"testdata/bad/three-documents.yaml", []string{"ConfigMap//first@0", "ConfigMap//third@2"},
			"testdata/bad/three-documents.yaml: line 15: mapping values are not allowed in this context"},
		{"testdata/bad/unknown-field.yaml", []string{"Service//web@0", "ConfigMap//web-config@2"},
			`testdata/bad/unknown-field.yaml: document 2 (Deployment/web): spec.template.spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"`},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			objs, errs := Read([]string{tt.file}, false, nil)
			if got := ids(objs); !slices.Equal(got, tt.wantObjs) {
				t.Errorf("objects = %v, want %v", got, tt.wantObjs)
			}
			if len(errs) != 1 || errs[0].Error() != tt.wantErr {
				t.Errorf("errors = %v, want [%s]", errs, tt.wantErr)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	const cm = `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": %q}}`
	tests := []struct {
		name     string
		source   string
		data     string
		wantObjs []string
		wantErrs []string
	}{
		{"one object", "a.json", fmt.Sprintf(cm, "a"), []string{"ConfigMap//a@0"}, nil},
		{"concatenated objects", "a.json", fmt.Sprintf(cm+"\n"+cm+cm, "a", "b", "c"),
			[]string{"ConfigMap//a@0", "ConfigMap//b@1", "ConfigMap//c@2"}, nil},
		{"JSON in a .yaml file", "a.yaml", fmt.Sprintf(cm+"\n"+cm, "a", "b"), []string{"ConfigMap//a@0", "ConfigMap//b@1"}, nil},
		{"duplicate key", "a.json", fmt.Sprintf(cm, "a") + "\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",\n \"metadata\": {\"name\": \"b\",\n  \"name\": \"c\"}}\n" + fmt.Sprintf(cm, "d"),
			[]string{"ConfigMap//a@0", "ConfigMap//d@2"}, []string{`a.json: line 4: key "name" already set in map`}},
		{"duplicate key in a nested object", "a.json", `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1", "x": {"k": 2}, "k": "3"}}`,
			nil, []string{`a.json: line 1: key "k" already set in map`}},
		{"syntax error stops the stream", "a.json", fmt.Sprintf(cm+"\n", "a") + "{\"apiVersion\": \"v1\",\n \"kind\": \"ConfigMap\",}\n" + fmt.Sprintf(cm, "c"),
			[]string{"ConfigMap//a@0"}, []string{`a.json: line 3: invalid character '}' looking for beginning of object key string`}},
		{"truncated", "a.json", "{\"apiVersion\": \"v1\",\n", nil, []string{`a.json: line 2: unexpected end of JSON input`}},
		{"an array is no manifest", "a.json", "[" + fmt.Sprintf(cm, "a") + "]", nil,
			[]string{`a.json: document 1: expected a manifest (an object with apiVersion and kind), got array`}},
		{"unknown field", "a.json", `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetport": 8080}]}}`,
			nil, []string{`a.json: document 1 (Service/s): spec.ports[0].targetport: unknown field "targetport"`}},
		{"JSON number strings are not integers", "a.json", `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": "80"}]}}`,
			nil, []string{`a.json: document 1 (Service/s): spec.ports[0].port: expected integer, got string "80"`}},
		{"int64 as a JSON number", "a.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 9007199254740993, "containers": [{"name": "c", "image": "i"}]}}`,
			[]string{"Pod//p@0"}, nil},
		{"null anywhere protojson takes it", "a.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null, "labels": null}, "spec": {"containers": [{"name": "c", "image": "i", "ports": null, "resources": {"limits": null}}]}, "status": null}`,
			[]string{"Pod//p@0"}, nil},
		{"empty", "a.json", " \n", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := Decode(tt.source, []byte(tt.data))
			if got := ids(objs); !slices.Equal(got, tt.wantObjs) {
				t.Errorf("objects = %v, want %v", got, tt.wantObjs)
			}
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			if !slices.Equal(got, tt.wantErrs) {
				t.Errorf("errors:\n  %q\nwant:\n  %q", got, tt.wantErrs)
			}
		})
	}
}

// TestDecodeYAMLShapes covers the YAML stream forms a manifest file takes.
func TestDecodeYAMLShapes(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"
	tests := []struct {
		name     string
		data     string
		wantObjs []string
		wantErrs []string
	}{
		{"empty file", "", nil, nil},
		{"only comments and separators", "# nothing\n---\n---\n# still nothing\n", nil, nil},
		{"leading separator", "---\n" + fmt.Sprintf(cm, "a"), []string{"ConfigMap//a@0"}, nil},
		{"separator with a comment", fmt.Sprintf(cm, "a") + "--- # next\n" + fmt.Sprintf(cm, "b"), []string{"ConfigMap//a@0", "ConfigMap//b@1"}, nil},
		{"content on the separator line", "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
			[]string{"ConfigMap//a@0", "ConfigMap//b@1"}, nil},
		{"document end markers", fmt.Sprintf(cm, "a") + "...\n" + fmt.Sprintf(cm, "b") + "...\n---\n" + fmt.Sprintf(cm, "c"),
			[]string{"ConfigMap//a@0", "ConfigMap//b@1", "ConfigMap//c@2"}, nil},
		{"CRLF line ends", strings.ReplaceAll(fmt.Sprintf(cm, "a")+"---\n"+fmt.Sprintf(cm, "b"), "\n", "\r\n"),
			[]string{"ConfigMap//a@0", "ConfigMap//b@1"}, nil},
		{"byte order mark", "\xef\xbb\xbf" + fmt.Sprintf(cm, "a"), []string{"ConfigMap//a@0"}, nil},
		{"empty documents are not counted", "---\n---\n" + fmt.Sprintf(cm, "a") + "---\n\n---\n" + "kind: ConfigMap\n",
			[]string{"ConfigMap//a@0"}, []string{"a.yaml: document 2 (ConfigMap): apiVersion: Required value"}},
		{"a separator inside a block scalar is text", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  f: |\n    ---\n    x\n",
			[]string{"ConfigMap//a@0"}, nil},
		{"typed list of another apiVersion", "apiVersion: v1\nkind: DeploymentList\nitems: []\n",
			nil, []string{`a.yaml: document 1 (DeploymentList): kind "DeploymentList" is not served in apiVersion "v1"; use apiVersion: apps/v1`}},
		{"list of an unsupported kind", "apiVersion: batch/v1\nkind: JobList\nitems: []\n",
			nil, []string{`a.yaml: document 1 (JobList): kind "JobList" (batch/v1) is not supported; supported kinds: ` + supported}},
		{"empty list", "apiVersion: v1\nkind: List\nitems: []\n", nil, nil},
		{"generateName instead of name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: cm-}\n", []string{"ConfigMap//@0"}, nil},
		{"YAML errors in two documents", "a: b: c\n---\n" + fmt.Sprintf(cm, "a") + "---\nx: [\n",
			[]string{"ConfigMap//a@1"}, []string{"a.yaml: line 1: mapping values are not allowed in this context", "a.yaml: line 7: did not find expected node content"}},
		{"several duplicate keys", fmt.Sprintf(cm, "a") + "data:\n  k: a\n  k: b\n  j: a\n  j: b\n",
			nil, []string{`a.yaml: line 6: key "k" already set in map; line 8: key "j" already set in map`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := Decode("a.yaml", []byte(tt.data))
			if got := ids(objs); !slices.Equal(got, tt.wantObjs) {
				t.Errorf("objects = %v, want %v", got, tt.wantObjs)
			}
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			if !slices.Equal(got, tt.wantErrs) {
				t.Errorf("errors:\n  %q\nwant:\n  %q", got, tt.wantErrs)
			}
		})
	}
}

// TestNullValues: "key:" with no value is null in JSON; Kubernetes reads a
// null list element or map value as the zero value, and so does Decode.
func TestNullValues(t *testing.T) {
	data := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    empty:\nspec:\n  containers:\n  - name: c\n    image: i\n    args: [a, null]\n    resources:\n      limits:\n        cpu:\n  -\n"
	objs, errs := Decode("p.yaml", []byte(data))
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	p := objs[0].Msg.(*corev1.Pod)
	if v, ok := p.GetMetadata().GetLabels()["empty"]; !ok || v != "" {
		t.Errorf("labels[empty] = %q, %v", v, ok)
	}
	c := p.GetSpec().GetContainers()
	check(t, "args", fmt.Sprintf("%q", c[0].GetArgs()), `["a" ""]`)
	wantNumber(t, "limits[cpu]", c[0].GetResources().GetLimits()["cpu"], 0)
	check(t, "containers", len(c), 2)
	if !strings.Contains(string(objs[0].JSON), `"empty":""`) {
		t.Errorf("JSON %s does not hold what Msg was read from", objs[0].JSON)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cm := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n", name)
	}
	write("b.yaml", cm("b"))
	write("a.yml", cm("a1")+"---\n"+cm("a2"))
	write("c.json", `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}`)
	write("notes.txt", cm("notes"))
	write("sub/d.yaml", cm("d"))
	write("sub/deeper/e.yaml", cm("e"))
	write("broken.yaml", "kind: [\n")
	write("empty/README", "nothing here")

	names := func(objs []Object) []string {
		var out []string
		for _, o := range objs {
			out = append(out, filepath.ToSlash(strings.TrimPrefix(o.Source, dir))+":"+o.Name)
		}
		return out
	}
	msgs := func(errs []error) []string {
		var out []string
		for _, err := range errs {
			out = append(out, strings.ReplaceAll(err.Error(), dir, ""))
		}
		return out
	}
	tests := []struct {
		name      string
		paths     []string
		recursive bool
		stdin     string
		wantObjs  []string
		wantErrs  []string
	}{
		{"a directory, sorted, without subdirectories", []string{dir}, false, "",
			[]string{"/a.yml:a1", "/a.yml:a2", "/b.yaml:b", "/c.json:c"},
			[]string{"/broken.yaml: line 1: did not find expected node content"}},
		{"recursive", []string{dir}, true, "",
			[]string{"/a.yml:a1", "/a.yml:a2", "/b.yaml:b", "/c.json:c", "/sub/d.yaml:d", "/sub/deeper/e.yaml:e"},
			[]string{"/broken.yaml: line 1: did not find expected node content"}},
		{"a file named directly is read whatever its extension", []string{filepath.Join(dir, "notes.txt")}, false, "",
			[]string{"/notes.txt:notes"}, nil},
		{"stdin", []string{"-", filepath.Join(dir, "b.yaml")}, false, cm("in") + "---\nkind: Pod\n",
			[]string{"-:in", "/b.yaml:b"},
			[]string{"<stdin>: document 2 (Pod): apiVersion: Required value"}},
		{"missing path", []string{filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "b.yaml")}, false, "",
			[]string{"/b.yaml:b"}, []string{"/nope.yaml: no such file or directory"}},
		{"directory without manifests", []string{filepath.Join(dir, "empty")}, true, "",
			nil, []string{"/empty: no .json, .yaml or .yml files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := Read(tt.paths, tt.recursive, strings.NewReader(tt.stdin))
			if got := names(objs); !slices.Equal(got, tt.wantObjs) {
				t.Errorf("objects = %v, want %v", got, tt.wantObjs)
			}
			if got := msgs(errs); !slices.Equal(got, tt.wantErrs) {
				t.Errorf("errors = %q, want %q", got, tt.wantErrs)
			}
			for _, err := range errs {
				var e *Error
				if !errors.As(err, &e) {
					t.Errorf("%T is not an *Error", err)
				}
			}
		})
	}

	t.Run("errors.Is sees the I/O error", func(t *testing.T) {
		_, errs := Read([]string{filepath.Join(dir, "nope.yaml")}, false, nil)
		if len(errs) != 1 || !errors.Is(errs[0], fs.ErrNotExist) {
			t.Errorf("errs = %v, want one wrapping fs.ErrNotExist", errs)
		}
		var e *Error
		if errors.As(errs[0], &e) && e.Index != -1 {
			t.Errorf("Index = %d, want -1 for a source that could not be read", e.Index)
		}
	})
	t.Run("stdin without a reader", func(t *testing.T) {
		_, errs := Read([]string{"-"}, false, nil)
		if len(errs) != 1 || errs[0].Error() != "<stdin>: no standard input to read" {
			t.Errorf("errs = %v", errs)
		}
	})
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Source: "web.yaml", Index: 1, Kind: "Deployment", Name: "web", Path: "spec.replicas", Msg: "expected integer, got string \"3\""},
			`web.yaml: document 2 (Deployment/web): spec.replicas: expected integer, got string "3"`},
		{Error{Source: "bad.yaml", Index: 0, Line: 7, Msg: "mapping values are not allowed in this context"},
			"bad.yaml: line 7: mapping values are not allowed in this context"},
		{Error{Source: "-", Index: 0, Kind: "Pod", Msg: "kind \"Pod\" is not served in apiVersion \"v2\"; use apiVersion: v1"},
			`<stdin>: document 1 (Pod): kind "Pod" is not served in apiVersion "v2"; use apiVersion: v1`},
		{Error{Source: "x.yaml", Index: 0, Name: "web", Path: "kind", Msg: "Required value"},
			"x.yaml: document 1 (name web): kind: Required value"},
		{Error{Source: "x.yaml", Index: -1, Msg: "permission denied"}, "x.yaml: permission denied"},
		{Error{Source: "x.yaml", Index: 2, Kind: "Pod", Name: "p", Path: "a", Msg: "one", More: []FieldError{{"b", "two"}, {"", "three"}}},
			"x.yaml: document 3 (Pod/p): a: one; b: two; three"},
		{Error{Source: "x.yaml", Index: 0, Msg: "first line\nsecond line"}, "x.yaml: document 1: first line second line"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

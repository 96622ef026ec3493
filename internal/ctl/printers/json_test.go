package printers_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func smallPod() *corev1.Pod {
	return &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "web-0", Namespace: "default", Generation: 2, CreationTimestamp: ago(0)},
		Spec: &corev1.PodSpec{
			Containers:                    []*corev1.Container{{Name: "web", Image: "nginx"}},
			TerminationGracePeriodSeconds: proto.Int64(30),
		},
		Status: &corev1.PodStatus{Phase: "Running"},
	}
}

func TestJSON(t *testing.T) {
	got, err := printers.JSON(smallPod())
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "web-0",
    "namespace": "default",
    "generation": 2,
    "creationTimestamp": "2025-06-01T12:00:00Z"
  },
  "spec": {
    "containers": [
      {
        "name": "web",
        "image": "nginx"
      }
    ],
    "terminationGracePeriodSeconds": 30
  },
  "status": {
    "phase": "Running"
  }
}
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJSONKeepsTypeMeta(t *testing.T) {
	d := &appsv1.Deployment{ApiVersion: "apps/v1beta9", Kind: "Deployment", Metadata: &metav1.ObjectMeta{Name: "d"}}
	got, err := printers.JSON(d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("{\n  \"apiVersion\": \"apps/v1beta9\",\n  \"kind\": \"Deployment\",")) {
		t.Errorf("apiVersion or kind changed:\n%s", got)
	}
	if d.ApiVersion != "apps/v1beta9" {
		t.Errorf("JSON changed its argument")
	}
	// A message that is not an API object prints as protojson does, numbers aside.
	got, err = printers.JSON(&metav1.ObjectMeta{Name: "m", Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"name\": \"m\",\n  \"generation\": 1\n}\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPrintJSONAndYAML(t *testing.T) {
	k := kind(t, "Pod")
	one := []proto.Message{&corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "a", Generation: 1}}}
	two := append(one, &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "b"}})
	tests := []struct {
		name string
		objs []proto.Message
		opts printers.Options
		want string
	}{{
		name: "one object as json",
		objs: one,
		opts: printers.Options{Output: "json"},
		want: `{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "a",
    "generation": 1
  }
}
`,
	}, {
		name: "one object as a json list",
		objs: one,
		opts: printers.Options{Output: "json", List: true},
		want: `{
  "apiVersion": "v1",
  "items": [
    {
      "apiVersion": "v1",
      "kind": "Pod",
      "metadata": {
        "name": "a",
        "generation": 1
      }
    }
  ],
  "kind": "List",
  "metadata": {
    "resourceVersion": ""
  }
}
`,
	}, {
		name: "no objects as json",
		opts: printers.Options{Output: "json"},
		want: `{
  "apiVersion": "v1",
  "items": [],
  "kind": "List",
  "metadata": {
    "resourceVersion": ""
  }
}
`,
	}, {
		name: "one object as yaml",
		objs: one,
		opts: printers.Options{Output: "yaml"},
		want: `apiVersion: v1
kind: Pod
metadata:
  generation: 1
  name: a
`,
	}, {
		name: "two objects as yaml",
		objs: two,
		opts: printers.Options{Output: "yaml"},
		want: `apiVersion: v1
items:
- apiVersion: v1
  kind: Pod
  metadata:
    generation: 1
    name: a
- apiVersion: v1
  kind: Pod
  metadata:
    name: b
kind: List
metadata:
  resourceVersion: ""
`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printers.Print(&b, k, tc.objs, tc.opts); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}

// TestYAMLRoundTrip reads YAML back the way ctl apply does (YAML to JSON to
// protojson) and expects the object it was made from.
func TestYAMLRoundTrip(t *testing.T) {
	big := smallPod()
	big.Metadata.Labels = map[string]string{"version": "123", "yes": "true", "empty": ""}
	big.Metadata.Annotations = map[string]string{"multi": "line one\nline two\n", "colon": "a: b", "null": "null"}
	big.Metadata.DeletionGracePeriodSeconds = proto.Int64(-9223372036854775808)
	big.Metadata.ResourceVersion = "0012"
	big.Spec.ActiveDeadlineSeconds = proto.Int64(9223372036854775807)
	big.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: proto.Int64(1000), SupplementalGroups: []int64{0, -1, 1 << 60}}
	big.Spec.Containers[0].Resources = &corev1.ResourceRequirements{
		Limits:   map[string]*structpb.Value{"cpu": structpb.NewNumberValue(2), "memory": structpb.NewStringValue("128Mi")},
		Requests: map[string]*structpb.Value{"cpu": structpb.NewStringValue("500m"), "memory": structpb.NewNumberValue(1.5e9)},
	}
	big.Spec.Containers[0].LivenessProbe = &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/", Port: structpb.NewStringValue("http")}}
	big.Spec.Containers[0].Args = []string{"--yes", "on", "1e3", "0x1F", "~", "- dash", "#hash"}
	big.Status.StartTime = ago(90 * time.Minute)

	for _, obj := range []proto.Message{
		big,
		deployments()[0],
		services()[4],
		nodes()[0],
		events()[1],
		&corev1.Secret{Metadata: &metav1.ObjectMeta{Name: "s"}, Type: "Opaque", Data: map[string][]byte{"k": {0, 1, 0xff}, "empty": {}}},
		&corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"config.yaml": "a: 1\nb: [2]\n", "tab": "x\ty"}},
	} {
		name := string(obj.ProtoReflect().Descriptor().Name())
		t.Run(name, func(t *testing.T) {
			y, err := printers.YAML(obj)
			if err != nil {
				t.Fatal(err)
			}
			j, err := yaml.YAMLToJSON(y)
			if err != nil {
				t.Fatalf("YAMLToJSON: %v\n%s", err, y)
			}
			back := obj.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(j, back); err != nil {
				t.Fatalf("protojson.Unmarshal: %v\n%s", err, j)
			}
			// YAML carries apiVersion and kind, which the objects above leave out.
			want := proto.Clone(obj)
			fields := want.ProtoReflect().Descriptor().Fields()
			if fd := fields.ByName("apiVersion"); fd != nil {
				want.ProtoReflect().Set(fd, back.ProtoReflect().Get(fd))
				want.ProtoReflect().Set(fields.ByName("kind"), back.ProtoReflect().Get(fields.ByName("kind")))
			}
			if !proto.Equal(back, want) {
				t.Errorf("read back a different object:\n got %v\nwant %v\nyaml:\n%s", back, want, y)
			}
			if !strings.HasPrefix(string(y), "apiVersion: ") {
				t.Errorf("no apiVersion:\n%s", y)
			}
		})
	}
}

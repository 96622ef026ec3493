package k8sjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	fsmv1 "github.com/rafter-dev/rafter/gen/rafter/fsm/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/k8sjson"
)

func TestInt64AsNumbers(t *testing.T) {
	deploy := &appsv1.Deployment{
		ApiVersion: "apps/v1",
		Kind:       "Deployment",
		Metadata:   &metav1.ObjectMeta{Name: "web", Namespace: "default", Generation: 7, ResourceVersion: "42"},
		Spec: &appsv1.DeploymentSpec{
			Replicas: proto.Int32(3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy: &appsv1.DeploymentStrategy{
				Type: "RollingUpdate",
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       structpb.NewStringValue("25%"),
					MaxUnavailable: structpb.NewNumberValue(1),
				},
			},
			Template: &corev1.PodTemplateSpec{
				Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{
					Name:  "web",
					Image: "nginx",
					Resources: &corev1.ResourceRequirements{
						Limits: map[string]*structpb.Value{
							"cpu":    structpb.NewNumberValue(2),
							"memory": structpb.NewStringValue("128Mi"),
							"pods":   structpb.NewStringValue("110"),
						},
						Requests: map[string]*structpb.Value{
							"cpu":               structpb.NewStringValue("500m"),
							"ephemeral-storage": structpb.NewNumberValue(1.5e9),
						},
					},
				}}},
			},
		},
		Status: &appsv1.DeploymentStatus{ObservedGeneration: 7, Replicas: 3},
	}
	nested, err := structpb.NewValue(map[string]any{
		"f:metadata": map[string]any{
			"f:generation": "12",
			"f:labels":     map[string]any{"f:n": "-3", ".": map[string]any{}},
			"list":         []any{"1", 2, map[string]any{"x": "9223372036854775807"}, nil, true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		msg  proto.Message
		opts protojson.MarshalOptions
		// want maps a slash-separated path to the JSON the output must hold there.
		want map[string]string
	}{{
		name: "pod",
		msg:  benchPod(),
		want: map[string]string{
			"metadata/generation":                          `3`,
			"metadata/deletionGracePeriodSeconds":          `30`,
			"metadata/resourceVersion":                     `"1234"`,
			"spec/terminationGracePeriodSeconds":           `30`,
			"spec/activeDeadlineSeconds":                   `600`,
			"spec/securityContext/runAsUser":               `1000`,
			"spec/securityContext/supplementalGroups":      `[4,5,-6]`,
			"spec/tolerations/0/tolerationSeconds":         `300`,
			"spec/tolerations/1/tolerationSeconds":         `0`,
			"spec/containers/0/livenessProbe/httpGet/port": `8080`,
			"status/observedGeneration":                    `3`,
			"status/conditions/0/observedGeneration":       `3`,
			"status/startTime":                             `"2024-05-06T07:08:09Z"`,
		},
	}, {
		name: "deployment with quantities",
		msg:  deploy,
		want: map[string]string{
			"metadata/generation":                                `7`,
			"status/observedGeneration":                          `7`,
			"spec/strategy/rollingUpdate/maxSurge":               `"25%"`,
			"spec/strategy/rollingUpdate/maxUnavailable":         `1`,
			"spec/template/spec/containers/0/resources/limits":   `{"cpu":2,"memory":"128Mi","pods":"110"}`,
			"spec/template/spec/containers/0/resources/requests": `{"cpu":"500m","ephemeral-storage":1500000000}`,
		},
	}, {
		name: "configmap with numeric-looking strings",
		msg: &corev1.ConfigMap{
			ApiVersion: "v1",
			Kind:       "ConfigMap",
			Metadata: &metav1.ObjectMeta{
				Name:       "cm",
				Generation: 1,
				Labels:     map[string]string{"version": "123", "neg": "-1", "big": "18446744073709551615"},
			},
			Data:       map[string]string{"n": "123", "zero": "0", "quote": "say \"hi\"\n\t\\ </script> & ünïcødé 😀 \u2028"},
			BinaryData: map[string][]byte{"b": {0, 1, 2, 0xff}},
		},
		want: map[string]string{
			"metadata/generation":     `1`,
			"metadata/labels/version": `"123"`,
			"metadata/labels/big":     `"18446744073709551615"`,
			"data/n":                  `"123"`,
			"data/zero":               `"0"`,
			"data/quote":              `"say \"hi\"\n\t\\ </script> & ünïcødé 😀 ` + "\u2028" + `"`,
			"binaryData/b":            `"AAEC/w=="`,
		},
	}, {
		name: "pod list",
		msg: &corev1.PodList{
			ApiVersion: "v1",
			Kind:       "PodList",
			Metadata:   &metav1.ListMeta{ResourceVersion: "99", RemainingItemCount: proto.Int64(12)},
			Items:      []*corev1.Pod{benchPod(), benchPod(), {Metadata: &metav1.ObjectMeta{Name: "empty"}}},
		},
		want: map[string]string{
			"metadata/remainingItemCount":                `12`,
			"metadata/resourceVersion":                   `"99"`,
			"items/1/spec/terminationGracePeriodSeconds": `30`,
			"items/2/metadata/name":                      `"empty"`,
		},
	}, {
		name: "opaque value with nested quoted numbers",
		msg: &metav1.ObjectMeta{
			Name:          "m",
			Generation:    math.MaxInt64,
			ManagedFields: []*metav1.ManagedFieldsEntry{{Manager: "kubectl", FieldsV1: nested}},
		},
		want: map[string]string{
			"generation": `9223372036854775807`,
			"managedFields/0/fieldsV1/f:metadata/f:generation": `"12"`,
			"managedFields/0/fieldsV1/f:metadata/list":         `["1",2,{"x":"9223372036854775807"},null,true]`,
		},
	}, {
		name: "watch event",
		msg:  &corev1.PodWatchEvent{Type: "MODIFIED", Object: benchPod()},
		want: map[string]string{
			"type":                       `"MODIFIED"`,
			"object/metadata/generation": `3`,
		},
	}, {
		name: "uint64 at max",
		msg: &clusterv1.MembersResponse{Members: []*clusterv1.Member{
			{Id: "a", Term: math.MaxUint64, LastIndex: 0, AppliedIndex: 1, CommitIndex: 1 << 63},
		}},
		want: map[string]string{
			"members/0/term":        `18446744073709551615`,
			"members/0/commitIndex": `9223372036854775808`,
		},
	}, {
		name: "int64 wrapper",
		msg:  wrapperspb.Int64(math.MinInt64),
		want: map[string]string{"": `-9223372036854775808`},
	}, {
		name: "other well-known types are copied",
		msg:  &structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("5"), structpb.NewNumberValue(-0.5)}},
		want: map[string]string{"": `["5",-0.5]`},
	}, {
		name: "duration",
		msg:  durationpb.New(90 * time.Second),
		want: map[string]string{"": `"90s"`},
	}, {
		name: "any is copied, proto names, indented",
		msg: &fsmv1.Put{
			Kind:                    "Pod",
			Object:                  mustAny(t, benchPod()),
			ExpectedResourceVersion: "7",
		},
		opts: protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "},
		want: map[string]string{
			"expected_resource_version":  `"7"`,
			"object/metadata/generation": `"3"`,
		},
	}, {
		name: "emit unpopulated",
		msg:  &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p"}, Spec: &corev1.PodSpec{}},
		opts: protojson.MarshalOptions{EmitUnpopulated: true},
		want: map[string]string{
			"metadata/generation":        `0`,
			"metadata/creationTimestamp": `null`,
			"spec/containers":            `[]`,
			"spec/hostNetwork":           `false`,
			"status":                     `null`,
		},
	}, {
		name: "empty",
		msg:  &corev1.Pod{},
		want: map[string]string{"": `{}`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := tc.opts.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			out := checkInt64AsNumbers(t, tc.msg, in)
			for path, want := range tc.want {
				got, ok := jsonAt(t, out, path)
				if !ok {
					t.Errorf("%s: missing in %s", path, out)
					continue
				}
				if got != want {
					t.Errorf("%s = %s, want %s", path, got, want)
				}
			}
		})
	}
}

func TestInt64AsNumbersRandomPods(t *testing.T) {
	edges := []int64{math.MinInt64, math.MinInt64 + 1, -1, 0, 1, 1 << 53, 1<<53 + 1, math.MaxInt64}
	rng := rand.New(rand.NewPCG(1, 2))
	i64 := func() int64 {
		if rng.IntN(2) == 0 {
			return edges[rng.IntN(len(edges))]
		}
		return rng.Int64() - rng.Int64()
	}
	opt := func() *int64 {
		if rng.IntN(4) == 0 {
			return nil
		}
		return proto.Int64(i64())
	}
	for i := range 300 {
		pod := benchPod()
		pod.Metadata.Generation = i64()
		pod.Metadata.DeletionGracePeriodSeconds = opt()
		pod.Spec.TerminationGracePeriodSeconds = opt()
		pod.Spec.ActiveDeadlineSeconds = opt()
		pod.Spec.SecurityContext.RunAsUser = opt()
		pod.Spec.SecurityContext.FsGroup = opt()
		pod.Spec.SecurityContext.SupplementalGroups = nil
		for range rng.IntN(4) {
			pod.Spec.SecurityContext.SupplementalGroups = append(pod.Spec.SecurityContext.SupplementalGroups, i64())
		}
		for _, tol := range pod.Spec.Tolerations {
			tol.TolerationSeconds = opt()
		}
		for _, c := range pod.Spec.Containers {
			c.LivenessProbe.TerminationGracePeriodSeconds = opt()
			c.Env = append(c.Env, &corev1.EnvVar{Name: "N", Value: strconv.FormatInt(i64(), 10)})
		}
		pod.Status.ObservedGeneration = i64()
		pod.Metadata.Labels["n"] = strconv.FormatInt(i64(), 10)
		in, err := protojson.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			out := checkInt64AsNumbers(t, pod, in)
			got, ok := jsonAt(t, out, "metadata/generation")
			if want := strconv.FormatInt(pod.Metadata.Generation, 10); got != want && (ok || want != "0") {
				t.Errorf("generation = %s, want %s", got, want)
			}
		})
	}
}

func TestInt64AsNumbersRejects(t *testing.T) {
	md := (&corev1.Pod{}).ProtoReflect().Descriptor()
	for _, in := range []string{
		``,
		`{"metadata":{"name":"p"},"nope":1}`,
		`{"metadata":{"generation":"1.5"}}`,
		`{"metadata":{"generation":"01"}}`,
		`{"metadata":{"generation":"\u0031"}}`,
		`{"metadata":{"generation":"1"}`,
		`{"metadata":{"generation":"1"}}{}`,
		`{"metadata":{"name":"p}}`,
		`{"metadata":["x"]}`,
		`{"spec":{"tolerations":{}}}`,
		`{"metadata":{"labels":{"a":}}}`,
		`[]`,
	} {
		t.Run(in, func(t *testing.T) {
			out, err := k8sjson.Int64AsNumbers(md, []byte(in))
			if !errors.Is(err, k8sjson.ErrNotProtoJSON) {
				t.Fatalf("got %s, %v; want k8sjson.ErrNotProtoJSON", out, err)
			}
		})
	}
}

// FuzzInt64AsNumbers checks that arbitrary input never panics and that valid JSON
// accepted by the rewriter stays valid JSON.
func FuzzInt64AsNumbers(f *testing.F) {
	in, err := protojson.Marshal(benchPod())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(in)
	f.Add([]byte(`{"metadata":{"generation":"-1","labels":{"a":"1"}},"spec":{"overhead":{"x":{"a":["1"]}}}}`))
	md := (&corev1.Pod{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := k8sjson.Int64AsNumbers(md, in)
		if err == nil && json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid %s became invalid %s", in, out)
		}
	})
}

// checkInt64AsNumbers rewrites in, protojson's output for msg, and checks the result
// against in: valid and compact JSON, the same keys in the same order, the same
// values once 64-bit integers are numbers, and the same message when read back.
func checkInt64AsNumbers(t *testing.T, msg proto.Message, in []byte) []byte {
	t.Helper()
	md := msg.ProtoReflect().Descriptor()
	out, err := k8sjson.Int64AsNumbers(md, in)
	if err != nil {
		t.Fatalf("Int64AsNumbers: %v\n%s", err, in)
	}
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil || !bytes.Equal(compact.Bytes(), out) {
		t.Errorf("output is not compact: %s", out)
	}

	if got, want := jsonKeys(t, out), jsonKeys(t, in); !reflect.DeepEqual(got, want) {
		t.Errorf("keys in order:\n got %q\nwant %q", got, want)
	}

	want := numberize(t, md, decodeJSON(t, in))
	if got := decodeJSON(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("values differ:\n got %s\nwant %s\n  in %s", out, mustJSON(t, want), in)
	}

	back := msg.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(out, back); err != nil {
		t.Fatalf("protojson.Unmarshal: %v\n%s", err, out)
	}
	if !proto.Equal(back, msg) {
		t.Errorf("read back a different message:\n got %v\nwant %v", back, msg)
	}
	return out
}

// numberize is the slow, obviously right Int64AsNumbers: it turns the 64-bit integers
// of v, protojson's output for md decoded with UseNumber, into json.Numbers.
func numberize(t *testing.T, md protoreflect.MessageDescriptor, v any) any {
	t.Helper()
	switch md.FullName() {
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return numberizeScalar(t, v)
	}
	if md.FullName().Parent() == "google.protobuf" {
		return v
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, fv := range obj {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		if fd == nil {
			t.Fatalf("%s has no field %s", md.FullName(), k)
		}
		obj[k] = numberizeField(t, fd, fv)
	}
	return obj
}

func numberizeField(t *testing.T, fd protoreflect.FieldDescriptor, v any) any {
	switch {
	case fd.IsList():
		if x, ok := v.([]any); ok {
			for i := range x {
				x[i] = numberizeSingle(t, fd, x[i])
			}
		}
		return v
	case fd.IsMap():
		if x, ok := v.(map[string]any); ok {
			for k, mv := range x {
				x[k] = numberizeSingle(t, fd.MapValue(), mv)
			}
		}
		return v
	}
	return numberizeSingle(t, fd, v)
}

func numberizeSingle(t *testing.T, fd protoreflect.FieldDescriptor, v any) any {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Uint64Kind, protoreflect.Sint64Kind,
		protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return numberizeScalar(t, v)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return numberize(t, fd.Message(), v)
	}
	return v
}

func numberizeScalar(t *testing.T, v any) any {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		return v
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("64-bit integer field holds %q", s)
		}
	}
	return json.Number(s)
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode: %v\n%s", err, b)
	}
	return v
}

// jsonKeys lists every object key of b in document order.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	var keys []string
	var inObject []bool // per open container: is it an object
	expectKey := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatalf("tokens: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				inObject = append(inObject, tok == '{')
			default:
				inObject = inObject[:len(inObject)-1]
			}
			expectKey = tok == '{'
			if tok == '}' || tok == ']' {
				expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
			}
			continue
		case string:
			if expectKey {
				keys = append(keys, tok)
				expectKey = false
				continue
			}
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// jsonAt returns the compact JSON at a slash-separated path of b ("" is b itself).
func jsonAt(t *testing.T, b []byte, path string) (string, bool) {
	t.Helper()
	var v any = json.RawMessage(b)
	if path != "" {
		for _, p := range strings.Split(path, "/") {
			raw := v.(json.RawMessage)
			var obj map[string]json.RawMessage
			var arr []json.RawMessage
			if json.Unmarshal(raw, &obj) == nil {
				r, ok := obj[p]
				if !ok {
					return "", false
				}
				v = r
			} else if json.Unmarshal(raw, &arr) == nil {
				i, err := strconv.Atoi(p)
				if err != nil || i >= len(arr) {
					return "", false
				}
				v = arr[i]
			} else {
				return "", false
			}
		}
	}
	var c bytes.Buffer
	if err := json.Compact(&c, v.(json.RawMessage)); err != nil {
		t.Fatal(err)
	}
	return c.String(), true
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		t.Fatal(err)
	}
	return a
}

// benchPod is a realistic Pod: three containers with env, probes, resources and
// security contexts, tolerations, owner references, managed fields and a status.
func benchPod() *corev1.Pod {
	ts := timestamppb.New(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	fields, err := structpb.NewValue(map[string]any{
		"f:metadata": map[string]any{"f:labels": map[string]any{".": map[string]any{}, "f:app": map[string]any{}}},
		"f:spec":     map[string]any{"f:containers": map[string]any{`k:{"name":"app"}`: map[string]any{".": map[string]any{}}}},
	})
	if err != nil {
		panic(err)
	}
	pod := &corev1.Pod{
		ApiVersion: "v1",
		Kind:       "Pod",
		Metadata: &metav1.ObjectMeta{
			Name:                       "web-7d9f8b6c5d-x2k9p",
			GenerateName:               "web-7d9f8b6c5d-",
			Namespace:                  "production",
			Uid:                        "4f9a7c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
			ResourceVersion:            "1234",
			Generation:                 3,
			CreationTimestamp:          ts,
			DeletionGracePeriodSeconds: proto.Int64(30),
			Labels:                     map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "frontend", "version": "123"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}` + "\n",
				"note": "ünïcødé \"quoted\" \\ <tag> & 😀",
			},
			OwnerReferences: []*metav1.OwnerReference{{
				ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8b6c5d",
				Uid: "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true),
			}},
			Finalizers:    []string{"example.com/cleanup"},
			ManagedFields: []*metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", ApiVersion: "v1", Time: ts, FieldsType: "FieldsV1", FieldsV1: fields}},
		},
		Spec: &corev1.PodSpec{
			RestartPolicy:                 "Always",
			TerminationGracePeriodSeconds: proto.Int64(30),
			ActiveDeadlineSeconds:         proto.Int64(600),
			DnsPolicy:                     "ClusterFirst",
			NodeSelector:                  map[string]string{"kubernetes.io/os": "linux"},
			ServiceAccountName:            "web",
			NodeName:                      "node-3",
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser:          proto.Int64(1000),
				RunAsGroup:         proto.Int64(3000),
				RunAsNonRoot:       proto.Bool(true),
				SupplementalGroups: []int64{4, 5, -6},
				FsGroup:            proto.Int64(2000),
			},
			SchedulerName: "default-scheduler",
			Tolerations: []*corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)},
				{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(0)},
			},
			Priority: proto.Int32(0),
		},
		Status: &corev1.PodStatus{
			ObservedGeneration: 3,
			Phase:              "Running",
			HostIP:             "10.0.0.3",
			PodIP:              "10.244.3.17",
			StartTime:          ts,
			QosClass:           "Burstable",
		},
	}
	for _, typ := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
		pod.Status.Conditions = append(pod.Status.Conditions, &corev1.PodCondition{Type: typ, Status: "True", ObservedGeneration: 3, LastTransitionTime: ts})
	}
	for i, name := range []string{"app", "sidecar", "metrics"} {
		c := &corev1.Container{
			Name:    name,
			Image:   "registry.example.com/team/" + name + ":v1.2." + strconv.Itoa(i),
			Command: []string{"/bin/" + name},
			Args:    []string{"--port=8080", "--log-level=info"},
			Ports:   []*corev1.ContainerPort{{Name: "http", ContainerPort: int32(8080 + i), Protocol: "TCP"}},
			Resources: &corev1.ResourceRequirements{
				Limits:   map[string]*structpb.Value{"cpu": structpb.NewStringValue("1"), "memory": structpb.NewStringValue("512Mi")},
				Requests: map[string]*structpb.Value{"cpu": structpb.NewStringValue("250m"), "memory": structpb.NewNumberValue(268435456)},
			},
			LivenessProbe: &corev1.Probe{
				HttpGet:          &corev1.HTTPGetAction{Path: "/healthz", Port: structpb.NewNumberValue(8080), Scheme: "HTTP"},
				PeriodSeconds:    10,
				TimeoutSeconds:   1,
				SuccessThreshold: 1,
				FailureThreshold: 3,
			},
			ReadinessProbe: &corev1.Probe{
				HttpGet:             &corev1.HTTPGetAction{Path: "/ready", Port: structpb.NewStringValue("http"), Scheme: "HTTP"},
				InitialDelaySeconds: 5,
				PeriodSeconds:       5,
			},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: "File",
			ImagePullPolicy:          "IfNotPresent",
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:                proto.Int64(1000),
				AllowPrivilegeEscalation: proto.Bool(false),
				ReadOnlyRootFilesystem:   proto.Bool(true),
			},
		}
		for j := range 8 {
			c.Env = append(c.Env, &corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d", j*1000)})
		}
		c.Env = append(c.Env, &corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{ApiVersion: "v1", FieldPath: "metadata.name"}}})
		pod.Spec.Containers = append(pod.Spec.Containers, c)
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, &corev1.ContainerStatus{
			Name:        name,
			State:       &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts}},
			Ready:       true,
			Image:       c.Image,
			ImageID:     "registry.example.com/team/" + name + "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Started:     proto.Bool(true),
		})
	}
	return pod
}

func BenchmarkInt64AsNumbers(b *testing.B) {
	pod := benchPod()
	md := pod.ProtoReflect().Descriptor()
	in, err := protojson.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protojson.Marshal", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protojson.Marshal(pod); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Int64AsNumbers", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k8sjson.Int64AsNumbers(md, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Compact", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := json.Compact(&buf, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

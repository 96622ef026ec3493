package main

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
)

// readManifest reads a YAML or JSON manifest from testdata as JSON.
func readManifest(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return j
}

// decodeManifest decodes JSON into the generated message of its kind, the way
// Rafter decodes a manifest: strictly, so unknown fields are errors.
func decodeManifest(j []byte) (proto.Message, error) {
	var head struct{ Kind string }
	if err := yaml.Unmarshal(j, &head); err != nil {
		return nil, err
	}
	k, ok := kinds.ByKind(head.Kind)
	if !ok {
		return nil, &unknownKindError{head.Kind}
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(k.Message)
	if err != nil {
		return nil, err
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, m); err != nil {
		return nil, err
	}
	return m, nil
}

type unknownKindError struct{ kind string }

func (e *unknownKindError) Error() string { return "unknown kind " + e.kind }

func TestManifestsDecode(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, m proto.Message)
	}{
		{"deployment.yaml", func(t *testing.T, m proto.Message) {
			d := m.(*appsv1.Deployment)
			eq(t, "apiVersion", d.GetApiVersion(), "apps/v1")
			eq(t, "replicas", d.GetSpec().GetReplicas(), int32(3))
			eq(t, "maxSurge", d.GetSpec().GetStrategy().GetRollingUpdate().GetMaxSurge().GetStringValue(), "25%")
			eq(t, "maxUnavailable", d.GetSpec().GetStrategy().GetRollingUpdate().GetMaxUnavailable().GetNumberValue(), 1.0)
			ps := d.GetSpec().GetTemplate().GetSpec()
			eq(t, "hostIPC", ps.GetHostIPC(), true)
			eq(t, "terminationGracePeriodSeconds", ps.GetTerminationGracePeriodSeconds(), int64(45))
			eq(t, "runAsUser", ps.GetSecurityContext().GetRunAsUser(), int64(1000))
			eq(t, "seccomp", ps.GetSecurityContext().GetSeccompProfile().GetType(), "RuntimeDefault")
			eq(t, "zone values", ps.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution().
				GetNodeSelectorTerms()[0].GetMatchExpressions()[0].GetValues(), []string{"antarctica-east1", "antarctica-west1"})
			eq(t, "anti-affinity topologyKey", ps.GetAffinity().GetPodAntiAffinity().
				GetPreferredDuringSchedulingIgnoredDuringExecution()[0].GetPodAffinityTerm().GetTopologyKey(), "kubernetes.io/hostname")
			eq(t, "tolerationSeconds", ps.GetTolerations()[1].GetTolerationSeconds(), int64(6000))
			c := ps.GetContainers()[0]
			eq(t, "imagePullPolicy", c.GetImagePullPolicy(), "IfNotPresent")
			eq(t, "limits.cpu", c.GetResources().GetLimits()["cpu"].GetNumberValue(), 1.0)
			eq(t, "limits.memory", c.GetResources().GetLimits()["memory"].GetStringValue(), "128Mi")
			eq(t, "requests.cpu", c.GetResources().GetRequests()["cpu"].GetStringValue(), "250m")
			eq(t, "liveness port", c.GetLivenessProbe().GetHttpGet().GetPort().GetStringValue(), "http")
			eq(t, "readiness port", c.GetReadinessProbe().GetTcpSocket().GetPort().GetNumberValue(), 8080.0)
			eq(t, "startup grpc port", c.GetStartupProbe().GetGrpc().GetPort(), int32(9090))
			eq(t, "postStart", c.GetLifecycle().GetPostStart().GetExec().GetCommand()[0], "/bin/sh")
			eq(t, "preStop", c.GetLifecycle().GetPreStop().GetHttpGet().GetPath(), "/drain")
			eq(t, "allowPrivilegeEscalation set", c.GetSecurityContext().AllowPrivilegeEscalation != nil, true)
			eq(t, "allowPrivilegeEscalation", c.GetSecurityContext().GetAllowPrivilegeEscalation(), false)
			eq(t, "capabilities.drop", c.GetSecurityContext().GetCapabilities().GetDrop(), []string{"ALL"})
			eq(t, "secretKeyRef", c.GetEnv()[1].GetValueFrom().GetSecretKeyRef().GetKey(), "password")
			eq(t, "divisor", c.GetEnv()[3].GetValueFrom().GetResourceFieldRef().GetDivisor().GetStringValue(), "1Mi")
			eq(t, "sleep", ps.GetContainers()[1].GetLifecycle().GetPreStop().GetSleep().GetSeconds(), int64(5))
			eq(t, "emptyDir present", ps.GetVolumes()[0].GetEmptyDir() != nil, true)
		}},
		{"service.yaml", func(t *testing.T, m proto.Message) {
			s := m.(*corev1.Service)
			eq(t, "type", s.GetSpec().GetType(), "NodePort")
			p := s.GetSpec().GetPorts()
			eq(t, "targetPort name", p[0].GetTargetPort().GetStringValue(), "http")
			eq(t, "nodePort", p[0].GetNodePort(), int32(30080))
			eq(t, "targetPort number", p[1].GetTargetPort().GetNumberValue(), 9090.0)
			eq(t, "clientIP timeout", s.GetSpec().GetSessionAffinityConfig().GetClientIP().GetTimeoutSeconds(), int32(10800))
		}},
		{"statefulset.yaml", func(t *testing.T, m proto.Message) {
			s := m.(*appsv1.StatefulSet)
			eq(t, "serviceName", s.GetSpec().GetServiceName(), "nginx")
			eq(t, "partition", s.GetSpec().GetUpdateStrategy().GetRollingUpdate().GetPartition(), int32(1))
			eq(t, "maxUnavailable", s.GetSpec().GetUpdateStrategy().GetRollingUpdate().GetMaxUnavailable().GetNumberValue(), 2.0)
			vct := s.GetSpec().GetVolumeClaimTemplates()
			eq(t, "claim name", vct[0].GetMetadata().GetName(), "www")
			eq(t, "storage", vct[0].GetSpec().GetResources().GetRequests()["storage"].GetStringValue(), "1Gi")
			eq(t, "storageClassName", vct[0].GetSpec().GetStorageClassName(), "my-storage-class")
		}},
		{"secret.json", func(t *testing.T, m proto.Message) {
			s := m.(*corev1.Secret)
			eq(t, "username", string(s.GetData()["username"]), "admin")
			eq(t, "password", string(s.GetData()["password"]), "1f2d1e2e67df")
			eq(t, "stringData", s.GetStringData()["note"], "plain text, written once")
			eq(t, "immutable", s.GetImmutable(), true)
		}},
		{"pod-volumes.yaml", func(t *testing.T, m proto.Message) {
			p := m.(*corev1.Pod)
			v := p.GetSpec().GetVolumes()
			eq(t, "emptyDir", v[0].GetEmptyDir().GetSizeLimit().GetStringValue(), "500Mi")
			eq(t, "hostPath", v[1].GetHostPath().GetType(), "DirectoryOrCreate")
			eq(t, "configMap mode", v[2].GetConfigMap().GetItems()[0].GetMode(), int32(256))
			eq(t, "secret optional", v[3].GetSecret().GetOptional(), true)
			eq(t, "pvc", v[4].GetPersistentVolumeClaim().GetClaimName(), "data-claim")
			src := v[5].GetProjected().GetSources()
			eq(t, "token expiration", src[0].GetServiceAccountToken().GetExpirationSeconds(), int64(7200))
			eq(t, "trust bundle", src[3].GetClusterTrustBundle().GetSignerName(), "example.com/signer")
			eq(t, "downward divisor", v[6].GetDownwardAPI().GetItems()[0].GetResourceFieldRef().GetDivisor().GetStringValue(), "1m")
			eq(t, "nfs", v[7].GetNfs().GetServer(), "nfs.example.com")
			eq(t, "csi", v[8].GetCsi().GetVolumeAttributes()["foo"], "bar")
			eq(t, "ephemeral", v[9].GetEphemeral().GetVolumeClaimTemplate().GetSpec().GetResources().GetRequests()["storage"].GetStringValue(), "1Gi")
			eq(t, "image", v[10].GetImage().GetReference(), "quay.io/crio/artifact:v2")
			eq(t, "iscsi", v[11].GetIscsi().GetLun(), int32(1))
			eq(t, "activeDeadlineSeconds", p.GetSpec().GetActiveDeadlineSeconds(), int64(3600))
			eq(t, "ownerReference uid", p.GetMetadata().GetOwnerReferences()[0].GetUid(), "0c4e8e9a-2d0a-4b8c-9d7e-5f1b2e3a4c5d")
			st := p.GetStatus()
			eq(t, "podIPs", st.GetPodIPs()[0].GetIp(), "10.244.1.7")
			eq(t, "startTime", st.GetStartTime().AsTime().Unix(), int64(1714557600))
			eq(t, "exitCode", st.GetContainerStatuses()[0].GetLastState().GetTerminated().GetExitCode(), int32(137))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			m, err := decodeManifest(readManifest(t, tc.file))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			tc.check(t, m)
		})
	}
}

// TestManifestsRoundTrip checks that protojson writes the manifest back as it
// was written: the only difference allowed is that protojson quotes int64.
func TestManifestsRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			in := readManifest(t, name)
			m, err := decodeManifest(in)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := protojson.Marshal(m)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			c := &canonicalizer{quoted: quoted}
			md := m.ProtoReflect().Descriptor()
			want, got := mustCanon(t, c, md, in), mustCanon(t, c, md, out)
			if !reflect.DeepEqual(want, got) {
				var diffs []string
				diffJSON(want, got, "", &diffs)
				t.Errorf("round trip changed the manifest:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
	paths := make([]string, 0, len(quoted))
	for p := range quoted {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	t.Logf("int64 fields protojson wrote as quoted strings:\n  %s", strings.Join(paths, "\n  "))
}

func mustCanon(t *testing.T, c *canonicalizer, md protoreflect.MessageDescriptor, b []byte) any {
	t.Helper()
	v, err := decodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := c.message(md, v, "")
	if err != nil {
		t.Fatal(err)
	}
	return cv
}

func TestManifestUnknownFieldRejected(t *testing.T) {
	tests := []struct {
		name, field, json string
	}{
		{"top level", "spec.replica", `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replica":3}}`},
		{"nested typo", "imagePullPolcy", `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":
			{"containers":[{"name":"a","image":"b","imagePullPolcy":"Always"}]}}}}`},
		{"snake case", "host_network", `{"apiVersion":"v1","kind":"Pod","spec":{"host_network":true}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tc.json))
			if err == nil {
				t.Fatal("decoded a manifest with an unknown field")
			}
			last := tc.field[strings.LastIndex(tc.field, ".")+1:]
			if !strings.Contains(err.Error(), `"`+last+`"`) {
				t.Errorf("error %q does not name field %q", err, last)
			}
		})
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

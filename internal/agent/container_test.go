package agent

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func TestCommandFollowsKubernetesRules(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"--default"}}
	env := map[string]string{"PORT": "8080", "NAME": "web"}
	tests := []struct {
		name          string
		command, args []string
		img           ImageConfig
		want          []string
		wantErr       bool
	}{
		{name: "image only", img: img, want: []string{"/entry", "--default"}},
		{name: "command replaces entrypoint and drops cmd", command: []string{"/bin/app"}, img: img, want: []string{"/bin/app"}},
		{name: "command and args", command: []string{"/bin/app"}, args: []string{"-v"}, img: img, want: []string{"/bin/app", "-v"}},
		{name: "args replace cmd", args: []string{"--port=$(PORT)"}, img: img, want: []string{"/entry", "--port=8080"}},
		{name: "escapes and unknown names", command: []string{"echo", "$$(PORT)", "$(MISSING)", "$(NAME)-$(PORT)", "$(", "a$b"}, img: img,
			want: []string{"echo", "$(PORT)", "$(MISSING)", "web-8080", "$(", "a$b"}},
		{name: "nothing to run", img: ImageConfig{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Command(&corev1.Container{Name: "c", Command: tt.command, Args: tt.args}, tt.img, env)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWorkingDirAndProcessEnv(t *testing.T) {
	img := ImageConfig{WorkingDir: "/srv", Env: []string{"PATH=/bin", "MODE=image"}}
	if got := WorkingDir(&corev1.Container{}, img); got != "/srv" {
		t.Fatalf("image workingDir: %q", got)
	}
	if got := WorkingDir(&corev1.Container{WorkingDir: "/app"}, img); got != "/app" {
		t.Fatalf("container workingDir: %q", got)
	}
	if got := WorkingDir(&corev1.Container{}, ImageConfig{}); got != "/" {
		t.Fatalf("default workingDir: %q", got)
	}
	got := ProcessEnv(img, map[string]string{"MODE": "pod", "A": "1"})
	if want := []string{"A=1", "MODE=pod", "PATH=/bin"}; !slices.Equal(got, want) {
		t.Fatalf("env %q, want %q", got, want)
	}
}

// objects is an ObjectSource over fixed maps.
type objects struct {
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

func (o objects) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := o.cms[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, ErrNotFound)
}

func (o objects) Secret(ns, name string) (*corev1.Secret, error) {
	if s, ok := o.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("secret %s/%s: %w", ns, name, ErrNotFound)
}

func envPod() *corev1.Pod {
	return &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "web-0", Namespace: "prod", Uid: "u-1", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"team": "a"}},
		Spec:   &corev1.PodSpec{NodeName: "n1", ServiceAccountName: "default"},
		Status: &corev1.PodStatus{PodIP: "10.244.1.5", HostIP: "192.168.1.2"},
	}
}

var envObjects = objects{
	cms: map[string]*corev1.ConfigMap{"prod/cfg": {Data: map[string]string{"LEVEL": "debug", "bad key": "x", "URL": "http://$(HOST)"},
		BinaryData: map[string][]byte{"bin": []byte("raw")}}},
	secrets: map[string]*corev1.Secret{"prod/creds": {Data: map[string][]byte{"password": []byte("hunter2"), "USER": []byte("admin")}}},
}

func TestEnvResolvesEveryKindOfSource(t *testing.T) {
	pod := envPod()
	c := &corev1.Container{Name: "app",
		Resources: &corev1.ResourceRequirements{
			Limits:   map[string]*structpb.Value{"memory": structpb.NewStringValue("64Mi")},
			Requests: map[string]*structpb.Value{"cpu": structpb.NewStringValue("250m")}},
		EnvFrom: []*corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{Name: "cfg"}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{Name: "creds"}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{Name: "absent", Optional: proto.Bool(true)}},
		},
		Env: []*corev1.EnvVar{
			{Name: "HOST", Value: "db"},
			{Name: "DSN", Value: "$(S_USER)@$(HOST):$(PORT)"}, // PORT is defined later: stays as written
			{Name: "PORT", Value: "5432"},
			{Name: "LEVEL", Value: "info"}, // replaces the envFrom value
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Name: "creds", Key: "password"}}},
			{Name: "BIN", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Name: "cfg", Key: "bin"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Name: "cfg", Key: "nope", Optional: proto.Bool(true)}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: structpb.NewStringValue("1Mi")}}},
			{Name: "CPU_REQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: structpb.NewStringValue("1m")}}},
			{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
		},
	}
	got, err := Env(pod, c, envObjects, map[string]*structpb.Value{"cpu": structpb.NewStringValue("1500m")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"LEVEL": "info", "URL": "http://$(HOST)", "S_password": "hunter2", "S_USER": "admin",
		"HOST": "db", "DSN": "admin@db:$(PORT)", "PORT": "5432", "PASSWORD": "hunter2", "BIN": "raw",
		"POD": "web-0", "NS": "prod", "IP": "10.244.1.5", "NODE": "n1", "APP": "web", "MEM": "64", "CPU_REQ": "250", "CPU_LIMIT": "2",
	}
	for k, v := range want {
		if got.Env[k] != v {
			t.Errorf("%s = %q, want %q", k, got.Env[k], v)
		}
	}
	if len(got.Env) != len(want) {
		t.Errorf("env has %d variables, want %d: %v", len(got.Env), len(want), got.Env)
	}
	if !slices.Equal(got.Skipped, []string{"bad key"}) {
		t.Errorf("skipped %q, want [\"bad key\"]", got.Skipped)
	}
}

func TestEnvErrorsAreKubeletTexts(t *testing.T) {
	tests := []struct {
		name string
		env  *corev1.EnvVar
		from *corev1.EnvFromSource
		want string
	}{
		{name: "missing configmap", env: &corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Name: "gone", Key: "k"}}},
			want: `configmap "gone" not found`},
		{name: "missing secret key", env: &corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Name: "creds", Key: "token"}}},
			want: "couldn't find key token in Secret prod/creds"},
		{name: "missing configmap key", env: &corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Name: "cfg", Key: "k"}}},
			want: "couldn't find key k in ConfigMap prod/cfg"},
		{name: "missing envFrom secret", from: &corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{Name: "gone"}}, want: `secret "gone" not found`},
		{name: "bad field path", env: &corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nope"}}},
			want: "unsupported fieldPath: spec.nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Name: "app"}
			if tt.env != nil {
				c.Env = []*corev1.EnvVar{tt.env}
			}
			if tt.from != nil {
				c.EnvFrom = []*corev1.EnvFromSource{tt.from}
			}
			_, err := Env(envPod(), c, envObjects, nil)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Message != tt.want {
				t.Fatalf("err = %v, want ConfigError %q", err, tt.want)
			}
		})
	}
}

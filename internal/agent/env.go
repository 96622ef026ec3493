package agent

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ErrNotFound: the ConfigMap or Secret an ObjectSource was asked for does not
// exist.
var ErrNotFound = errors.New("not found")

// ObjectSource gives the ConfigMaps and Secrets a pod's environment and
// volumes refer to. A missing object is an error wrapping ErrNotFound.
type ObjectSource interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	Secret(namespace, name string) (*corev1.Secret, error)
}

// ConfigError is a container that cannot be configured: the kubelet reports
// it as the waiting reason CreateContainerConfigError with this message.
type ConfigError struct{ Message string }

func (e *ConfigError) Error() string { return e.Message }

// EnvResult is a container's resolved environment.
type EnvResult struct {
	Env map[string]string
	// Skipped are envFrom keys that are not valid variable names, as
	// Kubernetes' InvalidEnvironmentVariableNames event lists them.
	Skipped []string
}

// Env resolves a container's environment as the kubelet does: envFrom sources
// in order (with their prefix; keys that are not valid names are skipped),
// then env in order, each later definition replacing an earlier one. A value
// is $(VAR)-expanded with what was defined before it; valueFrom takes a pod
// field (fieldRef), a resource of the container (resourceFieldRef; unset
// limits fall back to allocatable), or a ConfigMap or Secret key. A missing
// object or key that is not optional is a *ConfigError with the kubelet's text.
// pod.status.podIP and hostIP must be filled in by the caller when known.
func Env(pod *corev1.Pod, c *corev1.Container, src ObjectSource, allocatable map[string]*structpb.Value) (EnvResult, error) {
	ns := pod.GetMetadata().GetNamespace()
	out := EnvResult{Env: map[string]string{}}
	for _, from := range c.GetEnvFrom() {
		var data map[string]string
		switch {
		case from.GetConfigMapRef() != nil:
			ref := from.GetConfigMapRef()
			cm, err := src.ConfigMap(ns, ref.GetName())
			if errors.Is(err, ErrNotFound) && ref.GetOptional() {
				continue
			}
			if err != nil {
				return EnvResult{}, objectError("configmap", ref.GetName(), err)
			}
			data = cm.GetData()
		case from.GetSecretRef() != nil:
			ref := from.GetSecretRef()
			s, err := src.Secret(ns, ref.GetName())
			if errors.Is(err, ErrNotFound) && ref.GetOptional() {
				continue
			}
			if err != nil {
				return EnvResult{}, objectError("secret", ref.GetName(), err)
			}
			data = map[string]string{}
			for k, v := range s.GetData() {
				data[k] = string(v)
			}
		}
		for _, k := range sortedKeys(data) {
			name := from.GetPrefix() + k
			if len(validation.IsEnvVarName(name)) > 0 {
				out.Skipped = append(out.Skipped, name)
				continue
			}
			out.Env[name] = data[k]
		}
	}
	lookup := func(name string) (string, bool) { v, ok := out.Env[name]; return v, ok }
	for _, e := range c.GetEnv() {
		vf := e.GetValueFrom()
		if vf == nil {
			out.Env[e.GetName()] = Expand(e.GetValue(), lookup)
			continue
		}
		v, ok, err := valueFrom(pod, c, vf, src, allocatable)
		if err != nil {
			return EnvResult{}, err
		}
		if ok {
			out.Env[e.GetName()] = v
		}
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func objectError(kind, name string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return &ConfigError{Message: fmt.Sprintf("%s %q not found", kind, name)}
	}
	return fmt.Errorf("read %s %q: %w", kind, name, err)
}

// valueFrom resolves one valueFrom; ok=false means an optional source was
// absent and the variable is not set.
func valueFrom(pod *corev1.Pod, c *corev1.Container, vf *corev1.EnvVarSource, src ObjectSource, allocatable map[string]*structpb.Value) (string, bool, error) {
	ns := pod.GetMetadata().GetNamespace()
	switch {
	case vf.GetFieldRef() != nil:
		v, err := PodField(pod, vf.GetFieldRef().GetFieldPath())
		return v, err == nil, err
	case vf.GetResourceFieldRef() != nil:
		v, err := resourceField(pod, c, vf.GetResourceFieldRef(), allocatable)
		return v, err == nil, err
	case vf.GetConfigMapKeyRef() != nil:
		ref := vf.GetConfigMapKeyRef()
		cm, err := src.ConfigMap(ns, ref.GetName())
		if errors.Is(err, ErrNotFound) && ref.GetOptional() {
			return "", false, nil
		}
		if err != nil {
			return "", false, objectError("configmap", ref.GetName(), err)
		}
		if v, ok := cm.GetData()[ref.GetKey()]; ok {
			return v, true, nil
		}
		if v, ok := cm.GetBinaryData()[ref.GetKey()]; ok {
			return string(v), true, nil
		}
		if ref.GetOptional() {
			return "", false, nil
		}
		return "", false, &ConfigError{Message: fmt.Sprintf("couldn't find key %s in ConfigMap %s/%s", ref.GetKey(), ns, ref.GetName())}
	case vf.GetSecretKeyRef() != nil:
		ref := vf.GetSecretKeyRef()
		s, err := src.Secret(ns, ref.GetName())
		if errors.Is(err, ErrNotFound) && ref.GetOptional() {
			return "", false, nil
		}
		if err != nil {
			return "", false, objectError("secret", ref.GetName(), err)
		}
		if v, ok := s.GetData()[ref.GetKey()]; ok {
			return string(v), true, nil
		}
		if ref.GetOptional() {
			return "", false, nil
		}
		return "", false, &ConfigError{Message: fmt.Sprintf("couldn't find key %s in Secret %s/%s", ref.GetKey(), ns, ref.GetName())}
	}
	return "", false, &ConfigError{Message: "valueFrom names no source"}
}

// PodField is the downward API's value of a pod field path (fieldRef).
func PodField(pod *corev1.Pod, path string) (string, error) {
	md := pod.GetMetadata()
	if k, ok := subscript(path, "metadata.labels"); ok {
		return md.GetLabels()[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return md.GetAnnotations()[k], nil
	}
	switch path {
	case "metadata.name":
		return md.GetName(), nil
	case "metadata.namespace":
		return md.GetNamespace(), nil
	case "metadata.uid":
		return md.GetUid(), nil
	case "spec.nodeName":
		return pod.GetSpec().GetNodeName(), nil
	case "spec.serviceAccountName":
		return pod.GetSpec().GetServiceAccountName(), nil
	case "status.hostIP":
		return pod.GetStatus().GetHostIP(), nil
	case "status.podIP":
		return pod.GetStatus().GetPodIP(), nil
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.GetStatus().GetPodIPs() {
			ips = append(ips, ip.GetIp())
		}
		return strings.Join(ips, ","), nil
	case "status.hostIPs":
		var ips []string
		for _, ip := range pod.GetStatus().GetHostIPs() {
			ips = append(ips, ip.GetIp())
		}
		return strings.Join(ips, ","), nil
	}
	return "", &ConfigError{Message: fmt.Sprintf("unsupported fieldPath: %s", path)}
}

// subscript reads prefix['key'] from path.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	k := strings.TrimSuffix(rest, "]")
	if len(k) >= 2 && (k[0] == '\'' || k[0] == '"') && k[len(k)-1] == k[0] {
		return k[1 : len(k)-1], true
	}
	return "", false
}

// Quantity reads a resource quantity as the API stores it (a string such as
// "100m", or a number).
func Quantity(v *structpb.Value) (resource.Quantity, error) {
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return resource.ParseQuantity(x.StringValue)
	case *structpb.Value_NumberValue:
		return resource.ParseQuantity(strconv.FormatFloat(x.NumberValue, 'f', -1, 64))
	}
	return resource.Quantity{}, fmt.Errorf("not a quantity: %v", v)
}

// resourceField is the downward API's resourceFieldRef: the container's limit
// or request divided by the divisor, rounded up, as the kubelet reports it.
func resourceField(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector, allocatable map[string]*structpb.Value) (string, error) {
	target := c
	if n := ref.GetContainerName(); n != "" && n != c.GetName() {
		target = nil
		for _, o := range pod.GetSpec().GetContainers() {
			if o.GetName() == n {
				target = o
			}
		}
		if target == nil {
			return "", &ConfigError{Message: fmt.Sprintf("container %q not found in pod", n)}
		}
	}
	kind, name, ok := strings.Cut(ref.GetResource(), ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", &ConfigError{Message: fmt.Sprintf("unsupported container resource: %s", ref.GetResource())}
	}
	list := target.GetResources().GetLimits()
	if kind == "requests" {
		list = target.GetResources().GetRequests()
	}
	v, set := list[name]
	if !set && kind == "limits" {
		v, set = allocatable[name]
	}
	q := resource.Quantity{}
	if set {
		var err error
		if q, err = Quantity(v); err != nil {
			return "", &ConfigError{Message: fmt.Sprintf("%s: %v", ref.GetResource(), err)}
		}
	}
	divisor := resource.MustParse("1")
	if d := ref.GetDivisor(); d != nil {
		dq, err := Quantity(d)
		if err != nil || dq.IsZero() {
			return "", &ConfigError{Message: fmt.Sprintf("invalid divisor for %s", ref.GetResource())}
		}
		divisor = dq
	}
	if name == "cpu" {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

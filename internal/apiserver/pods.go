package apiserver

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

func init() {
	strategies["Pod"] = strategy{
		name: apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj fsm.Object) {
			p := obj.(*corev1.Pod)
			p.Status = &corev1.PodStatus{Phase: "Pending"}
		},
		defaults: func(obj fsm.Object) {
			p := obj.(*corev1.Pod)
			if p.Spec == nil {
				p.Spec = &corev1.PodSpec{}
			}
			defaultPodSpec(p.Spec)
		},
		validate: func(obj, old fsm.Object) field.ErrorList {
			p := obj.(*corev1.Pod)
			errs := validatePodSpec(p.GetSpec(), field.NewPath("spec"))
			if old != nil {
				o := old.(*corev1.Pod)
				if o.GetSpec().GetNodeName() != "" && p.GetSpec().GetNodeName() != o.GetSpec().GetNodeName() {
					errs = append(errs, field.Invalid(field.NewPath("spec", "nodeName"), p.GetSpec().GetNodeName(), "field is immutable once the pod is bound"))
				}
			}
			return errs
		},
		supported: prefixed("spec.", podSpecSupported),
	}
}

// podSpecSupported are the PodSpec fields the node agent and scheduler act on.
var podSpecSupported = []string{
	"containers[]." + strings.Join(containerSupported, ",containers[]."),
	"initContainers[]." + strings.Join(containerSupported, ",initContainers[]."),
	"volumes[].name", "volumes[].emptyDir", "volumes[].hostPath", "volumes[].configMap",
	"volumes[].secret", "volumes[].persistentVolumeClaim",
	"restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
	"nodeSelector", "serviceAccountName", "serviceAccount", "nodeName", "hostname", "subdomain",
	"schedulerName", "tolerations", "imagePullSecrets", "priority", "enableServiceLinks",
	"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
}

var containerSupported = []string{
	"name", "image", "command", "args", "workingDir", "ports", "env", "envFrom",
	"resources.limits", "resources.requests", "volumeMounts[].name", "volumeMounts[].mountPath",
	"volumeMounts[].readOnly", "volumeMounts[].subPath", "livenessProbe", "readinessProbe",
	"startupProbe", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
	"stdin", "stdinOnce", "tty",
}

// prefixed expands comma-joined entries and puts prefix before each.
func prefixed(prefix string, entries []string) []string {
	var out []string
	for _, e := range entries {
		for _, p := range strings.Split(e, ",") {
			out = append(out, prefix+p)
		}
	}
	return out
}

// defaultPodSpec applies Kubernetes' PodSpec defaults.
func defaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = "Always"
	}
	if s.DnsPolicy == "" {
		s.DnsPolicy = "ClusterFirst"
	}
	if s.SchedulerName == "" {
		s.SchedulerName = "default-scheduler"
	}
	if s.TerminationGracePeriodSeconds == nil {
		v := int64(30)
		s.TerminationGracePeriodSeconds = &v
	}
	for _, c := range append(append([]*corev1.Container{}, s.InitContainers...), s.Containers...) {
		defaultContainer(c)
	}
	for _, v := range s.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil {
			m := int32(0o644)
			v.ConfigMap.DefaultMode = &m
		}
		if v.Secret != nil && v.Secret.DefaultMode == nil {
			m := int32(0o644)
			v.Secret.DefaultMode = &m
		}
	}
}

func defaultContainer(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = "IfNotPresent"
		if tag := imageTag(c.Image); tag == "" || tag == "latest" {
			c.ImagePullPolicy = "Always"
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = "/dev/termination-log"
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = "File"
	}
	for _, p := range c.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(pr)
	}
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if p.HttpGet != nil && p.HttpGet.Scheme == "" {
		p.HttpGet.Scheme = "HTTP"
	}
	if p.HttpGet != nil && p.HttpGet.Path == "" {
		p.HttpGet.Path = "/"
	}
}

// imageTag returns the tag of an image reference ("" when it has none or a digest).
func imageTag(image string) string {
	if strings.Contains(image, "@") {
		return "digest"
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}

var (
	restartPolicies   = sets.New("Always", "OnFailure", "Never")
	dnsPolicies       = sets.New("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
	pullPolicies      = sets.New("Always", "IfNotPresent", "Never")
	protocols         = sets.New("TCP", "UDP", "SCTP")
	tolerationOps     = sets.New("", "Exists", "Equal")
	taintEffects      = sets.New("", "NoSchedule", "PreferNoSchedule", "NoExecute")
	terminationPolicy = sets.New("File", "FallbackToLogsOnError")
)

// validatePodSpec checks a PodSpec the way the Kubernetes API server does for the
// fields Rafter acts on.
// extraVolumes are names containers may mount besides spec.volumes (a
// StatefulSet's volumeClaimTemplates).
func validatePodSpec(s *corev1.PodSpec, path *field.Path, extraVolumes ...string) field.ErrorList {
	var errs field.ErrorList
	if s == nil {
		return field.ErrorList{field.Required(path, "")}
	}
	volumes := sets.New[string]()
	for i, v := range s.Volumes {
		vp := path.Child("volumes").Index(i)
		errs = append(errs, validateDNSLabel(v.GetName(), vp.Child("name"))...)
		if volumes.Has(v.GetName()) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.GetName()))
		}
		volumes.Insert(v.GetName())
		if v.GetPersistentVolumeClaim() != nil && v.GetPersistentVolumeClaim().GetClaimName() == "" {
			errs = append(errs, field.Required(vp.Child("persistentVolumeClaim", "claimName"), ""))
		}
		if v.GetHostPath() != nil && v.GetHostPath().GetPath() == "" {
			errs = append(errs, field.Required(vp.Child("hostPath", "path"), ""))
		}
	}
	volumes.Insert(extraVolumes...)
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), "must have at least one container"))
	}
	names := sets.New[string]()
	for i, c := range s.InitContainers {
		errs = append(errs, validateContainer(c, path.Child("initContainers").Index(i), names, volumes)...)
	}
	for i, c := range s.Containers {
		errs = append(errs, validateContainer(c, path.Child("containers").Index(i), names, volumes)...)
	}
	if s.RestartPolicy != "" && !restartPolicies.Has(s.RestartPolicy) {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), s.RestartPolicy, sets.List(restartPolicies)))
	}
	if s.DnsPolicy != "" && !dnsPolicies.Has(s.DnsPolicy) {
		errs = append(errs, field.NotSupported(path.Child("dnsPolicy"), s.DnsPolicy, sets.List(dnsPolicies)))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(path.Child("terminationGracePeriodSeconds"), *g, "must be >= 0"))
	}
	if d := s.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(path.Child("activeDeadlineSeconds"), *d, "must be between 1 and 2147483647, inclusive"))
	}
	for k, v := range s.NodeSelector {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(path.Child("nodeSelector"), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(path.Child("nodeSelector").Key(k), v, msg))
		}
	}
	for i, t := range s.Tolerations {
		tp := path.Child("tolerations").Index(i)
		if !tolerationOps.Has(t.GetOperator()) {
			errs = append(errs, field.NotSupported(tp.Child("operator"), t.GetOperator(), []string{"Equal", "Exists"}))
		}
		if t.GetOperator() == "Exists" && t.GetValue() != "" {
			errs = append(errs, field.Invalid(tp.Child("operator"), t.GetValue(), "value must be empty when `operator` is 'Exists'"))
		}
		if !taintEffects.Has(t.GetEffect()) {
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.GetEffect(), []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
		}
	}
	if s.Hostname != "" {
		errs = append(errs, validateDNSLabel(s.Hostname, path.Child("hostname"))...)
	}
	if s.Subdomain != "" {
		errs = append(errs, validateDNSLabel(s.Subdomain, path.Child("subdomain"))...)
	}
	return errs
}

func validateContainer(c *corev1.Container, path *field.Path, names, volumes sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	if c.GetName() == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else {
		errs = append(errs, validateDNSLabel(c.GetName(), path.Child("name"))...)
		if names.Has(c.GetName()) {
			errs = append(errs, field.Duplicate(path.Child("name"), c.GetName()))
		}
		names.Insert(c.GetName())
	}
	if strings.TrimSpace(c.GetImage()) == "" {
		errs = append(errs, field.Required(path.Child("image"), ""))
	}
	if c.GetImagePullPolicy() != "" && !pullPolicies.Has(c.GetImagePullPolicy()) {
		errs = append(errs, field.NotSupported(path.Child("imagePullPolicy"), c.GetImagePullPolicy(), sets.List(pullPolicies)))
	}
	if c.GetTerminationMessagePolicy() != "" && !terminationPolicy.Has(c.GetTerminationMessagePolicy()) {
		errs = append(errs, field.NotSupported(path.Child("terminationMessagePolicy"), c.GetTerminationMessagePolicy(), sets.List(terminationPolicy)))
	}
	portNames := sets.New[string]()
	for i, p := range c.GetPorts() {
		pp := path.Child("ports").Index(i)
		for _, msg := range validation.IsValidPortNum(int(p.GetContainerPort())) {
			errs = append(errs, field.Invalid(pp.Child("containerPort"), p.GetContainerPort(), msg))
		}
		if p.GetHostPort() != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.GetHostPort())) {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), p.GetHostPort(), msg))
			}
		}
		if p.GetName() != "" {
			for _, msg := range validation.IsValidPortName(p.GetName()) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.GetName(), msg))
			}
			if portNames.Has(p.GetName()) {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.GetName()))
			}
			portNames.Insert(p.GetName())
		}
		if p.GetProtocol() != "" && !protocols.Has(p.GetProtocol()) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.GetProtocol(), sets.List(protocols)))
		}
	}
	for i, e := range c.GetEnv() {
		ep := path.Child("env").Index(i)
		if e.GetName() == "" {
			errs = append(errs, field.Required(ep.Child("name"), ""))
		}
		for _, msg := range validation.IsEnvVarName(e.GetName()) {
			errs = append(errs, field.Invalid(ep.Child("name"), e.GetName(), msg))
		}
		if vf := e.GetValueFrom(); vf != nil {
			if e.GetValue() != "" {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "may not be specified when `value` is not empty"))
			}
			n := 0
			for _, set := range []bool{vf.GetSecretKeyRef() != nil, vf.GetConfigMapKeyRef() != nil, vf.GetFieldRef() != nil, vf.GetResourceFieldRef() != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
			}
			if r := vf.GetSecretKeyRef(); r != nil && (r.GetName() == "" || r.GetKey() == "") {
				errs = append(errs, field.Required(ep.Child("valueFrom", "secretKeyRef"), "name and key are required"))
			}
			if r := vf.GetConfigMapKeyRef(); r != nil && (r.GetName() == "" || r.GetKey() == "") {
				errs = append(errs, field.Required(ep.Child("valueFrom", "configMapKeyRef"), "name and key are required"))
			}
		}
	}
	res := c.GetResources()
	errs = append(errs, validateResourceList(res.GetLimits(), path.Child("resources", "limits"))...)
	errs = append(errs, validateResourceList(res.GetRequests(), path.Child("resources", "requests"))...)
	for name, req := range res.GetRequests() {
		lim, ok := res.GetLimits()[name]
		if !ok {
			continue
		}
		rq, err1 := quantity(req)
		lq, err2 := quantity(lim)
		if err1 == nil && err2 == nil && rq.Cmp(lq) > 0 {
			errs = append(errs, field.Invalid(path.Child("resources", "requests").Key(name), rq.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lq.String())))
		}
	}
	for i, m := range c.GetVolumeMounts() {
		mp := path.Child("volumeMounts").Index(i)
		if !volumes.Has(m.GetName()) {
			errs = append(errs, field.NotFound(mp.Child("name"), m.GetName()))
		}
		if m.GetMountPath() == "" {
			errs = append(errs, field.Required(mp.Child("mountPath"), ""))
		}
	}
	for name, pr := range map[string]*corev1.Probe{"livenessProbe": c.GetLivenessProbe(), "readinessProbe": c.GetReadinessProbe(), "startupProbe": c.GetStartupProbe()} {
		errs = append(errs, validateProbe(pr, path.Child(name))...)
	}
	return errs
}

func validateProbe(p *corev1.Probe, path *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	handlers := 0
	if p.GetExec() != nil {
		handlers++
	}
	if h := p.GetHttpGet(); h != nil {
		handlers++
		errs = append(errs, validatePortNumOrName(h.GetPort(), path.Child("httpGet", "port"))...)
	}
	if t := p.GetTcpSocket(); t != nil {
		handlers++
		errs = append(errs, validatePortNumOrName(t.GetPort(), path.Child("tcpSocket", "port"))...)
	}
	if p.GetGrpc() != nil {
		handlers++
	}
	if handlers != 1 {
		errs = append(errs, field.Required(path, "must specify exactly one handler type (exec, httpGet, tcpSocket or grpc)"))
	}
	for name, v := range map[string]int32{"initialDelaySeconds": p.GetInitialDelaySeconds(), "timeoutSeconds": p.GetTimeoutSeconds(),
		"periodSeconds": p.GetPeriodSeconds(), "successThreshold": p.GetSuccessThreshold(), "failureThreshold": p.GetFailureThreshold()} {
		if v < 0 {
			errs = append(errs, field.Invalid(path.Child(name), v, "must be greater than or equal to 0"))
		}
	}
	return errs
}

// quantity parses a Kubernetes quantity written as a string ("500m") or a number (1).
func quantity(v *structpb.Value) (resource.Quantity, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return resource.ParseQuantity(k.StringValue)
	case *structpb.Value_NumberValue:
		return resource.ParseQuantity(strconv.FormatFloat(k.NumberValue, 'f', -1, 64))
	default:
		return resource.Quantity{}, fmt.Errorf("quantities must be a string or a number")
	}
}

func validateResourceList(list map[string]*structpb.Value, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, v := range list {
		q, err := quantity(v)
		if err != nil {
			errs = append(errs, field.Invalid(path.Key(name), v.AsInterface(), "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
			continue
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(path.Key(name), q.String(), "must be greater than or equal to 0"))
		}
		for _, msg := range validation.IsQualifiedName(name) {
			errs = append(errs, field.Invalid(path, name, msg))
		}
	}
	return errs
}

func validateDNSLabel(v string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(path, v, msg))
	}
	return errs
}

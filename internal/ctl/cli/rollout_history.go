package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func newRolloutHistory(e *env) *cobra.Command {
	var revision int64
	cmd := &cobra.Command{
		Use:   "history (KIND NAME | KIND/NAME)... [--revision=N]",
		Short: "View rollout history",
		Long: `View the revisions of a deployment — its ReplicaSets, numbered by their
deployment.kubernetes.io/revision annotation — with the kubernetes.io/change-cause
of each; --revision=N shows that revision's pod template.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if revision < 0 {
				return fmt.Errorf("revision must be a positive integer: %v", revision)
			}
			targets, err := rolloutTargets(args)
			if err != nil {
				return err
			}
			for _, t := range targets {
				if t.kind.Kind != "Deployment" {
					return fmt.Errorf("no history viewer has been implemented for %q", groupKind(t.kind))
				}
				_, rss, err := e.deploymentHistory(cmd, t)
				if err != nil {
					return err
				}
				text, err := historyText(rss, revision)
				if err != nil {
					return err
				}
				withRevision := ""
				if revision > 0 {
					withRevision = fmt.Sprintf("with revision #%d", revision)
				}
				fmt.Fprintf(e.Out, "%s %s\n%s\n", printers.ResourceName(t.kind, t.name), withRevision, text)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&revision, "revision", 0, "see the details, including the pod template, of the revision specified")
	return cmd
}

// historyText is kubectl's DeploymentHistoryViewer output for a Deployment's
// ReplicaSets: a REVISION / CHANGE-CAUSE table, or with revision > 0 that
// revision's pod template (its change cause among the annotations).
func historyText(rss []*appsv1.ReplicaSet, revision int64) (string, error) {
	templates := map[int64]*corev1.PodTemplateSpec{}
	for _, rs := range rss {
		v, err := revisionOf(rs.GetMetadata().GetAnnotations())
		if err != nil {
			continue // kubectl warns and skips it
		}
		t := proto.Clone(rs.GetSpec().GetTemplate()).(*corev1.PodTemplateSpec)
		if cause := rs.GetMetadata().GetAnnotations()[changeCauseAnnotation]; cause != "" {
			setTemplateAnnotation(t, changeCauseAnnotation, cause)
		}
		templates[v] = t
	}
	if len(templates) == 0 {
		return "No rollout history found.", nil
	}
	if revision > 0 {
		t, ok := templates[revision]
		if !ok {
			return "", errors.New("unable to find the specified revision")
		}
		var b bytes.Buffer
		describePodTemplate(&b, t)
		return b.String(), nil
	}
	revisions := make([]int64, 0, len(templates))
	for r := range templates {
		revisions = append(revisions, r)
	}
	sort.Slice(revisions, func(i, j int) bool { return revisions[i] < revisions[j] })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "REVISION\tCHANGE-CAUSE\n")
	for _, r := range revisions {
		cause := templates[r].GetMetadata().GetAnnotations()[changeCauseAnnotation]
		if cause == "" {
			cause = "<none>"
		}
		fmt.Fprintf(tw, "%d\t%s\n", r, cause)
	}
	if err := tw.Flush(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// prefixWriter writes lines indented by two spaces per level, as kubectl's
// describe.PrefixWriter does. Like kubectl's rollout history it writes the tabs
// between a label and its value as they are.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) write(level int, format string, args ...any) {
	fmt.Fprintf(p.w, strings.Repeat("  ", level)+format, args...)
}

// describePodTemplate is kubectl's DescribePodTemplate, for the fields Rafter acts on.
func describePodTemplate(out io.Writer, t *corev1.PodTemplateSpec) {
	w := prefixWriter{out}
	w.write(0, "Pod Template:\n")
	if t == nil {
		w.write(1, "<unset>")
		return
	}
	describeLabels(w, "  Labels", t.GetMetadata().GetLabels())
	if len(t.GetMetadata().GetAnnotations()) > 0 {
		describeAnnotations(w, "  Annotations", t.GetMetadata().GetAnnotations())
	}
	spec := t.GetSpec()
	if spec.GetServiceAccountName() != "" {
		w.write(1, "Service Account:\t%s\n", spec.GetServiceAccountName())
	}
	if len(spec.GetInitContainers()) > 0 {
		describeContainers(w, "Init Containers", spec.GetInitContainers())
	}
	describeContainers(w, "Containers", spec.GetContainers())
	describeVolumes(w, spec.GetVolumes())
	if spec.GetPriorityClassName() != "" {
		w.write(1, "Priority Class Name:\t%s\n", spec.GetPriorityClassName())
	}
	describeLabels(w, "  Node-Selectors", spec.GetNodeSelector())
	describeTolerations(w, "  Tolerations", spec.GetTolerations())
}

func describeLabels(w prefixWriter, title string, m map[string]string) {
	w.write(0, "%s:\t", title)
	if len(m) == 0 {
		w.write(0, "<none>\n")
		return
	}
	for i, k := range sortedKeys(m) {
		if i > 0 {
			w.write(0, "\t")
		}
		w.write(0, "%s=%s\n", k, m[k])
	}
}

// maxAnnotationLen is where kubectl folds an annotation's value onto lines of its own.
const maxAnnotationLen = 140

func describeAnnotations(w prefixWriter, title string, m map[string]string) {
	w.write(0, "%s:\t", title)
	var keys []string
	for _, k := range sortedKeys(m) {
		if k != lastAppliedKey {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		w.write(0, "<none>\n")
		return
	}
	for i, k := range keys {
		if i > 0 {
			w.write(0, "\t")
		}
		v := strings.TrimSuffix(m[k], "\n")
		if len(v)+len(k)+2 <= maxAnnotationLen && !strings.Contains(v, "\n") {
			w.write(0, "%s: %s\n", k, v)
			continue
		}
		w.write(0, "%s:\n", k)
		for _, line := range strings.Split(v, "\n") {
			if len(line) > maxAnnotationLen-2 {
				line = line[:maxAnnotationLen-2] + "..."
			}
			w.write(0, "\t  %s\n", line)
		}
	}
}

func describeContainers(w prefixWriter, label string, cs []*corev1.Container) {
	none := ""
	if len(cs) == 0 {
		none = " <none>"
	}
	w.write(0, "  %s:%s\n", label, none)
	for _, c := range cs {
		w.write(1, " %s:\n", c.GetName())
		w.write(2, "Image:\t%s\n", c.GetImage())
		var ports, hostPorts []string
		for _, p := range c.GetPorts() {
			ports = append(ports, fmt.Sprintf("%d/%s", p.GetContainerPort(), p.GetProtocol()))
			hostPorts = append(hostPorts, fmt.Sprintf("%d/%s", p.GetHostPort(), p.GetProtocol()))
		}
		describePorts(w, "Port", ports)
		describePorts(w, "Host Port", hostPorts)
		for _, section := range []struct {
			title string
			lines []string
		}{{"Command", c.GetCommand()}, {"Args", c.GetArgs()}} {
			if len(section.lines) == 0 {
				continue
			}
			w.write(2, "%s:\n", section.title)
			for _, l := range section.lines {
				for _, s := range strings.Split(l, "\n") {
					w.write(3, "%s\n", s)
				}
			}
		}
		for _, q := range []struct {
			title string
			m     map[string]*structpb.Value
		}{{"Limits", c.GetResources().GetLimits()}, {"Requests", c.GetResources().GetRequests()}} {
			if len(q.m) == 0 {
				continue
			}
			w.write(2, "%s:\n", q.title)
			names := make([]string, 0, len(q.m))
			for n := range q.m {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				w.write(3, "%s:\t%s\n", n, valueText(q.m[n]))
			}
		}
		for _, p := range []struct {
			title string
			probe *corev1.Probe
		}{{"Liveness", c.GetLivenessProbe()}, {"Readiness", c.GetReadinessProbe()}, {"Startup", c.GetStartupProbe()}} {
			if p.probe != nil {
				w.write(2, "%s:\t%s\n", p.title, describeProbe(p.probe))
			}
		}
		if len(c.GetEnvFrom()) > 0 {
			w.write(2, "Environment Variables from:\n")
			for _, ef := range c.GetEnvFrom() {
				from, name, optional := "", "", false
				if r := ef.GetConfigMapRef(); r != nil {
					from, name, optional = "ConfigMap", r.GetName(), r.GetOptional()
				} else if r := ef.GetSecretRef(); r != nil {
					from, name, optional = "Secret", r.GetName(), r.GetOptional()
				}
				if ef.GetPrefix() == "" {
					w.write(3, "%s\t%s\tOptional: %t\n", name, from, optional)
				} else {
					w.write(3, "%s\t%s with prefix '%s'\tOptional: %t\n", name, from, ef.GetPrefix(), optional)
				}
			}
		}
		describeEnv(w, c)
		describeMounts(w, c.GetVolumeMounts())
	}
}

// describePorts writes "Port:" for one port (or <none>), "Ports:" for several.
func describePorts(w prefixWriter, title string, ports []string) {
	switch len(ports) {
	case 0:
		w.write(2, "%s:\t<none>\n", title)
	case 1:
		w.write(2, "%s:\t%s\n", title, ports[0])
	default:
		w.write(2, "%ss:\t%s\n", title, strings.Join(ports, ", "))
	}
}

func describeEnv(w prefixWriter, c *corev1.Container) {
	if len(c.GetEnv()) == 0 {
		w.write(2, "Environment:\t<none>\n")
		return
	}
	w.write(2, "Environment:\n")
	for _, e := range c.GetEnv() {
		from := e.GetValueFrom()
		switch {
		case from == nil:
			for i, s := range strings.Split(e.GetValue(), "\n") {
				if i == 0 {
					w.write(3, "%s:\t%s\n", e.GetName(), s)
				} else {
					w.write(3, "\t%s\n", s)
				}
			}
		case from.GetFieldRef() != nil:
			w.write(3, "%s:\t (%s:%s)\n", e.GetName(), from.GetFieldRef().GetApiVersion(), from.GetFieldRef().GetFieldPath())
		case from.GetResourceFieldRef() != nil:
			w.write(3, "%s:\t (%s)\n", e.GetName(), from.GetResourceFieldRef().GetResource())
		case from.GetSecretKeyRef() != nil:
			r := from.GetSecretKeyRef()
			w.write(3, "%s:\t<set to the key '%s' in secret '%s'>\tOptional: %t\n", e.GetName(), r.GetKey(), r.GetName(), r.GetOptional())
		case from.GetConfigMapKeyRef() != nil:
			r := from.GetConfigMapKeyRef()
			w.write(3, "%s:\t<set to the key '%s' of config map '%s'>\tOptional: %t\n", e.GetName(), r.GetKey(), r.GetName(), r.GetOptional())
		}
	}
}

func describeMounts(w prefixWriter, mounts []*corev1.VolumeMount) {
	if len(mounts) == 0 {
		w.write(2, "Mounts:\t<none>\n")
		return
	}
	w.write(2, "Mounts:\n")
	sorted := append([]*corev1.VolumeMount(nil), mounts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetMountPath() < sorted[j].GetMountPath() })
	for _, m := range sorted {
		flags := []string{"rw"}
		if m.GetReadOnly() {
			flags = []string{"ro"}
		}
		if m.GetSubPath() != "" {
			flags = append(flags, fmt.Sprintf("path=%q", m.GetSubPath()))
		}
		w.write(3, "%s from %s (%s)\n", m.GetMountPath(), m.GetName(), strings.Join(flags, ","))
	}
}

func describeVolumes(w prefixWriter, volumes []*corev1.Volume) {
	if len(volumes) == 0 {
		w.write(0, "  Volumes:\t<none>\n")
		return
	}
	w.write(0, "  Volumes:\n")
	for _, v := range volumes {
		w.write(1, " %s:\n", v.GetName())
		switch {
		case v.GetHostPath() != nil:
			hostPathType := "<none>"
			if v.GetHostPath().Type != nil {
				hostPathType = v.GetHostPath().GetType()
			}
			w.write(2, "Type:\tHostPath (bare host directory volume)\n    Path:\t%s\n    HostPathType:\t%s\n", v.GetHostPath().GetPath(), hostPathType)
		case v.GetEmptyDir() != nil:
			sizeLimit := "<unset>"
			if s := valueText(v.GetEmptyDir().GetSizeLimit()); s != "" && s != "0" {
				sizeLimit = s
			}
			w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t%s\n    SizeLimit:\t%s\n", v.GetEmptyDir().GetMedium(), sizeLimit)
		case v.GetSecret() != nil:
			w.write(2, "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t%s\n    Optional:\t%t\n", v.GetSecret().GetSecretName(), v.GetSecret().GetOptional())
		case v.GetConfigMap() != nil:
			w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t%s\n    Optional:\t%t\n", v.GetConfigMap().GetName(), v.GetConfigMap().GetOptional())
		case v.GetPersistentVolumeClaim() != nil:
			w.write(2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t%s\n    ReadOnly:\t%t\n", v.GetPersistentVolumeClaim().GetClaimName(), v.GetPersistentVolumeClaim().GetReadOnly())
		default:
			w.write(1, "<unknown>\n")
		}
	}
}

func describeTolerations(w prefixWriter, title string, ts []*corev1.Toleration) {
	w.write(0, "%s:\t", title)
	if len(ts) == 0 {
		w.write(0, "<none>\n")
		return
	}
	sorted := append([]*corev1.Toleration(nil), ts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetKey() < sorted[j].GetKey() })
	for i, t := range sorted {
		if i > 0 {
			w.write(0, "\t")
		}
		w.write(0, "%s", t.GetKey())
		if t.GetValue() != "" {
			w.write(0, "=%s", t.GetValue())
		}
		if t.GetEffect() != "" {
			w.write(0, ":%s", t.GetEffect())
		}
		if t.GetOperator() == "Exists" && t.GetValue() == "" {
			if t.GetKey() != "" || t.GetEffect() != "" {
				w.write(0, " op=Exists")
			} else {
				w.write(0, "op=Exists")
			}
		}
		if t.TolerationSeconds != nil {
			w.write(0, " for %ds", t.GetTolerationSeconds())
		}
		w.write(0, "\n")
	}
}

// describeProbe is kubectl's DescribeProbe.
func describeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		p.GetInitialDelaySeconds(), p.GetTimeoutSeconds(), p.GetPeriodSeconds(), p.GetSuccessThreshold(), p.GetFailureThreshold())
	switch {
	case p.GetExec() != nil:
		return fmt.Sprintf("exec [%s] %s", strings.Join(p.GetExec().GetCommand(), " "), attrs)
	case p.GetHttpGet() != nil:
		h := p.GetHttpGet()
		u := &url.URL{Scheme: strings.ToLower(h.GetScheme()), Host: h.GetHost(), Path: h.GetPath()}
		if port := valueText(h.GetPort()); port != "" {
			u.Host = net.JoinHostPort(h.GetHost(), port)
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.GetTcpSocket() != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.GetTcpSocket().GetHost(), valueText(p.GetTcpSocket().GetPort()), attrs)
	case p.GetGrpc() != nil:
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GetGrpc().GetPort(), p.GetGrpc().GetService(), attrs)
	}
	return "unknown " + attrs
}

// valueText is a quantity's or an int-or-string's text.
func valueText(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

// logsOptions are kubectl logs' flags.
type logsOptions struct {
	container                    string
	follow, previous, timestamps bool
	tail, limitBytes             int64
}

func newLogs(e *env) *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs (POD | TYPE/NAME) [-c CONTAINER]",
		Short: "Print the logs for a container in a pod",
		Long: `Print the logs for a container in a pod.

The log is read from the agent of the pod's node through the API (never
through the Raft log). -c may be left out when the pod has one container or
names its default in the kubectl.kubernetes.io/default-container annotation.
TYPE/NAME (deployment/web, sts/db, svc/web) picks one of the pods the object
selects, preferring running and ready ones.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: e.completePods,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.limitBytes < 0 {
				return errors.New("--limit-bytes must be greater than 0")
			}
			pod, err := e.podFor(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			req := &nodev1.LogsRequest{Namespace: e.ns(), Pod: pod, Container: o.container, Follow: o.follow,
				Previous: o.previous, Timestamps: o.timestamps, LimitBytes: o.limitBytes}
			if o.tail >= 0 {
				req.TailLines = &o.tail
			}
			// No request timeout: a log, followed or not, takes as long as it takes.
			return c.Logs(cmd.Context(), req, e.Out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.container, "container", "c", "", "print the logs of this container")
	f.BoolVarP(&o.follow, "follow", "f", false, "specify if the logs should be streamed")
	f.BoolVarP(&o.previous, "previous", "p", false, "print the logs for the previous instance of the container in a pod if it exists")
	f.Int64Var(&o.tail, "tail", -1, "lines of recent log file to display; -1 shows all")
	f.BoolVar(&o.timestamps, "timestamps", false, "include timestamps on each line in the log output")
	f.Int64Var(&o.limitBytes, "limit-bytes", 0, "maximum bytes of logs to return; defaults to no limit")
	return cmd
}

// completePods completes a pod name.
func (e *env) completePods(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return e.completeObjects(cmd, []string{"pods"}, toComplete)
}

// podFor resolves logs' and exec's argument: a pod's name, pod/NAME, or
// TYPE/NAME of an object with a spec.selector, which stands for the first of
// the pods it selects (bound, running and ready ones first, then the oldest),
// as kubectl chooses them. It tells on stderr which pod it chose among several.
func (e *env) podFor(cmd *cobra.Command, arg string) (string, error) {
	kind, name, ok := strings.Cut(arg, "/")
	if !ok {
		return arg, nil
	}
	if name == "" {
		return "", fmt.Errorf("arguments in resource/name form must have a single resource and name")
	}
	k, err := resolveKind(kind)
	if err != nil {
		return "", err
	}
	if k.Kind == "Pod" {
		return name, nil
	}
	c, err := e.client()
	if err != nil {
		return "", err
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	obj, err := c.Get(ctx, k, e.nsFor(k, false), name, "")
	if err != nil {
		return "", err
	}
	sel, err := podSelector(obj)
	if err != nil {
		return "", fmt.Errorf("cannot select pods of %s/%s: %w", k.Resource, name, err)
	}
	objs, _, err := c.List(ctx, mustKind("Pod"), e.ns(), client.ListOptions{LabelSelector: sel})
	if err != nil {
		return "", err
	}
	if len(objs) == 0 {
		return "", fmt.Errorf("no pods found for %s/%s (selector %q)", k.Resource, name, sel)
	}
	pods := make([]*corev1.Pod, len(objs))
	for i, o := range objs {
		pods[i] = o.(*corev1.Pod)
	}
	sort.SliceStable(pods, func(i, j int) bool { return logPreferred(pods[i], pods[j]) })
	chosen := pods[0].GetMetadata().GetName()
	if len(pods) > 1 {
		fmt.Fprintf(e.Err, "Found %d pods, using pod/%s\n", len(pods), chosen)
	}
	return chosen, nil
}

// logPreferred orders pods as kubectl picks one for logs and exec: bound
// before unbound, Running before others, ready before not, then the oldest.
func logPreferred(a, b *corev1.Pod) bool {
	rank := func(p *corev1.Pod) [3]bool {
		ready := false
		for _, c := range p.GetStatus().GetConditions() {
			ready = ready || (c.GetType() == "Ready" && c.GetStatus() == "True")
		}
		return [3]bool{p.GetSpec().GetNodeName() != "", p.GetStatus().GetPhase() == "Running", ready}
	}
	ra, rb := rank(a), rank(b)
	for i := range ra {
		if ra[i] != rb[i] {
			return ra[i]
		}
	}
	ta, tb := a.GetMetadata().GetCreationTimestamp().AsTime(), b.GetMetadata().GetCreationTimestamp().AsTime()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.GetMetadata().GetName() < b.GetMetadata().GetName()
}

// podSelector is an object's spec.selector as a label selector string: a
// LabelSelector (workloads) or a plain map (Services).
func podSelector(obj proto.Message) (string, error) {
	m := obj.ProtoReflect()
	specFD := m.Descriptor().Fields().ByName("spec")
	if specFD == nil || specFD.Message() == nil {
		return "", errors.New("it has no spec.selector")
	}
	spec := m.Get(specFD).Message()
	selFD := spec.Descriptor().Fields().ByName("selector")
	if selFD == nil {
		return "", errors.New("it has no spec.selector")
	}
	if selFD.IsMap() {
		set := labels.Set{}
		spec.Get(selFD).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			set[k.String()] = v.String()
			return true
		})
		if len(set) == 0 {
			return "", errors.New("its selector is empty")
		}
		return labels.SelectorFromSet(set).String(), nil
	}
	ls, ok := spec.Get(selFD).Message().Interface().(*metav1.LabelSelector)
	if !ok || (len(ls.GetMatchLabels()) == 0 && len(ls.GetMatchExpressions()) == 0) {
		return "", errors.New("its selector is empty")
	}
	sel := labels.NewSelector()
	for k, v := range ls.GetMatchLabels() {
		r, err := labels.NewRequirement(k, selection.Equals, []string{v})
		if err != nil {
			return "", err
		}
		sel = sel.Add(*r)
	}
	ops := map[string]selection.Operator{"In": selection.In, "NotIn": selection.NotIn, "Exists": selection.Exists, "DoesNotExist": selection.DoesNotExist}
	for _, x := range ls.GetMatchExpressions() {
		op, ok := ops[x.GetOperator()]
		if !ok {
			return "", fmt.Errorf("%q is not a valid label selector operator", x.GetOperator())
		}
		r, err := labels.NewRequirement(x.GetKey(), op, x.GetValues())
		if err != nil {
			return "", err
		}
		sel = sel.Add(*r)
	}
	return sel.String(), nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/labels"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

func newCordon(e *env) *cobra.Command   { return newCordonCommand(e, true) }
func newUncordon(e *env) *cobra.Command { return newCordonCommand(e, false) }

// newCordonCommand is kubectl cordon (desired true) or uncordon (false).
func newCordonCommand(e *env, desired bool) *cobra.Command {
	verb, short := "cordon", "Mark node as unschedulable"
	if !desired {
		verb, short = "uncordon", "Mark node as schedulable"
	}
	return &cobra.Command{
		Use:               verb + " NODE",
		Short:             short,
		ValidArgsFunction: e.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("USAGE: %s NODE [flags]", verb)
			}
			if err := e.getNodes(cmd, args); err != nil {
				return err
			}
			failed := false
			for _, name := range args {
				if err := e.cordon(cmd, name, desired); err != nil {
					failed = true
				}
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
}

func (e *env) completeNodes(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return e.completeObjects(cmd, []string{"nodes"}, toComplete)
}

// getNodes checks that every named node exists, as kubectl does before it changes
// any of them.
func (e *env) getNodes(cmd *cobra.Command, names []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	for _, name := range names {
		ctx, cancel := e.ctx(cmd)
		_, err := c.Get(ctx, mustKind("Node"), "", name, "")
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// cordon sets the node's spec.unschedulable to desired (a Get, then an Update with
// the read resourceVersion, retried on a conflict) and prints kubectl's line for
// it. A failure is printed as kubectl prints it, and returned.
func (e *env) cordon(cmd *cobra.Command, name string, desired bool) error {
	verb := "cordon"
	if !desired {
		verb = "uncordon"
	}
	changed := false
	_, err := e.update(cmd, target{mustKind("Node"), name}, func(obj metaObject) error {
		n := obj.(*corev1.Node)
		changed = false
		if n.GetSpec().GetUnschedulable() == desired {
			return errNoChange
		}
		if n.Spec == nil {
			n.Spec = &corev1.NodeSpec{}
		}
		n.Spec.Unschedulable = desired
		changed = true
		return nil
	})
	if err != nil {
		fmt.Fprintf(e.Err, "error: unable to %s node %q: %s\n", verb, name, errorMessage(err))
		return err
	}
	if changed {
		fmt.Fprintf(e.Out, "node/%s %sed\n", name, verb)
	} else {
		fmt.Fprintf(e.Out, "node/%s already %sed\n", name, verb)
	}
	return nil
}

// drainOptions are kubectl drain's flags.
type drainOptions struct {
	force, ignoreDaemonSets, deleteEmptyDirData bool
	gracePeriod                                 int           // seconds; negative: each pod's own
	timeout                                     time.Duration // 0: no limit
	podSelector                                 string
}

func newDrain(e *env) *cobra.Command {
	var o drainOptions
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Drain node in preparation for maintenance",
		Long: `Drain node in preparation for maintenance.

The node is cordoned (marked unschedulable) so that no new pods arrive, then its
pods are evicted and ctl waits until they are gone. Mirror pods are left alone.
Pods managed by a DaemonSet would be recreated on the node at once, so drain
refuses to go on without --ignore-daemonsets, and even then does not evict them.
Pods without a controller (a ReplicaSet, DaemonSet, StatefulSet, Job or
ReplicationController) are not recreated anywhere, so drain refuses to go on
without --force; pods using emptyDir volumes lose that data, so drain refuses
without --delete-emptydir-data. The node stays cordoned: use uncordon to make it
schedulable again.

Pods are evicted through the pods/eviction subresource (with --grace-period in
the eviction's deleteOptions when it is not negative). Rafter has no
PodDisruptionBudget kind yet, so no eviction is refused for one.`,
		ValidArgsFunction: e.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("USAGE: drain NODE [flags]")
			}
			if o.podSelector != "" {
				if _, err := labels.Parse(o.podSelector); err != nil {
					return errors.New("--pod-selector=<pod_selector> must be a valid label selector")
				}
			}
			if err := e.getNodes(cmd, args); err != nil {
				return err
			}
			cordonErrs := map[string]error{}
			for _, name := range args {
				if err := e.cordon(cmd, name, true); err != nil {
					cordonErrs[name] = err
				}
			}
			for i, name := range args {
				var errs []error
				if err, failed := cordonErrs[name]; failed {
					errs = []error{err}
				} else {
					errs = e.drainNode(cmd, name, o)
				}
				if len(errs) == 0 {
					fmt.Fprintf(e.Out, "node/%s drained\n", name)
					continue
				}
				fmt.Fprintf(e.Err, "error: unable to drain node %q, aborting command...\n\n", name)
				fmt.Fprintln(e.Err, "There are pending nodes to be drained:")
				for _, pending := range args[i:] {
					fmt.Fprintf(e.Err, " %s\n", pending)
				}
				return e.fail(errs)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.force, "force", false, "continue even if there are pods that do not declare a controller")
	f.BoolVar(&o.ignoreDaemonSets, "ignore-daemonsets", false, "ignore DaemonSet-managed pods")
	f.BoolVar(&o.deleteEmptyDirData, "delete-emptydir-data", false, "continue even if there are pods using emptyDir (local data that will be deleted when the node is drained)")
	f.IntVar(&o.gracePeriod, "grace-period", -1, "period of time in seconds given to each pod to terminate gracefully; if negative, the default value specified in the pod will be used")
	f.DurationVar(&o.timeout, "timeout", 0, "the length of time to wait before giving up, zero means infinite")
	f.StringVar(&o.podSelector, "pod-selector", "", "label selector to filter pods on the node")
	return cmd
}

// drainNode evicts the pods of one cordoned node and waits until they are gone. It
// returns the errors kubectl would stop with: pods it refuses to evict, or
// evictions that failed or did not finish in time.
func (e *env) drainNode(cmd *cobra.Command, node string, o drainOptions) []error {
	list, errs := e.podsForDeletion(cmd, node, o)
	if len(errs) > 0 {
		return errs
	}
	if w := list.warnings(); w != "" {
		fmt.Fprintf(e.Err, "WARNING: %s\n", w)
	}
	errs = e.evictPods(cmd, list.pods(), o)
	if len(errs) == 0 {
		return nil
	}
	if pending, _ := e.podsForDeletion(cmd, node, o); len(pending.pods()) > 0 {
		fmt.Fprintf(e.Err, "There are pending pods in node %q when an error occurred: %s\n", node, joinErrors(errs))
		for _, p := range pending.pods() {
			fmt.Fprintf(e.Err, "pod/%s\n", p.GetMetadata().GetName())
		}
	}
	return errs
}

// podsForDeletion lists the node's pods (all namespaces) and decides for each
// whether drain may evict it; errs holds kubectl's refusals.
func (e *env) podsForDeletion(cmd *cobra.Command, node string, o drainOptions) (podDeleteList, []error) {
	c, err := e.client()
	if err != nil {
		return nil, []error{err}
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	objs, _, err := c.List(ctx, mustKind("Pod"), "", client.ListOptions{
		FieldSelector: "spec.nodeName=" + node, LabelSelector: o.podSelector})
	if err != nil {
		return nil, []error{err}
	}
	daemonSetExists := func(ns, name string) error {
		_, err := c.Get(ctx, mustKind("DaemonSet"), ns, name, "")
		return err
	}
	var list podDeleteList
	for _, obj := range objs {
		list = append(list, o.filter(obj.(*corev1.Pod), daemonSetExists))
	}
	return list, list.errors()
}

// Drain's reasons, in kubectl's words.
const (
	daemonSetFatal      = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
	daemonSetWarning    = "ignoring DaemonSet-managed Pods"
	localStorageFatal   = "Pods with local storage (use --delete-emptydir-data to override)"
	localStorageWarning = "deleting Pods with local storage"
	unmanagedFatal      = "cannot delete Pods that declare no controller (use --force to override)"
	unmanagedWarning    = "deleting Pods that declare no controller"
	mirrorAnnotation    = "kubernetes.io/config.mirror"
)

// podDelete is drain's decision about one pod.
type podDelete struct {
	pod    *corev1.Pod
	delete bool
	reason string // "" (okay), "skip", "warning" or "error"
	msg    string
}

type podDeleteList []podDelete

// filter runs kubectl's drain filters over p in kubectl's order (DaemonSet, mirror,
// local storage, controller); the first that refuses to delete decides, otherwise
// the last one does. daemonSetExists looks up the pod's DaemonSet.
func (o drainOptions) filter(p *corev1.Pod, daemonSetExists func(ns, name string) error) podDelete {
	finished := p.GetStatus().GetPhase() == "Succeeded" || p.GetStatus().GetPhase() == "Failed"
	okay := podDelete{pod: p, delete: true}
	filters := []func() podDelete{
		func() podDelete { // DaemonSet
			ref := controllerOf(p.GetMetadata())
			if ref == nil || ref.GetKind() != "DaemonSet" || finished {
				return okay
			}
			if err := daemonSetExists(p.GetMetadata().GetNamespace(), ref.GetName()); err != nil {
				if status.Code(err) == codes.NotFound && o.force {
					return podDelete{p, true, "warning", errorMessage(err)}
				}
				return podDelete{p, false, "error", errorMessage(err)}
			}
			if !o.ignoreDaemonSets {
				return podDelete{p, false, "error", daemonSetFatal}
			}
			return podDelete{p, false, "warning", daemonSetWarning}
		},
		func() podDelete { // mirror pods cannot be deleted through the API
			if _, ok := p.GetMetadata().GetAnnotations()[mirrorAnnotation]; ok {
				return podDelete{pod: p, reason: "skip"}
			}
			return okay
		},
		func() podDelete { // local storage
			emptyDir := false
			for _, v := range p.GetSpec().GetVolumes() {
				emptyDir = emptyDir || v.GetEmptyDir() != nil
			}
			switch {
			case !emptyDir || finished:
				return okay
			case !o.deleteEmptyDirData:
				return podDelete{p, false, "error", localStorageFatal}
			}
			return podDelete{p, true, "warning", localStorageWarning}
		},
		func() podDelete { // a controller recreates the pod elsewhere
			switch {
			case finished || controllerOf(p.GetMetadata()) != nil:
				return okay
			case o.force:
				return podDelete{p, true, "warning", unmanagedWarning}
			}
			return podDelete{p, false, "error", unmanagedFatal}
		},
	}
	var d podDelete
	for _, f := range filters {
		if d = f(); !d.delete {
			break
		}
	}
	return d
}

// pods returns the pods to evict.
func (l podDeleteList) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, d := range l {
		if d.delete {
			out = append(out, d.pod)
		}
	}
	return out
}

// byMessage groups the pods with the given reason as "ns/name" lists, by message in
// order of first appearance.
func (l podDeleteList) byMessage(reason string) (msgs []string, pods map[string][]string) {
	pods = map[string][]string{}
	for _, d := range l {
		if d.reason != reason {
			continue
		}
		if _, seen := pods[d.msg]; !seen {
			msgs = append(msgs, d.msg)
		}
		md := d.pod.GetMetadata()
		pods[d.msg] = append(pods[d.msg], md.GetNamespace()+"/"+md.GetName())
	}
	return msgs, pods
}

// warnings is kubectl's WARNING line: "message: ns/a, ns/b; message: ...".
func (l podDeleteList) warnings() string {
	msgs, pods := l.byMessage("warning")
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = m + ": " + strings.Join(pods[m], ", ")
	}
	return strings.Join(parts, "; ")
}

// errors are kubectl's refusals: "cannot delete <message>: ns/a, ns/b".
func (l podDeleteList) errors() []error {
	msgs, pods := l.byMessage("error")
	var errs []error
	for _, m := range msgs {
		text := m
		if !strings.HasPrefix(strings.ToLower(m), "cannot delete") {
			text = "cannot delete " + m
		}
		errs = append(errs, fmt.Errorf("%s: %s", text, strings.Join(pods[m], ", ")))
	}
	return errs
}

// controllerOf is the owner reference marked as controller, or nil.
func controllerOf(md *metav1.ObjectMeta) *metav1.OwnerReference {
	for _, r := range md.GetOwnerReferences() {
		if r.GetController() {
			return r
		}
	}
	return nil
}

// evictPods evicts pods through their eviction subresource and waits, polling every
// second, until each is gone (or has been replaced by a pod of another UID),
// printing kubectl's lines as it goes.
func (e *env) evictPods(cmd *cobra.Command, pods []*corev1.Pod, o drainOptions) []error {
	c, err := e.client()
	if err != nil {
		return []error{err}
	}
	ctx := cmd.Context()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	timedOut := func() string { return fmt.Sprintf("global timeout reached: %v", o.timeout) }
	var errs []error
	var waiting []*corev1.Pod
	for _, p := range pods {
		ns, name := p.GetMetadata().GetNamespace(), p.GetMetadata().GetName()
		fmt.Fprintf(e.Out, "evicting pod %s/%s\n", ns, name)
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("error when evicting pods/%q -n %q: %s", name, ns, timedOut()))
			continue
		}
		var opts *metav1.DeleteOptions
		if o.gracePeriod >= 0 {
			grace := int64(o.gracePeriod)
			opts = &metav1.DeleteOptions{GracePeriodSeconds: &grace}
		}
		rctx, cancel := context.WithTimeout(ctx, e.timeout)
		err := c.Evict(rctx, ns, name, opts)
		cancel()
		switch {
		case status.Code(err) == codes.NotFound:
			// Gone already.
		case err != nil:
			errs = append(errs, fmt.Errorf("error when evicting pods/%q -n %q: %s", name, ns, errorMessage(err)))
		default:
			waiting = append(waiting, p)
		}
	}
	for len(waiting) > 0 {
		var still []*corev1.Pod
		for _, p := range waiting {
			md := p.GetMetadata()
			rctx, cancel := context.WithTimeout(ctx, e.timeout)
			live, err := c.Get(rctx, mustKind("Pod"), md.GetNamespace(), md.GetName(), "")
			cancel()
			switch {
			case status.Code(err) == codes.NotFound || (err == nil && live.(metaObject).GetMetadata().GetUid() != md.GetUid()):
				fmt.Fprintf(e.Out, "pod/%s evicted\n", md.GetName())
			case err != nil && ctx.Err() == nil:
				errs = append(errs, fmt.Errorf("error when waiting for pod %q in namespace %q to terminate: %s", md.GetName(), md.GetNamespace(), errorMessage(err)))
			default:
				still = append(still, p)
			}
		}
		waiting = still
		if len(waiting) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, p := range waiting {
				md := p.GetMetadata()
				errs = append(errs, fmt.Errorf("error when waiting for pod %q in namespace %q to terminate: %s", md.GetName(), md.GetNamespace(), timedOut()))
			}
			waiting = nil
		case <-time.After(time.Second):
		}
	}
	return errs
}

// errorMessage is an error's text without gRPC's "rpc error: code = ... desc =".
func errorMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// joinErrors is the text of several errors as Kubernetes aggregates show it: the
// error itself when there is one, "[a, b]" when there are more.
func joinErrors(errs []error) string {
	if len(errs) == 1 {
		return errorMessage(errs[0])
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = errorMessage(err)
	}
	return "[" + strings.Join(msgs, ", ") + "]"
}

// fail reports errs the way kubectl's error handler does — a single error as
// `error: ...` (or `Error from server (...)` for an API error), several one per line
// without a prefix — and returns errFailed so that Main prints nothing more.
func (e *env) fail(errs []error) error {
	for _, err := range errs {
		line := serverError(err)
		if _, isStatus := status.FromError(err); !isStatus {
			line = err.Error()
			if len(errs) == 1 && !strings.HasPrefix(line, "error: ") {
				line = "error: " + line
			}
		}
		fmt.Fprintln(e.Err, line)
	}
	return errFailed
}

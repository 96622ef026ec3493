package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

// Annotations and labels the rollout commands read and write, as Kubernetes names them.
const (
	revisionAnnotation    = "deployment.kubernetes.io/revision"
	changeCauseAnnotation = "kubernetes.io/change-cause"
	restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	podTemplateHashLabel  = "pod-template-hash"
)

// rollbackKeeps are the Deployment annotations a rollback keeps from the Deployment
// rather than taking them from the ReplicaSet it rolls back to (kubectl's
// annotationsToSkip).
var rollbackKeeps = map[string]bool{
	lastAppliedKey:     true,
	revisionAnnotation: true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	"deprecated.deployment.rollback.to":         true,
}

func newRollout(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a deployment, daemon set or stateful set",
		Long: `Manage the rollout of a deployment: watch it, list and inspect its revisions (its
ReplicaSets), roll back to one, pause and resume it, restart its pods. status
and restart also work on daemon sets and stateful sets.`,
	}
	cmd.AddCommand(newRolloutStatus(e), newRolloutHistory(e), newRolloutUndo(e),
		newRolloutPauseResume(e, true), newRolloutPauseResume(e, false), newRolloutRestart(e))
	for _, c := range cmd.Commands() {
		c.ValidArgsFunction = e.completeObjects
	}
	return cmd
}

// rolloutTargets parses a rollout subcommand's `KIND NAME...` or `KIND/NAME...`.
func rolloutTargets(args []string) ([]target, error) {
	if len(args) == 0 {
		return nil, errors.New("required resource not specified")
	}
	_, targets, err := parseTargets(args, false)
	return targets, err
}

// groupResource is kubectl's "deployments.apps" for k.
func groupResource(k kinds.Kind) string {
	if k.Group == "" {
		return k.Resource
	}
	return k.Resource + "." + k.Group
}

// groupKind is kubectl's "Deployment.apps" for k.
func groupKind(k kinds.Kind) string {
	if k.Group == "" {
		return k.Kind
	}
	return k.Kind + "." + k.Group
}

// newRolloutPauseResume is `rollout pause` (pause true) or `rollout resume`.
func newRolloutPauseResume(e *env, pause bool) *cobra.Command {
	verb, done, already, unsupported := "pause", "paused", "is already paused", "pausing is not supported"
	short := "Mark the provided resource as paused"
	if !pause {
		verb, done, already, unsupported = "resume", "resumed", "is not paused", "resuming is not supported"
		short = "Resume a paused resource"
	}
	return &cobra.Command{
		Use:   verb + " (KIND NAME | KIND/NAME)...",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := rolloutTargets(args)
			if err != nil {
				return err
			}
			var errs []error
			for _, t := range targets {
				if t.kind.Kind != "Deployment" {
					errs = append(errs, fmt.Errorf("error: %s %q %s", groupResource(t.kind), t.name, unsupported))
					continue
				}
				_, err := e.update(cmd, t, func(obj metaObject) error {
					d := obj.(*appsv1.Deployment)
					if d.GetSpec().GetPaused() == pause {
						return fmt.Errorf("error: %s %q %s", groupResource(t.kind), t.name, already)
					}
					if d.Spec == nil {
						d.Spec = &appsv1.DeploymentSpec{}
					}
					d.Spec.Paused = pause
					return nil
				})
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.Out, "%s %s\n", printers.ResourceName(t.kind, t.name), done)
			}
			if len(errs) > 0 {
				return e.fail(errs)
			}
			return nil
		},
	}
}

func newRolloutRestart(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "restart (KIND NAME | KIND/NAME)...",
		Short: "Restart a resource",
		Long: `Restart a deployment, daemon set or stateful set: set the pod template annotation
kubectl.kubernetes.io/restartedAt to now, so that its controller replaces every pod.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := rolloutTargets(args)
			if err != nil {
				return err
			}
			var errs []error
			for _, t := range targets {
				now := e.now().Format(time.RFC3339)
				_, err := e.update(cmd, t, func(obj metaObject) error {
					var tmpl **corev1.PodTemplateSpec
					switch o := obj.(type) {
					case *appsv1.Deployment:
						if o.GetSpec().GetPaused() {
							return fmt.Errorf("error: %s %q can't restart paused deployment (run rollout resume first)", groupResource(t.kind), t.name)
						}
						if o.Spec == nil {
							o.Spec = &appsv1.DeploymentSpec{}
						}
						tmpl = &o.Spec.Template
					case *appsv1.DaemonSet:
						if o.Spec == nil {
							o.Spec = &appsv1.DaemonSetSpec{}
						}
						tmpl = &o.Spec.Template
					case *appsv1.StatefulSet:
						if o.Spec == nil {
							o.Spec = &appsv1.StatefulSetSpec{}
						}
						tmpl = &o.Spec.Template
					default:
						return fmt.Errorf("error: %s %q restarting is not supported", groupResource(t.kind), t.name)
					}
					if *tmpl == nil {
						*tmpl = &corev1.PodTemplateSpec{}
					}
					if (*tmpl).GetMetadata().GetAnnotations()[restartedAtAnnotation] == now {
						return fmt.Errorf("failed to create patch for %v: if restart has already been triggered within the past second, please wait before attempting to trigger another", t.name)
					}
					setTemplateAnnotation(*tmpl, restartedAtAnnotation, now)
					return nil
				})
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.Out, "%s restarted\n", printers.ResourceName(t.kind, t.name))
			}
			if len(errs) > 0 {
				return e.fail(errs)
			}
			return nil
		},
	}
}

// setTemplateAnnotation sets one annotation of a pod template.
func setTemplateAnnotation(t *corev1.PodTemplateSpec, key, value string) {
	if t.Metadata == nil {
		t.Metadata = &metav1.ObjectMeta{}
	}
	if t.Metadata.Annotations == nil {
		t.Metadata.Annotations = map[string]string{}
	}
	t.Metadata.Annotations[key] = value
}

func newRolloutUndo(e *env) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:   "undo (KIND NAME | KIND/NAME)... [--to-revision=N]",
		Short: "Undo a previous rollout",
		Long: `Roll a deployment back to an earlier revision: copy the pod template of that
revision's ReplicaSet into the deployment. The default is the revision before
the latest one.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := rolloutTargets(args)
			if err != nil {
				return err
			}
			for _, t := range targets {
				if t.kind.Kind != "Deployment" {
					return fmt.Errorf("no rollbacker has been implemented for %q", groupKind(t.kind))
				}
				result, err := e.undo(cmd, t, toRevision)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Out, "%s %s\n", printers.ResourceName(t.kind, t.name), result)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to; 0 means the last but one")
	return cmd
}

// undo rolls Deployment t back to toRevision (0: the one before the latest) and
// returns kubectl's result text: "rolled back", or "skipped rollback (...)" when the
// Deployment's template already is that revision's.
func (e *env) undo(cmd *cobra.Command, t target, toRevision int64) (string, error) {
	if toRevision < 0 {
		return "", fmt.Errorf("unable to find specified revision %d in history", toRevision)
	}
	d, rss, err := e.deploymentHistory(cmd, t)
	if err != nil {
		return "", err
	}
	rs, err := revisionReplicaSet(d, rss, toRevision)
	if err != nil {
		return "", err
	}
	revision, _ := revisionOf(rs.GetMetadata().GetAnnotations())
	var result string
	_, err = e.update(cmd, t, func(obj metaObject) error {
		live := obj.(*appsv1.Deployment)
		if live.GetSpec().GetPaused() {
			return errors.New("you cannot rollback a paused deployment; resume it first with 'ctl rollout resume' and try again")
		}
		if equalIgnoreHash(rs.GetSpec().GetTemplate(), live.GetSpec().GetTemplate()) {
			result = fmt.Sprintf("skipped rollback (current template already matches revision %d)", revision)
			return errNoChange
		}
		tmpl := proto.Clone(rs.GetSpec().GetTemplate()).(*corev1.PodTemplateSpec)
		delete(tmpl.GetMetadata().GetLabels(), podTemplateHashLabel)
		if live.Spec == nil {
			live.Spec = &appsv1.DeploymentSpec{}
		}
		live.Spec.Template = tmpl
		live.Metadata.Annotations = rollbackAnnotations(live.GetMetadata().GetAnnotations(), rs.GetMetadata().GetAnnotations())
		result = "rolled back"
		return nil
	})
	if err != nil {
		return "", err
	}
	return result, nil
}

// rollbackAnnotations are a rolled-back Deployment's annotations: those of the
// ReplicaSet, except the ones a Deployment keeps (its revision, last-applied
// configuration...), which stay as they are.
func rollbackAnnotations(deployment, rs map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range deployment {
		if rollbackKeeps[k] {
			out[k] = v
		}
	}
	for k, v := range rs {
		if !rollbackKeeps[k] {
			out[k] = v
		}
	}
	return out
}

// revisionReplicaSet picks the ReplicaSet of toRevision, or with 0 the one of the
// second highest revision, as kubectl's deploymentRevision does.
func revisionReplicaSet(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, toRevision int64) (*appsv1.ReplicaSet, error) {
	var latest, previous *appsv1.ReplicaSet
	latestRev, previousRev := int64(-1), int64(-1)
	for _, rs := range rss {
		v, err := revisionOf(rs.GetMetadata().GetAnnotations())
		if err != nil {
			continue
		}
		switch {
		case toRevision > 0:
			if v == toRevision {
				return rs, nil
			}
		case v > latestRev:
			previous, previousRev = latest, latestRev
			latest, latestRev = rs, v
		case v > previousRev:
			previous, previousRev = rs, v
		}
	}
	if toRevision > 0 {
		return nil, fmt.Errorf("unable to find specified revision %d in history", toRevision)
	}
	if previous == nil {
		return nil, fmt.Errorf("no rollout history found for deployment %q", d.GetMetadata().GetName())
	}
	return previous, nil
}

// revisionOf reads the revision annotation; an object without one is revision 0.
func revisionOf(annotations map[string]string) (int64, error) {
	v, ok := annotations[revisionAnnotation]
	if !ok {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

// equalIgnoreHash reports whether two pod templates are equal apart from their
// pod-template-hash labels.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = proto.Clone(a).(*corev1.PodTemplateSpec), proto.Clone(b).(*corev1.PodTemplateSpec)
	delete(a.GetMetadata().GetLabels(), podTemplateHashLabel)
	delete(b.GetMetadata().GetLabels(), podTemplateHashLabel)
	return proto.Equal(a, b)
}

// deploymentHistory reads Deployment t and the ReplicaSets it controls (its
// revisions), oldest revision first.
func (e *env) deploymentHistory(cmd *cobra.Command, t target) (*appsv1.Deployment, []*appsv1.ReplicaSet, error) {
	c, err := e.client()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	obj, err := c.Get(ctx, t.kind, e.nsFor(t.kind, false), t.name, "")
	if err != nil {
		return nil, nil, err
	}
	d := obj.(*appsv1.Deployment)
	rss, err := ownedReplicaSets(ctx, c, d)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to retrieve replica sets from deployment %s: %s", t.name, errorMessage(err))
	}
	return d, rss, nil
}

// ownedReplicaSets lists the ReplicaSets whose controller is d, by revision.
func ownedReplicaSets(ctx context.Context, c *client.Client, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	objs, _, err := c.List(ctx, mustKind("ReplicaSet"), d.GetMetadata().GetNamespace(), client.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ReplicaSet
	for _, o := range objs {
		rs := o.(*appsv1.ReplicaSet)
		if ref := controllerOf(rs.GetMetadata()); ref != nil && ref.GetUid() == d.GetMetadata().GetUid() {
			out = append(out, rs)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := revisionOf(out[i].GetMetadata().GetAnnotations())
		b, _ := revisionOf(out[j].GetMetadata().GetAnnotations())
		return a < b
	})
	return out, nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

// scalePrecondition is kubectl scale's --current-replicas (-1: any) and
// --resource-version ("": any).
type scalePrecondition struct {
	replicas        int
	resourceVersion string
}

// preconditionError is kubectl's text for a failed scale precondition.
type preconditionError struct {
	field, expected, actual string
}

func (e preconditionError) Error() string {
	return fmt.Sprintf("Expected %s to be %s, was %s", e.field, e.expected, e.actual)
}

func newScale(e *env) *cobra.Command {
	var (
		replicas, current int
		resourceVersion   string
		timeout           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "scale [--resource-version=VERSION] [--current-replicas=COUNT] --replicas=COUNT (KIND NAME | KIND/NAME)",
		Short: "Set a new size for a deployment, replica set or stateful set",
		Long: `Set a new size for a deployment, replica set or stateful set.

--current-replicas and --resource-version are preconditions, checked before the
write: if they do not hold, nothing is changed. A write that loses a race with
another writer is retried on the fresh object, preconditions included.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if replicas < 0 {
				return errors.New("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
			}
			if current < -1 {
				return errors.New("The --current-replicas must specify an integer of -1 or greater")
			}
			_, targets, err := parseTargets(args, false)
			if err != nil {
				return err
			}
			if resourceVersion != "" && len(targets) > 1 {
				return errors.New("cannot use --resource-version with multiple resources")
			}
			for _, t := range targets {
				switch t.kind.Kind {
				case "Deployment", "ReplicaSet", "StatefulSet":
				default:
					return fmt.Errorf("%s cannot be scaled", t.kind.Resource)
				}
			}
			for _, t := range targets {
				if err := e.scale(cmd, t, int32(replicas), scalePrecondition{current, resourceVersion}); err != nil {
					return err
				}
				if timeout > 0 {
					if err := e.waitForReplicas(cmd, t, int32(replicas), timeout); err != nil {
						return err
					}
				}
				fmt.Fprintf(e.Out, "%s scaled\n", printers.ResourceName(t.kind, t.name))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&replicas, "replicas", -1, "the new desired number of replicas (required)")
	f.IntVar(&current, "current-replicas", -1, "precondition for the current size: scale only if it is this (-1: no precondition)")
	f.StringVar(&resourceVersion, "resource-version", "", "precondition for the resource version: scale only if it is this")
	f.DurationVar(&timeout, "timeout", 0, "how long to wait for the new size to be reached, zero means don't wait")
	return cmd
}

// scale sets t's spec.replicas with e.update: a Get, then an Update that carries the
// read resourceVersion, retried on a conflict. The preconditions are checked against
// each fresh read, as kubectl checks them against each read of the scale subresource,
// so a retry never overrides a changed size.
func (e *env) scale(cmd *cobra.Command, t target, replicas int32, pre scalePrecondition) error {
	_, err := e.update(cmd, t, func(obj metaObject) error {
		field := replicasField(obj)
		actual := int32(1) // the API's default
		if *field != nil {
			actual = **field
		}
		if pre.replicas != -1 && int(actual) != pre.replicas {
			return preconditionError{"replicas", strconv.Itoa(pre.replicas), strconv.Itoa(int(actual))}
		}
		if rv := obj.GetMetadata().GetResourceVersion(); pre.resourceVersion != "" && rv != pre.resourceVersion {
			return preconditionError{"resource version", pre.resourceVersion, rv}
		}
		*field = &replicas
		return nil
	})
	return err
}

// waitForReplicas waits, as kubectl scale --timeout does, until status.replicas is
// the desired size, or until someone else has set another size.
func (e *env) waitForReplicas(cmd *cobra.Command, t target, desired int32, timeout time.Duration) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, e.timeout)
		obj, err := c.Get(rctx, t.kind, e.nsFor(t.kind, false), t.name, "")
		rcancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			spec, status := replicasOf(obj.(metaObject))
			if spec != desired || status == desired {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if cmd.Context().Err() != nil {
				return cmd.Context().Err()
			}
			return fmt.Errorf("timed out waiting for %q to be synced", t.name)
		case <-time.After(time.Second):
		}
	}
}

// replicasField returns where a scalable object keeps spec.replicas (creating an
// empty spec if there is none); only Deployments, ReplicaSets and StatefulSets are
// passed in.
func replicasField(obj metaObject) **int32 {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if o.Spec == nil {
			o.Spec = &appsv1.DeploymentSpec{}
		}
		return &o.Spec.Replicas
	case *appsv1.ReplicaSet:
		if o.Spec == nil {
			o.Spec = &appsv1.ReplicaSetSpec{}
		}
		return &o.Spec.Replicas
	case *appsv1.StatefulSet:
		if o.Spec == nil {
			o.Spec = &appsv1.StatefulSetSpec{}
		}
		return &o.Spec.Replicas
	}
	panic(fmt.Sprintf("replicasField: %T cannot be scaled", obj))
}

// replicasOf returns the desired (spec) and current (status) sizes of a scalable
// object, as its scale subresource would report them.
func replicasOf(obj metaObject) (spec, status int32) {
	spec = 1
	if p := *replicasField(obj); p != nil {
		spec = *p
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		status = o.GetStatus().GetReplicas()
	case *appsv1.ReplicaSet:
		status = o.GetStatus().GetReplicas()
	case *appsv1.StatefulSet:
		status = o.GetStatus().GetReplicas()
	}
	return spec, status
}

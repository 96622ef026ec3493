package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	autoscalingv1 "github.com/rafter-dev/rafter/gen/rafter/autoscaling/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
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

The size is written through the scale subresource (PUT .../scale).
--current-replicas and --resource-version are preconditions, checked against the
scale subresource before the write, which carries the resourceVersion it read:
if they do not hold, nothing is changed. A write that loses a race with another
writer is retried on the fresh object, preconditions included.`,
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
				if !t.kind.HasScale {
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

// scale sets t's spec.replicas through its scale subresource, as kubectl scale
// does. Without preconditions it is one PUT of a Scale without resourceVersion,
// which the server applies to the latest version of the object (kubectl sends a
// merge patch there). With --current-replicas or --resource-version it reads the
// Scale, checks the preconditions against it and PUTs it back carrying the read
// resourceVersion, so the write fails with a conflict if anything changed in
// between; a conflict is retried on a fresh read, preconditions included, so a
// retry never overrides a changed size.
func (e *env) scale(cmd *cobra.Command, t target, replicas int32, pre scalePrecondition) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	ns := e.nsFor(t.kind, false)
	if pre.replicas == -1 && pre.resourceVersion == "" {
		ctx, cancel := e.ctx(cmd)
		defer cancel()
		_, err := c.UpdateScale(ctx, t.kind, ns, t.name, &autoscalingv1.Scale{
			Metadata: &metav1.ObjectMeta{Name: t.name, Namespace: ns},
			Spec:     &autoscalingv1.ScaleSpec{Replicas: replicas},
		})
		return err
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := e.ctx(cmd)
		sc, err := c.GetScale(ctx, t.kind, ns, t.name)
		if err != nil {
			cancel()
			return err
		}
		if actual := sc.GetSpec().GetReplicas(); pre.replicas != -1 && int(actual) != pre.replicas {
			cancel()
			return preconditionError{"replicas", strconv.Itoa(pre.replicas), strconv.Itoa(int(actual))}
		}
		if rv := sc.GetMetadata().GetResourceVersion(); pre.resourceVersion != "" && rv != pre.resourceVersion {
			cancel()
			return preconditionError{"resource version", pre.resourceVersion, rv}
		}
		sc.Spec, sc.Status = &autoscalingv1.ScaleSpec{Replicas: replicas}, nil
		_, err = c.UpdateScale(ctx, t.kind, ns, t.name, sc)
		cancel()
		if status.Code(err) == codes.Aborted && attempt < 3 {
			continue
		}
		return err
	}
}

// waitForReplicas waits, as kubectl scale --timeout does, until the scale
// subresource shows status.replicas at the desired size, or until someone else
// has set another size.
func (e *env) waitForReplicas(cmd *cobra.Command, t target, desired int32, timeout time.Duration) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, e.timeout)
		sc, err := c.GetScale(rctx, t.kind, e.nsFor(t.kind, false), t.name)
		rcancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			spec, current := sc.GetSpec().GetReplicas(), sc.GetStatus().GetReplicas()
			if spec != desired || current == desired {
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

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

// errWaitTimeout is kubectl's text when --timeout ends a wait.
var errWaitTimeout = errors.New("timed out waiting for the condition")

func newRolloutStatus(e *env) *cobra.Command {
	var (
		watch    bool
		revision int64
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status (KIND NAME | KIND/NAME)... [--watch=false] [--timeout=DURATION]",
		Short: "Show the status of the rollout",
		Long: `Show the status of the rollout of a deployment, daemon set or stateful set.

By default it watches until the rollout is done, printing the status after every
change of the object; --watch=false prints it once.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if revision < 0 {
				return fmt.Errorf("revision must be a positive integer: %v", revision)
			}
			targets, err := rolloutTargets(args)
			if err != nil {
				return err
			}
			for _, t := range targets {
				switch t.kind.Kind {
				case "Deployment", "DaemonSet", "StatefulSet":
				default:
					return fmt.Errorf("no status viewer has been implemented for %s", t.kind.Kind)
				}
			}
			for _, t := range targets {
				if err := e.rolloutStatus(cmd, t, watch, revision, timeout); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&watch, "watch", "w", true, "watch the status of the rollout until it's done")
	f.Int64Var(&revision, "revision", 0, "pin to a specific revision for showing its status; 0 means the latest")
	f.DurationVar(&timeout, "timeout", 0, "the length of time to wait before ending watch, zero means never")
	return cmd
}

// rolloutStatus prints t's rollout status, then with watch a new one after every
// change of t until the rollout is done. The watch survives the loss of its peer
// (it resumes after the last change it saw) and the loss of its place in the
// server's history (it reads the object again).
func (e *env) rolloutStatus(cmd *cobra.Command, t target, watch bool, revision int64, timeout time.Duration) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ns := e.nsFor(t.kind, false)
	rctx, cancel := e.ctx(cmd)
	obj, err := c.Get(rctx, t.kind, ns, t.name, "")
	cancel()
	if err != nil {
		return err
	}
	// show prints obj's status and reports whether the wait is over.
	show := func(obj proto.Message) (bool, error) {
		msg, done, err := rolloutStatusOf(obj, revision)
		if err != nil {
			return true, err
		}
		fmt.Fprint(e.Out, msg)
		return done || !watch, nil
	}
	if over, err := show(obj); over || err != nil {
		return err
	}
	lo := client.ListOptions{FieldSelector: "metadata.name=" + t.name,
		ResourceVersion: obj.(metaObject).GetMetadata().GetResourceVersion()}
	for {
		w, err := c.Watch(ctx, t.kind, ns, lo)
		for err == nil {
			var ev client.Event
			if ev, err = w.Next(); err != nil {
				break
			}
			if ev.Type == "DELETED" {
				return errors.New("object has been deleted")
			}
			lo.ResourceVersion = ev.Object.(metaObject).GetMetadata().GetResourceVersion()
			if over, err := show(ev.Object); over || err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errWaitTimeout
			}
			return ctx.Err()
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.Canceled, codes.Internal, codes.DeadlineExceeded:
			// The stream ended (peer gone or behind): resume after the last change seen.
		case codes.OutOfRange:
			// Our place left the server's history: read the object again, then watch on.
			rctx, cancel := e.ctx(cmd)
			objs, rv, lerr := c.List(rctx, t.kind, ns, client.ListOptions{FieldSelector: lo.FieldSelector})
			cancel()
			if lerr != nil {
				return lerr
			}
			if len(objs) == 0 {
				return errors.New("object has been deleted")
			}
			if over, err := show(objs[0]); over || err != nil {
				return err
			}
			lo.ResourceVersion = rv
		default:
			if !errors.Is(err, io.EOF) {
				return err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rolloutStatusOf is kubectl's status viewer for a Deployment, DaemonSet or
// StatefulSet: a message (ending in a newline), whether the rollout is done, or an
// error that ends the wait.
func rolloutStatusOf(obj proto.Message, revision int64) (string, bool, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return deploymentStatus(o, revision)
	case *appsv1.DaemonSet:
		return daemonSetStatus(o)
	case *appsv1.StatefulSet:
		return statefulSetStatus(o)
	}
	return "", false, fmt.Errorf("no status viewer has been implemented for %T", obj)
}

// deploymentStatus is kubectl's DeploymentStatusViewer.
func deploymentStatus(d *appsv1.Deployment, revision int64) (string, bool, error) {
	name := d.GetMetadata().GetName()
	if revision > 0 {
		current, err := revisionOf(d.GetMetadata().GetAnnotations())
		if err != nil {
			return "", false, fmt.Errorf("cannot get the revision of deployment %q: %v", name, err)
		}
		if revision != current {
			return "", false, fmt.Errorf("desired revision (%d) is different from the running revision (%d)", revision, current)
		}
	}
	st := d.GetStatus()
	if d.GetMetadata().GetGeneration() > st.GetObservedGeneration() {
		return "Waiting for deployment spec update to be observed...\n", false, nil
	}
	for _, c := range st.GetConditions() {
		if c.GetType() == "Progressing" && c.GetReason() == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", name)
		}
	}
	if r := d.GetSpec().Replicas; r != nil && st.GetUpdatedReplicas() < *r {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...\n", name, st.GetUpdatedReplicas(), *r), false, nil
	}
	if st.GetReplicas() > st.GetUpdatedReplicas() {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...\n", name, st.GetReplicas()-st.GetUpdatedReplicas()), false, nil
	}
	if st.GetAvailableReplicas() < st.GetUpdatedReplicas() {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...\n", name, st.GetAvailableReplicas(), st.GetUpdatedReplicas()), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out\n", name), true, nil
}

// daemonSetStatus is kubectl's DaemonSetStatusViewer.
func daemonSetStatus(ds *appsv1.DaemonSet) (string, bool, error) {
	if ds.GetSpec().GetUpdateStrategy().GetType() != "RollingUpdate" {
		return "", true, errors.New("rollout status is only available for RollingUpdate strategy type")
	}
	name, st := ds.GetMetadata().GetName(), ds.GetStatus()
	if ds.GetMetadata().GetGeneration() > st.GetObservedGeneration() {
		return "Waiting for daemon set spec update to be observed...\n", false, nil
	}
	if st.GetUpdatedNumberScheduled() < st.GetDesiredNumberScheduled() {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...\n", name, st.GetUpdatedNumberScheduled(), st.GetDesiredNumberScheduled()), false, nil
	}
	if st.GetNumberAvailable() < st.GetDesiredNumberScheduled() {
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...\n", name, st.GetNumberAvailable(), st.GetDesiredNumberScheduled()), false, nil
	}
	return fmt.Sprintf("daemon set %q successfully rolled out\n", name), true, nil
}

// statefulSetStatus is kubectl's StatefulSetStatusViewer.
func statefulSetStatus(s *appsv1.StatefulSet) (string, bool, error) {
	strategy := s.GetSpec().GetUpdateStrategy()
	if strategy.GetType() != "RollingUpdate" {
		return "", true, errors.New("rollout status is only available for RollingUpdate strategy type")
	}
	st := s.GetStatus()
	if st.GetObservedGeneration() == 0 || s.GetMetadata().GetGeneration() > st.GetObservedGeneration() {
		return "Waiting for statefulset spec update to be observed...\n", false, nil
	}
	replicas := s.GetSpec().Replicas
	if replicas != nil && st.GetReadyReplicas() < *replicas {
		return fmt.Sprintf("Waiting for %d pods to be ready...\n", *replicas-st.GetReadyReplicas()), false, nil
	}
	if ru := strategy.GetRollingUpdate(); ru != nil {
		if replicas != nil && ru.Partition != nil && st.GetUpdatedReplicas() < *replicas-*ru.Partition {
			return fmt.Sprintf("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...\n",
				st.GetUpdatedReplicas(), *replicas-*ru.Partition), false, nil
		}
		return fmt.Sprintf("partitioned roll out complete: %d new pods have been updated...\n", st.GetUpdatedReplicas()), true, nil
	}
	if st.GetUpdateRevision() != st.GetCurrentRevision() {
		return fmt.Sprintf("waiting for statefulset rolling update to complete %d pods at revision %s...\n", st.GetUpdatedReplicas(), st.GetUpdateRevision()), false, nil
	}
	return fmt.Sprintf("statefulset rolling update complete %d pods at revision %s...\n", st.GetCurrentReplicas(), st.GetCurrentRevision()), true, nil
}

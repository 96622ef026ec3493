package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rafter-dev/rafter/internal/ctl/client"
	"github.com/rafter-dev/rafter/internal/ctl/manifest"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func newDelete(e *env) *cobra.Command {
	var (
		files             []string
		recursive, wait   bool
		ignoreNotFound    bool
		selector, cascade string
		grace             int
		force, now        bool
	)
	cmd := &cobra.Command{
		Use:   "delete (-f FILE | KIND NAME... | KIND/NAME... | KIND -l SELECTOR)",
		Short: "Delete objects by file, name or label selector",
		RunE: func(cmd *cobra.Command, args []string) error {
			type located struct {
				target
				ns string
			}
			var targets []located
			failed := false
			switch {
			case len(files) > 0:
				objs, errs := manifest.Read(files, recursive, e.In)
				for _, err := range errs {
					failed = true
					fmt.Fprintf(e.Err, "error: %v\n", err)
				}
				for _, o := range objs {
					ns := e.nsFor(o.Kind, false)
					if o.Kind.Namespaced && o.Namespace != "" {
						ns = o.Namespace // each object in its own namespace
					}
					targets = append(targets, located{target{kind: o.Kind, name: o.Name}, ns})
				}
			case selector != "":
				if len(args) != 1 {
					return fmt.Errorf("with -l, give exactly one resource type")
				}
				ks, err := resolveKinds(args[0])
				if err != nil {
					return err
				}
				c, err := e.client()
				if err != nil {
					return err
				}
				for _, k := range ks {
					ctx, cancel := e.ctx(cmd)
					objs, _, err := c.List(ctx, k, e.nsFor(k, false), client.ListOptions{LabelSelector: selector})
					cancel()
					if err != nil {
						return err
					}
					for _, o := range objs {
						targets = append(targets, located{target{kind: k, name: o.(metaObject).GetMetadata().GetName()}, e.nsFor(k, false)})
					}
				}
				if len(targets) == 0 {
					fmt.Fprintln(e.Err, "No resources found")
				}
			default:
				_, ts, err := parseTargets(args, false)
				if err != nil {
					return err
				}
				for _, t := range ts {
					targets = append(targets, located{t, e.nsFor(t.kind, false)})
				}
			}
			opts, err := deleteOptions(cascade, grace, force, now)
			if err != nil {
				return err
			}
			if g := opts.GracePeriodSeconds; g != nil && *g == 0 {
				fmt.Fprintln(e.Err, "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.")
			}
			for _, t := range targets {
				if err := e.deleteOne(cmd, t.target, t.ns, opts, wait, ignoreNotFound); err != nil {
					failed = true
				}
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&files, "filename", "f", nil, "delete the objects in these manifests")
	f.BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f directories")
	f.StringVarP(&selector, "selector", "l", "", "delete every object of the type matching this label selector")
	f.BoolVar(&wait, "wait", false, "wait until each object is gone")
	f.BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat a missing object as deleted")
	f.StringVar(&cascade, "cascade", "background", "background, foreground or orphan")
	f.IntVar(&grace, "grace-period", -1, "seconds given to a pod to terminate gracefully; negative uses the pod's own; 0 only with --force")
	f.BoolVar(&force, "force", false, "with --grace-period=0, remove pods from the API at once, without waiting for their node to stop them")
	f.BoolVar(&now, "now", false, "signal pods to stop at once (--grace-period=1)")
	return cmd
}

// deleteOptions turns ctl delete's flags into the request, as kubectl does:
// --now is --grace-period=1; --grace-period=0 without --force becomes 1 (a
// pod's node still gets to stop it); --force alone means 0.
func deleteOptions(cascade string, grace int, force, now bool) (client.DeleteOptions, error) {
	policy := map[string]string{"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}[cascade]
	if policy == "" {
		return client.DeleteOptions{}, fmt.Errorf("invalid --cascade %q: background, foreground or orphan", cascade)
	}
	opts := client.DeleteOptions{PropagationPolicy: policy}
	if now {
		if grace >= 0 {
			return opts, fmt.Errorf("--now and --grace-period cannot be specified together")
		}
		grace = 1
	}
	switch {
	case force && grace < 0:
		grace = 0
	case !force && grace == 0:
		grace = 1
	}
	if grace >= 0 {
		opts.GracePeriodSeconds = proto.Int64(int64(grace))
	}
	return opts, nil
}

func (e *env) deleteOne(cmd *cobra.Command, t target, ns string, opts client.DeleteOptions, wait, ignoreNotFound bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	_, err = c.Delete(ctx, t.kind, ns, t.name, opts)
	if status.Code(err) == codes.NotFound && ignoreNotFound {
		return nil
	}
	if err != nil {
		fmt.Fprintln(e.Err, serverError(err))
		return err
	}
	// kubectl's words: deployment.apps "web" deleted
	resource, _, _ := strings.Cut(printers.ResourceName(t.kind, t.name), "/")
	fmt.Fprintf(e.Out, "%s %q deleted\n", resource, t.name)
	for wait {
		_, err := c.Get(ctx, t.kind, ns, t.name, "")
		if status.Code(err) == codes.NotFound {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("timed out waiting for %s to be deleted", printers.ResourceName(t.kind, t.name))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

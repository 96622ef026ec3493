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

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	"github.com/rafter-dev/rafter/internal/ctl/client"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func newGet(e *env) *cobra.Command {
	var (
		output, selector, fieldSelector string
		all, watch, noHeaders           bool
	)
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND] [NAME...] [-n NS | -A] [-l SELECTOR] [-o wide|yaml|json|name] [-w]",
		Short: "List objects, or show some by name",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "wide", "yaml", "json", "name":
			default:
				return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json, name, wide, yaml", output)
			}
			ks, targets, err := parseTargets(args, true)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			opts := printers.Options{Output: output, NoHeaders: noHeaders, AllNamespaces: all, Now: e.now(),
				WithKind: len(ks) > 1, List: len(targets) == 0}
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			if len(targets) > 0 {
				if watch {
					return errors.New("watch by name is not supported; use --field-selector=metadata.name=NAME")
				}
				if all {
					return errors.New("a resource cannot be retrieved by name across all namespaces")
				}
				return e.getByName(ctx, c, targets, opts)
			}
			lo := client.ListOptions{LabelSelector: selector, FieldSelector: fieldSelector}
			if watch {
				if len(ks) != 1 {
					return errors.New("you may only watch a single resource type")
				}
				k := ks[0]
				objs, rv, err := c.List(ctx, k, e.nsFor(k, all), lo)
				if err != nil {
					return err
				}
				cancel()
				// In a table, the listed rows and the watched ones share column widths.
				tw := printers.NewTableWriter(e.Out)
				table := output == "" || output == "wide"
				if table && len(objs) > 0 {
					if !noHeaders {
						tw.WriteRow(printers.Header(k, opts))
					}
					for _, o := range objs {
						tw.WriteRow(printers.Row(k, o, opts))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				} else if len(objs) > 0 {
					if err := printers.Print(e.Out, k, objs, opts); err != nil {
						return err
					}
				}
				lo.ResourceVersion = rv
				return e.watch(cmd, k, e.nsFor(k, all), lo, opts, tw, len(objs) == 0)
			}
			printed := 0
			for _, k := range ks {
				objs, _, err := c.List(ctx, k, e.nsFor(k, all), lo)
				if err != nil {
					return err
				}
				if len(objs) == 0 {
					continue
				}
				if printed > 0 && (output == "" || output == "wide") {
					fmt.Fprintln(e.Out)
				}
				if err := printers.Print(e.Out, k, objs, opts); err != nil {
					return err
				}
				printed++
			}
			if printed == 0 {
				if all || !ks[0].Namespaced {
					fmt.Fprintln(e.Err, "No resources found")
				} else {
					fmt.Fprintf(e.Err, "No resources found in %s namespace.\n", e.ns())
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "output format: wide, yaml, json or name")
	f.StringVarP(&selector, "selector", "l", "", "label selector (e.g. app=web,tier!=db, env in (a,b))")
	f.StringVar(&fieldSelector, "field-selector", "", "field selector (e.g. metadata.name=web, spec.nodeName=n1)")
	f.BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	f.BoolVarP(&watch, "watch", "w", false, "after listing, print a line for every change")
	f.BoolVar(&noHeaders, "no-headers", false, "leave out the table header")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "yaml", "json", "name"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// getByName prints named objects, one table per kind in the order the kinds first
// appear (kubectl's output for `get deploy/a svc/b`); a missing object is reported
// and the others are still printed.
func (e *env) getByName(ctx context.Context, c *client.Client, targets []target, opts printers.Options) error {
	var order []kinds.Kind
	byKind := map[string][]proto.Message{}
	failed := false
	for _, t := range targets {
		o, err := c.Get(ctx, t.kind, e.nsFor(t.kind, false), t.name, "")
		if err != nil {
			failed = true
			fmt.Fprintln(e.Err, serverError(err))
			continue
		}
		if _, seen := byKind[t.kind.Kind]; !seen {
			order = append(order, t.kind)
		}
		byKind[t.kind.Kind] = append(byKind[t.kind.Kind], o)
	}
	opts.List = false
	opts.WithKind = len(order) > 1
	for i, k := range order {
		if i > 0 && (opts.Output == "" || opts.Output == "wide") {
			fmt.Fprintln(e.Out)
		}
		if err := printers.Print(e.Out, k, byKind[k.Kind], opts); err != nil {
			return err
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// nsFor is the namespace argument for kind k: "" for cluster-scoped kinds and for
// all namespaces.
func (e *env) nsFor(k kinds.Kind, all bool) string {
	if !k.Namespaced || all {
		return ""
	}
	return e.ns()
}

// watch prints one line (or document) per change until interrupted. It survives the
// loss of its peer: it reconnects (the client fails over to another peer) and
// resumes after the last change it printed; when that change has left the server's
// history (410) it relists and continues from there.
func (e *env) watch(cmd *cobra.Command, k kinds.Kind, ns string, lo client.ListOptions, opts printers.Options, tw *printers.TableWriter, header bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	opts.List = false
	ctx := cmd.Context()
	for {
		w, err := c.Watch(ctx, k, ns, lo)
		if err == nil {
			err = e.printEvents(w, k, opts, tw, &header, &lo.ResourceVersion)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.OK, codes.Unavailable, codes.Canceled, codes.Internal:
			// The stream ended (peer gone or shutting down): resume from lo.ResourceVersion.
		case codes.OutOfRange:
			// Our position left the history window: relist to learn the current version.
			_, rv, lerr := c.List(ctx, k, ns, client.ListOptions{LabelSelector: lo.LabelSelector, FieldSelector: lo.FieldSelector})
			if lerr != nil {
				return lerr
			}
			lo.ResourceVersion = rv
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// printEvents prints events until the stream ends; it records the last printed
// resourceVersion in rv. io.EOF is reported as nil.
func (e *env) printEvents(w *client.Watcher, k kinds.Kind, opts printers.Options, tw *printers.TableWriter, header *bool, rv *string) error {
	for {
		ev, err := w.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		*rv = ev.Object.(metaObject).GetMetadata().GetResourceVersion()
		opts.Now = e.now()
		switch opts.Output {
		case "", "wide":
			if *header && !opts.NoHeaders {
				tw.WriteRow(printers.Header(k, opts))
			}
			*header = false
			tw.WriteRow(printers.Row(k, ev.Object, opts))
			if err := tw.Flush(); err != nil {
				return err
			}
		default:
			if err := printers.Print(e.Out, k, []proto.Message{ev.Object}, opts); err != nil {
				return err
			}
		}
	}
}

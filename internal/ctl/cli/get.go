package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
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
					return errors.New("watch by name is not supported; use a label or field selector")
				}
				var objs []proto.Message
				var k kinds.Kind
				for _, t := range targets {
					o, err := c.Get(ctx, t.kind, e.nsFor(t.kind, false), t.name, "")
					if err != nil {
						return err
					}
					k = t.kind
					objs = append(objs, o)
				}
				return printers.Print(e.Out, k, objs, opts)
			}
			lo := client.ListOptions{LabelSelector: selector, FieldSelector: fieldSelector}
			printed := 0
			var rvs []string
			for _, k := range ks {
				objs, rv, err := c.List(ctx, k, e.nsFor(k, all), lo)
				if err != nil {
					return err
				}
				rvs = append(rvs, rv)
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
			if printed == 0 && !watch {
				if all || !ks[0].Namespaced {
					fmt.Fprintln(e.Err, "No resources found")
				} else {
					fmt.Fprintf(e.Err, "No resources found in %s namespace.\n", e.ns())
				}
			}
			if !watch {
				return nil
			}
			if len(ks) != 1 {
				return errors.New("you may only watch a single resource type")
			}
			cancel()
			lo.ResourceVersion = rvs[0]
			return e.watch(cmd, ks[0], e.nsFor(ks[0], all), lo, opts, printed == 0)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "output format: wide, yaml, json or name")
	f.StringVarP(&selector, "selector", "l", "", "label selector (e.g. app=web,tier!=db, env in (a,b))")
	f.StringVar(&fieldSelector, "field-selector", "", "field selector (e.g. metadata.name=web, spec.nodeName=n1)")
	f.BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	f.BoolVarP(&watch, "watch", "w", false, "after listing, print a line for every change")
	f.BoolVar(&noHeaders, "no-headers", false, "leave out the table header")
	return cmd
}

// nsFor is the namespace argument for kind k: "" for cluster-scoped kinds and for
// all namespaces.
func (e *env) nsFor(k kinds.Kind, all bool) string {
	if !k.Namespaced || all {
		return ""
	}
	return e.ns()
}

// watch prints one line (or document) per change until interrupted.
func (e *env) watch(cmd *cobra.Command, k kinds.Kind, ns string, lo client.ListOptions, opts printers.Options, header bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	w, err := c.Watch(cmd.Context(), k, ns, lo)
	if err != nil {
		return err
	}
	tw := printers.NewTableWriter(e.Out)
	if header && (opts.Output == "" || opts.Output == "wide") && !opts.NoHeaders {
		tw.WriteRow(printers.Header(k, opts))
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	opts.List = false
	for {
		ev, err := w.Next()
		if errors.Is(err, io.EOF) || cmd.Context().Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		opts.Now = e.now()
		switch opts.Output {
		case "", "wide":
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

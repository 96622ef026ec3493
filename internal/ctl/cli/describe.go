package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	"github.com/rafter-dev/rafter/internal/ctl/client"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

func newDescribe(e *env) *cobra.Command {
	var selector string
	return &cobra.Command{
		Use:   "describe KIND [NAME...]",
		Short: "Show an object in detail, with its events",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, targets, err := parseTargets(args, true)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			var objs []proto.Message
			var objKinds []kinds.Kind
			for _, t := range targets {
				o, err := c.Get(ctx, t.kind, e.nsFor(t.kind, false), t.name, "")
				if err != nil {
					return err
				}
				objs, objKinds = append(objs, o), append(objKinds, t.kind)
			}
			for _, k := range ks {
				list, _, err := c.List(ctx, k, e.nsFor(k, false), client.ListOptions{LabelSelector: selector})
				if err != nil {
					return err
				}
				for _, o := range list {
					objs, objKinds = append(objs, o), append(objKinds, k)
				}
			}
			for i, o := range objs {
				if i > 0 {
					fmt.Fprintln(e.Out)
				}
				events, _, err := c.List(ctx, mustKind("Event"), o.(metaObject).GetMetadata().GetNamespace(),
					client.ListOptions{FieldSelector: "involvedObject.name=" + o.(metaObject).GetMetadata().GetName()})
				if err != nil {
					events = nil
				}
				if err := describe(e.Out, objKinds[i], o, events); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func mustKind(kind string) kinds.Kind {
	k, _ := kinds.ByKind(kind)
	return k
}

// describe prints kubectl-describe-like text: identity, labels and annotations,
// then the spec and status as YAML, then the object's events.
func describe(w io.Writer, k kinds.Kind, obj proto.Message, events []proto.Message) error {
	md := obj.(metaObject).GetMetadata()
	fmt.Fprintf(w, "Name:         %s\n", md.GetName())
	if k.Namespaced {
		fmt.Fprintf(w, "Namespace:    %s\n", md.GetNamespace())
	}
	fmt.Fprintf(w, "Kind:         %s\n", k.Kind)
	fmt.Fprintf(w, "Labels:       %s\n", keyValueLines(md.GetLabels(), "              "))
	ann := map[string]string{}
	for k, v := range md.GetAnnotations() {
		if k != lastAppliedKey { // kubectl leaves the applied manifest out too
			ann[k] = v
		}
	}
	fmt.Fprintf(w, "Annotations:  %s\n", keyValueLines(ann, "              "))
	if ts := md.GetCreationTimestamp(); ts != nil {
		fmt.Fprintf(w, "Created:      %s\n", ts.AsTime().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	fmt.Fprintf(w, "UID:          %s\n", md.GetUid())
	b, err := printers.JSON(obj)
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := yaml.Unmarshal(b, &fields); err != nil {
		return err
	}
	if sec, ok := obj.(*corev1.Secret); ok {
		// Secret values are never shown, only their sizes, as kubectl does.
		delete(fields, "data")
		fmt.Fprintf(w, "Type:         %s\n\nData\n====\n", sec.GetType())
		keys := make([]string, 0, len(sec.GetData()))
		for k := range sec.GetData() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s:  %d bytes\n", k, len(sec.GetData()[k]))
		}
		delete(fields, "type")
	}
	for _, section := range []string{"spec", "data", "stringData", "type", "rules", "roleRef", "subjects", "status"} {
		v, ok := fields[section]
		if !ok {
			continue
		}
		out, err := yaml.Marshal(map[string]any{strings.ToUpper(section[:1]) + section[1:]: v})
		if err != nil {
			return err
		}
		fmt.Fprint(w, string(out))
	}
	fmt.Fprintln(w, "Events:")
	if len(events) == 0 {
		fmt.Fprintln(w, "  <none>")
		return nil
	}
	fmt.Fprintf(w, "  %-8s %-20s %s\n", "Type", "Reason", "Message")
	for _, ev := range events {
		e := ev.(*corev1.Event)
		fmt.Fprintf(w, "  %-8s %-20s %s\n", e.GetType(), e.GetReason(), e.GetMessage())
	}
	return nil
}

func keyValueLines(m map[string]string, indent string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + "=" + m[k]
	}
	return strings.Join(lines, "\n"+indent)
}

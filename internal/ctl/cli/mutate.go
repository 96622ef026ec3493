package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

// errNoChange, returned by an update's change function, skips the write.
var errNoChange = errors.New("no change")

// update reads t, lets change modify a copy, and writes it back with the read
// resourceVersion as precondition, retrying on a conflict.
func (e *env) update(cmd *cobra.Command, t target, change func(obj metaObject) error) (metaObject, error) {
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	ns := e.nsFor(t.kind, false)
	for attempt := 0; ; attempt++ {
		ctx, cancel := e.ctx(cmd)
		live, err := c.Get(ctx, t.kind, ns, t.name, "")
		if err != nil {
			cancel()
			return nil, err
		}
		obj := proto.Clone(live).(metaObject)
		if err := change(obj); err != nil {
			cancel()
			if errors.Is(err, errNoChange) {
				return live.(metaObject), nil
			}
			return nil, err
		}
		stored, ws, err := c.Update(ctx, t.kind, ns, t.name, obj, false)
		cancel()
		e.warn(ws)
		if status.Code(err) == codes.Aborted && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return stored.(metaObject), nil
	}
}

func newLabel(e *env) *cobra.Command {
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "label KIND NAME KEY=VALUE... KEY-...",
		Short: "Add, change or remove labels",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var objArgs, changes []string
			for _, a := range args {
				if strings.Contains(a, "=") || (strings.HasSuffix(a, "-") && !strings.Contains(a, "/")) {
					changes = append(changes, a)
				} else {
					objArgs = append(objArgs, a)
				}
			}
			if len(changes) == 0 {
				return fmt.Errorf("at least one label update is required")
			}
			_, targets, err := parseTargets(objArgs, false)
			if err != nil {
				return err
			}
			for _, t := range targets {
				changed := false
				_, err := e.update(cmd, t, func(obj metaObject) error {
					md := obj.GetMetadata()
					if md.Labels == nil {
						md.Labels = map[string]string{}
					}
					for _, ch := range changes {
						if key, ok := strings.CutSuffix(ch, "-"); ok && !strings.Contains(ch, "=") {
							if _, had := md.Labels[key]; !had {
								fmt.Fprintf(e.Out, "label %q not found.\n", key)
								continue
							}
							delete(md.Labels, key)
							changed = true
							continue
						}
						k, v, _ := strings.Cut(ch, "=")
						for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
							return fmt.Errorf("invalid label %q: %s", ch, msg)
						}
						old, had := md.Labels[k]
						if had && old != v && !overwrite {
							return fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, old)
						}
						if !had || old != v {
							md.Labels[k] = v
							changed = true
						}
					}
					if !changed {
						return errNoChange
					}
					return nil
				})
				if err != nil {
					return err
				}
				verb := "labeled"
				switch {
				case !changed:
					verb = "not labeled"
				case allRemovals(changes):
					verb = "unlabeled"
				}
				fmt.Fprintf(e.Out, "%s %s\n", printers.ResourceName(t.kind, t.name), verb)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "allow changing an existing label's value")
	return cmd
}

func newEdit(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "edit KIND NAME",
		Short: "Edit an object in $EDITOR and save it back",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, targets, err := parseTargets(args, false)
			if err != nil {
				return err
			}
			for _, t := range targets {
				unchanged := false
				_, err := e.update(cmd, t, func(obj metaObject) error {
					before, err := printers.YAML(obj)
					if err != nil {
						return err
					}
					after, err := editText(before)
					if err != nil {
						return err
					}
					if bytes.Equal(before, after) {
						unchanged = true
						return errNoChange
					}
					js, err := yaml.YAMLToJSONStrict(after)
					if err != nil {
						return fmt.Errorf("edited YAML: %w", err)
					}
					fresh := obj.ProtoReflect().New().Interface()
					if err := protojson.Unmarshal(js, fresh); err != nil {
						return fmt.Errorf("edited object: %w", err)
					}
					proto.Reset(obj)
					proto.Merge(obj, fresh)
					return nil
				})
				if err != nil {
					return err
				}
				if unchanged {
					fmt.Fprintln(e.Out, "Edit cancelled, no changes made.")
					continue
				}
				fmt.Fprintf(e.Out, "%s edited\n", printers.ResourceName(t.kind, t.name))
			}
			return nil
		},
	}
}

// allRemovals reports whether every label change is a removal (KEY-).
func allRemovals(changes []string) bool {
	for _, c := range changes {
		if !strings.HasSuffix(c, "-") || strings.Contains(c, "=") {
			return false
		}
	}
	return true
}

// editText opens text in $KUBE_EDITOR, $EDITOR or vi and returns what was saved.
func editText(text []byte) ([]byte, error) {
	f, err := os.CreateTemp("", "ctl-edit-*.yaml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(text); err != nil {
		return nil, err
	}
	f.Close()
	editor := os.Getenv("KUBE_EDITOR")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	parts := strings.Fields(editor)
	c := exec.Command(parts[0], append(parts[1:], f.Name())...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("editor %s: %w", editor, err)
	}
	return os.ReadFile(f.Name())
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/manifest"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

// errFailed makes a command exit non-zero after it reported its errors itself.
var errFailed = errors.New("some objects failed")

type metaObject interface {
	proto.Message
	GetMetadata() *metav1.ObjectMeta
}

func newApply(e *env) *cobra.Command {
	var files []string
	var recursive, dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Long: `Create objects that do not exist and update those that do, from YAML or JSON
manifests (several documents per file; directories; - for standard input).
A bad document is reported and the others still apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("must specify one of -f")
			}
			objs, errs := manifest.Read(files, recursive, e.In)
			failed := len(errs) > 0
			for _, err := range errs {
				fmt.Fprintf(e.Err, "error: %v\n", err)
			}
			if _, err := e.client(); err != nil {
				return err
			}
			// Namespaces first, so a directory with a namespace and its contents applies.
			sort.SliceStable(objs, func(i, j int) bool {
				return objs[i].Kind.Kind == "Namespace" && objs[j].Kind.Kind != "Namespace"
			})
			for _, o := range objs {
				result, err := e.applyOne(cmd, o, dryRun)
				if err != nil {
					failed = true
					fmt.Fprintf(e.Err, "%s (%s)\n", serverError(err), describeSource(o))
					continue
				}
				suffix := ""
				if dryRun {
					suffix = " (dry run)"
				}
				fmt.Fprintf(e.Out, "%s %s%s\n", printers.ResourceName(o.Kind, o.Name), result, suffix)
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "files, directories or - (standard input) with the manifests")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f directories")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only show what would happen (server-side dry run)")
	return cmd
}

func describeSource(o manifest.Object) string {
	return fmt.Sprintf("%s: document %d (%s/%s)", o.Source, o.Index+1, o.Kind.Kind, o.Name)
}

// applyOne creates o or updates it, and says which: created, configured or
// unchanged. "unchanged" is decided by a server-side dry run of the update: when
// the object it would store equals the live one, nothing is written.
func (e *env) applyOne(cmd *cobra.Command, o manifest.Object, dryRun bool) (string, error) {
	ns := ""
	if o.Kind.Namespaced {
		ns = e.ns()
		switch {
		case o.Namespace != "" && e.namespace != "" && o.Namespace != e.namespace:
			return "", fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation", o.Namespace, e.namespace, o.Namespace)
		case o.Namespace != "":
			ns = o.Namespace
		}
	}
	obj := proto.Clone(o.Msg).(metaObject)
	obj.GetMetadata().Namespace = ns
	for attempt := 0; ; attempt++ {
		ctx, cancel := e.ctx(cmd)
		result, err := e.applyAttempt(ctx, o, ns, obj, dryRun)
		cancel()
		if status.Code(err) == codes.Aborted && attempt < 3 {
			continue // changed between our read and write: read again
		}
		return result, err
	}
}

func (e *env) applyAttempt(ctx context.Context, o manifest.Object, ns string, obj metaObject, dryRun bool) (string, error) {
	c, _ := e.client()
	desired, err := withLastApplied(o, ns)
	if err != nil {
		return "", err
	}
	live, err := c.Get(ctx, o.Kind, ns, o.Name, "")
	if status.Code(err) == codes.NotFound {
		created := proto.Clone(obj).(metaObject)
		setAnnotation(created, lastAppliedKey, string(desired))
		_, ws, err := c.Create(ctx, o.Kind, ns, created, dryRun)
		e.warn(ws)
		if err != nil {
			return "", err
		}
		return "created", nil
	}
	if err != nil {
		return "", err
	}
	body, err := threeWayMerge(live.(metaObject), desired)
	if err != nil {
		return "", err
	}
	body.GetMetadata().ResourceVersion = ""
	would, ws, err := c.Update(ctx, o.Kind, ns, o.Name, body, true)
	if err != nil {
		e.warn(ws)
		return "", err
	}
	if sameStored(would, live) {
		return "unchanged", nil
	}
	body.GetMetadata().ResourceVersion = live.(metaObject).GetMetadata().GetResourceVersion()
	_, ws, err = c.Update(ctx, o.Kind, ns, o.Name, body, dryRun)
	e.warn(ws)
	if err != nil {
		return "", err
	}
	return "configured", nil
}

// lastAppliedKey is kubectl's annotation holding the manifest last applied.
const lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"

// withLastApplied returns the manifest as JSON, with its namespace filled in and
// without a last-applied annotation of its own (as in `get -o yaml` output).
func withLastApplied(o manifest.Object, ns string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(o.JSON, &m); err != nil {
		return nil, fmt.Errorf("manifest JSON: %w", err)
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	if ns != "" {
		md["namespace"] = ns
	}
	if ann, ok := md["annotations"].(map[string]any); ok {
		delete(ann, lastAppliedKey)
		if len(ann) == 0 {
			delete(md, "annotations")
		}
	}
	// Server-set identity from `get -o yaml` output is not part of what the user applies.
	for _, k := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"} {
		delete(md, k)
	}
	delete(m, "status")
	return json.Marshal(m)
}

func setAnnotation(obj metaObject, key, value string) {
	md := obj.GetMetadata()
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	md.Annotations[key] = value
}

// threeWayMerge computes what to store, as kubectl apply does: start from the live
// object, drop the fields the previous manifest (the last-applied annotation) had
// and the new one lacks, and lay the new manifest over the rest. Fields others set
// (labels from ctl label, server defaults, status) survive; lists are replaced whole.
func threeWayMerge(live metaObject, desired []byte) (metaObject, error) {
	liveJSON, err := protojson.Marshal(live)
	if err != nil {
		return nil, err
	}
	var cur, next, prev map[string]any
	if err := json.Unmarshal(liveJSON, &cur); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(desired, &next); err != nil {
		return nil, err
	}
	if last := live.GetMetadata().GetAnnotations()[lastAppliedKey]; last != "" {
		_ = json.Unmarshal([]byte(last), &prev) // a damaged annotation only loses deletions
	}
	merged := mergeMaps(cur, prev, next)
	md, _ := merged["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		md["annotations"] = ann
	}
	ann[lastAppliedKey] = string(desired)
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	obj := live.ProtoReflect().New().Interface().(metaObject)
	if err := protojson.Unmarshal(out, obj); err != nil {
		return nil, fmt.Errorf("merge with the live object: %w", err)
	}
	return obj, nil
}

func mergeMaps(cur, prev, next map[string]any) map[string]any {
	if cur == nil {
		cur = map[string]any{}
	}
	for k := range prev {
		if _, kept := next[k]; !kept {
			delete(cur, k)
		}
	}
	for k, nv := range next {
		nm, nIsMap := nv.(map[string]any)
		cm, cIsMap := cur[k].(map[string]any)
		if nIsMap && cIsMap {
			pm, _ := prev[k].(map[string]any)
			cur[k] = mergeMaps(cm, pm, nm)
			continue
		}
		cur[k] = nv
	}
	return cur
}

// sameStored compares what an update would store with the live object, ignoring
// what only the store itself sets and the last-applied record.
func sameStored(would, live proto.Message) bool {
	a, b := proto.Clone(would).(metaObject), proto.Clone(live).(metaObject)
	for _, m := range []*metav1.ObjectMeta{a.GetMetadata(), b.GetMetadata()} {
		m.ResourceVersion, m.ManagedFields, m.Generation = "", nil, 0
		delete(m.Annotations, lastAppliedKey)
		if len(m.Annotations) == 0 {
			m.Annotations = nil
		}
	}
	return proto.Equal(a, b)
}

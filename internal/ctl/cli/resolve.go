package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
)

// allKinds is kubectl's "all" category.
var allKinds = []string{"pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets"}

// resolveKind maps "po", "pods", "Pod", "deployment.apps" to a kind.
func resolveKind(s string) (kinds.Kind, error) {
	name := strings.ToLower(s)
	if i := strings.Index(name, "."); i > 0 {
		name = name[:i] // deployments.apps
	}
	if k, ok := kinds.ByResource(name); ok {
		return k, nil
	}
	for _, k := range kinds.All {
		if strings.EqualFold(k.Kind, s) {
			return k, nil
		}
	}
	var names []string
	for _, k := range kinds.All {
		names = append(names, k.Resource)
	}
	sort.Strings(names)
	return kinds.Kind{}, fmt.Errorf("the server doesn't have a resource type %q (known: %s)", s, strings.Join(names, ", "))
}

// resolveKinds parses "pods,svc" or "all".
func resolveKinds(s string) ([]kinds.Kind, error) {
	var out []kinds.Kind
	for _, part := range strings.Split(s, ",") {
		if part == "all" {
			for _, n := range allKinds {
				k, _ := kinds.ByResource(n)
				out = append(out, k)
			}
			continue
		}
		k, err := resolveKind(part)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// target is one named object on the command line.
type target struct {
	kind kinds.Kind
	name string
}

// parseTargets reads kubectl's argument forms: `KIND NAME...` or `KIND/NAME...`.
// Names may be empty when allowNoName (listing a whole kind).
func parseTargets(args []string, allowNoName bool) ([]kinds.Kind, []target, error) {
	if len(args) == 0 {
		return nil, nil, fmt.Errorf("you must specify the type of resource")
	}
	if strings.Contains(args[0], "/") {
		var ts []target
		for _, a := range args {
			kind, name, ok := strings.Cut(a, "/")
			if !ok || name == "" {
				return nil, nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got %q)", a)
			}
			k, err := resolveKind(kind)
			if err != nil {
				return nil, nil, err
			}
			ts = append(ts, target{k, name})
		}
		return nil, ts, nil
	}
	ks, err := resolveKinds(args[0])
	if err != nil {
		return nil, nil, err
	}
	if len(args) == 1 {
		if !allowNoName {
			return nil, nil, fmt.Errorf("resource name may not be empty")
		}
		return ks, nil, nil
	}
	if len(ks) != 1 {
		return nil, nil, fmt.Errorf("names can only be given with a single resource type")
	}
	var ts []target
	for _, n := range args[1:] {
		ts = append(ts, target{ks[0], n})
	}
	return nil, ts, nil
}

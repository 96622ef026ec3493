package cli

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

// completeObjects completes `KIND NAME...` arguments for the shell: resource types
// first, then the names of that type's objects in the namespace.
func (e *env) completeObjects(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		var out []string
		for _, k := range kinds.All {
			if strings.HasPrefix(k.Resource, toComplete) {
				out = append(out, k.Resource)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	k, err := resolveKind(args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := e.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	objs, _, err := c.List(ctx, k, e.nsFor(k, false), client.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, o := range objs {
		if name := o.(metaObject).GetMetadata().GetName(); strings.HasPrefix(name, toComplete) {
			out = append(out, name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

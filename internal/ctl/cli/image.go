package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

func newImage(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images on the nodes",
	}
	cmd.AddCommand(newImageLoad(e))
	return cmd
}

func newImageLoad(e *env) *cobra.Command {
	var nodes []string
	cmd := &cobra.Command{
		Use:   "load FILE [--node NAME]",
		Short: "Load an image archive onto the nodes, without a registry",
		Long: `Load an image archive onto the nodes, without a registry (like kind load).

FILE is a docker-save tarball or an OCI image layout archive, possibly
gzip-compressed. It is streamed through the API to the agent of every Ready
node (or of each --node), one node after another; pods then use the image by
the name the archive gives it (imagePullPolicy Never or IfNotPresent).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			c, err := e.client()
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				if nodes, err = e.readyNodes(cmd, c); err != nil {
					return err
				}
			}
			failed := false
			for _, node := range nodes {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				refs, err := c.LoadImage(cmd.Context(), node, f)
				if err != nil {
					fmt.Fprintf(e.Err, "error: node/%s: %s\n", node, errorMessage(err))
					failed = true
					continue
				}
				fmt.Fprintf(e.Out, "node/%s loaded %s\n", node, strings.Join(refs, ", "))
			}
			if failed {
				return errFailed
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "load onto these nodes only (default: every Ready node)")
	_ = cmd.RegisterFlagCompletionFunc("node", e.completeNodes)
	return cmd
}

// readyNodes lists the nodes whose Ready condition is True, by name.
func (e *env) readyNodes(cmd *cobra.Command, c *client.Client) ([]string, error) {
	ctx, cancel := e.ctx(cmd)
	defer cancel()
	objs, _, err := c.List(ctx, mustKind("Node"), "", client.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		n := o.(*corev1.Node)
		for _, cond := range n.GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && cond.GetStatus() == "True" {
				out = append(out, n.GetMetadata().GetName())
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no Ready nodes to load the image onto")
	}
	sort.Strings(out)
	return out, nil
}

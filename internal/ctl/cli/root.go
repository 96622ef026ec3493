// Package cli implements ctl's commands: kubectl's verbs over Rafter's gRPC API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/rafter-dev/rafter/internal/ctl/client"
)

// Streams are a command's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// env is what every command shares: flags and a lazily dialled client.
type env struct {
	Streams
	server    string
	namespace string
	timeout   time.Duration
	now       func() time.Time
	c         *client.Client
}

func (e *env) client() (*client.Client, error) {
	if e.c != nil {
		return e.c, nil
	}
	servers, err := client.Servers(e.server)
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(servers)
	if err != nil {
		return nil, err
	}
	e.c = c
	return c, nil
}

// ns is the namespace a command works in: -n, else "default".
func (e *env) ns() string {
	if e.namespace != "" {
		return e.namespace
	}
	return "default"
}

func (e *env) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), e.timeout)
}

// warn prints server warnings the way kubectl does.
func (e *env) warn(ws []string) {
	for _, w := range ws {
		fmt.Fprintf(e.Err, "Warning: %s\n", w)
	}
}

// NewRoot returns the ctl command tree.
func NewRoot(s Streams) *cobra.Command {
	e := &env{Streams: s, timeout: client.Timeout, now: time.Now}
	root := &cobra.Command{
		Use:           "ctl",
		Short:         "ctl controls a Rafter cluster, the way kubectl controls Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", "", "control-plane gRPC addresses, HOST:PORT[,HOST:PORT...] (default: $RAFTER_CONFIG, ~/.rafter/config, or the peers of make run)")
	pf.StringVarP(&e.namespace, "namespace", "n", "", "namespace (default \"default\")")
	pf.DurationVar(&e.timeout, "request-timeout", client.Timeout, "how long one request may take")
	root.AddCommand(
		newApply(e), newGet(e), newDescribe(e), newDelete(e), newCreate(e), newLabel(e),
		newScale(e), newEdit(e), newAPIResources(e), newVersion(e), newCluster(e), newSnapshot(e),
	)
	return root
}

// Main runs ctl with args and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errFailed) { // otherwise each failure was already reported
			fmt.Fprintln(os.Stderr, "error:", message(err))
		}
		return 1
	}
	return 0
}

// message turns a gRPC error into the server's own message.
func message(err error) string {
	if st, ok := status.FromError(err); ok {
		return strings.TrimSpace(st.Message())
	}
	return err.Error()
}

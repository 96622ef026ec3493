// Package cli implements ctl's commands: kubectl's verbs over Rafter's gRPC API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"

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
		newRollout(e), newCordon(e), newUncordon(e), newDrain(e),
		newLogs(e), newExec(e), newImage(e),
	)
	for _, c := range root.Commands() {
		switch c.Name() {
		case "get", "describe", "delete", "label", "scale", "edit":
			c.ValidArgsFunction = e.completeObjects
		}
	}
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return e.completeObjects(cmd, []string{"namespaces"}, toComplete)
	})
	return root
}

// Main runs ctl with args and returns the process exit code.
func Main(args []string) int {
	root := NewRoot(Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var exit *exitError
		if !errors.Is(err, errFailed) && !errors.As(err, &exit) { // otherwise already reported
			fmt.Fprintln(os.Stderr, serverError(err))
		}
		return exitCode(err)
	}
	return 0
}

// codeReasons names gRPC codes the way Kubernetes names status reasons.
var codeReasons = map[codes.Code]string{
	codes.NotFound: "NotFound", codes.AlreadyExists: "AlreadyExists", codes.Aborted: "Conflict",
	codes.InvalidArgument: "BadRequest", codes.OutOfRange: "Expired", codes.PermissionDenied: "Forbidden",
	codes.Unauthenticated: "Unauthorized", codes.DeadlineExceeded: "Timeout", codes.Internal: "InternalError",
}

// serverError formats an error the way kubectl does: `Error from server (NotFound):
// pods "x" not found` for the API's answers, `Unable to connect to the server: ...`
// when no peer answered, `error: ...` for everything else.
func serverError(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return "error: " + err.Error()
	}
	if st.Code() == codes.Unavailable && len(st.Details()) == 0 {
		return "Unable to connect to the server: " + st.Message()
	}
	reason := codeReasons[st.Code()]
	for _, d := range st.Details() {
		if s, ok := d.(*metav1.Status); ok && s.GetReason() != "" {
			reason = s.GetReason()
		}
	}
	if reason == "" {
		return "error: " + st.Message()
	}
	return fmt.Sprintf("Error from server (%s): %s", reason, st.Message())
}

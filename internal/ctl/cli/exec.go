package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
)

// exitError makes ctl exit with an exec'd command's exit code (Main returns
// it); the command's end was reported already.
type exitError struct{ code int }

func (e *exitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}

// exitCode is the process exit code for a command's error: an exec'd
// command's own, else 1.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newExec(e *env) *cobra.Command {
	var (
		container  string
		stdin, tty bool
	)
	cmd := &cobra.Command{
		Use:   "exec (POD | TYPE/NAME) [-c CONTAINER] [-i] [-t] -- COMMAND [args...]",
		Short: "Execute a command in a container",
		Long: `Execute a command in a container.

The command runs through the API, which reaches the agent of the pod's node.
-i forwards this terminal's stdin; -t gives the command a terminal (and puts
this one in raw mode while it runs). ctl exits with the command's exit code.`,
		ValidArgsFunction: e.completePods,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("pod or type/name must be specified")
			}
			if len(args) < 2 {
				return errors.New("you must specify at least one command for the container")
			}
			pod, err := e.podFor(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			streams := client.ExecStreams{Stdout: e.Out, Stderr: e.Err}
			if stdin {
				streams.Stdin = e.In
			}
			if tty {
				f, ok := e.In.(*os.File)
				if !ok || !isTerminal(f) {
					fmt.Fprintln(e.Err, "Unable to use a TTY - input is not a terminal or the right kind of file")
					tty = false
				} else if stdin {
					restore, err := makeRaw(f)
					if err != nil {
						return fmt.Errorf("put the terminal in raw mode: %w", err)
					}
					defer restore()
				}
			}
			start := &nodev1.ExecStart{Namespace: e.ns(), Pod: pod, Container: container, Command: args[1:], Stdin: stdin, Tty: tty}
			code, err := c.Exec(cmd.Context(), start, streams)
			if err != nil {
				return err
			}
			if code != 0 {
				fmt.Fprintf(e.Err, "command terminated with exit code %d\n", code)
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "container name; defaults to the pod's only or default container")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the container")
	f.BoolVarP(&tty, "tty", "t", false, "stdin is a TTY")
	return cmd
}

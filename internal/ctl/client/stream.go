package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/metadata"

	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
)

// The streams of the NodeAgent service, which every peer proxies to the agent
// of a pod's node: logs, exec and image loads.

// nodeMetadataKey names the node a LoadImage call is for.
const nodeMetadataKey = "rafter-node"

// Logs copies a container's log to w until the server ends the stream
// (at once without req.Follow) or ctx ends.
func (c *Client) Logs(ctx context.Context, req *nodev1.LogsRequest, w io.Writer) error {
	stream, err := nodev1.NewNodeAgentClient(c.Conn).Logs(ctx, req)
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.GetData()); err != nil {
			return err
		}
	}
}

// ExecStreams are an exec'd command's standard streams. Stdin is read only
// when start.Stdin is set; it is read in a goroutine that may outlive Exec
// while a Read blocks (a terminal's stdin).
type ExecStreams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ErrNoExitCode is an exec stream that ended without the command's exit code.
var ErrNoExitCode = errors.New("the exec stream ended without an exit code")

// Exec runs a command in a container and returns its exit code once it has
// ended and all of its output is written. Cancelling ctx kills the command.
func (c *Client) Exec(ctx context.Context, start *nodev1.ExecStart, s ExecStreams) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := nodev1.NewNodeAgentClient(c.Conn).Exec(ctx)
	if err != nil {
		return -1, err
	}
	if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: start}}); err != nil && !errors.Is(err, io.EOF) {
		return -1, err
	}
	if !start.GetStdin() || s.Stdin == nil {
		_ = stream.CloseSend()
	} else {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 {
					in := &nodev1.ExecInput{Input: &nodev1.ExecInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}
					if stream.Send(in) != nil {
						return
					}
				}
				if err != nil {
					_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_CloseStdin{CloseStdin: true}})
					_ = stream.CloseSend()
					return
				}
			}
		}()
	}
	for {
		out, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return -1, ErrNoExitCode
		}
		if err != nil {
			return -1, err
		}
		switch o := out.GetOutput().(type) {
		case *nodev1.ExecOutput_Stdout:
			if s.Stdout != nil {
				_, err = s.Stdout.Write(o.Stdout)
			}
		case *nodev1.ExecOutput_Stderr:
			if s.Stderr != nil {
				_, err = s.Stderr.Write(o.Stderr)
			}
		case *nodev1.ExecOutput_ExitCode:
			return int(o.ExitCode), nil
		}
		if err != nil {
			return -1, err
		}
	}
}

// loadChunk is how much of an archive one LoadImage message carries.
const loadChunk = 1 << 20

// LoadImage sends an image archive read from r to node's agent and returns
// the names of the images it stored.
func (c *Client) LoadImage(ctx context.Context, node string, r io.Reader) ([]string, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, nodeMetadataKey, node)
	stream, err := nodev1.NewNodeAgentClient(c.Conn).LoadImage(ctx)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, loadChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&nodev1.Chunk{Data: buf[:n]}); err != nil {
				break // the server ended the call: CloseAndRecv has its answer
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read image archive: %w", rerr)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.GetImages(), nil
}

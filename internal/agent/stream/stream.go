// Package stream is the node agent's side of the NodeAgent service
// (gen/rafter/node/v1): a pod's container logs, exec in its containers, and
// image archives loaded into the node's image store. The control-plane peers
// proxy the same service to it; nothing here goes through the Raft log.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/agent"
)

// Containers finds the container runs of the pods this node runs
// (internal/agent.Pods).
type Containers interface {
	Container(namespace, pod, uid, container string, previous bool) (agent.ContainerRef, error)
}

// ExecOptions is a process to run in a running container.
type ExecOptions struct {
	Args []string
	// TTY gives the process a pseudo-terminal; its stderr then goes to Stdout.
	TTY bool
	// Stdin may be nil (/dev/null). Stdout and Stderr are safe to call from
	// different goroutines.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Execer runs processes in running containers (the libcontainer runtime). Exec
// blocks until the process has exited and its output is written; cancelling
// ctx kills it.
type Execer interface {
	Exec(ctx context.Context, id string, opts ExecOptions) (exitCode int, err error)
}

// ImageLoader stores the images of an archive read from r and returns their
// names (internal/agent/images.Store).
type ImageLoader interface {
	Load(r io.Reader) ([]string, error)
}

// Config is what the server serves from.
type Config struct {
	Containers Containers
	Exec       Execer
	Images     ImageLoader
	Logger     *slog.Logger
}

// Server serves NodeAgent for one node.
type Server struct {
	nodev1.UnimplementedNodeAgentServer
	cfg Config
}

var _ nodev1.NodeAgentServer = (*Server)(nil)

// New returns a server; Run serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Containers == nil || cfg.Exec == nil || cfg.Images == nil {
		return nil, errors.New("stream: containers, exec and images are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg}, nil
}

// maxMessage bounds one gRPC message; LoadImage chunks are far smaller.
const maxMessage = 16 << 20

// Run serves gRPC on lis until ctx ends, then stops: streams still open (a
// `logs -f`, an exec) get two seconds to end before they are cut.
func (s *Server) Run(ctx context.Context, lis net.Listener) error {
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	nodev1.RegisterNodeAgentServer(gs, s)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		t := time.AfterFunc(2*time.Second, gs.Stop)
		gs.GracefulStop()
		t.Stop()
	}()
	err := gs.Serve(lis)
	<-stopped
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// containerError turns Pods.Container's errors into gRPC statuses.
func containerError(err error) error {
	if errors.Is(err, agent.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

// Logs streams a container's log as kubectl logs prints it.
func (s *Server) Logs(req *nodev1.LogsRequest, ss grpc.ServerStreamingServer[nodev1.Chunk]) error {
	if req.GetTailLines() < 0 || req.GetLimitBytes() < 0 {
		return status.Error(codes.InvalidArgument, "tailLines and limitBytes must not be negative")
	}
	ref, err := s.cfg.Containers.Container(req.GetNamespace(), req.GetPod(), req.GetUid(), req.GetContainer(), req.GetPrevious())
	if err != nil {
		return containerError(err)
	}
	// Headers tell the caller that the logs are coming, before any output.
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	opts := agent.LogOptions{Tail: -1, Follow: req.GetFollow() && !req.GetPrevious(), Timestamps: req.GetTimestamps()}
	if req.TailLines != nil {
		opts.Tail = int(req.GetTailLines())
	}
	send := newChunkSender(func(b []byte) error { return ss.Send(&nodev1.Chunk{Data: b}) })
	var w io.Writer = send
	if n := req.GetLimitBytes(); n > 0 {
		w = &limitWriter{w: send, left: n}
	}
	err = agent.CopyLogs(ss.Context(), w, opts, ref.Running, ref.LogPaths...)
	if cerr := send.Close(); err == nil || errors.Is(err, errLimit) {
		err = cerr
	}
	if err != nil {
		if ss.Context().Err() != nil {
			return status.FromContextError(ss.Context().Err()).Err()
		}
		return status.Errorf(codes.Internal, "read logs of container %q: %v", ref.ID, err)
	}
	return nil
}

// errLimit ends a log copy once limitBytes are written.
var errLimit = errors.New("byte limit reached")

// limitWriter passes on at most left bytes, then fails with errLimit.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	short := int64(len(p)) > l.left
	if short {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && (short || l.left == 0) {
		err = errLimit
	}
	return n, err
}

// chunkMax is the largest chunk a log stream sends.
const chunkMax = 64 << 10

// chunkSender sends what is written to it as chunks from its own goroutine.
// Writes only append to a buffer (waiting while it is full), so the lines
// written while one chunk is on the wire go out together in the next: a
// stream of many small lines becomes a few large messages, yet every line
// leaves as soon as the wire is free.
type chunkSender struct {
	send func([]byte) error
	done chan struct{}

	mu     sync.Mutex // guards buf, closed and err
	cond   *sync.Cond // signals changes of the guarded fields
	buf    []byte
	closed bool
	err    error
}

func newChunkSender(send func([]byte) error) *chunkSender {
	c := &chunkSender{send: send, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.run()
	return c
}

func (c *chunkSender) run() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.buf) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.buf) == 0 {
			c.mu.Unlock()
			return
		}
		n := min(len(c.buf), chunkMax)
		out := append([]byte(nil), c.buf[:n]...)
		c.buf = c.buf[n:]
		c.mu.Unlock()
		c.cond.Broadcast()
		if err := c.send(out); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			c.cond.Broadcast()
			return
		}
	}
}

// Write queues p; it blocks while a chunk's worth is already queued, and
// fails once a send has failed.
func (c *chunkSender) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && len(c.buf) >= chunkMax {
		c.cond.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// Close sends what is queued and returns the first send error.
func (c *chunkSender) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cond.Broadcast()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Exec runs a command in a running container.
func (s *Server) Exec(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput]) error {
	first, err := ss.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first exec message must be a start")
	}
	if len(start.GetCommand()) == 0 {
		return status.Error(codes.InvalidArgument, "you must specify at least one command for the container")
	}
	ref, err := s.cfg.Containers.Container(start.GetNamespace(), start.GetPod(), start.GetUid(), start.GetContainer(), false)
	if err != nil {
		return containerError(err)
	}
	if !ref.Running() {
		return status.Errorf(codes.FailedPrecondition, "container %q in pod %q is not running", containerName(ref.ID), start.GetPod())
	}
	// Headers tell the caller that the command starts: from here on, a
	// retry could run it twice.
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	out := &execOutput{ss: ss}
	opts := ExecOptions{Args: start.GetCommand(), TTY: start.GetTty(),
		Stdout: out.writer(func(b []byte) *nodev1.ExecOutput {
			return &nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stdout{Stdout: b}}
		}),
		Stderr: out.writer(func(b []byte) *nodev1.ExecOutput {
			return &nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stderr{Stderr: b}}
		}),
	}
	var stdin *io.PipeReader
	if start.GetStdin() {
		r, w := io.Pipe()
		stdin, opts.Stdin = r, r
		go forwardStdin(ss, w, cancel)
	}
	code, err := s.cfg.Exec.Exec(ctx, ref.ID, opts)
	if stdin != nil {
		stdin.Close() // a forwardStdin write waiting for the process ends
	}
	if err != nil {
		if ss.Context().Err() != nil {
			return status.FromContextError(ss.Context().Err()).Err()
		}
		return status.Errorf(codes.Internal, "exec in container %q of pod %q: %v", containerName(ref.ID), start.GetPod(), err)
	}
	return out.send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_ExitCode{ExitCode: int32(code)}})
}

// containerName is the container's name in its runtime ID (uid_name_restart).
func containerName(id string) string {
	i, j := strings.IndexByte(id, '_'), strings.LastIndexByte(id, '_')
	if i < 0 || j <= i {
		return id
	}
	return id[i+1 : j]
}

// forwardStdin writes the stdin messages of ss to w until closeStdin or the
// end of the client's half of the stream; a failed stream cancels the exec.
func forwardStdin(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput], w *io.PipeWriter, cancel context.CancelFunc) {
	for {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			w.Close()
			return
		}
		if err != nil {
			w.CloseWithError(err)
			cancel()
			return
		}
		switch x := in.GetInput().(type) {
		case *nodev1.ExecInput_Stdin:
			if _, err := w.Write(x.Stdin); err != nil {
				return // the process is gone
			}
		case *nodev1.ExecInput_CloseStdin:
			w.Close()
		}
	}
}

// execOutput sends an exec's outputs; stdout and stderr are copied by
// different goroutines, and a gRPC stream takes one Send at a time.
type execOutput struct {
	ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput]
	mu sync.Mutex // serializes Send
}

func (e *execOutput) send(m *nodev1.ExecOutput) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ss.Send(m)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (e *execOutput) writer(wrap func([]byte) *nodev1.ExecOutput) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if err := e.send(wrap(append([]byte(nil), p...))); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

// LoadImage stores the images of the archive streamed in ss. The archive is
// read as it arrives: the image store stages what it unpacks itself.
func (s *Server) LoadImage(ss grpc.ClientStreamingServer[nodev1.Chunk, nodev1.LoadImageResponse]) error {
	r, w := io.Pipe()
	go func() {
		for {
			c, err := ss.Recv()
			if errors.Is(err, io.EOF) {
				w.Close()
				return
			}
			if err != nil {
				w.CloseWithError(err)
				return
			}
			if _, err := w.Write(c.GetData()); err != nil {
				return // the load has ended
			}
		}
	}()
	refs, err := s.cfg.Images.Load(r)
	r.CloseWithError(errors.New("load ended"))
	if err != nil {
		if ss.Context().Err() != nil {
			return status.FromContextError(ss.Context().Err()).Err()
		}
		return status.Error(codes.InvalidArgument, fmt.Sprintf("load image archive: %v", err))
	}
	s.cfg.Logger.Info("loaded images", "images", refs)
	return ss.SendAndClose(&nodev1.LoadImageResponse{Images: refs})
}

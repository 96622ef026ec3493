package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/agent"
)

// fakeContainers knows one pod, web, with a container app whose current run
// logs to dir/1.log and whose previous run logged to dir/0.log.
type fakeContainers struct {
	dir     string
	running atomic.Bool
}

func (f *fakeContainers) Container(namespace, pod, uid, container string, previous bool) (agent.ContainerRef, error) {
	if namespace != "default" || pod != "web" {
		return agent.ContainerRef{}, fmt.Errorf("pod %q: %w", pod, agent.ErrNotFound)
	}
	if container != "" && container != "app" {
		return agent.ContainerRef{}, fmt.Errorf("container %s is not valid for pod web", container)
	}
	if previous {
		p := filepath.Join(f.dir, "0.log")
		return agent.ContainerRef{ID: "u1_app_0", LogPaths: []string{p + ".1", p}, Running: func() bool { return false }}, nil
	}
	p := filepath.Join(f.dir, "1.log")
	return agent.ContainerRef{ID: "u1_app_1", LogPaths: []string{p + ".1", p}, Running: f.running.Load}, nil
}

// fakeExec runs "cat" (stdin to stdout, "cat: done" on stderr, exit 0),
// "fail" (exit 7), "hang" (until cancelled) and "tty" (reports whether it has
// a terminal).
type fakeExec struct {
	mu        sync.Mutex // guards cancelled
	cancelled bool
}

func (f *fakeExec) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	switch o.Args[0] {
	case "cat":
		if o.Stdin != nil {
			if _, err := io.Copy(o.Stdout, o.Stdin); err != nil {
				return -1, err
			}
		}
		fmt.Fprint(o.Stderr, "cat: done\n")
		return 0, nil
	case "fail":
		return 7, nil
	case "tty":
		fmt.Fprintf(o.Stdout, "tty=%v id=%s", o.TTY, id)
		return 0, nil
	case "hang":
		<-ctx.Done()
		f.mu.Lock()
		f.cancelled = true
		f.mu.Unlock()
		return -1, ctx.Err()
	}
	return -1, errors.New("exec: no such command")
}

// fakeLoader reads the whole archive and names its size.
type fakeLoader struct{}

func (fakeLoader) Load(r io.Reader) ([]string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte("junk")) {
		return nil, errors.New("unknown archive format")
	}
	return []string{fmt.Sprintf("local.test/img:%d", len(b))}, nil
}

type world struct {
	client nodev1.NodeAgentClient
	ctrs   *fakeContainers
	execer *fakeExec
	live   string // the current run's log file
}

// criLine is one line of a CRI log file.
func criLine(t time.Time, text string) string {
	return t.UTC().Format(time.RFC3339Nano) + " stdout F " + text + "\n"
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	files := map[string]string{
		"0.log":   criLine(t0, "old run"),
		"1.log.1": criLine(t0.Add(time.Second), "line1"),
		"1.log":   criLine(t0.Add(2*time.Second), "line2") + criLine(t0.Add(3*time.Second), "line3"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := &world{ctrs: &fakeContainers{dir: dir}, execer: &fakeExec{}, live: filepath.Join(dir, "1.log")}
	s, err := New(Config{Containers: w.ctrs, Exec: w.execer, Images: fakeLoader{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	w.client = nodev1.NewNodeAgentClient(conn)
	return w
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logs reads a Logs stream to its end.
func (w *world) logs(ctx context.Context, req *nodev1.LogsRequest) (string, error) {
	stream, err := w.client.Logs(ctx, req)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out.String(), nil
		}
		if err != nil {
			return out.String(), err
		}
		out.Write(c.GetData())
	}
}

func TestLogs(t *testing.T) {
	w := newWorld(t)
	tail := func(n int64) *int64 { return &n }
	cases := []struct {
		name string
		req  *nodev1.LogsRequest
		want string
		code codes.Code
	}{
		{"all, rotated file first", &nodev1.LogsRequest{}, "line1\nline2\nline3\n", codes.OK},
		{"tail", &nodev1.LogsRequest{TailLines: tail(1)}, "line3\n", codes.OK},
		{"tail 0", &nodev1.LogsRequest{TailLines: tail(0)}, "", codes.OK},
		{"limit bytes", &nodev1.LogsRequest{LimitBytes: 8}, "line1\nli", codes.OK},
		{"timestamps", &nodev1.LogsRequest{TailLines: tail(1), Timestamps: true}, "2026-01-01T00:00:03Z line3\n", codes.OK},
		{"previous", &nodev1.LogsRequest{Previous: true, Follow: true}, "old run\n", codes.OK},
		{"unknown pod", &nodev1.LogsRequest{Pod: "nope"}, "", codes.NotFound},
		{"unknown container", &nodev1.LogsRequest{Container: "nope"}, "", codes.InvalidArgument},
		{"negative tail", &nodev1.LogsRequest{TailLines: tail(-2)}, "", codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Namespace = "default"
			if tc.req.Pod == "" {
				tc.req.Pod = "web"
			}
			got, err := w.logs(testCtx(t), tc.req)
			if status.Code(err) != tc.code || got != tc.want {
				t.Fatalf("got %q, %v; want %q, %s", got, err, tc.want, tc.code)
			}
		})
	}
}

func TestLogsFollow(t *testing.T) {
	w := newWorld(t)
	w.ctrs.running.Store(true)
	stream, err := w.client.Logs(testCtx(t), &nodev1.LogsRequest{Namespace: "default", Pod: "web", Follow: true, TailLines: new(int64)})
	if err != nil {
		t.Fatal(err)
	}
	// Headers come before any line: the caller knows the log is coming.
	if md, err := stream.Header(); err != nil || md == nil {
		t.Fatalf("header %v, %v", md, err)
	}
	f, err := os.OpenFile(w.live, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(criLine(time.Now(), "line4")); err != nil {
		t.Fatal(err)
	}
	if c, err := stream.Recv(); err != nil || string(c.GetData()) != "line4\n" {
		t.Fatalf("followed %q, %v", c.GetData(), err)
	}
	// The container stops: the stream ends.
	w.ctrs.running.Store(false)
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the container stopped: %v, want EOF", err)
	}
}

// exec runs one command and returns stdout, stderr and the exit code.
func (w *world) exec(ctx context.Context, start *nodev1.ExecStart, stdin ...string) (string, string, int32, error) {
	stream, err := w.client.Exec(ctx)
	if err != nil {
		return "", "", 0, err
	}
	if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: start}}); err != nil {
		return "", "", 0, err
	}
	for _, s := range stdin {
		if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Stdin{Stdin: []byte(s)}}); err != nil {
			return "", "", 0, err
		}
	}
	_ = stream.CloseSend()
	var out, errOut strings.Builder
	for {
		o, err := stream.Recv()
		if err != nil {
			return out.String(), errOut.String(), -1, err
		}
		switch x := o.GetOutput().(type) {
		case *nodev1.ExecOutput_Stdout:
			out.Write(x.Stdout)
		case *nodev1.ExecOutput_Stderr:
			errOut.Write(x.Stderr)
		case *nodev1.ExecOutput_ExitCode:
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				return out.String(), errOut.String(), x.ExitCode, fmt.Errorf("after the exit code: %v", err)
			}
			return out.String(), errOut.String(), x.ExitCode, nil
		}
	}
}

func TestExec(t *testing.T) {
	w := newWorld(t)
	w.ctrs.running.Store(true)
	start := func(cmd ...string) *nodev1.ExecStart {
		return &nodev1.ExecStart{Namespace: "default", Pod: "web", Command: cmd}
	}
	withStdin := start("cat")
	withStdin.Stdin = true
	cases := []struct {
		name           string
		start          *nodev1.ExecStart
		stdin          []string
		stdout, stderr string
		exit           int32
		code           codes.Code
	}{
		{"stdin to stdout, end of stdin at the client's close", withStdin, []string{"hello ", "world"}, "hello world", "cat: done\n", 0, codes.OK},
		{"no stdin", start("cat"), []string{"ignored"}, "", "cat: done\n", 0, codes.OK},
		{"exit code", start("fail"), nil, "", "", 7, codes.OK},
		{"tty", &nodev1.ExecStart{Namespace: "default", Pod: "web", Command: []string{"tty"}, Tty: true}, nil, "tty=true id=u1_app_1", "", 0, codes.OK},
		{"runtime failure", start("nope"), nil, "", "", -1, codes.Internal},
		{"no command", start(), nil, "", "", -1, codes.InvalidArgument},
		{"unknown pod", &nodev1.ExecStart{Namespace: "default", Pod: "nope", Command: []string{"cat"}}, nil, "", "", -1, codes.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, exit, err := w.exec(testCtx(t), tc.start, tc.stdin...)
			if status.Code(err) != tc.code || out != tc.stdout || errOut != tc.stderr || (tc.code == codes.OK && exit != tc.exit) {
				t.Fatalf("stdout %q stderr %q exit %d err %v; want %q %q %d %s", out, errOut, exit, err, tc.stdout, tc.stderr, tc.exit, tc.code)
			}
		})
	}

	t.Run("a closeStdin ends stdin", func(t *testing.T) {
		stream, err := w.client.Exec(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: withStdin}})
		_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Stdin{Stdin: []byte("x")}})
		_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_CloseStdin{CloseStdin: true}})
		var got []string
		for {
			o, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv after %v: %v", got, err)
			}
			got = append(got, o.String())
			if _, ok := o.GetOutput().(*nodev1.ExecOutput_ExitCode); ok {
				break
			}
		}
		if len(got) != 3 {
			t.Fatalf("outputs %v", got)
		}
	})

	t.Run("not running", func(t *testing.T) {
		w.ctrs.running.Store(false)
		defer w.ctrs.running.Store(true)
		if _, _, _, err := w.exec(testCtx(t), start("cat")); status.Code(err) != codes.FailedPrecondition ||
			status.Convert(err).Message() != `container "app" in pod "web" is not running` {
			t.Fatalf("exec in a stopped container: %v", err)
		}
	})

	t.Run("the client going away kills the command", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		stream, err := w.client.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: start("hang")}})
		if _, err := stream.Header(); err != nil {
			t.Fatal(err)
		}
		cancel()
		deadline := time.Now().Add(5 * time.Second)
		for {
			w.execer.mu.Lock()
			done := w.execer.cancelled
			w.execer.mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the command's context was not cancelled")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func TestLoadImage(t *testing.T) {
	w := newWorld(t)
	load := func(chunks ...[]byte) ([]string, error) {
		stream, err := w.client.LoadImage(testCtx(t))
		if err != nil {
			return nil, err
		}
		for _, c := range chunks {
			if err := stream.Send(&nodev1.Chunk{Data: c}); err != nil {
				break
			}
		}
		resp, err := stream.CloseAndRecv()
		return resp.GetImages(), err
	}
	big := bytes.Repeat([]byte("a"), 3<<20)
	if got, err := load(big[:1<<20], big[1<<20:], []byte("tail")); err != nil || len(got) != 1 || got[0] != fmt.Sprintf("local.test/img:%d", len(big)+4) {
		t.Fatalf("load: %v, %v", got, err)
	}
	if _, err := load([]byte("junk")); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unknown archive format") {
		t.Fatalf("load of junk: %v", err)
	}
}

func TestLimitWriterAndChunkSender(t *testing.T) {
	var mu sync.Mutex
	var sent [][]byte
	s := newChunkSender(func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, b)
		return nil
	})
	lw := &limitWriter{w: s, left: 3*chunkMax + 10}
	line := bytes.Repeat([]byte("x"), 1000)
	var err error
	for err == nil {
		_, err = lw.Write(line)
	}
	if !errors.Is(err, errLimit) {
		t.Fatalf("write: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range sent {
		if len(b) > chunkMax {
			t.Fatalf("a chunk of %d bytes", len(b))
		}
		total += len(b)
	}
	if total != 3*chunkMax+10 {
		t.Fatalf("sent %d bytes in %d chunks, want %d", total, len(sent), 3*chunkMax+10)
	}

	failing := newChunkSender(func([]byte) error { return io.ErrClosedPipe })
	_, _ = failing.Write(line)
	if err := failing.Close(); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("close after a failed send: %v", err)
	}
	if _, err := failing.Write(line); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write after a failed send: %v", err)
	}
}

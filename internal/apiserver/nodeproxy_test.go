package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// fakeAgent is a node agent's NodeAgent service that records what reaches it.
// Logs sends "one\ntwo\n" (and with follow waits for the call to end); Exec
// echoes stdin upper-cased to stdout until closeStdin, says "starting" on
// stderr and exits 3 (the command "hang" waits for the call to end instead);
// LoadImage answers with the number of bytes it read.
type fakeAgent struct {
	nodev1.UnimplementedNodeAgentServer

	mu    sync.Mutex // guards logs, execs
	logs  []*nodev1.LogsRequest
	execs []*nodev1.ExecStart

	ended chan string // "logs" or "exec" when a call saw its client go away
}

func startFakeAgent(t *testing.T) (*fakeAgent, int) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{ended: make(chan string, 10)}
	gs := grpc.NewServer()
	nodev1.RegisterNodeAgentServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return f, lis.Addr().(*net.TCPAddr).Port
}

func (f *fakeAgent) Logs(req *nodev1.LogsRequest, ss grpc.ServerStreamingServer[nodev1.Chunk]) error {
	f.mu.Lock()
	f.logs = append(f.logs, req)
	f.mu.Unlock()
	if req.GetPod() == "ghost" {
		return status.Errorf(codes.NotFound, "pod %q in namespace %q on this node: not found", req.GetPod(), req.GetNamespace())
	}
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for _, l := range []string{"one\n", "two\n"} {
		if err := ss.Send(&nodev1.Chunk{Data: []byte(l)}); err != nil {
			return err
		}
	}
	if req.GetFollow() {
		<-ss.Context().Done()
		f.ended <- "logs"
		return ss.Context().Err()
	}
	return nil
}

func (f *fakeAgent) Exec(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput]) error {
	in, err := ss.Recv()
	if err != nil {
		return err
	}
	start := in.GetStart()
	f.mu.Lock()
	f.execs = append(f.execs, start)
	f.mu.Unlock()
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if start.GetCommand()[0] == "hang" {
		<-ss.Context().Done()
		f.ended <- "exec"
		return ss.Context().Err()
	}
	if err := ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stderr{Stderr: []byte("starting\n")}}); err != nil {
		return err
	}
	for start.GetStdin() {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if in.GetCloseStdin() {
			break
		}
		up := bytes.ToUpper(in.GetStdin())
		if err := ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stdout{Stdout: up}}); err != nil {
			return err
		}
	}
	return ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_ExitCode{ExitCode: 3}})
}

func (f *fakeAgent) LoadImage(ss grpc.ClientStreamingServer[nodev1.Chunk, nodev1.LoadImageResponse]) error {
	n := 0
	for {
		c, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n += len(c.GetData())
	}
	return ss.SendAndClose(&nodev1.LoadImageResponse{Images: []string{"local.test/app:1", fmt.Sprintf("%d bytes", n)}})
}

func (f *fakeAgent) lastLogs() *nodev1.LogsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logs) == 0 {
		return nil
	}
	return f.logs[len(f.logs)-1]
}

// proxyWorld is a 3-peer cluster with node n1 served by a fake agent, node n2
// whose agent is down, and pods web (one container), multi (a, b), annotated
// (a, b; default b), ghost (unknown to n1's agent), pending (unbound) and
// lost (on n2).
func proxyWorld(t *testing.T) (*testcluster.Cluster, *fakeAgent) {
	t.Helper()
	c := testcluster.New(t, 3)
	agent, port := startFakeAgent(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	ctx := context.Background()
	nodes := corev1.NewNodesClient(c.Peers[0].Conn)
	for name, p := range map[string]int{"n1": port, "n2": deadPort} {
		n, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name}}})
		if err != nil {
			t.Fatal(err)
		}
		n.Status = &corev1.NodeStatus{
			Addresses:       []*corev1.NodeAddress{{Type: "Hostname", Address: name}, {Type: "InternalIP", Address: "127.0.0.1"}},
			DaemonEndpoints: &corev1.NodeDaemonEndpoints{KubeletEndpoint: &corev1.DaemonEndpoint{Port: int32(p)}},
		}
		if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: name, Body: n}); err != nil {
			t.Fatal(err)
		}
	}
	ctr := func(names ...string) []*corev1.Container {
		var out []*corev1.Container
		for _, n := range names {
			out = append(out, &corev1.Container{Name: n, Image: "app:1"})
		}
		return out
	}
	pods := []*corev1.Pod{
		{Metadata: &metav1.ObjectMeta{Name: "web"}, Spec: &corev1.PodSpec{NodeName: "n1", Containers: ctr("app"),
			InitContainers: ctr("setup")}},
		{Metadata: &metav1.ObjectMeta{Name: "multi"}, Spec: &corev1.PodSpec{NodeName: "n1", Containers: ctr("a", "b")}},
		{Metadata: &metav1.ObjectMeta{Name: "annotated", Annotations: map[string]string{"kubectl.kubernetes.io/default-container": "b"}},
			Spec: &corev1.PodSpec{NodeName: "n1", Containers: ctr("a", "b")}},
		{Metadata: &metav1.ObjectMeta{Name: "ghost"}, Spec: &corev1.PodSpec{NodeName: "n1", Containers: ctr("app")}},
		{Metadata: &metav1.ObjectMeta{Name: "pending"}, Spec: &corev1.PodSpec{Containers: ctr("app")}},
		{Metadata: &metav1.ObjectMeta{Name: "lost"}, Spec: &corev1.PodSpec{NodeName: "n2", Containers: ctr("app")}},
	}
	for _, p := range pods {
		if _, err := corev1.NewPodsClient(c.Peers[0].Conn).Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: p}); err != nil {
			t.Fatal(err)
		}
	}
	return c, agent
}

// readLogs calls Logs on peer i and returns what it streamed.
func readLogs(c *testcluster.Cluster, i int, req *nodev1.LogsRequest) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := nodev1.NewNodeAgentClient(c.Peers[i].Conn).Logs(ctx, req)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out.String(), nil
		}
		if err != nil {
			return out.String(), err
		}
		out.Write(chunk.GetData())
	}
}

func TestNodeProxyLogs(t *testing.T) {
	c, agent := proxyWorld(t)
	uid := func(name string) string {
		p, err := corev1.NewPodsClient(c.Peers[0].Conn).Get(context.Background(), &metav1.GetRequest{Namespace: "default", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return p.GetMetadata().GetUid()
	}
	cases := []struct {
		name          string
		req           *nodev1.LogsRequest
		code          codes.Code
		msg           string // error message, or the log
		wantContainer string
	}{
		{"the only container", &nodev1.LogsRequest{Pod: "web"}, codes.OK, "one\ntwo\n", "app"},
		{"an init container by name", &nodev1.LogsRequest{Pod: "web", Container: "setup"}, codes.OK, "one\ntwo\n", "setup"},
		{"the annotated default", &nodev1.LogsRequest{Pod: "annotated"}, codes.OK, "one\ntwo\n", "b"},
		{"one of several by name", &nodev1.LogsRequest{Pod: "multi", Container: "a"}, codes.OK, "one\ntwo\n", "a"},
		{"several and none named", &nodev1.LogsRequest{Pod: "multi"}, codes.InvalidArgument,
			"a container name must be specified for pod multi, choose one of: [a b]", ""},
		{"an unknown container", &nodev1.LogsRequest{Pod: "web", Container: "nope"}, codes.InvalidArgument,
			"container nope is not valid for pod web", ""},
		{"no such pod", &nodev1.LogsRequest{Pod: "nope"}, codes.NotFound, `pods "nope" not found`, ""},
		{"an unbound pod", &nodev1.LogsRequest{Pod: "pending"}, codes.FailedPrecondition, "pod pending does not have a host assigned", ""},
		{"the agent's not found", &nodev1.LogsRequest{Pod: "ghost"}, codes.NotFound, `pod "ghost" in namespace "default" on this node: not found`, "app"},
		{"an agent that is down", &nodev1.LogsRequest{Pod: "lost"}, codes.Unavailable, "node n2: the node agent cannot be reached", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Namespace = "default"
			before := agent.lastLogs()
			got, err := readLogs(c, i%3, tc.req)
			if code := status.Code(err); code != tc.code {
				t.Fatalf("code %s (%v), want %s", code, err, tc.code)
			}
			if tc.code != codes.OK {
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.msg) {
					t.Fatalf("error %q, want it to contain %q", msg, tc.msg)
				}
			} else if got != tc.msg {
				t.Fatalf("log %q, want %q", got, tc.msg)
			}
			last := agent.lastLogs()
			if tc.wantContainer == "" {
				if last != before {
					t.Fatalf("the agent was asked for %v", last)
				}
				return
			}
			if last == before || last.GetContainer() != tc.wantContainer || last.GetUid() != uid(tc.req.GetPod()) {
				t.Fatalf("the agent was asked for %v, want container %s of pod uid %s", last, tc.wantContainer, uid(tc.req.GetPod()))
			}
		})
	}
}

func TestNodeProxyLogREST(t *testing.T) {
	c, agent := proxyWorld(t)
	const path = "/api/v1/namespaces/default/pods/"
	code, body, hdr := c.Do(1, "GET", path+"web/log?tailLines=5&timestamps=true&limitBytes=100&previous=1", "")
	if code != 200 || string(body) != "one\ntwo\n" || hdr.Get("Content-Type") != "text/plain" {
		t.Fatalf("GET log: %d %q %v", code, body, hdr)
	}
	if r := agent.lastLogs(); r.GetTailLines() != 5 || !r.GetTimestamps() || r.GetLimitBytes() != 100 || !r.GetPrevious() || r.GetFollow() || r.GetContainer() != "app" {
		t.Fatalf("the agent was asked for %v", r)
	}
	runCases(t, c, []apiCase{
		{"missing pod", "GET", path + "nope/log", "", 404, []string{`"reason":"NotFound"`, `pods \"nope\" not found`}, nil},
		{"unbound pod", "GET", path + "pending/log", "", 400, []string{`"reason":"BadRequest"`, "pod pending does not have a host assigned"}, nil},
		{"no container named", "GET", path + "multi/log", "", 400, []string{"choose one of: [a b]"}, nil},
		{"named container", "GET", path + "multi/log?container=b", "", 200, []string{"one\ntwo\n"}, nil},
		{"negative tailLines", "GET", path + "web/log?tailLines=-1", "", 400, []string{"tailLines"}, nil},
		{"bad follow", "GET", path + "web/log?follow=maybe", "", 400, []string{"follow"}, nil},
		{"sinceSeconds", "GET", path + "web/log?sinceSeconds=10", "", 400, []string{"sinceSeconds is not supported"}, nil},
		{"agent down", "GET", path + "lost/log", "", 503, []string{"node n2"}, nil},
	})

	// follow: the lines arrive while the agent still streams; the client
	// going away ends the agent's call.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.Peers[2].HTTPAddr+path+"web/log?follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for _, want := range []string{"one\n", "two\n"} {
		if line, err := r.ReadString('\n'); line != want {
			t.Fatalf("followed line %q (%v), want %q", line, err, want)
		}
	}
	cancel()
	select {
	case what := <-agent.ended:
		if what != "logs" {
			t.Fatalf("%s ended, want logs", what)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's follow did not end when the client went away")
	}
}

func TestNodeProxyExec(t *testing.T) {
	c, agent := proxyWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stdin to the agent, stdout and stderr back, then the exit code.
	stream, err := nodev1.NewNodeAgentClient(c.Peers[1].Conn).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := &nodev1.ExecStart{Namespace: "default", Pod: "annotated", Command: []string{"cat"}, Stdin: true}
	if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	recv := func() *nodev1.ExecOutput {
		t.Helper()
		out, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		return out
	}
	if out := recv(); string(out.GetStderr()) != "starting\n" {
		t.Fatalf("first output %v, want stderr", out)
	}
	for _, s := range []string{"hello", "world"} {
		if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Stdin{Stdin: []byte(s)}}); err != nil {
			t.Fatal(err)
		}
		if out := recv(); string(out.GetStdout()) != strings.ToUpper(s) {
			t.Fatalf("output %v, want %s on stdout", out, strings.ToUpper(s))
		}
	}
	if err := stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_CloseStdin{CloseStdin: true}}); err != nil {
		t.Fatal(err)
	}
	if out := recv(); out.GetOutput() == nil || out.GetExitCode() != 3 {
		t.Fatalf("last output %v, want exit code 3", out)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the exit code: %v, want EOF", err)
	}
	agent.mu.Lock()
	got := agent.execs[len(agent.execs)-1]
	agent.mu.Unlock()
	if got.GetContainer() != "b" || got.GetUid() == "" || !got.GetStdin() || got.GetCommand()[0] != "cat" {
		t.Fatalf("the agent got start %v", got)
	}

	// Errors before the agent is reached.
	for _, tc := range []struct {
		pod, container string
		code           codes.Code
	}{{"nope", "", codes.NotFound}, {"pending", "", codes.FailedPrecondition}, {"multi", "", codes.InvalidArgument}, {"lost", "", codes.Unavailable}} {
		stream, err := nodev1.NewNodeAgentClient(c.Peers[0].Conn).Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: &nodev1.ExecStart{Namespace: "default", Pod: tc.pod, Command: []string{"true"}}}})
		if _, err := stream.Recv(); status.Code(err) != tc.code {
			t.Errorf("exec in %s: %v, want %s", tc.pod, err, tc.code)
		}
	}

	// The client going away ends the agent's call.
	hctx, hcancel := context.WithCancel(ctx)
	stream, err = nodev1.NewNodeAgentClient(c.Peers[2].Conn).Exec(hctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&nodev1.ExecInput{Input: &nodev1.ExecInput_Start{Start: &nodev1.ExecStart{Namespace: "default", Pod: "web", Command: []string{"hang"}}}})
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	hcancel()
	select {
	case what := <-agent.ended:
		if what != "exec" {
			t.Fatalf("%s ended, want exec", what)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's exec did not end when the client went away")
	}
}

func TestNodeProxyLoadImage(t *testing.T) {
	c, _ := proxyWorld(t)
	load := func(node string, size int) ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if node != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "rafter-node", node)
		}
		stream, err := nodev1.NewNodeAgentClient(c.Peers[1].Conn).LoadImage(ctx)
		if err != nil {
			return nil, err
		}
		data := bytes.Repeat([]byte("x"), 1<<20)
		for sent := 0; sent < size; sent += len(data) {
			if err := stream.Send(&nodev1.Chunk{Data: data[:min(len(data), size-sent)]}); err != nil {
				break
			}
		}
		resp, err := stream.CloseAndRecv()
		return resp.GetImages(), err
	}
	images, err := load("n1", 5<<20+7)
	if err != nil || len(images) != 2 || images[0] != "local.test/app:1" || images[1] != fmt.Sprintf("%d bytes", 5<<20+7) {
		t.Fatalf("load on n1: %v, %v", images, err)
	}
	for node, want := range map[string]codes.Code{"": codes.InvalidArgument, "nope": codes.NotFound, "n2": codes.Unavailable} {
		if _, err := load(node, 10); status.Code(err) != want {
			t.Errorf("load on %q: %v, want %s", node, err, want)
		}
	}
}

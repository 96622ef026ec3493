package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	nodev1 "github.com/rafter-dev/rafter/gen/rafter/node/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// fakeAgent is a node agent's NodeAgent service. Logs sends "one\ntwo\n";
// Exec says "starting" on stderr, echoes stdin upper-cased on stdout and
// exits with the code its command names ("exit N"); LoadImage names the
// archive's size.
type fakeAgent struct {
	nodev1.UnimplementedNodeAgentServer

	mu    sync.Mutex // guards logs
	logs  []*nodev1.LogsRequest
	loads int
}

func (f *fakeAgent) Logs(req *nodev1.LogsRequest, ss grpc.ServerStreamingServer[nodev1.Chunk]) error {
	f.mu.Lock()
	f.logs = append(f.logs, req)
	f.mu.Unlock()
	return ss.Send(&nodev1.Chunk{Data: []byte("one\ntwo\n")})
}

func (f *fakeAgent) Exec(ss grpc.BidiStreamingServer[nodev1.ExecInput, nodev1.ExecOutput]) error {
	in, err := ss.Recv()
	if err != nil {
		return err
	}
	start := in.GetStart()
	if err := ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stderr{Stderr: []byte("starting\n")}}); err != nil {
		return err
	}
	for start.GetStdin() {
		in, err := ss.Recv()
		if errors.Is(err, io.EOF) || in.GetCloseStdin() {
			break
		}
		if err != nil {
			return err
		}
		if err := ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_Stdout{Stdout: bytes.ToUpper(in.GetStdin())}}); err != nil {
			return err
		}
	}
	code := 0
	if cmd := start.GetCommand(); len(cmd) == 2 && cmd[0] == "exit" {
		code, _ = strconv.Atoi(cmd[1])
	}
	if start.GetTty() {
		code = 99
	}
	return ss.Send(&nodev1.ExecOutput{Output: &nodev1.ExecOutput_ExitCode{ExitCode: int32(code)}})
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
	f.mu.Lock()
	f.loads++
	f.mu.Unlock()
	return ss.SendAndClose(&nodev1.LoadImageResponse{Images: []string{fmt.Sprintf("local.test/app:%d", n)}})
}

// streamWorld is a cluster with Ready nodes n1 (a fake agent) and n2 (its
// agent down), a NotReady node n3, and pods web (on n1, Running), web-2
// (unbound; both app=web, selected by deployment web), multi (containers a
// and b, on n1) and pending (unbound).
func streamWorld(t *testing.T) (*testcluster.Cluster, *fakeAgent) {
	t.Helper()
	c := testcluster.New(t, 3)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	agent := &fakeAgent{}
	gs := grpc.NewServer()
	nodev1.RegisterNodeAgentServer(gs, agent)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	ctx := testCtx(t)
	nodes := corev1.NewNodesClient(c.Peers[0].Conn)
	for _, n := range []struct {
		name  string
		port  int
		ready string
	}{{"n1", lis.Addr().(*net.TCPAddr).Port, "True"}, {"n2", dead.Addr().(*net.TCPAddr).Port, "True"}, {"n3", 1, "Unknown"}} {
		node, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: &corev1.Node{Metadata: &metav1.ObjectMeta{Name: n.name}}})
		if err != nil {
			t.Fatal(err)
		}
		node.Status = &corev1.NodeStatus{
			Addresses:       []*corev1.NodeAddress{{Type: "InternalIP", Address: "127.0.0.1"}},
			DaemonEndpoints: &corev1.NodeDaemonEndpoints{KubeletEndpoint: &corev1.DaemonEndpoint{Port: int32(n.port)}},
			Conditions:      []*corev1.NodeCondition{{Type: "Ready", Status: n.ready}},
		}
		if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: n.name, Body: node}); err != nil {
			t.Fatal(err)
		}
	}
	pods := corev1.NewPodsClient(c.Peers[0].Conn)
	for _, p := range []*corev1.Pod{
		boundPod("default", "web-2", "", nil, nil),
		boundPod("default", "web", "n1", nil, nil),
		{Metadata: &metav1.ObjectMeta{Name: "multi"}, Spec: &corev1.PodSpec{NodeName: "n1",
			Containers: []*corev1.Container{{Name: "a", Image: "app:1"}, {Name: "b", Image: "app:1"}}}},
		boundPod("default", "pending", "", nil, nil),
	} {
		if strings.HasPrefix(p.Metadata.Name, "web") {
			p.Metadata.Labels = map[string]string{"app": "web"}
		}
		created, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: p})
		if err != nil {
			t.Fatal(err)
		}
		if p.Metadata.Name == "web" {
			created.Status = &corev1.PodStatus{Phase: "Running"}
			if _, err := pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: "default", Name: "web", Body: created}); err != nil {
				t.Fatal(err)
			}
		}
	}
	createDeployment(t, c, "web", 2, "app:1")
	return c, agent
}

// ctlIn runs ctl as Main does, with stdin, and returns stdout, stderr and
// the exit code Main would return.
func ctlIn(c *testcluster.Cluster, stdin io.Reader, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	root := NewRoot(Streams{In: stdin, Out: &out, Err: &errOut})
	root.SetArgs(append([]string{"--server", servers(c), "--request-timeout", "10s"}, args...))
	if err := root.Execute(); err != nil {
		var exit *exitError
		if !errors.Is(err, errFailed) && !errors.As(err, &exit) {
			fmt.Fprintln(&errOut, serverError(err))
		}
		return out.String(), errOut.String(), exitCode(err)
	}
	return out.String(), errOut.String(), 0
}

func TestLogsCommand(t *testing.T) {
	c, agent := streamWorld(t)
	wantCtl(t, c, "one\ntwo\n", "", 0, "logs", "web")
	wantCtl(t, c, "one\ntwo\n", "", 0, "logs", "pod/web", "-c", "app", "-f", "-p", "--tail", "3", "--timestamps", "--limit-bytes", "10")
	agent.mu.Lock()
	got := agent.logs[len(agent.logs)-1]
	agent.mu.Unlock()
	if got.GetContainer() != "app" || !got.GetFollow() || !got.GetPrevious() || got.GetTailLines() != 3 || !got.GetTimestamps() || got.GetLimitBytes() != 10 {
		t.Fatalf("the agent was asked for %v", got)
	}
	if agent.logs[0].TailLines != nil {
		t.Fatalf("without --tail the agent was asked for tailLines %d", agent.logs[0].GetTailLines())
	}
	wantCtl(t, c, "one\ntwo\n", "Found 2 pods, using pod/web\n", 0, "logs", "deployment/web")
	wantCtl(t, c, "one\ntwo\n", "", 0, "logs", "multi", "-c", "b")
	wantCtl(t, c, "", "Error from server (BadRequest): a container name must be specified for pod multi, choose one of: [a b]\n", 1, "logs", "multi")
	wantCtl(t, c, "", "Error from server (NotFound): pods \"nope\" not found\n", 1, "logs", "nope")
	wantCtl(t, c, "", "Error from server (BadRequest): pod pending does not have a host assigned\n", 1, "logs", "pending")
	wantCtl(t, c, "", "Error from server (NotFound): deployments.apps \"nope\" not found\n", 1, "logs", "deploy/nope")
}

func TestExecCommand(t *testing.T) {
	c, _ := streamWorld(t)
	cases := []struct {
		name             string
		stdin            string
		args             []string
		wantOut, wantErr string
		wantCode         int
	}{
		{"stdin both ways and the command's exit code", "hello", []string{"exec", "-i", "web", "--", "exit", "3"},
			"HELLO", "starting\ncommand terminated with exit code 3\n", 3},
		{"exit 0 without stdin", "ignored", []string{"exec", "web", "--", "exit", "0"}, "", "starting\n", 0},
		{"a container by name", "", []string{"exec", "multi", "-c", "a", "--", "exit", "0"}, "", "starting\n", 0},
		{"no terminal for -t", "", []string{"exec", "-t", "web", "--", "exit", "0"}, "",
			"Unable to use a TTY - input is not a terminal or the right kind of file\nstarting\n", 0},
		{"no command", "", []string{"exec", "web"}, "", "error: you must specify at least one command for the container\n", 1},
		{"unbound", "", []string{"exec", "pending", "--", "true"}, "", "Error from server (BadRequest): pod pending does not have a host assigned\n", 1},
		{"several containers", "", []string{"exec", "multi", "--", "true"}, "",
			"Error from server (BadRequest): a container name must be specified for pod multi, choose one of: [a b]\n", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := ctlIn(c, strings.NewReader(tc.stdin), tc.args...)
			if out != tc.wantOut || errOut != tc.wantErr || code != tc.wantCode {
				t.Errorf("ctl %s:\nexit %d, want %d\nstdout %q, want %q\nstderr %q, want %q",
					strings.Join(tc.args, " "), code, tc.wantCode, out, tc.wantOut, errOut, tc.wantErr)
			}
		})
	}
}

func TestImageLoadCommand(t *testing.T) {
	c, agent := streamWorld(t)
	archive := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(archive, bytes.Repeat([]byte("x"), 3<<20+5), 0o644); err != nil {
		t.Fatal(err)
	}
	size := strconv.Itoa(3<<20 + 5)
	wantCtl(t, c, "node/n1 loaded local.test/app:"+size+"\n", "", 0, "image", "load", archive, "--node", "n1")
	out, errOut, code := ctl(c, "image", "load", archive)
	if out != "node/n1 loaded local.test/app:"+size+"\n" || code != 1 ||
		!strings.HasPrefix(errOut, "error: node/n2: node n2: the node agent cannot be reached") || strings.Contains(errOut, "n3") {
		t.Fatalf("load onto every Ready node: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	agent.mu.Lock()
	loads := agent.loads
	agent.mu.Unlock()
	if loads != 2 {
		t.Fatalf("the agent loaded %d archives, want 2", loads)
	}
	wantCtl(t, c, "", "error: node/nope: nodes \"nope\" not found\n", 1, "image", "load", archive, "--node", "nope")
	_, errOut, code = ctl(c, "image", "load", filepath.Join(t.TempDir(), "missing.tar"))
	if code != 1 || !strings.Contains(errOut, "no such file or directory") {
		t.Fatalf("a missing file: exit %d, stderr %q", code, errOut)
	}
}

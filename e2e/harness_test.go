package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The multi-process harness: real controlplane binaries on loopback ports.

var controlplaneBin, ctlBin, nodeagentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rafter-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	controlplaneBin = filepath.Join(dir, "controlplane")
	ctlBin = filepath.Join(dir, "ctl")
	nodeagentBin = filepath.Join(dir, "nodeagent")
	build := exec.Command("go", "build", "-o", dir, "../cmd/controlplane", "../cmd/ctl", "../cmd/nodeagent")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build controlplane, ctl and nodeagent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one controlplane process.
type proc struct {
	id                           string
	raftAddr, grpcAddr, httpAddr string
	dataDir                      string
	args                         []string
	cmd                          *exec.Cmd
	log                          *syncBuffer
	done                         chan struct{}
}

type cluster struct {
	t     *testing.T
	procs []*proc
	dir   string
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newCluster starts n bootstrapped peers with extra flags and waits until every
// peer serves a linearizable read of the default namespace.
//
// Ports come from freePort, which closes its listener before the peer binds: an
// outgoing connection may take the port meanwhile, and the peer then exits at
// once. Such a cluster is thrown away and started again on new ports.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	var c *cluster
	for attempt := 1; ; attempt++ {
		c = &cluster{t: t, dir: t.TempDir()}
		var boot []string
		for i := 0; i < n; i++ {
			p := c.newProc(fmt.Sprintf("p%d", i+1), extra...)
			boot = append(boot, p.id+"="+p.raftAddr)
		}
		for _, p := range c.procs {
			p.args = append(p.args, "--bootstrap="+strings.Join(boot, ","))
			c.start(p)
		}
		exited := c.exitedWithin(500 * time.Millisecond)
		if exited == nil {
			break
		}
		c.stopAll()
		if attempt == 3 {
			t.Fatalf("peer %s exited at start three times:\n%s", exited.id, tail(exited.log.String(), 20))
		}
		t.Logf("peer %s exited at start (a port taken?), starting the cluster again:\n%s", exited.id, tail(exited.log.String(), 5))
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.procs {
		c.waitReady(p)
	}
	return c
}

// exitedWithin returns a peer that exits within d, or nil.
func (c *cluster) exitedWithin(d time.Duration) *proc {
	deadline := time.After(d)
	for {
		for _, p := range c.procs {
			select {
			case <-p.done:
				return p
			default:
			}
		}
		select {
		case <-deadline:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// newProc allocates ports and a data dir for a peer without starting it.
func (c *cluster) newProc(id string, extra ...string) *proc {
	p := &proc{id: id, raftAddr: freePort(c.t), grpcAddr: freePort(c.t), httpAddr: freePort(c.t),
		dataDir: filepath.Join(c.dir, id)}
	p.args = append([]string{"--id=" + id, "--data-dir=" + p.dataDir, "--raft-addr=" + p.raftAddr,
		"--grpc-addr=" + p.grpcAddr, "--http-addr=" + p.httpAddr}, extra...)
	c.procs = append(c.procs, p)
	return p
}

func (c *cluster) start(p *proc) {
	c.t.Helper()
	p.log = &syncBuffer{}
	p.cmd = exec.Command(controlplaneBin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", p.id, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kill9 kills a peer without warning.
func (c *cluster) kill9(p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (c *cluster) stopAll() {
	for _, p := range c.procs {
		if p.cmd == nil {
			continue
		}
		select {
		case <-p.done:
			if c.t.Failed() {
				c.t.Logf("log of %s (exited):\n%s", p.id, tail(p.log.String(), 60))
			}
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if c.t.Failed() {
			c.t.Logf("log of %s:\n%s", p.id, tail(p.log.String(), 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *cluster) waitReady(p *proc) {
	c.t.Helper()
	c.eventually(30*time.Second, p.id+" serving reads", func() error {
		code, _, _ := c.do(p, "GET", "/api/v1/namespaces/default", "")
		if code != 200 {
			return fmt.Errorf("GET default namespace: %d", code)
		}
		return nil
	})
}

// eventually retries f every 50ms until it succeeds or timeout passes.
func (c *cluster) eventually(timeout time.Duration, what string, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 15 * time.Second}

// do sends one HTTP request to a peer and returns status, body and headers.
func (c *cluster) do(p *proc, method, path, body string) (int, []byte, http.Header) {
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+p.httpAddr+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// mustDo is do that fails the test unless the status is want.
func (c *cluster) mustDo(p *proc, method, path, body string, want int) map[string]any {
	c.t.Helper()
	code, b, _ := c.do(p, method, path, body)
	if code != want {
		c.t.Fatalf("%s %s on %s: status %d, want %d: %s", method, path, p.id, code, want, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
	}
	return out
}

// members returns GET /cluster/v1/members from p.
func (c *cluster) members(p *proc) []map[string]any {
	c.t.Helper()
	out := c.mustDo(p, "GET", "/cluster/v1/members", "", 200)
	var ms []map[string]any
	for _, m := range out["members"].([]any) {
		ms = append(ms, m.(map[string]any))
	}
	return ms
}

// leader returns the peer the cluster reports as leader, asking any live peer.
func (c *cluster) leader() *proc {
	c.t.Helper()
	var found *proc
	c.eventually(15*time.Second, "a leader", func() error {
		for _, p := range c.live() {
			code, b, _ := c.do(p, "GET", "/cluster/v1/members", "")
			if code != 200 {
				continue
			}
			var out struct {
				Members []struct{ ID, State string }
			}
			if json.Unmarshal(b, &out) != nil {
				continue
			}
			for _, m := range out.Members {
				if m.State == "Leader" {
					for _, q := range c.procs {
						if q.id == m.ID && q.alive() {
							found = q
							return nil
						}
					}
				}
			}
		}
		return fmt.Errorf("no live peer reports a leader")
	})
	return found
}

func (p *proc) alive() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (c *cluster) live() []*proc {
	var out []*proc
	for _, p := range c.procs {
		if p.alive() {
			out = append(out, p)
		}
	}
	return out
}

func field(obj map[string]any, path ...string) any {
	var cur any = obj
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func str(obj map[string]any, path ...string) string {
	s, _ := field(obj, path...).(string)
	return s
}

func cm(name, value string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q},"data":{"k":%q}}`, name, value)
}

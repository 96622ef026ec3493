package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testimage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Logs, exec and image loads through the API's streaming proxy to the node
// agent (never through the Raft log), on a real node.

// applyPod applies a one-container pod of image and waits until it runs.
func (c *cluster) applyPod(ctx context.Context, name, image, extra string) {
	c.t.Helper()
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: %s
%s`, name, image, extra)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		c.t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	pods := corev1.NewPodsClient(c.conn(0))
	c.eventually(90*time.Second, name+" running", func() error {
		_, cs, err := containerStatus(ctx, c.t, pods, name)
		if err != nil {
			return err
		}
		if cs.GetState().GetRunning() == nil {
			return fmt.Errorf("state %v", cs.GetState())
		}
		return nil
	})
}

// deletePod deletes a pod; the function it returns waits until the node has
// torn it down (its network namespace and log directory are gone) and the
// pod has left the API, so that a test does not end, and stop the node, in
// the middle of the teardown.
func (c *cluster) deletePod(ctx context.Context, dataDir, name string) func() {
	c.t.Helper()
	p, err := corev1.NewPodsClient(c.conn(0)).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
	if err != nil {
		c.t.Fatal(err)
	}
	uid := p.GetMetadata().GetUid()
	c.ctl("delete", "pod", name)
	return func() {
		c.t.Helper()
		c.eventually(60*time.Second, name+" torn down on the node", func() error {
			for _, path := range []string{"/var/run/netns/" + uid, filepath.Join(dataDir, "logs", "default_"+name+"_"+uid)} {
				if _, err := os.Stat(path); err == nil {
					return fmt.Errorf("%s is still there", path)
				}
			}
			if _, err := corev1.NewPodsClient(c.conn(0)).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name}); status.Code(err) != codes.NotFound {
				return fmt.Errorf("pod still in the API (%v)", err)
			}
			return nil
		})
	}
}

// ctlExitCode is the exit status of a ctl run (0 when err is nil).
func ctlExitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatalf("ctl did not run: %v", err)
	}
	return ee.ExitCode()
}

// TestStreamLogsAndExec: must-shows of logs and exec — `ctl logs` and the
// REST log show a container's output; `ctl logs -f` streams what the
// container writes and ends when it stops or its pod is deleted; `ctl logs
// -p` shows the run before a restart; `ctl exec -- cat /etc/hostname`
// prints the pod's name and exits 0; a failing command's exit code and
// stderr come back; stdin goes in with -i.
func TestStreamLogsAndExec(t *testing.T) {
	c, image, _, dataDir, _ := realSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c.applyPod(ctx, "talker", image, "")
	const started = "podapp on talker listening on :8080\n"

	// ctl logs and the REST log.
	c.eventually(20*time.Second, "ctl logs shows the start line", func() error {
		if out := c.ctl("logs", "talker"); out != started {
			return fmt.Errorf("ctl logs: %q", out)
		}
		return nil
	})
	code, body, hdr := c.do(c.procs[1], "GET", "/api/v1/namespaces/default/pods/talker/log", "")
	if code != 200 || string(body) != started || hdr.Get("Content-Type") != "text/plain" {
		t.Fatalf("GET .../pods/talker/log: %d %q %v", code, body, hdr)
	}
	code, body, _ = c.do(c.procs[2], "GET", "/api/v1/namespaces/default/pods/talker/log?container=nope", "")
	if code != 400 || !strings.Contains(string(body), "container nope is not valid for pod talker") {
		t.Fatalf("GET log of an unknown container: %d %s", code, body)
	}
	if out := c.ctl("logs", "talker", "--timestamps", "--tail=1"); !strings.HasSuffix(out, " "+started) {
		t.Fatalf("ctl logs --timestamps: %q", out)
	}

	// exec: the pod's hostname, exit 0.
	out, errOut, err := c.ctlRun("", "exec", "talker", "--", "cat", "/etc/hostname")
	if out != "talker\n" || errOut != "" || err != nil {
		t.Fatalf("ctl exec cat /etc/hostname: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	// A failing command: its stderr, its exit code.
	out, errOut, err = c.ctlRun("", "exec", "talker", "--", "cat", "/nope")
	if code := ctlExitCode(t, err); code != 1 || out != "" ||
		errOut != "cat: open /nope: no such file or directory\ncommand terminated with exit code 1\n" {
		t.Fatalf("ctl exec cat /nope: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	// stdin with -i.
	out, errOut, err = c.ctlRun("piped through\n", "exec", "-i", "talker", "--", "cat", "/proc/self/fd/0")
	if out != "piped through\n" || err != nil {
		t.Fatalf("ctl exec -i cat: %v\nstdout %q\nstderr %q", err, out, errOut)
	}

	// logs -f streams what the container writes, and ends when it stops.
	f := c.followLogs(ctx, "talker")
	if l := f.next(); l != started {
		t.Fatalf("ctl logs -f: first line %q", l)
	}
	pid := pidOf(t, "talker")
	if pid == 0 {
		t.Fatal("no process for pod talker")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := f.next(); l != "SIGTERM: shutting down\n" {
		t.Fatalf("ctl logs -f: line %q after the SIGTERM", l)
	}
	f.end()

	// --previous after the restart: the run before, with its SIGTERM line.
	pods := corev1.NewPodsClient(c.conn(0))
	c.eventually(30*time.Second, "talker restarted", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "talker")
		if err != nil {
			return err
		}
		if cs.GetRestartCount() != 1 || cs.GetState().GetRunning() == nil {
			return fmt.Errorf("restartCount %d state %v", cs.GetRestartCount(), cs.GetState())
		}
		return nil
	})
	if out := c.ctl("logs", "-p", "talker"); out != started+"SIGTERM: shutting down\n" {
		t.Fatalf("ctl logs -p: %q", out)
	}
	c.eventually(20*time.Second, "the new run's log", func() error {
		if out := c.ctl("logs", "talker"); out != started {
			return fmt.Errorf("ctl logs: %q", out)
		}
		return nil
	})

	// logs -f ends when the pod is deleted; the container is stopped
	// gracefully, so its SIGTERM line comes last.
	f = c.followLogs(ctx, "talker")
	if l := f.next(); l != started {
		t.Fatalf("ctl logs -f: first line %q", l)
	}
	done := c.deletePod(ctx, dataDir, "talker")
	if l := f.next(); l != "SIGTERM: shutting down\n" {
		t.Fatalf("ctl logs -f: line %q after the delete, want the graceful stop's SIGTERM line", l)
	}
	f.end()
	done()
}

// follower is a `ctl logs -f` running in the background.
type follower struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	err   *syncBuffer
}

// followLogs starts `ctl logs -f pod`.
func (c *cluster) followLogs(ctx context.Context, pod string) *follower {
	c.t.Helper()
	c.ctl("version") // writes the ctl config file
	f := &follower{t: c.t, cmd: exec.CommandContext(ctx, ctlBin, "logs", "-f", pod), lines: make(chan string, 10), err: &syncBuffer{}}
	f.cmd.Env = append(os.Environ(), "RAFTER_CONFIG="+filepath.Join(c.dir, "ctl-config"))
	f.cmd.Stderr = f.err
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		defer close(f.lines)
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f.lines <- l
		}
	}()
	c.t.Cleanup(func() { _ = f.cmd.Process.Kill(); _ = f.cmd.Wait() })
	return f
}

// next returns the next line ctl prints.
func (f *follower) next() string {
	f.t.Helper()
	select {
	case l, ok := <-f.lines:
		if !ok {
			f.t.Fatalf("ctl logs -f ended early; stderr %q", f.err.String())
		}
		return l
	case <-time.After(30 * time.Second):
		f.t.Fatal("ctl logs -f printed no line within 30s")
	}
	return ""
}

// end waits for ctl to end, printing nothing more, with exit status 0.
func (f *follower) end() {
	f.t.Helper()
	select {
	case l, ok := <-f.lines:
		if ok {
			f.t.Fatalf("ctl logs -f: unexpected line %q", l)
		}
	case <-time.After(30 * time.Second):
		f.t.Fatal("ctl logs -f did not end")
	}
	if err := f.cmd.Wait(); err != nil {
		f.t.Fatalf("ctl logs -f: %v; stderr %q", err, f.err.String())
	}
}

// TestImageLoad: `ctl image load` of a docker-save tarball puts the image on
// the node without a registry; a pod with imagePullPolicy Never runs it.
func TestImageLoad(t *testing.T) {
	c, _, _, dataDir, _ := realSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := testimage.BuildPodapp("..", dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(bin)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "local.test/podapp:loaded"
	archive := filepath.Join(dir, "podapp.tar")
	if err := testimage.WriteTarball(img, ref, archive); err != nil {
		t.Fatal(err)
	}
	if out := c.ctl("image", "load", archive); out != "node/rn1 loaded "+ref+"\n" {
		t.Fatalf("ctl image load: %q", out)
	}
	c.applyPod(ctx, "loaded", ref, "    imagePullPolicy: Never\n")
	pod, err := corev1.NewPodsClient(c.conn(1)).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "loaded"})
	if err != nil {
		t.Fatal(err)
	}
	if phase := pod.GetStatus().GetPhase(); phase != "Running" {
		t.Fatalf("pod loaded is %s", phase)
	}
	if out, errOut, err := c.ctlRun("", "exec", "loaded", "--", "cat", "/etc/hostname"); out != "loaded\n" || err != nil {
		t.Fatalf("exec in the loaded image's pod: %v %q %q", err, out, errOut)
	}
	// An archive that is none: the node's words come back, nothing is stored.
	junk := filepath.Join(dir, "junk.tar")
	if err := os.WriteFile(junk, []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := c.ctlRun("", "image", "load", junk, "--node", "rn1")
	if code := ctlExitCode(t, err); code != 1 || out != "" || !strings.HasPrefix(errOut, "error: node/rn1: load image archive:") {
		t.Fatalf("ctl image load of junk: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	c.deletePod(ctx, dataDir, "loaded")()
}

// TestRealPodDeletionIsGraceful: a deleted pod reads Terminating
// (deletionTimestamp, deletionGracePeriodSeconds) while its node stops it:
// SIGTERM first; a process that ignores it runs on until the grace period
// (5 s) ends and is then killed; only then does the pod leave the API.
func TestRealPodDeletionIsGraceful(t *testing.T) {
	c, image, _, dataDir, _ := realSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.applyPod(ctx, "stubborn", image, "    args: [\"-ignore-term\"]\n")
	pid := pidOf(t, "stubborn")
	if pid == 0 {
		t.Fatal("no process for pod stubborn")
	}
	pods := corev1.NewPodsClient(c.conn(0))
	deleted := time.Now()
	done := c.deletePod(ctx, dataDir, "stubborn")

	p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "stubborn"})
	if err != nil {
		t.Fatalf("a pod being stopped must still be in the API: %v", err)
	}
	if md := p.GetMetadata(); md.GetDeletionTimestamp() == nil || md.GetDeletionGracePeriodSeconds() != 5 {
		t.Fatalf("deleted pod's metadata: deletionTimestamp %v, deletionGracePeriodSeconds %d; want set, 5",
			md.GetDeletionTimestamp(), md.GetDeletionGracePeriodSeconds())
	}
	if out := c.ctl("get", "pod", "stubborn"); !strings.Contains(out, "Terminating") {
		t.Fatalf("ctl get pod while it stops:\n%s\nwant STATUS Terminating", out)
	}
	c.eventually(10*time.Second, "the container got SIGTERM", func() error {
		if out := c.ctl("logs", "stubborn"); !strings.Contains(out, "SIGTERM: ignored") {
			return fmt.Errorf("ctl logs: %q", out)
		}
		return nil
	})
	time.Sleep(time.Until(deleted.Add(2 * time.Second)))
	if pidOf(t, "stubborn") != pid {
		t.Fatalf("the process was gone %v after the delete, before its 5 s grace period ended", time.Since(deleted).Round(time.Millisecond))
	}
	done()
	if pidOf(t, "stubborn") != 0 {
		t.Fatal("the process outlived its pod")
	}
	if took := time.Since(deleted); took < 4*time.Second {
		t.Fatalf("the pod left the API %v after the delete, before its 5 s grace period ended", took.Round(time.Millisecond))
	}
}

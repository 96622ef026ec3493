package runtime_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafter-dev/rafter/internal/agent/runtime"
)

// The test binary is also the shim and the containers' init, as the node
// agent's binary is in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			runtime.Init()
		case "shim":
			if err := runtime.RunShim(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "shim:", err)
				os.Exit(1)
			}
			os.Exit(0)
		case "fake-agent":
			os.Exit(fakeAgent(os.Args[2:]))
		}
	}
	os.Exit(runTests(m))
}

// probeBin is the static testdata/probe program, built once by runTests.
var probeBin string

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "probe-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		probeBin = filepath.Join(dir, "probe")
		cmd := exec.Command(goTool(), "build", "-o", probeBin, "./testdata/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build probe: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(goruntime.GOROOT(), "bin", "go")
}

func TestRunProcess(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("c1", "print", "stderr", "to-stderr", "write", "/work/out", "data", "exit", "3")
	spec.Env = append(spec.Env, "GREETING=hello world")
	spec.Cwd = "/work"
	spec.User = runtime.User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{10, 20}}
	spec.Mounts = append(spec.Mounts, runtime.Mount{Source: filepath.Join(e.dir, "work"), Destination: "/work"})
	must(t, os.Mkdir(filepath.Join(e.dir, "work"), 0o777))
	must(t, os.Chmod(filepath.Join(e.dir, "work"), 0o777))
	e.run(spec)

	st := waitExited(t, e.rt, "c1")
	if st.ExitCode != 3 || st.Reason != runtime.ReasonError {
		t.Errorf("exit = %d %q, want 3 %q", st.ExitCode, st.Reason, runtime.ReasonError)
	}
	if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("startedAt %v, finishedAt %v", st.StartedAt, st.FinishedAt)
	}
	if st.LogPath != spec.LogPath {
		t.Errorf("log path = %q, want %q", st.LogPath, spec.LogPath)
	}

	recs := readLog(t, spec.LogPath)
	stdout := logTexts(recs, "stdout")
	for _, want := range []string{
		`args=["/bin/probe" "print" "stderr" "to-stderr" "write" "/work/out" "data" "exit" "3"]`,
		"env=PATH=/bin",
		"env=GREETING=hello world",
		"cwd=/work",
		"hostname=probe-host",
		"uid=1000 gid=1000 groups=[10 20]",
	} {
		if !slices.Contains(stdout, want) {
			t.Errorf("stdout lacks %q; got %q", want, stdout)
		}
	}
	if got := logTexts(recs, "stderr"); len(got) != 1 || got[0] != "to-stderr" {
		t.Errorf("stderr = %q, want [to-stderr]", got)
	}
	for _, r := range recs {
		if r.Tag != "F" || r.Time.Before(st.StartedAt.Add(-time.Second)) {
			t.Errorf("record %+v: want a full line stamped after the start", r)
		}
	}
	data, err := os.ReadFile(filepath.Join(e.dir, "work", "out"))
	if err != nil || string(data) != "data" {
		t.Errorf("file written in the container: %q, %v", data, err)
	}
	var stat syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.dir, "work", "out"), &stat); err != nil || stat.Uid != 1000 || stat.Gid != 1000 {
		t.Errorf("file written in the container is owned by %d:%d (%v), want 1000:1000", stat.Uid, stat.Gid, err)
	}

	t.Run("exit 0 is Completed", func(t *testing.T) {
		e.run(e.spec("c2", "echo", "done"))
		st := waitExited(t, e.rt, "c2")
		if st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted {
			t.Errorf("exit = %d %q, want 0 %q", st.ExitCode, st.Reason, runtime.ReasonCompleted)
		}
	})
}

func TestStartFailure(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	spec := e.spec("bad")
	spec.Args = []string{"/bin/no-such-program"}
	must(t, e.rt.Create(ctx, spec))
	err := e.rt.Start(ctx, "bad")
	if !errors.Is(err, runtime.ErrStartFailed) || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("start = %v, want ErrStartFailed naming the program", err)
	}
	st, err := e.rt.State(ctx, "bad")
	if err != nil || st.Status != runtime.Exited || st.Reason != runtime.ReasonStartError || st.ExitCode != 128 || st.Message == "" {
		t.Errorf("state = %+v, %v; want Exited 128 StartError with a message", st, err)
	}
}

func TestAPIErrors(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	spec := e.spec("c1", "sleep", "1h")
	must(t, e.rt.Create(ctx, spec))
	if st, err := e.rt.State(ctx, "c1"); err != nil || st.Status != runtime.Created {
		t.Errorf("state after create = %+v, %v; want Created", st, err)
	}
	if err := e.rt.Create(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("second create = %v, want ErrExists", err)
	}
	if _, err := e.rt.Exec(ctx, "c1", runtime.ExecOptions{Args: []string{"/bin/probe"}}); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("exec before start = %v, want ErrNotRunning", err)
	}
	must(t, e.rt.Start(ctx, "c1"))
	if err := e.rt.Start(ctx, "c1"); !errors.Is(err, runtime.ErrAlreadyStarted) {
		t.Errorf("second start = %v, want ErrAlreadyStarted", err)
	}
	for _, id := range []string{"nope", "../etc", ""} {
		if _, err := e.rt.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("state %q = %v, want ErrNotFound", id, err)
		}
		if err := e.rt.Start(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("start %q = %v, want ErrNotFound", id, err)
		}
	}
	if err := e.rt.Stop(ctx, "nope", time.Second); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("stop of a missing container = %v, want ErrNotFound", err)
	}
	bad := e.spec("c2", "echo")
	bad.CgroupParent = "elsewhere/pod1"
	if err := e.rt.Create(ctx, bad); !errors.Is(err, runtime.ErrInvalidSpec) {
		t.Errorf("create outside the cgroup root = %v, want ErrInvalidSpec", err)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("oom", "oom", "100")
	spec.Resources.MemoryLimit = 32 << 20
	e.run(spec)
	st := waitExited(t, e.rt, "oom")
	if st.ExitCode != 137 || st.Reason != runtime.ReasonOOMKilled {
		t.Errorf("exit = %d %q, want 137 %q", st.ExitCode, st.Reason, runtime.ReasonOOMKilled)
	}
	if recs := readLog(t, spec.LogPath); slices.Contains(logTexts(recs, "stdout"), "allocated 100 MiB") {
		t.Error("the probe allocated 100 MiB under a 32 MiB limit")
	}
}

func TestCgroupLimits(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("limits", "ready", "sleep", "1h")
	spec.Resources = runtime.Resources{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 512}
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")

	want := map[string]string{ // cgroup v1
		"cpu/cpu.cfs_quota_us":               "50000",
		"cpu/cpu.cfs_period_us":              "100000",
		"cpu/cpu.shares":                     "512",
		"memory/memory.limit_in_bytes":       strconv.Itoa(64 << 20),
		"memory/memory.memsw.limit_in_bytes": strconv.Itoa(64 << 20),
	}
	if cgroup2() {
		want = map[string]string{
			"cpu.max":         "50000 100000",
			"cpu.weight":      "20", // 512 shares
			"memory.max":      strconv.Itoa(64 << 20),
			"memory.swap.max": "0",
		}
	}
	for file, value := range want {
		path := filepath.Join("/sys/fs/cgroup", strings.Replace(file, "/", "/"+spec.CgroupParent+"/limits/", 1))
		if cgroup2() {
			path = filepath.Join("/sys/fs/cgroup", spec.CgroupParent, "limits", file)
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && strings.Contains(file, "memsw") {
			continue // no swap accounting
		}
		if got := strings.TrimSpace(string(data)); err != nil || got != value {
			t.Errorf("%s = %q (%v), want %q", path, got, err, value)
		}
	}

	stats, err := e.rt.Stats(testContext(t), "limits")
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pids < 1 || stats.MemoryUsageBytes == 0 || stats.MemoryWorkingSetBytes > stats.MemoryUsageBytes {
		t.Errorf("stats = %+v", stats)
	}
}

func TestStopGraceful(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("term", "trap-term", "0", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	ctx := testContext(t)
	if err := e.rt.Stop(ctx, "term", time.Minute); err != nil {
		t.Fatal(err)
	}
	// Stop returns when the exit is recorded: no waiting here.
	st, err := e.rt.State(ctx, "term")
	if err != nil || st.Status != runtime.Exited || st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted {
		t.Errorf("state = %+v, %v; want Exited 0 Completed", st, err)
	}
	waitForLog(t, spec.LogPath, "got SIGTERM")
	if err := e.rt.Stop(ctx, "term", time.Minute); err != nil {
		t.Errorf("stop of an exited container = %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("stubborn", "ignore-term", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	ctx := testContext(t)
	if err := e.rt.Stop(ctx, "stubborn", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st, err := e.rt.State(ctx, "stubborn")
	if err != nil || st.Status != runtime.Exited || st.ExitCode != 137 || st.Reason != runtime.ReasonError {
		t.Errorf("state = %+v, %v; want Exited 137 Error", st, err)
	}
}

func TestExec(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("target", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	ctx := testContext(t)

	var stdout, stderr bytes.Buffer
	code, err := e.rt.Exec(ctx, "target", runtime.ExecOptions{
		Args:   []string{"/bin/probe", "cat", "/etc/hostname", "print", "stderr", "oops", "exit", "3"},
		Stdout: &stdout,
		Stderr: &stderr,
	})
	if err != nil || code != 3 {
		t.Fatalf("exec = %d, %v; want 3", code, err)
	}
	out := stdout.String()
	for _, want := range []string{"probe-host\n", "hostname=probe-host\n", "cwd=/\n", "env=PATH=/bin\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec stdout lacks %q:\n%s", want, out)
		}
	}
	if stderr.String() != "oops\n" {
		t.Errorf("exec stderr = %q, want oops", stderr.String())
	}

	t.Run("stdin", func(t *testing.T) {
		var stdout bytes.Buffer
		code, err := e.rt.Exec(ctx, "target", runtime.ExecOptions{
			Args:   []string{"/bin/probe", "cat", "/dev/stdin"},
			Stdin:  strings.NewReader("from stdin\n"),
			Stdout: &stdout,
		})
		if err != nil || code != 0 || stdout.String() != "from stdin\n" {
			t.Errorf("exec = %d, %v, %q; want 0 and the input", code, err, stdout.String())
		}
	})
	t.Run("tty", func(t *testing.T) {
		var stdout bytes.Buffer
		code, err := e.rt.Exec(ctx, "target", runtime.ExecOptions{
			Args:   []string{"/bin/probe", "tty", "exit", "4"},
			TTY:    true,
			Stdout: &stdout,
		})
		if err != nil || code != 4 || !strings.Contains(stdout.String(), "tty: true") {
			t.Errorf("exec = %d, %v, %q; want 4 and a terminal", code, err, stdout.String())
		}
	})
	t.Run("cancel kills", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := e.rt.Exec(ctx, "target", runtime.ExecOptions{Args: []string{"/bin/probe", "sleep", "1h"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("exec = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("not running", func(t *testing.T) {
		must(t, e.rt.Stop(ctx, "target", 0))
		_, err := e.rt.Exec(ctx, "target", runtime.ExecOptions{Args: []string{"/bin/probe"}})
		if !errors.Is(err, runtime.ErrNotRunning) {
			t.Errorf("exec in an exited container = %v, want ErrNotRunning", err)
		}
	})
}

func TestNetns(t *testing.T) {
	e := newEnv(t)
	nsPath := newNetns(t)
	joined := e.spec("joined", "ready", "sleep", "1h")
	joined.NetnsPath = nsPath
	e.run(joined)
	own := e.spec("own", "ready", "sleep", "1h")
	e.run(own)
	waitForLog(t, joined.LogPath, "ready")
	waitForLog(t, own.LogPath, "ready")

	want := inode(t, nsPath)
	if got := inode(t, netnsOf(t, e.rt, "joined")); got != want {
		t.Errorf("container's netns inode %d, want the pod's %d", got, want)
	}
	ownNS := inode(t, netnsOf(t, e.rt, "own"))
	if ownNS == want || ownNS == inode(t, "/proc/self/ns/net") {
		t.Errorf("a container without NetnsPath shares a netns (%d)", ownNS)
	}
}

// The container sees the standard filesystems and the pod's files, read-only
// where they should be.
func TestStandardMounts(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("fs", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	ctx := testContext(t)
	exec := func(args ...string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		code, err := e.rt.Exec(ctx, "fs", runtime.ExecOptions{Args: append([]string{"/bin/probe"}, args...), Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q: %v", args, err)
		}
		return code, out.String()
	}

	_, mounts := exec("cat", "/proc/self/mounts")
	type mount struct{ dir, fstype, opt string }
	wantMounts := []mount{
		{"/proc", "proc", "rw"},
		{"/dev", "tmpfs", "rw"},
		{"/dev/pts", "devpts", "rw"},
		{"/dev/shm", "tmpfs", "rw"},
		{"/dev/mqueue", "mqueue", "rw"},
		{"/sys", "sysfs", "ro"},
		{"/sys/fs/cgroup", "", "ro"},
		{"/etc/hostname", "", "ro"},
		{"/etc/hosts", "", "ro"},
		{"/etc/resolv.conf", "", "ro"},
	}
	if !cgroup2() {
		wantMounts = append(wantMounts, mount{"/sys/fs/cgroup/memory", "cgroup", "ro"})
	}
	for _, want := range wantMounts {
		var opts string // of the last mount on dir, the one on top
		for line := range strings.Lines(mounts) {
			f := strings.Fields(line)
			if len(f) >= 4 && f[1] == want.dir && (want.fstype == "" || f[2] == want.fstype) {
				opts = f[3]
			}
		}
		if !slices.Contains(strings.Split(opts, ","), want.opt) {
			t.Errorf("%s %s is mounted with %q, want %s; mounts:\n%s", want.fstype, want.dir, opts, want.opt, mounts)
		}
	}

	_, dev := exec("ls", "/dev")
	for _, want := range []string{"null Dcrw-rw-rw-", "zero Dcrw-rw-rw-", "full Dcrw-rw-rw-", "random Dcrw-rw-rw-", "urandom Dcrw-rw-rw-", "tty Dcrw-rw-rw-", "pts d", "shm d", "ptmx L"} {
		if !strings.Contains(dev, "\n"+want) && !strings.HasPrefix(dev, want) {
			t.Errorf("/dev lacks %q:\n%s", want, dev)
		}
	}
	if code, out := exec("write", "/dev/null", "x", "cat", "/etc/resolv.conf"); code != 0 || out != "nameserver 10.96.0.10\n" {
		t.Errorf("write /dev/null and read resolv.conf: %d %q", code, out)
	}
	for _, path := range []string{"/etc/hostname", "/sys/kernel/x", "/proc/sys/kernel/hostname"} {
		if code, out := exec("write", path, "x"); code == 0 || !strings.Contains(out, "read-only file system") {
			t.Errorf("write %s = %d %q, want a read-only file system", path, code, out)
		}
	}
}

// An agent that restarts finds its containers through a new runtime value.
func TestAgentRestart(t *testing.T) {
	e := newEnv(t)
	spec := e.spec("survivor", "trap-term", "0", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	ctx := testContext(t)
	before, err := e.rt.State(ctx, "survivor")
	if err != nil {
		t.Fatal(err)
	}

	rt := e.newRuntime()
	states, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].ID != "survivor" || states[0].Status != runtime.Running || states[0].Pid != before.Pid {
		t.Fatalf("list = %+v, want survivor running as pid %d", states, before.Pid)
	}
	var out bytes.Buffer
	if code, err := rt.Exec(ctx, "survivor", runtime.ExecOptions{Args: []string{"/bin/probe", "echo", "hi"}, Stdout: &out}); err != nil || code != 0 || out.String() != "hi\n" {
		t.Errorf("exec from the new runtime = %d, %v, %q", code, err, out.String())
	}
	must(t, rt.Stop(ctx, "survivor", time.Minute))
	st, err := rt.State(ctx, "survivor")
	if err != nil || st.Status != runtime.Exited || st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted {
		t.Errorf("state = %+v, %v; want Exited 0 Completed", st, err)
	}
}

// The agent dies by SIGKILL: its containers run on, one exits while no agent
// runs, and the next agent learns every exit code.
func TestAgentKilled(t *testing.T) {
	e := newEnv(t)
	long := e.spec("long", "trap-term", "0", "ready", "sleep", "1h")
	short := e.spec("short", "sleep", "500ms", "exit", "7")
	var files []string
	for _, spec := range []runtime.ContainerSpec{long, short} {
		data, err := json.Marshal(spec)
		must(t, err)
		file := filepath.Join(e.dir, spec.ID+".json")
		must(t, os.WriteFile(file, data, 0o600))
		files = append(files, file)
	}
	self, err := os.Executable()
	must(t, err)
	agent := exec.Command(self, append([]string{"fake-agent", e.cfg.Root, e.cfg.CgroupRoot}, files...)...)
	stdout, err := agent.StdoutPipe()
	must(t, err)
	agent.Stderr = t.Output()
	must(t, agent.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "started\n" {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		t.Fatalf("fake agent said %q, %v", line, err)
	}
	must(t, agent.Process.Kill())

	// Nothing the agent started holds its stdout: EOF arrives with its death.
	eof := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, stdout)
		eof <- err
	}()
	select {
	case err := <-eof:
		if err != nil {
			t.Errorf("read the dead agent's stdout: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dead agent's stdout is still open: a shim or container holds it")
	}
	_ = agent.Wait()

	rt := e.newRuntime()
	ctx := testContext(t)
	st := waitExited(t, rt, "short")
	if st.ExitCode != 7 || st.Reason != runtime.ReasonError {
		t.Errorf("short exited %d %q while the agent was away, want 7 %q", st.ExitCode, st.Reason, runtime.ReasonError)
	}
	waitForLog(t, long.LogPath, "ready")
	st, err = rt.State(ctx, "long")
	if err != nil || st.Status != runtime.Running || !processExists(st.Pid) {
		t.Fatalf("long = %+v, %v; want running", st, err)
	}
	pid := st.Pid
	must(t, rt.Stop(ctx, "long", time.Minute))
	st, err = rt.State(ctx, "long")
	if err != nil || st.Status != runtime.Exited || st.ExitCode != 0 {
		t.Errorf("long after stop = %+v, %v; want Exited 0", st, err)
	}
	for _, id := range []string{"long", "short"} {
		must(t, rt.Remove(ctx, id))
	}
	if processExists(pid) {
		t.Errorf("process %d still exists", pid)
	}
	assertNoCgroups(t, e.cgroupRoot)
}

// A shim killed by SIGKILL loses its container's exit code, but the runtime
// still stops the orphaned process and cleans up.
func TestShimKilled(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	spec := e.spec("orphan", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	must(t, e.rt.Create(ctx, e.spec("unborn", "echo")))
	before, err := e.rt.State(ctx, "orphan")
	must(t, err)
	for _, id := range []string{"orphan", "unborn"} {
		killShim(t, e.cfg.Root, id)
	}

	st, err := e.rt.State(ctx, "orphan")
	if err != nil || st.Status != runtime.Running || st.Pid != before.Pid {
		t.Errorf("orphan = %+v, %v; want still running as %d", st, err, before.Pid)
	}
	if st, err := e.rt.State(ctx, "unborn"); err != nil || st.Status != runtime.Unknown {
		t.Errorf("unborn = %+v, %v; want Unknown", st, err)
	}
	if err := e.rt.Start(ctx, "unborn"); !errors.Is(err, runtime.ErrShimGone) {
		t.Errorf("start without a shim = %v, want ErrShimGone", err)
	}
	must(t, e.rt.Stop(ctx, "orphan", 100*time.Millisecond))
	st, err = e.rt.State(ctx, "orphan")
	if err != nil || st.Status != runtime.Exited || st.ExitCode != 255 || st.Reason != runtime.ReasonUnknown {
		t.Errorf("orphan after stop = %+v, %v; want Exited 255 %s", st, err, runtime.ReasonUnknown)
	}
	for _, id := range []string{"orphan", "unborn"} {
		must(t, e.rt.Remove(ctx, id))
	}
	if processExists(before.Pid) {
		t.Errorf("process %d still exists", before.Pid)
	}
	assertNoCgroups(t, e.cgroupRoot)
}

func TestRemove(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	spec := e.spec("doomed", "ready", "sleep", "1h")
	e.run(spec)
	waitForLog(t, spec.LogPath, "ready")
	created := e.spec("unstarted", "echo")
	must(t, e.rt.Create(ctx, created))
	st, err := e.rt.State(ctx, "doomed")
	must(t, err)
	if len(cgroupDirs(spec.CgroupParent+"/doomed")) == 0 {
		t.Fatal("the running container has no cgroup directories")
	}

	// Remove kills a running container, as CRI's RemoveContainer does.
	for _, id := range []string{"doomed", "unstarted"} {
		must(t, e.rt.Remove(ctx, id))
		if _, err := e.rt.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("state of removed %s = %v, want ErrNotFound", id, err)
		}
		if _, err := os.Stat(filepath.Join(e.cfg.Root, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state of %s left behind: %v", id, err)
		}
		if err := e.rt.Remove(ctx, id); err != nil {
			t.Errorf("second remove of %s = %v", id, err)
		}
	}
	if processExists(st.Pid) {
		t.Errorf("process %d still exists", st.Pid)
	}
	assertNoCgroups(t, e.cgroupRoot)
	if states, err := e.rt.List(ctx); err != nil || len(states) != 0 {
		t.Errorf("list = %+v, %v; want none", states, err)
	}
	if _, err := os.Stat(spec.LogPath); err != nil {
		t.Errorf("the log must outlive the container (the agent owns it): %v", err)
	}
}

func TestLogRotation(t *testing.T) {
	e := newEnv(t)
	const maxBytes = 4096
	spec := e.spec("chatty", "spam", "200", "100")
	spec.LogMaxBytes = maxBytes
	e.run(spec)
	waitExited(t, e.rt, "chatty")

	var all []string
	for _, path := range []string{spec.LogPath + ".1", spec.LogPath} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes || fi.Size() < maxBytes/2 {
			t.Errorf("%s has %d bytes, want at most %d and not much less", path, fi.Size(), maxBytes)
		}
		all = append(all, logTexts(readLog(t, path), "stdout")...)
	}
	if _, err := os.Stat(spec.LogPath + ".2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a third log file exists: %v", err)
	}
	if len(all) == 0 || len(all) >= 200 {
		t.Fatalf("the two files hold %d lines, want the last few of 200", len(all))
	}
	// The files hold the newest lines, in order, ending with the last one.
	first, _ := strconv.Atoi(strings.Fields(all[0])[1])
	for i, text := range all {
		if want := fmt.Sprintf("line %d ", first+i); !strings.HasPrefix(text, want) {
			t.Fatalf("line %d of the kept log is %q, want %q...", i, text, want)
		}
	}
	if !strings.HasPrefix(all[len(all)-1], "line 199 ") {
		t.Errorf("last line = %q, want line 199", all[len(all)-1])
	}
}

package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/rafter-dev/rafter/internal/agent/runtime"
)

// fakeAgent is a node agent in a separate process, so that a test can kill
// it with SIGKILL: `fake-agent ROOT CGROUPROOT SPECFILE...` creates and
// starts the containers, prints "started" and waits to be killed.
func fakeAgent(args []string) int {
	cfg := runtime.DefaultConfig()
	cfg.Root, cfg.CgroupRoot = args[0], args[1]
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	rt, err := runtime.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	for _, file := range args[2:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var spec runtime.ContainerSpec
		if err := json.Unmarshal(data, &spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := rt.Create(ctx, spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := rt.Start(ctx, spec.ID); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("started")
	select {}
}

// env is one test's runtime: its own Root, cgroup root and scratch space.
type env struct {
	t          *testing.T
	cfg        runtime.Config
	rt         *runtime.Libcontainer
	dir        string // rootfs copies, pod files, logs
	cgroupRoot string
	pod        string // the CgroupParent of the test's containers
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, mounts)")
	}
	// Root is short: the shim's socket path must fit in 108 bytes.
	root, err := os.MkdirTemp("", "rt-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), cgroupRoot: "rafter-test-" + randHex(t, 4)}
	e.pod = e.cgroupRoot + "/pod1"
	e.cfg = runtime.DefaultConfig()
	e.cfg.Root, e.cfg.CgroupRoot = root, e.cgroupRoot
	e.cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.rt = e.newRuntime()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The runtime of the agent that comes after, as it were.
		rt, err := runtime.New(e.cfg)
		if err != nil {
			t.Error(err)
			return
		}
		states, err := rt.List(ctx)
		if err != nil {
			t.Error(err)
		}
		if t.Failed() || testing.Verbose() {
			logs, _ := filepath.Glob(filepath.Join(root, "*", "shim.log"))
			for _, log := range logs {
				data, _ := os.ReadFile(log)
				t.Logf("%s:\n%s", log, data)
			}
		}
		for _, st := range states {
			if err := rt.Remove(ctx, st.ID); err != nil {
				t.Errorf("remove %s: %v", st.ID, err)
			}
		}
		for _, dir := range cgroupDirs(e.cgroupRoot) {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove cgroup root: %v", err)
			}
		}
		if err := os.RemoveAll(root); err != nil {
			t.Error(err)
		}
	})
	return e
}

// newRuntime is what a (re)started agent does: a new value on the same Root.
func (e *env) newRuntime() *runtime.Libcontainer {
	e.t.Helper()
	rt, err := runtime.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return rt
}

// spec describes a container running the probe with args, in a rootfs of
// its own: /bin/probe plus empty /proc /dev /sys /etc /tmp, and the pod's
// /etc/hostname, /etc/hosts and /etc/resolv.conf bind-mounted read-only.
func (e *env) spec(id string, args ...string) runtime.ContainerSpec {
	e.t.Helper()
	rootfs := filepath.Join(e.dir, "rootfs-"+id)
	for _, d := range []string{"bin", "proc", "dev", "sys", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	must(e.t, os.Chmod(rootfs, 0o755))
	must(e.t, os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777))
	copyFile(e.t, probeBin, filepath.Join(rootfs, "bin", "probe"))
	podDir := filepath.Join(e.dir, "pod")
	must(e.t, os.MkdirAll(podDir, 0o755))
	files := map[string]string{
		"hostname":    "probe-host\n",
		"hosts":       "127.0.0.1 localhost\n",
		"resolv.conf": "nameserver 10.96.0.10\n",
	}
	var mounts []runtime.Mount
	for name, content := range files {
		path := filepath.Join(podDir, name)
		must(e.t, os.WriteFile(path, []byte(content), 0o644))
		mounts = append(mounts, runtime.Mount{Source: path, Destination: "/etc/" + name, ReadOnly: true})
	}
	return runtime.ContainerSpec{
		ID:           id,
		Rootfs:       rootfs,
		Args:         append([]string{"/bin/probe"}, args...),
		Env:          []string{"PATH=/bin", "HOME=/"},
		Hostname:     "probe-host",
		Mounts:       mounts,
		CgroupParent: e.pod,
		LogPath:      filepath.Join(e.dir, "logs", id+".log"),
	}
}

// run creates and starts spec's container.
func (e *env) run(spec runtime.ContainerSpec) {
	e.t.Helper()
	ctx := testContext(e.t)
	if err := e.rt.Create(ctx, spec); err != nil {
		e.t.Fatalf("create: %v", err)
	}
	if err := e.rt.Start(ctx, spec.ID); err != nil {
		e.t.Fatalf("start: %v", err)
	}
}

// waitExited polls the container's state until it has exited.
func waitExited(t *testing.T, rt *runtime.Libcontainer, id string) runtime.State {
	t.Helper()
	var st runtime.State
	poll(t, func() bool {
		var err error
		st, err = rt.State(testContext(t), id)
		if err != nil {
			t.Fatalf("state: %v", err)
		}
		return st.Status == runtime.Exited
	}, "container %s to exit", id)
	return st
}

func poll(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// logRecord is one line of a CRI log file.
type logRecord struct {
	Time   time.Time
	Stream string
	Tag    string
	Text   string
}

var criLine = regexp.MustCompile(`^(\S+) (stdout|stderr) (P|F) (.*)$`)

// readLog parses a CRI log file, failing the test on any malformed line.
func readLog(t *testing.T, path string) []logRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []logRecord
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		m := criLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a CRI log line: %q", path, line)
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil || !strings.HasSuffix(m[1], "Z") {
			t.Fatalf("%s: bad timestamp in %q: %v", path, line, err)
		}
		recs = append(recs, logRecord{Time: ts, Stream: m[2], Tag: m[3], Text: m[4]})
	}
	return recs
}

func logTexts(recs []logRecord, stream string) []string {
	var texts []string
	for _, r := range recs {
		if r.Stream == stream {
			texts = append(texts, r.Text)
		}
	}
	return texts
}

// waitForLog waits until the container has logged text on stdout.
func waitForLog(t *testing.T, path, text string) {
	t.Helper()
	poll(t, func() bool {
		data, _ := os.ReadFile(path)
		return bytes.Contains(data, []byte(" stdout F "+text+"\n"))
	}, "%q in %s", text, path)
}

func netnsOf(t *testing.T, rt *runtime.Libcontainer, id string) string {
	st, err := rt.State(testContext(t), id)
	if err != nil || st.Status != runtime.Running || st.Pid <= 0 {
		t.Fatalf("state %s = %+v, %v", id, st, err)
	}
	return fmt.Sprintf("/proc/%d/ns/net", st.Pid)
}

// newNetns creates a named network namespace, as internal/cni does for a pod.
func newNetns(t *testing.T) string {
	name := "rafter-rt-" + randHex(t, 4)
	errc := make(chan error, 1)
	go func() {
		// The thread changes namespace: it is never unlocked, so it exits
		// with this goroutine.
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- err
			return
		}
		ns.Close()
		errc <- netns.Set(orig)
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Error(err)
		}
	})
	return "/var/run/netns/" + name
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func killShim(t *testing.T, root, id string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, id, "shim.json"))
	must(t, err)
	var shim struct{ Pid int }
	must(t, json.Unmarshal(data, &shim))
	must(t, syscall.Kill(shim.Pid, syscall.SIGKILL))
	poll(t, func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", shim.Pid))
		return err != nil || bytes.Contains(stat, []byte(") Z "))
	}, "shim %d to die", shim.Pid)
}

// cgroupDirs lists the directories of a cgroup (relative to the hierarchy
// roots) that exist in any hierarchy.
func cgroupDirs(cgroup string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		dir := filepath.Join(root, cgroup)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// assertNoCgroups checks that nothing is left below the cgroup root in any
// hierarchy (memory, cpu, pids, devices, freezer, systemd, unified...).
func assertNoCgroups(t *testing.T, cgroupRoot string) {
	t.Helper()
	for _, dir := range cgroupDirs(cgroupRoot) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("cgroup %s left behind", filepath.Join(dir, e.Name()))
			}
		}
	}
}

func cgroup2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// processExists reports whether pid runs: a zombie waiting for its new
// parent (init, after its shim died) to reap it does not count.
func processExists(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !bytes.Contains(stat, []byte(") Z "))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, data, 0o755))
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

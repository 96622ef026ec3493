package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rafter-dev/rafter/internal/cni/cnitest"
	"github.com/rafter-dev/rafter/internal/testimage"
)

// runParent builds what the bench needs, then runs the bench in a new network
// namespace and waits for it.
func runParent(c config) error {
	for _, p := range []*string{&c.controlplane, &c.nodeagent} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("binary: %w (make bench-pods builds it)", err)
		}
		*p = abs
	}
	repo, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "rafter-bench-pods-")
	if err != nil {
		return err
	}
	defer removeWorkDir(work)
	fmt.Fprintln(os.Stderr, "bench-pods: building podapp, the CNI plugins; checking runc")
	podapp, err := testimage.BuildPodapp(repo, work)
	if err != nil {
		return err
	}
	cniDir, err := cnitest.Build()
	if err != nil {
		return fmt.Errorf("CNI plugins: %w", err)
	}
	runc, err := ensureRunc()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append(os.Args[1:], "--in-netns", "--work-dir="+work, "--podapp="+podapp, "--cni-dir="+cniDir, "--runc="+runc,
		"--controlplane="+c.controlplane, "--nodeagent="+c.nodeagent)
	if c.logDir != "" {
		args = append(args, "--log-dir="+c.logDir)
	}
	if c.perf != "" {
		args = append(args, "--perf="+c.perf)
	}
	if c.times != "" {
		args = append(args, "--times="+c.times)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	// The child cleans up on SIGINT/SIGTERM (a terminal sends SIGINT to both);
	// this process waits for it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the bench in a new network namespace: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			if left := sweep(work, runc); len(left) > 0 {
				err = errors.Join(err, fmt.Errorf("the bench left these behind (now removed): %s", strings.Join(left, "; ")))
			}
			if err != nil {
				return fmt.Errorf("bench (in its network namespace): %w", err)
			}
			return nil
		}
	}
}

// sweep is the last resort when the second process died without cleaning
// up (a crash, SIGKILL): the node's containers outlive it by design. The
// pods' UIDs are the names of the node's pod directories (written before
// their network is set up) and the prefixes of the runtime root's container
// directories ("<uid>_<container>_<restart>"). It returns what it found.
func sweep(work, runc string) []string {
	entries, _ := os.ReadDir(nodeRuntimeRoot())
	podDirs, _ := os.ReadDir(filepath.Join(work, "node", "pods"))
	seen := map[string]bool{}
	var uids []string
	for _, e := range append(entries, podDirs...) {
		if uid, _, _ := strings.Cut(e.Name(), "_"); !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	left := leftovers(uids, work)
	if len(entries) > 0 {
		left = append(left, fmt.Sprintf("%d containers in %s", len(entries), nodeRuntimeRoot()))
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + runcCgroupParent); len(dirs) > 0 {
		left = append(left, "runc containers' cgroups "+strings.Join(dirs, ", "))
	}
	if len(left) == 0 {
		return nil
	}
	forceCleanup(uids, work)
	if err := cleanupRunc(runc, filepath.Join(runtimeParent, "runc"), filepath.Join(work, "runc")); err != nil {
		left = append(left, err.Error())
	}
	_ = os.Remove(runtimeParent)
	return left
}

// removeWorkDir removes the scratch directory unless something is still
// mounted below it (a container's root filesystem the bench failed to
// release): removing files through a live mount would reach into it.
func removeWorkDir(dir string) {
	if m := mountsUnder(dir); len(m) > 0 {
		fmt.Fprintf(os.Stderr, "bench-pods: %s kept: still mounted: %s\n", dir, strings.Join(m, ", "))
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pods: remove", dir+":", err)
	}
}

// repoRoot is the directory of the go.mod above the working directory
// (`make bench-pods` runs from the repository's root).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/rafter-dev/rafter\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the rafter repository (no go.mod of github.com/rafter-dev/rafter above the working directory)")
		}
		dir = parent
	}
}

// ensureRunc returns runc's path, installing Debian's runc package first when
// it is not on PATH.
func ensureRunc() (string, error) {
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	fmt.Fprintln(os.Stderr, "bench-pods: installing Debian's runc")
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "runc"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return exec.LookPath("runc")
}

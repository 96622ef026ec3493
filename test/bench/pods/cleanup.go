package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The checks that the bench left nothing behind, and the forced removal when
// it did. Pods are known by UID: the node names their cgroups rafter/pod<uid>
// (every hierarchy) and their network namespaces /var/run/netns/<uid>.

const netnsDir = "/var/run/netns"

// processes lists the processes in the cgroup of one of the pods, and the
// shims of the bench's node.
func processes(uids []string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
			for _, uid := range uids {
				if strings.Contains(string(cg), "/pod"+uid+"/") {
					out = append(out, fmt.Sprintf("%d (pod %s)", pid, uid))
					break
				}
			}
		}
		if isShim(pid) {
			out = append(out, fmt.Sprintf("%d (shim)", pid))
		}
	}
	return out
}

// isShim tells whether pid is a container shim of the bench's node
// ("nodeagent shim --root <runtime root> ...").
func isShim(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 3 && args[1] == "shim" && args[2] == "--root" && args[3] == nodeRuntimeRoot()
}

// podCgroups lists the cgroup directories of the pods, in every hierarchy.
func podCgroups(uids []string) []string {
	var out []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/rafter")
	if fi, err := os.Stat("/sys/fs/cgroup/rafter"); err == nil && fi.IsDir() { // cgroup v2 only
		roots = append(roots, "/sys/fs/cgroup/rafter")
	}
	for _, root := range roots {
		for _, uid := range uids {
			if _, err := os.Stat(filepath.Join(root, "pod"+uid)); err == nil {
				out = append(out, filepath.Join(root, "pod"+uid))
			}
		}
	}
	return out
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// leftovers lists what the pods left: processes, shims, network namespaces,
// cgroups, mounts below the work dir or the runtime root.
func leftovers(uids []string, workDir string) []string {
	var left []string
	if p := processes(uids); len(p) > 0 {
		left = append(left, "processes "+strings.Join(p, ", "))
	}
	for _, uid := range uids {
		if _, err := os.Lstat(filepath.Join(netnsDir, uid)); err == nil {
			left = append(left, "netns "+uid)
		}
	}
	if cg := podCgroups(uids); len(cg) > 0 {
		left = append(left, "cgroups "+strings.Join(cg, ", "))
	}
	for _, d := range []string{workDir, runtimeParent} {
		if m := mountsUnder(d); len(m) > 0 {
			left = append(left, "mounts "+strings.Join(m, ", "))
		}
	}
	return left
}

// forceCleanup kills the pods' processes and shims, and removes their mounts,
// network namespaces and cgroups. It is the bench's last resort, used only
// after the node failed to clean up.
func forceCleanup(uids []string, workDir string) {
	for range 50 {
		procs := processes(uids)
		if len(procs) == 0 {
			break
		}
		for _, p := range procs {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range []string{workDir, runtimeParent} {
		for _, m := range mountsUnder(d) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	for _, uid := range uids {
		p := filepath.Join(netnsDir, uid)
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
	}
	for _, cg := range podCgroups(uids) {
		removeCgroup(cg)
	}
	_ = os.RemoveAll(nodeRuntimeRoot())
}

// removeCgroup removes a cgroup directory and the cgroups below it, deepest
// first (cgroupfs directories are removed with rmdir, never their files).
func removeCgroup(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

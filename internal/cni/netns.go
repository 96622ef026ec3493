package cni

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// NewNetns makes a persistent network namespace bind-mounted at
// Config.NetnsDir/name, as `ip netns add name` does (without iproute2's
// shared-propagation remount of the directory), and returns its path. The
// namespace holds only a down lo; Add brings lo up and adds eth0.
//
// It is idempotent: if a namespace is already mounted there, it returns the
// path. A file left there without a mount (a crash between create and mount)
// is reused. Calls for different names may run concurrently; calls for the
// same name, or NewNetns and DeleteNetns for one name, must not.
//
// The namespace is made on a goroutine locked to its OS thread (onThreadIn):
// the thread unshares its netns, the new netns is bind-mounted, and the
// thread returns to its own netns. No other goroutine's netns changes.
func (n *Network) NewNetns(name string) (string, error) {
	if err := validNetnsName(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(n.cfg.NetnsDir, 0o755); err != nil {
		return "", fmt.Errorf("new netns %s: %w", name, err)
	}
	path := filepath.Join(n.cfg.NetnsDir, name)
	mounted, err := isNetnsMount(path)
	if err != nil {
		return "", fmt.Errorf("new netns %s: %w", name, err)
	}
	if mounted {
		return path, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return "", fmt.Errorf("new netns %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("new netns %s: %w", name, err)
	}
	err = onThreadIn(unshareNetns, func() error {
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return "", errors.Join(fmt.Errorf("new netns %s: %w", name, err), removeIfNotMounted(path))
	}
	return path, nil
}

// DeleteNetns unmounts Config.NetnsDir/name and removes the file. The
// namespace itself lives on while a process or an open file holds it. It is
// idempotent: a missing name is not an error. See NewNetns for concurrency.
func (n *Network) DeleteNetns(name string) error {
	if err := validNetnsName(name); err != nil {
		return err
	}
	path := filepath.Join(n.cfg.NetnsDir, name)
	if err := unmountNetns(path); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// NetnsPath is where NewNetns mounts name. It does not check that it exists.
func (n *Network) NetnsPath(name string) string {
	return filepath.Join(n.cfg.NetnsDir, name)
}

func validNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || filepath.Base(name) != name {
		return fmt.Errorf("%w: netns name %q", ErrInvalidArgument, name)
	}
	return nil
}

// unmountNetns removes every nsfs mount stacked on path (a racing NewNetns
// could have stacked two).
func unmountNetns(path string) error {
	for range 8 {
		mounted, err := isNetnsMount(path)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", path)
}

func removeIfNotMounted(path string) error {
	mounted, err := isNetnsMount(path)
	if err != nil || mounted {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// isNetnsMount reports whether path is a namespace file (an nsfs bind mount
// or a /proc/<pid>/ns/net link). A missing path is (false, nil).
func isNetnsMount(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// inNetns runs fn on a goroutine locked to an OS thread that has joined the
// network namespace at path (onThreadIn); an empty path runs fn on the
// calling goroutine. Processes fn starts (os/exec forks from the calling
// thread) begin in that namespace, which is how plugins run in
// Config.HostNetns.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return onThreadIn(func() error { return setns(path) }, fn)
}

// onThreadIn runs fn on a new goroutine locked to its OS thread after enter
// moved that thread to another network namespace, then moves the thread back
// to the namespace it came from and unlocks it. If enter fails, fn does not
// run. A thread that cannot be moved back stays locked and goes with its
// goroutine.
//
// Moving back matters: when a goroutine locked to the process's main thread
// exits, Go does not end that thread but parks it for good, still in
// whatever namespace it was in. A pod's namespace left on it would outlive
// the pod (its veth and the kernel's netns with it) for as long as the
// process runs.
func onThreadIn(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer unix.Close(own)
		if err := enter(); err != nil {
			// enter may have half-happened (an unshare that then
			// failed does not move the thread; a failed setns
			// neither), but do not bet the thread on it.
			errc <- errors.Join(err, leaveNetns(own))
			return
		}
		ferr := fn()
		errc <- errors.Join(ferr, leaveNetns(own))
	}()
	return <-errc
}

// leaveNetns moves the calling locked thread to the netns open at fd and
// unlocks it; if it cannot, the thread stays locked so that Go discards it.
func leaveNetns(fd int) error {
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return to own netns: %w", err)
	}
	runtime.UnlockOSThread()
	return nil
}

func unshareNetns() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	return nil
}

func setns(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", path, err)
	}
	return nil
}

// withEmptyNetns runs fn with the path of a fresh, empty network namespace
// that exists only while fn runs: a thread that unshared its netns, named
// through /proc. Nothing is mounted, so nothing can leak.
func withEmptyNetns(fn func(path string) error) error {
	type ready struct {
		path string
		err  error
	}
	readyc := make(chan ready, 1)
	done := make(chan struct{})
	go func() {
		err := onThreadIn(unshareNetns, func() error {
			readyc <- ready{path: fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())}
			<-done
			return nil
		})
		if err != nil {
			select {
			case readyc <- ready{err: err}:
			default: // fn already ran; the error is only the way back
			}
		}
	}()
	r := <-readyc
	if r.err != nil {
		return r.err
	}
	defer close(done)
	return fn(r.path)
}

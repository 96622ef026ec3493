package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Exec runs a process in a running container from the calling process (not
// through the shim): libcontainer re-executes this binary as `init`, which
// joins the container's namespaces and cgroup, and the process ends up a
// child of the caller. It works for containers started by an earlier agent
// process as well. Cancelling ctx kills the process.
//
// Exec returns once the process has exited and its output is copied; output
// still held open by processes it left behind is cut off shortly after.
func (r *Libcontainer) Exec(ctx context.Context, id string, opts ExecOptions) (int, error) {
	if len(opts.Args) == 0 {
		return -1, fmt.Errorf("exec %s: %w: no command", id, ErrInvalidSpec)
	}
	rec, err := r.record(id)
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", id, err)
	}
	c, err := r.loadRunning(id)
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", id, err)
	}
	spec := &rec.Spec
	p := &libcontainer.Process{
		Args: opts.Args,
		Env:  opts.Env,
		Cwd:  opts.Cwd,
		UID:  int(spec.User.UID),
		GID:  int(spec.User.GID),
	}
	if p.Env == nil {
		p.Env = spec.Env
	}
	if p.Cwd == "" {
		p.Cwd = spec.Cwd
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	for _, g := range spec.User.AdditionalGIDs {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	var streams execIO
	if opts.TTY {
		err = streams.startTTY(c, p, opts)
	} else {
		err = streams.startPipes(c, p, opts)
	}
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", id, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.Signal(unix.SIGKILL) })
	ps, werr := p.Wait()
	stop()
	streams.finish()
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	ws, ok := processStatus(ps)
	if !ok {
		return -1, fmt.Errorf("exec %s: wait: %w", id, werr)
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// execIO connects an exec'd process to the caller's streams through pipes
// or a pseudo-terminal that this process owns, so that Exec never waits on
// the caller's stdin once the process has exited.
type execIO struct {
	copies  sync.WaitGroup // output copies
	closers []io.Closer    // our ends, closed once the process is done
}

// startPipes runs p with a pipe per stream.
func (e *execIO) startPipes(c *libcontainer.Container, p *libcontainer.Process, opts ExecOptions) error {
	var childEnds []*os.File
	closeChildEnds := func() {
		for _, f := range childEnds {
			f.Close()
		}
	}
	if opts.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		childEnds = append(childEnds, r)
		e.closers = append(e.closers, w)
		p.Stdin = r
		go func() {
			_, _ = io.Copy(w, opts.Stdin)
			w.Close()
		}()
	}
	for _, out := range []struct {
		dst io.Writer
		set func(*os.File)
	}{
		{opts.Stdout, func(f *os.File) { p.Stdout = f }},
		{opts.Stderr, func(f *os.File) { p.Stderr = f }},
	} {
		if out.dst == nil {
			continue // /dev/null
		}
		if p.Stdout != nil && sameWriter(opts.Stdout, out.dst) {
			// One pipe, so that one goroutine writes to it, as os/exec does.
			p.Stderr = p.Stdout
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			closeChildEnds()
			e.finish()
			return err
		}
		childEnds = append(childEnds, w)
		e.closers = append(e.closers, r)
		out.set(w)
		e.copies.Go(func() { _, _ = io.Copy(out.dst, r) })
	}
	err := c.Run(p)
	// The process holds its own copies now; ours would keep the output
	// copies from ever seeing EOF.
	closeChildEnds()
	if err != nil {
		e.finish()
		return err
	}
	return nil
}

// sameWriter reports whether a and b are the same comparable writer.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

// startTTY runs p on a new pseudo-terminal inside the container, whose
// master libcontainer's init sends back over a socket pair.
func (e *execIO) startTTY(c *libcontainer.Container, p *libcontainer.Process, opts ExecOptions) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "console-parent")
	child := os.NewFile(uintptr(fds[1]), "console-child")
	defer parent.Close()
	p.ConsoleSocket = child
	err = c.Run(p)
	child.Close()
	if err != nil {
		return err
	}
	master, err := recvFile(parent)
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		return fmt.Errorf("receive console: %w", err)
	}
	e.closers = append(e.closers, master)
	if opts.Stdin != nil {
		go func() { _, _ = io.Copy(master, opts.Stdin) }()
	}
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	// Reading the master fails with EIO once the terminal's last user
	// has gone: that is its end of file.
	e.copies.Go(func() { _, _ = io.Copy(out, master) })
	return nil
}

// finish waits briefly for the output copies and closes our ends.
func (e *execIO) finish() {
	waitGroupTimeout(&e.copies, drainTimeout)
	for _, c := range e.closers {
		c.Close()
	}
	e.copies.Wait()
}

// recvFile receives one file descriptor sent with SCM_RIGHTS.
func recvFile(socket *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	conn, err := socket.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		n, oobn int
		rerr    error
	)
	err = conn.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("got %d control messages, want 1", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("got %d file descriptors, want 1", len(fds))
	}
	// Non-blocking, so that closing it ends a read that waits.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

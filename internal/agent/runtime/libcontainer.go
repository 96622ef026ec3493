package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/rafter-dev/rafter/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Libcontainer is the Runtime on runc's libcontainer, one shim process per
// container. Its methods may be called concurrently for different containers
// and from several Libcontainer values (or agent processes, one after the
// other) on the same Root; calls for one container must be serialized by
// the caller.
type Libcontainer struct {
	root       string
	binary     string
	cgroupRoot string
	log        *slog.Logger
}

var (
	_ Runtime     = (*Libcontainer)(nil)
	_ Execer      = (*Libcontainer)(nil)
	_ StatsReader = (*Libcontainer)(nil)
)

// New returns a runtime on cfg.Root, creating the directory. Containers
// already under Root (from an agent that ran before) are found by List and
// can be managed like new ones.
func New(cfg Config) (*Libcontainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	binary, err := cfg.resolveBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("create runtime root: %w", err)
	}
	return &Libcontainer{
		root:       cfg.Root,
		binary:     binary,
		cgroupRoot: cfg.CgroupRoot,
		log:        cfg.Logger,
	}, nil
}

// shimStartTimeout bounds how long Create waits for a shim to listen when ctx
// has no deadline.
const shimStartTimeout = 30 * time.Second

// Create writes the spec to Root/<id>/spec.json and starts the container's
// shim, detached from the agent: in its own session, with its stdio on
// Root/<id>/shim.log, and no parent-death signal, so that it outlives the
// agent. It returns once the shim listens on its socket.
func (r *Libcontainer) Create(ctx context.Context, spec ContainerSpec) error {
	rec, err := newRecord(spec, r.cgroupRoot)
	if err != nil {
		return err
	}
	if n := len(socketPath(r.root, spec.ID)); n > maxSocketPath {
		return fmt.Errorf("%w: id %q is too long for root %q (socket path of %d bytes)", ErrInvalidSpec, spec.ID, r.root, n)
	}
	rec.CreatedAt = time.Now()
	dir := containerDir(r.root, spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", spec.ID, ErrExists)
		}
		return fmt.Errorf("create %s: %w", spec.ID, err)
	}
	if err := r.startShim(ctx, dir, rec); err != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			r.log.Warn("clean up after failed create", "container", spec.ID, "err", rerr)
		}
		return fmt.Errorf("create %s: %w", spec.ID, err)
	}
	r.log.Debug("created", "container", spec.ID)
	return nil
}

func (r *Libcontainer) startShim(ctx context.Context, dir string, rec containerRecord) error {
	if err := atomicfile.WriteJSON(filepath.Join(dir, specFile), rec); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, shimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open shim log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	cmd := exec.Command(r.binary, "shim", "--root", r.root, "--id", rec.Spec.ID, "--ready-fd", "3")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	// Reap the shim if it exits while this process still runs; after an
	// agent restart, init (or a subreaper) does.
	go func() { _ = cmd.Wait() }()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(shimStartTimeout)
	}
	_ = readyR.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = readyR.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(readyR).ReadString('\n')
	if line == "ok\n" {
		return nil
	}
	_ = cmd.Process.Kill()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case line != "":
		return fmt.Errorf("start shim: %s", strings.TrimSpace(line))
	default:
		return fmt.Errorf("start shim: no answer (see %s): %w", filepath.Join(dir, shimLogFile), err)
	}
}

// Start asks the shim to create the libcontainer container and run its
// process; it returns once the process runs. If it cannot, the error wraps
// ErrStartFailed and State reports Exited with ReasonStartError. If ctx ends
// first, the process may still start.
func (r *Libcontainer) Start(ctx context.Context, id string) error {
	if _, err := r.record(id); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if _, err := r.call(ctx, id, shimRequest{Op: opStart}); err != nil {
		if errors.Is(err, errNoShim) {
			err = ErrShimGone
		}
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// Stop signals the container's init with SIGTERM (or SIGKILL at once if
// grace is not positive), then SIGKILL after grace, and returns when the
// process has exited and the shim has recorded the exit. An init (PID 1 of
// its namespace) that installed no SIGTERM handler ignores SIGTERM, as in any
// container runtime. Stop of a container that is not running does nothing.
func (r *Libcontainer) Stop(ctx context.Context, id string, grace time.Duration) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != Running {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		_, err := r.call(wctx, id, shimRequest{Op: opWait})
		waited <- err
	}()
	sig := unix.SIGTERM
	if grace <= 0 {
		sig = unix.SIGKILL
	}
	if err := r.signal(ctx, id, sig); err != nil {
		if errors.Is(err, errNoShim) {
			return r.stopOrphan(ctx, id, grace)
		}
		return fmt.Errorf("stop %s: %w", id, err)
	}
	if sig != unix.SIGKILL {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case err := <-waited:
			return r.stopped(ctx, id, err, grace)
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		if err := r.signal(ctx, id, unix.SIGKILL); err != nil && !errors.Is(err, errNoShim) {
			return fmt.Errorf("stop %s: %w", id, err)
		}
	}
	select {
	case err := <-waited:
		return r.stopped(ctx, id, err, 0)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signal asks the shim to signal the init; a process that already exited is
// not an error.
func (r *Libcontainer) signal(ctx context.Context, id string, sig unix.Signal) error {
	_, err := r.call(ctx, id, shimRequest{Op: opSignal, Signal: int(sig)})
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	return err
}

// stopped interprets the end of a wait request.
func (r *Libcontainer) stopped(ctx context.Context, id string, waitErr error, grace time.Duration) error {
	switch {
	case waitErr == nil, errors.Is(waitErr, ErrNotRunning):
		return nil
	case errors.Is(waitErr, errNoShim):
		// The shim exited: after recording the exit, or killed.
		st, err := r.State(ctx, id)
		if err != nil || st.Status != Running {
			return err
		}
		return r.stopOrphan(ctx, id, grace)
	default:
		return fmt.Errorf("stop %s: %w", id, waitErr)
	}
}

// orphanPoll is how often the liveness of a process without a shim is
// checked.
const orphanPoll = 20 * time.Millisecond

// stopOrphan stops a container whose shim died while its process runs on.
// Nobody can learn its exit code: State reports ReasonUnknown.
func (r *Libcontainer) stopOrphan(ctx context.Context, id string, grace time.Duration) error {
	r.log.Warn("stopping a container without a shim", "container", id)
	c, err := libcontainer.Load(filepath.Join(containerDir(r.root, id), runcDir), id)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stop %s: %w", id, err)
	}
	lst, err := c.State()
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	init := procRecord{Pid: lst.InitProcessPid, StartTime: lst.InitProcessStartTime}
	if grace > 0 {
		if err := c.Signal(unix.SIGTERM); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("stop %s: %w", id, err)
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		err := waitGone(gctx, init)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return waitGone(ctx, init)
}

// waitGone polls until p no longer runs.
func waitGone(ctx context.Context, p procRecord) error {
	t := time.NewTicker(orphanPoll)
	defer t.Stop()
	for p.alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Remove kills the container if it runs, lets its shim exit, and deletes its
// cgroups (and the pod cgroups between CgroupRoot and it that are left
// empty), its libcontainer state and Root/<id>. It must not run while
// another container of the same pod is being created or started, since the
// shared pod cgroup may be removed in between.
func (r *Libcontainer) Remove(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	dir := containerDir(r.root, id)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	st, err := r.State(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if st.Status == Running {
		if err := r.Stop(ctx, id, 0); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
	}
	var shim procRecord
	if _, err := readJSON(filepath.Join(dir, shimFile), &shim); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if shim.alive() {
		_, err := r.call(ctx, id, shimRequest{Op: opShutdown})
		if errors.Is(err, errStillRunning) {
			// The shim is finishing (the exit may be recorded already), or
			// the process started after all: kill it, and the shim exits on
			// its own once the exit is recorded.
			if err = r.signal(ctx, id, unix.SIGKILL); err == nil {
				_, err = r.call(ctx, id, shimRequest{Op: opWait})
			}
		}
		if err != nil && !errors.Is(err, errNoShim) {
			return fmt.Errorf("remove %s: shut down shim: %w", id, err)
		}
		if err := waitGone(ctx, shim); err != nil {
			return fmt.Errorf("remove %s: wait for shim: %w", id, err)
		}
	}
	if err := r.destroy(ctx, id); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	r.log.Debug("removed", "container", id)
	return nil
}

// destroy removes what a shim normally removes itself, in case it died:
// the libcontainer container (killing a process left running) and the
// container's cgroups; then the empty pod cgroups above them.
func (r *Libcontainer) destroy(ctx context.Context, id string) error {
	dir := containerDir(r.root, id)
	c, err := libcontainer.Load(filepath.Join(dir, runcDir), id)
	switch {
	case err == nil:
		if status, _ := c.Status(); status != libcontainer.Stopped {
			if err := r.stopOrphan(ctx, id, 0); err != nil {
				return err
			}
		}
		if err := c.Destroy(); err != nil {
			return err
		}
	case !errors.Is(err, libcontainer.ErrNotExist):
		return err
	}
	var rec containerRecord
	ok, err := readJSON(filepath.Join(dir, specFile), &rec)
	if err != nil || !ok {
		return err
	}
	cg, err := rec.cgroupConfig()
	if err != nil {
		return err
	}
	m, err := manager.New(cg)
	if err != nil {
		return fmt.Errorf("cgroup manager: %w", err)
	}
	// Destroy empties the manager's map of paths.
	paths := maps.Clone(m.GetPaths())
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroups: %w", err)
	}
	// Parents strictly between CgroupRoot and the container.
	levels := strings.Count(rec.CgroupPath, "/") - strings.Count(rec.CgroupRoot, "/") - 2
	for _, p := range paths {
		for range levels {
			p = filepath.Dir(p)
			if unix.Rmdir(p) != nil {
				break // not empty (another container), or gone
			}
		}
	}
	return nil
}

// State reads the container's records and checks that its shim (or,
// failing that, its process) still runs:
//
//   - exit.json exists: Exited, with the recorded code and reason;
//   - the shim runs: Running once started.json exists, else Created;
//   - the shim is gone but the process runs: Running (its exit will not be
//     recorded);
//   - the shim and the process are gone without an exit record: Exited with
//     code 255 and ReasonUnknown;
//   - the shim is gone before Start: Unknown.
func (r *Libcontainer) State(ctx context.Context, id string) (State, error) {
	rec, err := r.record(id)
	if err != nil {
		return State{}, err
	}
	dir := containerDir(r.root, id)
	st := State{ID: id, CreatedAt: rec.CreatedAt, LogPath: rec.Spec.LogPath}
	var (
		exit    exitRecord
		started startRecord
		shim    procRecord
	)
	exited, err := readJSON(filepath.Join(dir, exitFile), &exit)
	if err != nil {
		return State{}, err
	}
	if !exited {
		hasStarted, err := readJSON(filepath.Join(dir, startedFile), &started)
		if err != nil {
			return State{}, err
		}
		if _, err := readJSON(filepath.Join(dir, shimFile), &shim); err != nil {
			return State{}, err
		}
		st.StartedAt = started.StartedAt
		switch {
		case shim.alive() && hasStarted:
			st.Status, st.Pid = Running, started.Pid
			return st, nil
		case shim.alive():
			st.Status = Created
			return st, nil
		}
		// The shim may have recorded the exit just before it exited.
		if exited, err = readJSON(filepath.Join(dir, exitFile), &exit); err != nil {
			return State{}, err
		}
		switch {
		case exited:
		case hasStarted && started.alive():
			st.Status, st.Pid = Running, started.Pid
			return st, nil
		case hasStarted:
			st.Status, st.ExitCode, st.Reason = Exited, 255, ReasonUnknown
			st.Message = "the container's shim exited without recording the exit"
			return st, nil
		default:
			st.Status = Unknown
			return st, nil
		}
	}
	st.Status = Exited
	st.ExitCode, st.Reason, st.Message = exit.ExitCode, exit.Reason, exit.Message
	st.StartedAt, st.FinishedAt = exit.StartedAt, exit.FinishedAt
	return st, nil
}

// record reads the container's spec record: ErrNotFound if there is none.
func (r *Libcontainer) record(id string) (containerRecord, error) {
	var rec containerRecord
	if err := validateID(id); err != nil {
		return rec, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	ok, err := readJSON(filepath.Join(containerDir(r.root, id), specFile), &rec)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return rec, nil
}

// List reports every container under Root, in ID order.
func (r *Libcontainer) List(ctx context.Context) ([]State, error) {
	entries, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var states []State
	for _, e := range entries {
		if !e.IsDir() || validateID(e.Name()) != nil {
			continue
		}
		st, err := r.State(ctx, e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // being created or removed
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		states = append(states, st)
	}
	return states, nil
}

// Stats reads the cgroup counters of a running container.
func (r *Libcontainer) Stats(ctx context.Context, id string) (Stats, error) {
	c, err := r.loadRunning(id)
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, err)
	}
	s, err := c.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, err)
	}
	cg := s.CgroupStats
	if cg == nil {
		return Stats{}, nil
	}
	out := Stats{
		CPUUsageNanos:    cg.CpuStats.CpuUsage.TotalUsage,
		MemoryUsageBytes: cg.MemoryStats.Usage.Usage,
		Pids:             cg.PidsStats.Current,
	}
	inactive, ok := cg.MemoryStats.Stats["total_inactive_file"] // v1
	if !ok {
		inactive = cg.MemoryStats.Stats["inactive_file"] // v2
	}
	if out.MemoryUsageBytes > inactive {
		out.MemoryWorkingSetBytes = out.MemoryUsageBytes - inactive
	}
	return out, nil
}

// loadRunning loads the libcontainer container of a running container.
func (r *Libcontainer) loadRunning(id string) (*libcontainer.Container, error) {
	if _, err := r.record(id); err != nil {
		return nil, err
	}
	c, err := libcontainer.Load(filepath.Join(containerDir(r.root, id), runcDir), id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, err
	}
	if status, err := c.Status(); err != nil || status != libcontainer.Running {
		return nil, ErrNotRunning
	}
	return c, nil
}

// errNoShim means that nothing answers on the container's socket: its shim
// has exited (or died mid-request).
var errNoShim = errors.New("no shim answers")

// shimError is an error the shim reported, kept with its message.
type shimError struct {
	msg      string
	sentinel error
}

func (e *shimError) Error() string { return e.msg }
func (e *shimError) Unwrap() error { return e.sentinel }

// call sends one request to the container's shim and waits for the answer,
// as long as ctx allows.
func (r *Libcontainer) call(ctx context.Context, id string, req shimRequest) (shimResponse, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath(r.root, id))
	if err != nil {
		if ctx.Err() != nil {
			return shimResponse{}, ctx.Err()
		}
		return shimResponse{}, fmt.Errorf("%w: %v", errNoShim, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var resp shimResponse
	err = json.NewEncoder(conn).Encode(req)
	if err == nil {
		err = json.NewDecoder(conn).Decode(&resp)
	}
	if err != nil {
		if ctx.Err() != nil {
			return shimResponse{}, ctx.Err()
		}
		return shimResponse{}, fmt.Errorf("%w: %s: %v", errNoShim, req.Op, err)
	}
	if resp.Error != "" {
		return resp, &shimError{msg: resp.Error, sentinel: errorKinds[resp.Kind]}
	}
	return resp, nil
}

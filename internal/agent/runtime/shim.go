package runtime

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"github.com/opencontainers/cgroups/fscommon"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/rafter-dev/rafter/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// The shim's requests. Each connection carries one JSON request and one JSON
// response.
const (
	opStart    = "start"    // create the container and run its process
	opSignal   = "signal"   // signal the container's init
	opWait     = "wait"     // answer once the process exited and its exit is recorded
	opShutdown = "shutdown" // exit without starting (only before start)
)

type shimRequest struct {
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"`
}

type shimResponse struct {
	Error string `json:"error,omitempty"`
	// Kind names the sentinel error Error stands for, see errorKinds.
	Kind    string       `json:"kind,omitempty"`
	Started *startRecord `json:"started,omitempty"`
	Exit    *exitRecord  `json:"exit,omitempty"`
}

// errStillRunning answers a shutdown request while the process runs.
var errStillRunning = errors.New("container is still running")

// errorKinds carry sentinel errors across the socket.
var errorKinds = map[string]error{
	"not-running":     ErrNotRunning,
	"already-started": ErrAlreadyStarted,
	"start-failed":    ErrStartFailed,
	"still-running":   errStillRunning,
}

func errorResponse(err error) shimResponse {
	for kind, sentinel := range errorKinds {
		if errors.Is(err, sentinel) {
			return shimResponse{Error: err.Error(), Kind: kind}
		}
	}
	return shimResponse{Error: err.Error()}
}

// Timeouts of the shim's connections and of its exit.
const (
	requestTimeout = 10 * time.Second // to read a request, or write a response
	drainTimeout   = 2 * time.Second  // for output still in the pipes after the process exited
	exitTimeout    = 5 * time.Second  // for answers still being written when the shim exits
)

type shimPhase int

const (
	phaseCreated shimPhase = iota
	phaseStarting
	phaseRunning
	phaseExited
)

// shim owns one container: its libcontainer object, its init process and its
// output. Requests arrive concurrently, one goroutine per connection.
type shim struct {
	dir string
	id  string
	rec containerRecord
	log *slog.Logger

	mu        sync.Mutex // guards phase, container and exit
	phase     shimPhase
	container *libcontainer.Container
	exit      *exitRecord

	exited   chan struct{} // closed once exit is recorded and the container destroyed
	done     chan struct{} // closed when the shim should exit
	doneOnce sync.Once
	handlers sync.WaitGroup
}

// RunShim is the body of `<binary> shim --root ROOT --id ID [--ready-fd N]`;
// cmd/nodeagent's main calls it with the arguments after "shim". The agent
// (Libcontainer.Create) starts it in its own session with its stdio on
// ROOT/<id>/shim.log and a pipe as --ready-fd, on which the shim writes "ok"
// once its socket listens, or why it could not start.
//
// It returns once the container's process has exited and the exit is
// recorded (or the shim was told to shut down before Start); the process
// should then exit.
func RunShim(args []string) error {
	fl := flag.NewFlagSet("shim", flag.ContinueOnError)
	root := fl.String("root", "", "runtime root directory")
	id := fl.String("id", "", "container id")
	readyFD := fl.Int("ready-fd", -1, "file descriptor to report readiness on")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var ready *os.File
	if *readyFD >= 0 {
		ready = os.NewFile(uintptr(*readyFD), "ready")
		defer ready.Close()
	}
	ln, s, err := newShim(*root, *id)
	if err != nil {
		if ready != nil {
			fmt.Fprintf(ready, "%v\n", err)
		}
		return err
	}
	if ready != nil {
		if _, err := ready.WriteString("ok\n"); err != nil {
			s.log.Warn("report readiness", "err", err)
		}
		ready.Close()
	}
	return s.serve(ln)
}

// newShim loads the container's record, records the shim's identity and
// listens on the container's socket.
func newShim(root, id string) (*net.UnixListener, *shim, error) {
	if root == "" {
		return nil, nil, fmt.Errorf("shim: --root is required")
	}
	if err := validateID(id); err != nil {
		return nil, nil, fmt.Errorf("shim: %w", err)
	}
	s := &shim{
		dir:    containerDir(root, id),
		id:     id,
		log:    slog.New(slog.NewTextHandler(os.Stderr, nil)).With("container", id),
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := protectShim(); err != nil {
		s.log.Warn("lower own OOM score", "err", err)
	}
	ok, err := readJSON(filepath.Join(s.dir, specFile), &s.rec)
	if err == nil && !ok {
		err = ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("shim: load container %s: %w", id, err)
	}
	self, err := selfRecord()
	if err == nil {
		err = atomicfile.WriteJSON(filepath.Join(s.dir, shimFile), self)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("shim: record own pid: %w", err)
	}
	sock := socketPath(root, id)
	_ = os.Remove(sock) // a stale socket of a dead shim
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("shim: listen: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("shim: listen: %w", err)
	}
	return ln, s, nil
}

// shimOOMScoreAdj keeps the OOM killer away from shims, as containerd does:
// a killed shim loses its container's exit code. Containers get 0 back
// (libcontainerConfig).
const shimOOMScoreAdj = "-998"

// protectShim lowers the shim's OOM score.
func protectShim() error {
	return os.WriteFile("/proc/self/oom_score_adj", []byte(shimOOMScoreAdj), 0)
}

// serve answers requests until the shim is done, then lets the answers in
// flight go out.
func (s *shim) serve(ln *net.UnixListener) error {
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.handlers.Add(1)
			go s.handle(conn)
		}
	}()
	<-s.done
	// Clients that arrive from now on find no socket and read exit.json.
	ln.Close()
	<-accepting
	answered := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(exitTimeout):
		s.log.Warn("exiting with requests unanswered")
	}
	return nil
}

func (s *shim) handle(conn *net.UnixConn) {
	defer s.handlers.Done()
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	var req shimRequest
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		s.log.Warn("read request", "err", err)
		return
	}
	var resp shimResponse
	switch req.Op {
	case opStart:
		resp = s.start()
	case opSignal:
		resp = s.signal(syscall.Signal(req.Signal))
	case opWait:
		resp = s.wait()
	case opShutdown:
		resp = s.shutdown()
	default:
		resp = shimResponse{Error: fmt.Sprintf("unknown request %q", req.Op)}
	}
	_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.log.Warn("write response", "op", req.Op, "err", err)
	}
}

func (s *shim) start() shimResponse {
	s.mu.Lock()
	if s.phase != phaseCreated {
		s.mu.Unlock()
		return errorResponse(ErrAlreadyStarted)
	}
	s.phase = phaseStarting
	s.mu.Unlock()

	started, err := s.startProcess()
	if err != nil {
		s.log.Error("start", "err", err)
		s.finish(nil, exitRecord{
			ExitCode:   128,
			Reason:     ReasonStartError,
			Message:    err.Error(),
			FinishedAt: time.Now(),
		})
		return errorResponse(fmt.Errorf("%w: %v", ErrStartFailed, err))
	}
	s.log.Info("started", "pid", started.Pid)
	return shimResponse{Started: &started}
}

// startProcess creates the container, runs its process with its output
// going to the log, and hands the rest of its life to waitExit.
func (s *shim) startProcess() (startRecord, error) {
	spec := &s.rec.Spec
	cfg, err := s.rec.libcontainerConfig()
	if err != nil {
		return startRecord{}, err
	}
	logw, err := openCRILog(spec.LogPath, spec.LogMaxBytes, time.Now)
	if err != nil {
		return startRecord{}, err
	}
	c, err := libcontainer.Create(filepath.Join(s.dir, runcDir), s.id, cfg)
	if err != nil {
		logw.Close()
		return startRecord{}, fmt.Errorf("create container: %w", err)
	}
	oomBefore, _ := oomKillCount(c)

	outR, outW, err := os.Pipe()
	if err != nil {
		logw.Close()
		_ = c.Destroy()
		return startRecord{}, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		logw.Close()
		_ = c.Destroy()
		return startRecord{}, err
	}
	copies := &sync.WaitGroup{}
	for stream, r := range map[string]*os.File{"stdout": outR, "stderr": errR} {
		copies.Go(func() {
			defer r.Close()
			if err := logw.copyStream(stream, r); err != nil {
				s.log.Warn("log output", "stream", stream, "err", err)
			}
		})
	}

	p := &libcontainer.Process{
		Args:   spec.Args,
		Env:    spec.Env,
		Cwd:    spec.Cwd,
		UID:    int(spec.User.UID),
		GID:    int(spec.User.GID),
		Stdout: outW,
		Stderr: errW,
		Init:   true,
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	for _, g := range spec.User.AdditionalGIDs {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	err = c.Run(p)
	// Only the container may hold the write ends now, so the copies end
	// when its processes are gone.
	outW.Close()
	errW.Close()
	if err != nil {
		_ = c.Destroy()
		waitGroupTimeout(copies, drainTimeout)
		logw.Close()
		return startRecord{}, fmt.Errorf("run: %w", err)
	}
	st, err := c.State()
	if err == nil {
		started := startRecord{
			procRecord: procRecord{Pid: st.InitProcessPid, StartTime: st.InitProcessStartTime},
			StartedAt:  time.Now(),
		}
		if err = atomicfile.WriteJSON(filepath.Join(s.dir, startedFile), started); err == nil {
			s.mu.Lock()
			s.container = c
			s.phase = phaseRunning
			s.mu.Unlock()
			go s.waitExit(c, p, logw, copies, started, oomBefore)
			return started, nil
		}
	}
	// The process runs but nobody could find it again: kill it.
	_ = c.Signal(unix.SIGKILL)
	_, _ = p.Wait()
	_ = c.Destroy()
	waitGroupTimeout(copies, drainTimeout)
	logw.Close()
	return startRecord{}, fmt.Errorf("record start: %w", err)
}

// waitExit waits for the container's init to exit and records how it ended.
func (s *shim) waitExit(c *libcontainer.Container, p *libcontainer.Process, logw *criLog, copies *sync.WaitGroup, started startRecord, oomBefore uint64) {
	ps, werr := p.Wait()
	finished := time.Now()
	if !waitGroupTimeout(copies, drainTimeout) {
		s.log.Warn("output still open after the process exited")
	}
	if err := logw.Close(); err != nil {
		s.log.Warn("close log", "err", err)
	}
	rec := exitRecord{StartedAt: started.StartedAt, FinishedAt: finished}
	switch ws, ok := processStatus(ps); {
	case !ok:
		rec.ExitCode, rec.Reason, rec.Message = 255, ReasonUnknown, fmt.Sprintf("wait: %v", werr)
	case ws.Signaled():
		rec.ExitCode = 128 + int(ws.Signal())
	default:
		rec.ExitCode = ws.ExitStatus()
	}
	oom, exact := oomKillCount(c)
	switch {
	case rec.Reason != "":
	case oom > oomBefore && (exact || rec.ExitCode == 128+int(unix.SIGKILL)):
		rec.Reason = ReasonOOMKilled
	case rec.ExitCode == 0:
		rec.Reason = ReasonCompleted
	default:
		rec.Reason = ReasonError
	}
	s.log.Info("exited", "code", rec.ExitCode, "reason", rec.Reason)
	s.finish(c, rec)
}

func processStatus(ps *os.ProcessState) (syscall.WaitStatus, bool) {
	if ps == nil {
		return 0, false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ws, ok
}

// finish records the exit, destroys the container (its cgroups and
// libcontainer state), and then answers waiters and ends the shim.
func (s *shim) finish(c *libcontainer.Container, rec exitRecord) {
	if err := atomicfile.WriteJSON(filepath.Join(s.dir, exitFile), rec); err != nil {
		s.log.Error("record exit", "err", err)
	}
	if c != nil {
		if err := c.Destroy(); err != nil {
			s.log.Error("destroy container", "err", err)
		}
	}
	s.mu.Lock()
	s.phase = phaseExited
	s.exit = &rec
	s.mu.Unlock()
	close(s.exited)
	s.closeDone()
}

func (s *shim) closeDone() { s.doneOnce.Do(func() { close(s.done) }) }

func (s *shim) signal(sig syscall.Signal) shimResponse {
	s.mu.Lock()
	c, phase := s.container, s.phase
	s.mu.Unlock()
	if phase != phaseRunning {
		return errorResponse(ErrNotRunning)
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return errorResponse(ErrNotRunning)
		}
		return errorResponse(fmt.Errorf("signal %v: %w", sig, err))
	}
	return shimResponse{}
}

func (s *shim) wait() shimResponse {
	select {
	case <-s.exited:
		s.mu.Lock()
		defer s.mu.Unlock()
		return shimResponse{Exit: s.exit}
	case <-s.done:
		// Shut down before it started.
		return errorResponse(ErrNotRunning)
	}
}

func (s *shim) shutdown() shimResponse {
	s.mu.Lock()
	phase := s.phase
	s.mu.Unlock()
	if phase == phaseStarting || phase == phaseRunning {
		return errorResponse(errStillRunning)
	}
	s.closeDone()
	return shimResponse{}
}

// oomKillCount reads how many processes the OOM killer killed in the
// container's memory cgroup: memory.events on cgroup v2, memory.oom_control
// on v1. Old v1 kernels lack that counter; then memory.failcnt (how often the
// limit was hit) stands in and exact is false. Errors count as zero.
func oomKillCount(c *libcontainer.Container) (n uint64, exact bool) {
	st, err := c.State()
	if err != nil {
		return 0, true
	}
	if cgroups.IsCgroup2UnifiedMode() {
		n, _ := fs2.OOMKillCount(st.CgroupPaths[""])
		return n, true
	}
	dir := st.CgroupPaths["memory"]
	if n, err := fs.OOMKillCount(dir); err == nil {
		return n, true
	}
	n, _ = fscommon.GetCgroupParamUint(dir, "memory.failcnt")
	return n, false
}

// waitGroupTimeout waits for wg up to d and reports whether it finished.
func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

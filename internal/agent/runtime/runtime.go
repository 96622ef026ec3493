// Package runtime runs a node's containers with runc's libcontainer.
//
// Each container gets a shim: the agent's own binary re-executed as
// `<binary> shim --root ROOT --id ID` in its own session. The shim creates
// the libcontainer container, owns the container's init process and its
// stdout/stderr, writes the output to the container's log file and, when the
// process exits, records the exit code atomically in ROOT/<id>/exit.json. The
// agent can be killed and restarted at any time: a new Libcontainer on the
// same Root finds every container again (List) and reads exit codes it was not
// there to see. DESIGN.md explains the model.
package runtime

import (
	"context"
	"errors"
	"io"
	"time"
)

// Runtime is the container lifecycle a pod worker drives. Calls for different
// containers may run concurrently; calls for one container must not (the pod
// worker that owns a container serializes them).
type Runtime interface {
	// Create records the spec and starts the container's shim. The container
	// is Created: nothing runs yet. ErrExists if the ID is taken.
	Create(ctx context.Context, spec ContainerSpec) error
	// Start runs the container's process and returns once it runs, or with
	// the reason it could not start (ErrStartFailed).
	Start(ctx context.Context, id string) error
	// Stop sends SIGTERM, then SIGKILL once grace has passed, and returns when
	// the process has exited and its exit record is written. Stopping a
	// container that is not running is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove kills the container if it still runs and deletes its cgroups and
	// state. Removing a container that does not exist is not an error.
	Remove(ctx context.Context, id string) error
	// State reports one container, ErrNotFound if there is none.
	State(ctx context.Context, id string) (State, error)
	// List reports every container under the runtime's Root, including the
	// ones a previous agent process created.
	List(ctx context.Context) ([]State, error)
}

// Execer runs an extra process in a running container (exec probes, ctl exec).
type Execer interface {
	// Exec runs opts.Args in the container and returns its exit code once it
	// has exited and its output has been copied. ErrNotRunning if the
	// container does not run. Cancelling ctx kills the process.
	Exec(ctx context.Context, id string, opts ExecOptions) (exitCode int, err error)
}

// StatsReader reads a running container's resource usage.
type StatsReader interface {
	Stats(ctx context.Context, id string) (Stats, error)
}

var (
	// ErrNotFound is returned when no container has the given ID.
	ErrNotFound = errors.New("container not found")
	// ErrExists is returned by Create when the ID is already in use.
	ErrExists = errors.New("container already exists")
	// ErrInvalidSpec is returned when a ContainerSpec or Config is unusable.
	ErrInvalidSpec = errors.New("invalid container spec")
	// ErrNotRunning is returned by Exec and Stats for a container that is not
	// running.
	ErrNotRunning = errors.New("container is not running")
	// ErrAlreadyStarted is returned by Start for a container that was started
	// before.
	ErrAlreadyStarted = errors.New("container was already started")
	// ErrStartFailed is returned by Start when the container's process could
	// not be started; the message says why, and State reports StartError.
	ErrStartFailed = errors.New("container failed to start")
	// ErrShimGone is returned when a container's shim is no longer running
	// while it is needed (Start of a container whose shim died).
	ErrShimGone = errors.New("container shim is gone")
)

// ContainerSpec describes one container. The caller prepares the root
// filesystem, the network namespace and the files it bind-mounts
// (/etc/hosts, /etc/resolv.conf, /etc/hostname); the runtime adds /proc, /dev
// (with null, zero, full, random, urandom, tty and /dev/pts, /dev/shm,
// /dev/mqueue), /sys and /sys/fs/cgroup (both read-only).
type ContainerSpec struct {
	// ID names the container on this node: 1 to 64 letters, digits, '_', '-'
	// or '.', starting with a letter or digit.
	ID string
	// Rootfs is the prepared root directory (an overlay mount, say).
	Rootfs string
	// Args is the process to run: the executable and its arguments.
	Args []string
	// Env is the process environment, "KEY=value".
	Env []string
	// Cwd is the working directory inside the container; "/" if empty. It
	// is created if it does not exist.
	Cwd      string
	Hostname string
	User     User
	// NetnsPath is a network namespace to join, usually the pod's
	// (/var/run/netns/<name>). Empty gives the container a new namespace
	// with only a loopback interface.
	NetnsPath string
	// Mounts are mounted after the standard ones, in order. A mount on
	// /dev/shm, say, replaces the standard one.
	Mounts    []Mount
	Resources Resources
	// CgroupParent is the pod's cgroup, relative to the cgroup root of every
	// hierarchy, e.g. "rafter/pod<uid>". It must be the runtime's CgroupRoot
	// or below it; empty means CgroupRoot. The container's cgroup is
	// CgroupParent/ID.
	CgroupParent string
	// LogPath receives stdout and stderr in the CRI log format, one record
	// per line: "2016-10-06T00:17:09.669794202Z stdout F hello". Lines longer
	// than 16 KiB are split into partial (P) records. Empty discards output.
	LogPath string
	// LogMaxBytes rotates the log: once LogPath would grow past it, LogPath
	// becomes LogPath.1 (replacing an older one) and a new LogPath starts.
	// Zero never rotates.
	LogMaxBytes int64
}

// User is the identity the container's processes run as.
type User struct {
	UID, GID       uint32
	AdditionalGIDs []uint32
}

// Mount is a bind mount (a directory or a single file) or a tmpfs.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// Type is "bind" (the default) or "tmpfs".
	Type string
	// Options are mount(8) options: flags such as "nosuid", "nodev",
	// "noexec", "ro", propagation such as "rprivate" or "rslave", and for
	// tmpfs data such as "size=64m" or "mode=1777".
	Options []string
}

// Resources are the container's cgroup limits; zero values leave a limit
// unset.
type Resources struct {
	// MemoryLimit in bytes. Swap is not allowed above it, so a container
	// reaching it is OOM-killed rather than swapped out.
	MemoryLimit int64
	// CPUQuota is the CFS quota in microseconds per CPUPeriod (default
	// 100000 µs when only the quota is given).
	CPUQuota  int64
	CPUPeriod uint64
	// CPUShares is the cgroup v1 weight (2..262144); on cgroup v2 it is
	// converted to cpu.weight.
	CPUShares uint64
}

// Status is where a container is in its life.
type Status int

const (
	// Unknown: the container was never started and its shim is gone (it
	// was killed, or the node rebooted), so it cannot be started either.
	Unknown Status = iota
	// Created: the shim waits for Start.
	Created
	// Running: the process runs.
	Running
	// Exited: the process has exited (or failed to start) and ExitCode,
	// Reason and FinishedAt are set.
	Exited
)

func (s Status) String() string {
	switch s {
	case Created:
		return "Created"
	case Running:
		return "Running"
	case Exited:
		return "Exited"
	default:
		return "Unknown"
	}
}

// Reasons reported in State.Reason, the words a kubelet uses.
const (
	ReasonCompleted  = "Completed"
	ReasonError      = "Error"
	ReasonOOMKilled  = "OOMKilled"
	ReasonStartError = "StartError"
	// ReasonUnknown is reported, with Status Exited and exit code 255, for
	// a container that was started but whose exit nobody recorded because
	// its shim was killed.
	ReasonUnknown = "ContainerStatusUnknown"
)

// State is a container's status as the runtime last saw it.
type State struct {
	ID     string
	Status Status
	// Pid is the init process in the host PID namespace, while it runs.
	Pid int
	// ExitCode is the process's exit status, or 128+signal when a signal
	// killed it (137 for SIGKILL); set when Exited.
	ExitCode int
	// Reason is ReasonCompleted (exit 0), ReasonError, ReasonOOMKilled,
	// ReasonStartError or ReasonUnknown.
	Reason string
	// Message explains a StartError.
	Message    string
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// LogPath is the spec's, so a restarted agent can serve logs.
	LogPath string
}

// ExecOptions is a process to run in a running container. It runs as the
// container's user, in the container's Cwd unless Cwd is set, with the
// container's environment unless Env is set.
type ExecOptions struct {
	Args []string
	Env  []string
	Cwd  string
	// TTY gives the process a pseudo-terminal; its stderr then goes to
	// Stdout, as with kubectl exec -t.
	TTY bool
	// Stdin, Stdout and Stderr may be nil (/dev/null). When Stdout and
	// Stderr are the same writer, one goroutine at a time writes to it.
	// Exec stops reading Stdin when the process exits, but a Read already
	// blocked in it keeps its goroutine until it returns.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Stats is a snapshot of a container's cgroup counters.
type Stats struct {
	CPUUsageNanos uint64
	// MemoryUsageBytes includes the page cache; MemoryWorkingSetBytes is
	// usage less inactive file pages, the number the kubelet evicts on.
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64
	Pids                  uint64
}

package agent

import (
	"context"
	"io"
	"net/netip"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// What the pod workers need from the machine, as small interfaces: cmd/nodeagent
// plugs in libcontainer (internal/agent/runtime), the image store
// (internal/agent/images) and CNI (internal/cni); tests plug in fakes.

// ContainerSpec is one container as the runtime starts it.
type ContainerSpec struct {
	ID           string
	Rootfs       string
	Args, Env    []string
	Cwd          string
	Hostname     string
	UID, GID     uint32
	NetnsPath    string
	Mounts       []Mount
	MemoryLimit  int64 // bytes; 0: none
	CPUQuota     int64 // microseconds per CPUPeriod; 0: none
	CPUPeriod    uint64
	CPUShares    uint64
	CgroupParent string
	LogPath      string
	LogMaxBytes  int64
}

// Container states as the runtime reports them.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StateUnknown = "unknown"
)

// ContainerState is what the runtime knows of a container.
type ContainerState struct {
	ID                    string
	Status                string
	Pid                   int
	ExitCode              int
	Reason                string // "OOMKilled", "Error", "Completed" once exited
	StartedAt, FinishedAt time.Time
}

// Runtime runs containers. State of an unknown ID is an error wrapping
// ErrNotFound. Containers outlive the agent process: List finds them again.
type Runtime interface {
	Create(ctx context.Context, spec ContainerSpec) error
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, grace time.Duration) error
	Remove(ctx context.Context, id string) error
	State(ctx context.Context, id string) (ContainerState, error)
	List(ctx context.Context) ([]ContainerState, error)
	Exec(ctx context.Context, id string, args []string, stdin io.Reader, stdout, stderr io.Writer) (exitCode int, err error)
}

// Image is a pulled image.
type Image struct {
	Ref    string
	ID     string // what containerStatuses[].imageID shows
	Config ImageConfig
}

// PullError is an image that could not be pulled: the pod shows ErrImagePull,
// then ImagePullBackOff, with this message; Never marks an image absent under
// imagePullPolicy Never (ErrImageNeverPull).
type PullError struct {
	Message string
	Never   bool
}

func (e *PullError) Error() string { return e.Message }

// Images makes images present and gives containers root filesystems.
type Images interface {
	// Pull makes ref present under policy (Always, IfNotPresent, Never) with
	// the pod's imagePullSecrets (dockerconfigjson data); failures are
	// *PullError with the registry's words.
	Pull(ctx context.Context, ref, policy string, pullSecrets [][]byte) (Image, error)
	// Rootfs mounts a fresh writable root filesystem of image ref for
	// container id (idempotent); ReleaseRootfs undoes it.
	Rootfs(id, ref string) (string, error)
	ReleaseRootfs(id string) error
}

// Network gives pods their network namespace and address.
type Network interface {
	// SetUp makes (or finds again) the pod's network namespace and address.
	SetUp(ctx context.Context, pod *corev1.Pod) (netnsPath string, ip netip.Addr, err error)
	// TearDown releases both; idempotent.
	TearDown(ctx context.Context, pod *corev1.Pod) error
}

// PodAPI is what the pod workers write through the API.
type PodAPI interface {
	// WriteStatus writes pod's status (pods/status with the pod's
	// resourceVersion as precondition, re-read on conflict).
	WriteStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error
	// Delete finishes the deletion of a pod whose containers are gone
	// (gracePeriodSeconds 0, UID precondition); a pod already gone is no error.
	Delete(ctx context.Context, pod *corev1.Pod) error
}

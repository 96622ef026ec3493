package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// fakeRuntime keeps containers in memory; tests end them with exit.
type fakeRuntime struct {
	mu      sync.Mutex
	ctrs    map[string]*ContainerState
	specs   map[string]ContainerSpec
	created []string
	clock   Clock
}

func newFakeRuntime(clock Clock) *fakeRuntime {
	return &fakeRuntime{ctrs: map[string]*ContainerState{}, specs: map[string]ContainerSpec{}, clock: clock}
}

func (f *fakeRuntime) Create(_ context.Context, s ContainerSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ctrs[s.ID]; ok {
		return fmt.Errorf("container %s exists", s.ID)
	}
	f.ctrs[s.ID] = &ContainerState{ID: s.ID, Status: StateCreated}
	f.specs[s.ID] = s
	f.created = append(f.created, s.ID)
	return nil
}

func (f *fakeRuntime) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	c.Status, c.Pid, c.StartedAt = StateRunning, 100+len(f.created), f.clock.Now()
	return nil
}

func (f *fakeRuntime) exit(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	c.Status, c.ExitCode, c.FinishedAt = StateExited, code, f.clock.Now()
	c.Reason = "Completed"
	if code != 0 {
		c.Reason = "Error"
	}
}

func (f *fakeRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.ctrs[id]; c != nil && c.Status == StateRunning {
		c.Status, c.ExitCode, c.Reason, c.FinishedAt = StateExited, 137, "Error", f.clock.Now()
	}
	return nil
}

func (f *fakeRuntime) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, id)
	return nil
}

func (f *fakeRuntime) State(_ context.Context, id string) (ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return ContainerState{}, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	return *c, nil
}

func (f *fakeRuntime) List(context.Context) ([]ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ContainerState
	for _, c := range f.ctrs {
		out = append(out, *c)
	}
	return out, nil
}

func (f *fakeRuntime) Exec(context.Context, string, []string, io.Reader, io.Writer, io.Writer) (int, error) {
	return 0, nil
}

func (f *fakeRuntime) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.ctrs {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

type fakeImages struct {
	mu     sync.Mutex
	broken map[string]string // ref -> pull error
	mounts map[string]bool
}

func (f *fakeImages) Pull(_ context.Context, ref, _ string, _ [][]byte) (Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if msg, ok := f.broken[ref]; ok {
		return Image{}, &PullError{Message: msg, Never: strings.HasPrefix(ref, "never")}
	}
	return Image{Ref: ref, ID: "sha256:" + ref, Config: ImageConfig{Entrypoint: []string{"/app"}}}, nil
}

func (f *fakeImages) Rootfs(id, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts[id] = true
	return "/rootfs/" + id, nil
}

func (f *fakeImages) ReleaseRootfs(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounts, id)
	return nil
}

type fakeNet struct {
	mu   sync.Mutex
	pods map[string]netip.Addr
	next int
}

func (f *fakeNet) SetUp(_ context.Context, pod *corev1.Pod) (string, netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	uid := pod.GetMetadata().GetUid()
	if ip, ok := f.pods[uid]; ok {
		return "/var/run/netns/" + uid, ip, nil
	}
	f.next++
	ip := netip.AddrFrom4([4]byte{10, 244, 0, byte(1 + f.next)})
	f.pods[uid] = ip
	return "/var/run/netns/" + uid, ip, nil
}

func (f *fakeNet) TearDown(_ context.Context, pod *corev1.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, pod.GetMetadata().GetUid())
	return nil
}

type fakeAPI struct {
	mu       sync.Mutex
	statuses []*corev1.PodStatus
	deleted  []string
}

func (f *fakeAPI) WriteStatus(_ context.Context, _ *corev1.Pod, st *corev1.PodStatus) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses = append(f.statuses, proto.Clone(st).(*corev1.PodStatus))
	return nil
}

func (f *fakeAPI) Delete(_ context.Context, pod *corev1.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, pod.GetMetadata().GetUid())
	return nil
}

func (f *fakeAPI) last() *corev1.PodStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.statuses) == 0 {
		return nil
	}
	return f.statuses[len(f.statuses)-1]
}

// lockedClock is a fake clock safe for the workers' goroutines.
type lockedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *lockedClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *lockedClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type podsWorld struct {
	t      *testing.T
	clock  *lockedClock
	rt     *fakeRuntime
	images *fakeImages
	net    *fakeNet
	api    *fakeAPI
	pods   *Pods
	cancel context.CancelFunc
	done   chan struct{}
}

func newPodsWorld(t *testing.T, objs objects, rt *fakeRuntime, clock *lockedClock) *podsWorld {
	if clock == nil {
		clock = &lockedClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	if rt == nil {
		rt = newFakeRuntime(clock)
	}
	w := &podsWorld{t: t, clock: clock, rt: rt, images: &fakeImages{broken: map[string]string{}, mounts: map[string]bool{}},
		net: &fakeNet{pods: map[string]netip.Addr{}}, api: &fakeAPI{}, done: make(chan struct{})}
	w.start(objs)
	return w
}

func (w *podsWorld) start(objs objects) {
	cfg := PodsConfig{Root: w.t.TempDir(), NodeName: "n1", NodeIP: netip.MustParseAddr("192.168.0.2"), Resync: 5 * time.Millisecond,
		Clock: w.clock, Logger: slog.New(slog.DiscardHandler), DNS: DNSConfig{Servers: []string{"10.96.0.10"}}}
	w.pods = NewPods(cfg, w.rt, w.images, w.net, objs, claims{}, w.api)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.done = make(chan struct{})
	go func() { _ = w.pods.Run(ctx); close(w.done) }()
	w.t.Cleanup(w.stop)
	for {
		w.pods.mu.Lock()
		ok := w.pods.ctx != nil
		w.pods.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *podsWorld) stop() {
	w.cancel()
	<-w.done
}

// until waits for the last written status to satisfy f.
func (w *podsWorld) until(what string, f func(*corev1.PodStatus) bool) *corev1.PodStatus {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st := w.api.last(); st != nil && f(st) {
			return st
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("never %s; last status %v", what, w.api.last())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testPod(uid string, containers ...*corev1.Container) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default", Uid: uid},
		Spec: &corev1.PodSpec{NodeName: "n1", RestartPolicy: "Always", Containers: containers}}
}

func cstatus(st *corev1.PodStatus, name string) *corev1.ContainerStatus {
	return findStatus(append(slices.Clone(st.GetContainerStatuses()), st.GetInitContainerStatuses()...), name)
}

func TestPodsRunInitThenContainersAndReportRunningReady(t *testing.T) {
	w := newPodsWorld(t, objects{}, nil, nil)
	pod := testPod("u1", &corev1.Container{Name: "app", Image: "img:1"})
	pod.Spec.InitContainers = []*corev1.Container{{Name: "setup", Image: "img:1", Command: []string{"/setup"}}}
	w.pods.Update(pod)
	w.until("the init container runs", func(st *corev1.PodStatus) bool {
		return cstatus(st, "setup").GetState().GetRunning() != nil
	})
	if ids := w.rt.ids(); !slices.Equal(ids, []string{"u1_setup_0"}) {
		t.Fatalf("containers while init runs: %v", ids)
	}
	if st := w.api.last(); st.GetPhase() != PhasePending || st.GetPodIP() != "10.244.0.2" {
		t.Fatalf("status while init runs: %v", st)
	}
	w.rt.exit("u1_setup_0", 0)
	st := w.until("app runs ready", func(st *corev1.PodStatus) bool {
		return st.GetPhase() == PhaseRunning && cstatus(st, "app").GetReady()
	})
	if ready := findCondition(st.GetConditions(), CondReady); ready.GetStatus() != "True" {
		t.Fatalf("Ready condition %v", ready)
	}
	spec := w.rt.specs["u1_app_0"]
	if !slices.Equal(spec.Args, []string{"/app"}) || spec.NetnsPath != "/var/run/netns/u1" || spec.Hostname != "web" || len(spec.Mounts) != 3 {
		t.Fatalf("container spec %+v", spec)
	}
	if got := cstatus(st, "app").GetImageID(); got != "sha256:img:1" {
		t.Fatalf("imageID %q", got)
	}
}

func TestPodsCrashLoopBackOff(t *testing.T) {
	w := newPodsWorld(t, objects{}, nil, nil)
	w.pods.Update(testPod("u2", &corev1.Container{Name: "app", Image: "img:1"}))
	w.until("running", func(st *corev1.PodStatus) bool { return cstatus(st, "app").GetState().GetRunning() != nil })
	// The first exit restarts at once.
	w.rt.exit("u2_app_0", 1)
	w.until("restarted once", func(st *corev1.PodStatus) bool {
		c := cstatus(st, "app")
		return c.GetRestartCount() == 1 && c.GetState().GetRunning() != nil && c.GetLastState().GetTerminated().GetExitCode() == 1
	})
	// The second waits 10s.
	w.rt.exit("u2_app_1", 2)
	st := w.until("back-off", func(st *corev1.PodStatus) bool {
		return cstatus(st, "app").GetState().GetWaiting().GetReason() == "CrashLoopBackOff"
	})
	cs := cstatus(st, "app")
	if cs.GetState().GetWaiting().GetMessage() != "back-off 10s restarting failed container=app pod=web_default(u2)" ||
		cs.GetLastState().GetTerminated().GetExitCode() != 2 || cs.GetRestartCount() != 1 {
		t.Fatalf("status in back-off: %v", cs)
	}
	time.Sleep(50 * time.Millisecond)
	if ids := w.rt.ids(); !slices.Equal(ids, []string{"u2_app_1"}) {
		t.Fatalf("restarted before the back-off passed: %v", ids)
	}
	w.clock.Advance(10 * time.Second)
	w.until("restarted twice", func(st *corev1.PodStatus) bool {
		c := cstatus(st, "app")
		return c.GetRestartCount() == 2 && c.GetState().GetRunning() != nil
	})
	w.rt.exit("u2_app_2", 1)
	st = w.until("back-off again", func(st *corev1.PodStatus) bool {
		return cstatus(st, "app").GetState().GetWaiting().GetReason() == "CrashLoopBackOff"
	})
	if msg := cstatus(st, "app").GetState().GetWaiting().GetMessage(); msg != "back-off 20s restarting failed container=app pod=web_default(u2)" {
		t.Fatalf("third back-off: %q", msg)
	}
}

func TestPodsImagePullAndConfigErrors(t *testing.T) {
	w := newPodsWorld(t, objects{}, nil, nil)
	w.images.broken["bad:1"] = `manifest unknown: tag "1" not found`
	w.images.broken["never:1"] = `Container image "never:1" is not present with pull policy of Never`
	pod := testPod("u3", &corev1.Container{Name: "pull", Image: "bad:1"}, &corev1.Container{Name: "never", Image: "never:1"},
		&corev1.Container{Name: "cfg", Image: "img:1", Env: []*corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Name: "missing", Key: "k"}}}}})
	w.pods.Update(pod)
	st := w.until("both waiting", func(st *corev1.PodStatus) bool {
		return cstatus(st, "pull").GetState().GetWaiting().GetReason() == "ErrImagePull" &&
			cstatus(st, "cfg").GetState().GetWaiting().GetReason() == "CreateContainerConfigError" &&
			cstatus(st, "never").GetState().GetWaiting().GetReason() == "ErrImageNeverPull"
	})
	if msg := cstatus(st, "pull").GetState().GetWaiting().GetMessage(); msg != `manifest unknown: tag "1" not found` {
		t.Fatalf("ErrImagePull message %q", msg)
	}
	if msg := cstatus(st, "cfg").GetState().GetWaiting().GetMessage(); msg != `configmap "missing" not found` {
		t.Fatalf("config error message %q", msg)
	}
	if st.GetPhase() != PhasePending {
		t.Fatalf("phase %s", st.GetPhase())
	}
	w.clock.Advance(11 * time.Second)
	w.until("ImagePullBackOff", func(st *corev1.PodStatus) bool {
		return cstatus(st, "pull").GetState().GetWaiting().GetReason() == "ImagePullBackOff"
	})
}

func TestPodsDeletionTearsDownAndAdoptionKeepsContainers(t *testing.T) {
	clock := &lockedClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rt := newFakeRuntime(clock)
	w := newPodsWorld(t, objects{}, rt, clock)
	pod := testPod("u4", &corev1.Container{Name: "app", Image: "img:1"})
	w.pods.Update(pod)
	w.until("running", func(st *corev1.PodStatus) bool { return cstatus(st, "app").GetState().GetRunning() != nil })

	// The agent restarts: a new Pods over the same runtime adopts the container.
	w.stop()
	w2 := newPodsWorld(t, objects{}, rt, clock)
	w2.net = w.net
	w2.pods.net = w.net
	running := proto.Clone(pod).(*corev1.Pod)
	running.Status = w.api.last()
	w2.pods.Update(running)
	time.Sleep(100 * time.Millisecond) // many resyncs
	if st := w2.api.last(); st != nil {
		t.Fatalf("the adopted pod's status was rewritten although nothing changed: %v", st)
	}
	if len(rt.created) != 1 {
		t.Fatalf("the restarted agent created containers again: %v", rt.created)
	}

	deleting := proto.Clone(running).(*corev1.Pod)
	deleting.Metadata.DeletionTimestamp = metaNow(clock)
	w2.pods.Update(deleting)
	deadline := time.Now().Add(5 * time.Second)
	for {
		w2.api.mu.Lock()
		n := len(w2.api.deleted)
		w2.api.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod was never deleted through the API")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ids := rt.ids(); len(ids) != 0 {
		t.Fatalf("containers left: %v", ids)
	}
	if len(w.net.pods) != 0 || len(w2.images.mounts) != 0 {
		t.Fatalf("network %v or rootfs %v left", w.net.pods, w2.images.mounts)
	}
}

func metaNow(c Clock) *timestamppb.Timestamp { return timestamppb.New(c.Now()) }

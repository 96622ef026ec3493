package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// PodsConfig configures the pod workers.
type PodsConfig struct {
	Root        string // pods/<uid>/ (volumes, etc files) and logs/ live here
	NodeName    string
	NodeIP      netip.Addr
	DNS         DNSConfig
	Allocatable map[string]*structpb.Value // for resourceFieldRef without limits
	LogMaxBytes int64
	Resync      time.Duration // how often a pod is looked at without news; default 1s
	Clock       Clock
	Logger      *slog.Logger
}

// Pods runs the pods bound to this node: one worker goroutine per pod, each a
// level-triggered loop that moves its pod one step towards its spec on every
// update or tick — network, volumes, init containers in order, containers,
// restarts with back-off, probes — and reports the status when it changed.
type Pods struct {
	cfg     PodsConfig
	rt      Runtime
	images  Images
	net     Network
	vols    *Volumes
	api     PodAPI
	objects ObjectSource
	backoff *Backoff
	prober  *Prober

	mu      sync.Mutex
	ctx     context.Context       // Run's
	workers map[string]*podWorker // by pod UID
	wg      sync.WaitGroup
}

// NewPods returns the workers; nothing runs before Run.
func NewPods(cfg PodsConfig, rt Runtime, images Images, net Network, objects ObjectSource, claims ClaimSource, api PodAPI) *Pods {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	p := &Pods{cfg: cfg, rt: rt, images: images, net: net, api: api, objects: objects,
		vols:    &Volumes{Root: filepath.Join(cfg.Root, "pods"), Objects: objects, Claims: claims, Clock: cfg.Clock},
		backoff: NewBackoff(cfg.Clock), workers: map[string]*podWorker{}}
	p.prober = &Prober{Exec: execProber{rt}}
	return p
}

// execProber runs exec probes through the runtime.
type execProber struct{ rt Runtime }

func (e execProber) ExecProbe(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	var out strings.Builder
	code, err := e.rt.Exec(ctx, id, cmd, nil, &out, &out)
	return code, []byte(out.String()), err
}

// Run lets workers run until ctx ends, then waits for them.
func (p *Pods) Run(ctx context.Context) error {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	<-ctx.Done()
	p.wg.Wait()
	return nil
}

// Update hands the latest version of a pod bound to this node to its worker,
// starting one if needed. A pod with a deletionTimestamp is torn down and
// then deleted through the API.
func (p *Pods) Update(pod *corev1.Pod) {
	uid := pod.GetMetadata().GetUid()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return
	}
	w := p.workers[uid]
	if w == nil {
		w = &podWorker{p: p, uid: uid, updates: make(chan *corev1.Pod, 1), ctrs: map[string]*ctr{}}
		p.workers[uid] = w
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.run(p.ctx)
			p.mu.Lock()
			delete(p.workers, uid)
			p.mu.Unlock()
		}()
	}
	select {
	case <-w.updates: // replace an update not yet taken
	default:
	}
	w.updates <- pod
}

// Sweep removes what belongs to no pod in keep (pod UIDs): containers and pod
// directories left by pods deleted while the agent was away.
func (p *Pods) Sweep(ctx context.Context, keep map[string]bool) error {
	p.mu.Lock()
	for uid := range p.workers {
		keep[uid] = true
	}
	p.mu.Unlock()
	states, err := p.rt.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range states {
		uid, _, _, ok := parseContainerID(st.ID)
		if !ok || keep[uid] {
			continue
		}
		errs = append(errs, p.rt.Stop(ctx, st.ID, 0), p.rt.Remove(ctx, st.ID), p.images.ReleaseRootfs(st.ID))
	}
	entries, _ := os.ReadDir(filepath.Join(p.cfg.Root, "pods"))
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		stub := &corev1.Pod{Metadata: readPodRecord(filepath.Join(p.cfg.Root, "pods", e.Name()))}
		if stub.Metadata.GetUid() == e.Name() {
			errs = append(errs, p.net.TearDown(ctx, stub))
		}
		errs = append(errs, p.vols.TearDown(e.Name()))
	}
	return errors.Join(errs...)
}

// containerID names a container run of a pod: "<pod uid>_<name>_<restart>".
func containerID(uid, name string, restart int32) string {
	return uid + "_" + name + "_" + strconv.Itoa(int(restart))
}

func parseContainerID(id string) (uid, name string, restart int32, ok bool) {
	i := strings.IndexByte(id, '_')
	j := strings.LastIndexByte(id, '_')
	if i < 0 || j <= i {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(id[j+1:])
	if err != nil {
		return "", "", 0, false
	}
	return id[:i], id[i+1 : j], int32(n), true
}

// ctr is a worker's state of one container of its pod.
type ctr struct {
	name       string
	init       bool
	restarts   int32
	id         string // current run; "" before the first
	state      ContainerState
	last       *corev1.ContainerStateTerminated // the run before
	waiting    *corev1.ContainerStateWaiting    // why it does not run
	imageID    string
	pullFailed time.Time // last failed pull, for ImagePullBackOff
	ready      bool
	started    bool
	live       *ProbeTimer
	readyP     *ProbeTimer
	startup    *ProbeTimer
}

// podWorker owns one pod.
type podWorker struct {
	p       *Pods
	uid     string
	updates chan *corev1.Pod
	pod     *corev1.Pod

	netns     string
	ip        netip.Addr
	paths     VolumePaths
	etc       []Mount
	volsAt    time.Time
	ctrs      map[string]*ctr
	adopted   bool
	recorded  bool // writePodRecord done
	startTime time.Time
	written   *corev1.PodStatus

	// view is what Pods.Container reads from other goroutines; the worker
	// replaces it after each sync (publishView).
	view atomic.Pointer[podView]
}

func (w *podWorker) log() *slog.Logger {
	return w.p.cfg.Logger.With("pod", w.pod.GetMetadata().GetNamespace()+"/"+w.pod.GetMetadata().GetName())
}

func (w *podWorker) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case pod := <-w.updates:
			w.pod = pod
		case <-t.C:
		}
		if w.pod == nil {
			continue
		}
		if w.pod.GetMetadata().GetDeletionTimestamp() != nil {
			if err := w.terminate(ctx); err != nil {
				w.log().Warn("tear down pod; will retry", "err", err)
				resetTimer(t, w.p.cfg.Resync)
				continue
			}
			if err := w.p.api.Delete(ctx, w.pod); err != nil {
				w.log().Warn("delete pod; will retry", "err", err)
				resetTimer(t, w.p.cfg.Resync)
				continue
			}
			return
		}
		w.sync(ctx)
		w.publishView()
		if err := w.report(ctx); err != nil && ctx.Err() == nil {
			w.log().Debug("write pod status", "err", err)
		}
		resetTimer(t, w.p.cfg.Resync)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

func (w *podWorker) podDir() string { return filepath.Join(w.p.cfg.Root, "pods", w.uid) }

// sync moves the pod one step on.
func (w *podWorker) sync(ctx context.Context) {
	pod := w.pod
	now := w.p.cfg.Clock.Now()
	if w.startTime.IsZero() {
		w.startTime = now
		if st := pod.GetStatus().GetStartTime(); st != nil {
			w.startTime = st.AsTime()
		}
	}
	if !w.adopted {
		w.adopt(ctx)
	}
	if isPodTerminal(w.phase()) {
		return // a finished pod's containers stay as they ended
	}
	if !w.recorded {
		if err := writePodRecord(w.podDir(), pod); err != nil {
			w.log().Warn("pod record", "err", err)
		} else {
			w.recorded = true // name and UID never change
		}
	}
	if w.netns == "" && !pod.GetSpec().GetHostNetwork() {
		netns, ip, err := w.p.net.SetUp(ctx, pod)
		if err != nil {
			w.setWaitingAll("ContainerCreating", "")
			w.log().Warn("pod network", "err", err)
			return
		}
		w.netns, w.ip = netns, ip
	}
	if pod.GetSpec().GetHostNetwork() {
		w.ip = w.p.cfg.NodeIP
	}
	if w.paths == nil || now.Sub(w.volsAt) > 10*time.Second {
		paths, err := w.p.vols.Setup(pod)
		if err != nil {
			w.configError(err)
			return
		}
		w.paths, w.volsAt = paths, now
	}
	if w.etc == nil {
		etc, err := PodFiles(filepath.Join(w.podDir(), "etc"), pod, w.ip.String(), w.p.cfg.DNS)
		if err != nil {
			w.configError(err)
			return
		}
		w.etc = etc
	}
	policy := pod.GetSpec().GetRestartPolicy()
	for _, c := range pod.GetSpec().GetInitContainers() {
		cs := w.container(c.GetName(), true)
		w.observe(ctx, cs)
		switch {
		case cs.id != "" && cs.state.Status == StateExited && cs.state.ExitCode == 0:
			continue
		case cs.id != "" && cs.state.Status != StateExited:
			return // still running
		case cs.id != "" && policy == "Never":
			return // failed: the pod fails
		case cs.id != "":
			w.restart(ctx, c, cs)
			return
		}
		w.start(ctx, c, cs)
		return
	}
	for _, c := range pod.GetSpec().GetContainers() {
		cs := w.container(c.GetName(), false)
		w.observe(ctx, cs)
		switch {
		case cs.id == "":
			w.start(ctx, c, cs)
		case cs.state.Status == StateRunning:
			w.probe(ctx, c, cs)
		case cs.state.Status == StateExited:
			if policy == "Always" || policy == "" || (policy == "OnFailure" && cs.state.ExitCode != 0) {
				w.restart(ctx, c, cs)
			}
		}
	}
}

func isPodTerminal(phase string) bool { return phase == PhaseSucceeded || phase == PhaseFailed }

func (w *podWorker) container(name string, init bool) *ctr {
	cs := w.ctrs[name]
	if cs == nil {
		cs = &ctr{name: name, init: init}
		w.ctrs[name] = cs
	}
	return cs
}

// adopt finds the containers of this pod that a previous run of the agent
// started: the newest run of each name is the current one.
func (w *podWorker) adopt(ctx context.Context) {
	states, err := w.p.rt.List(ctx)
	if err != nil {
		return
	}
	w.adopted = true
	initNames := map[string]bool{}
	for _, c := range w.pod.GetSpec().GetInitContainers() {
		initNames[c.GetName()] = true
	}
	for _, st := range states {
		uid, name, restart, ok := parseContainerID(st.ID)
		if !ok || uid != w.uid {
			continue
		}
		cs := w.container(name, initNames[name])
		if cs.id != "" && restart < cs.restarts {
			_ = w.p.rt.Remove(ctx, st.ID) // an older run left behind
			continue
		}
		if cs.id != "" {
			_ = w.p.rt.Remove(ctx, cs.id)
		}
		cs.id, cs.restarts, cs.state = st.ID, restart, st
		cs.waiting = nil
		if st.Status == StateRunning {
			cs.started = true
		}
	}
	for _, cs := range w.ctrs {
		if cs.id == "" {
			continue
		}
		for _, s := range append(append([]*corev1.ContainerStatus(nil), w.pod.GetStatus().GetContainerStatuses()...), w.pod.GetStatus().GetInitContainerStatuses()...) {
			if s.GetName() == cs.name {
				cs.imageID = s.GetImageID()
				cs.last = s.GetLastState().GetTerminated()
			}
		}
	}
}

// observe refreshes a container's state from the runtime.
func (w *podWorker) observe(ctx context.Context, cs *ctr) {
	if cs.id == "" {
		return
	}
	st, err := w.p.rt.State(ctx, cs.id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			cs.state = ContainerState{ID: cs.id, Status: StateExited, ExitCode: 137, Reason: "ContainerStatusUnknown",
				FinishedAt: w.p.cfg.Clock.Now()}
		}
		return
	}
	cs.state = st
}

// start pulls the image, resolves the container's configuration and starts
// its next run; failures become the container's waiting reason.
func (w *podWorker) start(ctx context.Context, c *corev1.Container, cs *ctr) {
	pod := w.pod
	key := w.uid + "/" + c.GetName()
	if d := w.p.backoff.Wait("pull/"+key, cs.pullFailed); d > 0 {
		return // ImagePullBackOff stays
	}
	img, err := w.p.images.Pull(ctx, c.GetImage(), pullPolicy(c), w.pullSecrets())
	if err != nil {
		var pe *PullError
		msg := err.Error()
		if errors.As(err, &pe) {
			msg = pe.Message
		}
		reason := "ErrImagePull"
		switch {
		case pe != nil && pe.Never:
			reason = "ErrImageNeverPull"
		case cs.waiting.GetReason() == "ErrImagePull" || cs.waiting.GetReason() == "ImagePullBackOff":
			reason = "ImagePullBackOff"
			msg = fmt.Sprintf("Back-off pulling image %q: %s", c.GetImage(), msg)
		}
		w.p.backoff.Failed("pull/" + key)
		cs.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		cs.pullFailed = w.p.cfg.Clock.Now()
		return
	}
	w.p.backoff.Forget("pull/" + key)
	cs.imageID = img.ID
	env, err := Env(w.podWithIPs(), c, w.p.objects, w.p.cfg.Allocatable)
	if err != nil {
		w.containerConfigError(cs, err)
		return
	}
	argv, err := Command(c, img.Config, env.Env)
	if err != nil {
		w.containerConfigError(cs, &ConfigError{Message: err.Error()})
		return
	}
	mounts, err := ContainerMounts(c, w.paths)
	if err != nil {
		w.containerConfigError(cs, err)
		return
	}
	id := containerID(w.uid, c.GetName(), cs.restarts)
	rootfs, err := w.p.images.Rootfs(id, c.GetImage())
	if err != nil {
		cs.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		return
	}
	netns := w.netns
	if pod.GetSpec().GetHostNetwork() {
		netns = "/proc/1/ns/net" // the node's own network namespace
	}
	spec := ContainerSpec{
		ID: id, Rootfs: rootfs, Args: argv, Env: ProcessEnv(img.Config, env.Env), Cwd: WorkingDir(c, img.Config),
		Hostname: hostnameOf(pod), NetnsPath: netns, Mounts: append(append([]Mount(nil), w.etc...), mounts...),
		CgroupParent: "pod" + w.uid, LogPath: w.logPath(c.GetName(), cs.restarts), LogMaxBytes: w.p.cfg.LogMaxBytes,
	}
	if sc := c.GetSecurityContext(); sc != nil {
		if sc.RunAsUser != nil {
			spec.UID = uint32(sc.GetRunAsUser())
		}
		if sc.RunAsGroup != nil {
			spec.GID = uint32(sc.GetRunAsGroup())
		}
	}
	applyLimits(&spec, c)
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		cs.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		return
	}
	if err := w.p.rt.Create(ctx, spec); err != nil {
		_ = w.p.images.ReleaseRootfs(id)
		cs.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		return
	}
	cs.id, cs.waiting = id, nil
	if err := w.p.rt.Start(ctx, id); err != nil {
		cs.state = ContainerState{ID: id, Status: StateExited, ExitCode: 128, Reason: "StartError", FinishedAt: w.p.cfg.Clock.Now()}
		w.log().Warn("start container", "container", c.GetName(), "err", err)
		return
	}
	w.observe(ctx, cs)
	cs.started = cs.state.Status == StateRunning
	started := w.p.cfg.Clock.Now()
	cs.live, cs.readyP, cs.startup = nil, nil, nil
	if p := c.GetStartupProbe(); p != nil {
		cs.startup = NewProbeTimer(p, started, ProbeUnknown)
	}
	if p := c.GetLivenessProbe(); p != nil {
		cs.live = NewProbeTimer(p, started, ProbeSuccess)
	}
	if p := c.GetReadinessProbe(); p != nil {
		cs.readyP = NewProbeTimer(p, started, ProbeFailure)
	}
}

func (w *podWorker) podWithIPs() *corev1.Pod {
	pod := proto.Clone(w.pod).(*corev1.Pod)
	if pod.Status == nil {
		pod.Status = &corev1.PodStatus{}
	}
	if w.ip.IsValid() {
		pod.Status.PodIP = w.ip.String()
		pod.Status.PodIPs = []*corev1.PodIP{{Ip: w.ip.String()}}
	}
	if w.p.cfg.NodeIP.IsValid() {
		pod.Status.HostIP = w.p.cfg.NodeIP.String()
		pod.Status.HostIPs = []*corev1.HostIP{{Ip: w.p.cfg.NodeIP.String()}}
	}
	return pod
}

func hostnameOf(pod *corev1.Pod) string {
	if h := pod.GetSpec().GetHostname(); h != "" {
		return h
	}
	n := pod.GetMetadata().GetName()
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-.")
	}
	return n
}

// logPath is the kubelet's layout: logs/<ns>_<pod>_<uid>/<container>/<restart>.log.
func (w *podWorker) logPath(container string, restart int32) string {
	md := w.pod.GetMetadata()
	return filepath.Join(w.p.cfg.Root, "logs", md.GetNamespace()+"_"+md.GetName()+"_"+w.uid, container, strconv.Itoa(int(restart))+".log")
}

func pullPolicy(c *corev1.Container) string {
	if p := c.GetImagePullPolicy(); p != "" {
		return p
	}
	if strings.HasSuffix(c.GetImage(), ":latest") || !strings.Contains(c.GetImage()[strings.LastIndexByte(c.GetImage(), '/')+1:], ":") {
		return "Always"
	}
	return "IfNotPresent"
}

func (w *podWorker) pullSecrets() [][]byte {
	var out [][]byte
	for _, ref := range w.pod.GetSpec().GetImagePullSecrets() {
		s, err := w.p.objects.Secret(w.pod.GetMetadata().GetNamespace(), ref.GetName())
		if err != nil {
			continue // kubelet too pulls without a secret it cannot find
		}
		if d, ok := s.GetData()[".dockerconfigjson"]; ok {
			out = append(out, d)
		}
	}
	return out
}

// applyLimits turns resources.limits into cgroup settings: memory in bytes,
// cpu as a CFS quota over a 100 ms period; requests.cpu as shares.
func applyLimits(spec *ContainerSpec, c *corev1.Container) {
	if v, ok := c.GetResources().GetLimits()["memory"]; ok {
		if q, err := Quantity(v); err == nil {
			spec.MemoryLimit = q.Value()
		}
	}
	if v, ok := c.GetResources().GetLimits()["cpu"]; ok {
		if q, err := Quantity(v); err == nil && q.MilliValue() > 0 {
			spec.CPUPeriod = 100000
			spec.CPUQuota = max(q.MilliValue()*100, 1000)
		}
	}
	req, ok := c.GetResources().GetRequests()["cpu"]
	if !ok {
		req, ok = c.GetResources().GetLimits()["cpu"]
	}
	if ok {
		if q, err := Quantity(req); err == nil {
			spec.CPUShares = uint64(max(q.MilliValue()*1024/1000, 2))
		}
	}
}

func (w *podWorker) containerConfigError(cs *ctr, err error) {
	var ce *ConfigError
	if errors.As(err, &ce) {
		cs.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: ce.Message}
		return
	}
	cs.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
}

// configError marks every container not yet started with the pod-level error.
func (w *podWorker) configError(err error) {
	for _, c := range append(append([]*corev1.Container(nil), w.pod.GetSpec().GetInitContainers()...), w.pod.GetSpec().GetContainers()...) {
		cs := w.container(c.GetName(), false)
		if cs.id == "" {
			w.containerConfigError(cs, err)
		}
	}
}

func (w *podWorker) setWaitingAll(reason, msg string) {
	for _, c := range append(append([]*corev1.Container(nil), w.pod.GetSpec().GetInitContainers()...), w.pod.GetSpec().GetContainers()...) {
		cs := w.container(c.GetName(), false)
		if cs.id == "" {
			cs.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		}
	}
}

// restart starts the next run of an exited container, as the kubelet does: the
// first exit restarts it at once, later ones wait their back-off (10 s,
// doubling to 5 min, counted from the exit), meanwhile it is waiting in
// CrashLoopBackOff.
func (w *podWorker) restart(ctx context.Context, c *corev1.Container, cs *ctr) {
	key := w.uid + "/" + c.GetName()
	if delay, known := w.p.backoff.Delay(key); known {
		if w.p.backoff.Wait(key, cs.state.FinishedAt) > 0 {
			cs.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, c.GetName(),
					w.pod.GetMetadata().GetName(), w.pod.GetMetadata().GetNamespace(), w.uid)}
			return
		}
	}
	w.p.backoff.Failed(key)
	old := cs.id
	cs.last = terminated(cs)
	_ = w.p.rt.Remove(ctx, old)
	_ = w.p.images.ReleaseRootfs(old)
	cs.restarts++
	cs.id, cs.waiting, cs.ready = "", nil, false
	w.start(ctx, c, cs)
}

// probe runs the container's due probes; a failed liveness or startup probe
// kills it (the restart policy then applies).
func (w *podWorker) probe(ctx context.Context, c *corev1.Container, cs *ctr) {
	now := w.p.cfg.Clock.Now()
	run := func(pt *ProbeTimer, p *corev1.Probe) ProbeResult {
		if pt == nil {
			return ProbeSuccess
		}
		if due, _ := pt.Due(now); due {
			r, msg := w.p.prober.Run(ctx, w.pod, c, cs.id, w.ip, p)
			res := pt.Observe(now, r)
			if r == ProbeFailure {
				w.log().Debug("probe failed", "container", c.GetName(), "message", msg)
			}
			return res
		}
		return pt.Result()
	}
	if cs.startup != nil && cs.startup.Result() != ProbeSuccess {
		if run(cs.startup, c.GetStartupProbe()) == ProbeFailure {
			w.kill(ctx, c, cs, "startup")
		}
		cs.ready = false
		return
	}
	if run(cs.live, c.GetLivenessProbe()) == ProbeFailure {
		w.kill(ctx, c, cs, "liveness")
		return
	}
	cs.ready = run(cs.readyP, c.GetReadinessProbe()) == ProbeSuccess
}

func (w *podWorker) kill(ctx context.Context, c *corev1.Container, cs *ctr, why string) {
	w.log().Info("container failed its probe; killing it", "container", c.GetName(), "probe", why)
	_ = w.p.rt.Stop(ctx, cs.id, w.grace())
	w.observe(ctx, cs)
	cs.ready = false
}

func (w *podWorker) grace() time.Duration {
	if g := w.pod.GetMetadata().DeletionGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	if g := w.pod.GetSpec().TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// terminate stops every container (SIGTERM, SIGKILL after the grace period)
// and releases everything the pod held.
func (w *podWorker) terminate(ctx context.Context) error {
	if !w.adopted {
		w.adopt(ctx)
	}
	grace := w.grace()
	var wg sync.WaitGroup
	errs := make([]error, 0, len(w.ctrs))
	var mu sync.Mutex
	for _, cs := range w.ctrs {
		if cs.id == "" {
			continue
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			err := errors.Join(w.p.rt.Stop(ctx, id, grace), w.p.rt.Remove(ctx, id), w.p.images.ReleaseRootfs(id))
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}(cs.id)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, cs := range w.ctrs {
		cs.id = ""
	}
	if !w.pod.GetSpec().GetHostNetwork() {
		if err := w.p.net.TearDown(ctx, w.pod); err != nil {
			return err
		}
	}
	if err := w.p.vols.TearDown(w.uid); err != nil {
		return err
	}
	md := w.pod.GetMetadata()
	_ = os.RemoveAll(filepath.Join(w.p.cfg.Root, "logs", md.GetNamespace()+"_"+md.GetName()+"_"+w.uid))
	for _, c := range w.pod.GetSpec().GetContainers() {
		w.p.backoff.Forget(w.uid + "/" + c.GetName())
		w.p.backoff.Forget("pull/" + w.uid + "/" + c.GetName())
	}
	return nil
}

func terminated(cs *ctr) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{ExitCode: int32(cs.state.ExitCode), Reason: cs.state.Reason, ContainerID: "rafter://" + cs.state.ID}
	if !cs.state.StartedAt.IsZero() {
		t.StartedAt = timestamppb.New(cs.state.StartedAt)
	}
	if !cs.state.FinishedAt.IsZero() {
		t.FinishedAt = timestamppb.New(cs.state.FinishedAt)
	}
	return t
}

// containerStatus is the API's view of one container.
func (w *podWorker) containerStatus(c *corev1.Container, cs *ctr) *corev1.ContainerStatus {
	st := &corev1.ContainerStatus{Name: c.GetName(), Image: c.GetImage(), ImageID: cs.imageID, RestartCount: cs.restarts,
		Started: proto.Bool(cs.started && cs.state.Status == StateRunning), Ready: cs.ready && cs.state.Status == StateRunning}
	if cs.last != nil {
		st.LastState = &corev1.ContainerState{Terminated: cs.last}
	}
	switch {
	case cs.waiting != nil:
		st.State = &corev1.ContainerState{Waiting: cs.waiting}
		if cs.id != "" && cs.state.Status == StateExited && cs.waiting.GetReason() == "CrashLoopBackOff" {
			st.LastState = &corev1.ContainerState{Terminated: terminated(cs)}
		}
	case cs.id == "":
		st.State = &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	case cs.state.Status == StateRunning:
		st.ContainerID = "rafter://" + cs.id
		st.State = &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: timestamppb.New(cs.state.StartedAt)}}
		if cs.readyP == nil && (cs.startup == nil || cs.startup.Result() == ProbeSuccess) {
			st.Ready = true
		}
	case cs.state.Status == StateExited:
		st.ContainerID = "rafter://" + cs.id
		st.State = &corev1.ContainerState{Terminated: terminated(cs)}
	default:
		st.ContainerID = "rafter://" + cs.id
		st.State = &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	}
	return st
}

func (w *podWorker) statuses() (inits, ctrs []*corev1.ContainerStatus) {
	for _, c := range w.pod.GetSpec().GetInitContainers() {
		inits = append(inits, w.containerStatus(c, w.container(c.GetName(), true)))
	}
	for _, c := range w.pod.GetSpec().GetContainers() {
		ctrs = append(ctrs, w.containerStatus(c, w.container(c.GetName(), false)))
	}
	return inits, ctrs
}

func (w *podWorker) phase() string {
	inits, ctrs := w.statuses()
	return PodPhase(w.pod.GetSpec(), inits, ctrs)
}

// report writes the pod's status when it differs from what was last written.
func (w *podWorker) report(ctx context.Context) error {
	now := w.p.cfg.Clock.Now()
	inits, ctrs := w.statuses()
	phase := PodPhase(w.pod.GetSpec(), inits, ctrs)
	st := proto.Clone(w.pod.GetStatus()).(*corev1.PodStatus)
	if st == nil {
		st = &corev1.PodStatus{}
	}
	st.Phase = phase
	st.InitContainerStatuses, st.ContainerStatuses = inits, ctrs
	st.Conditions = PodConditions(w.pod, inits, ctrs, phase, now)
	if w.p.cfg.NodeIP.IsValid() {
		st.HostIP = w.p.cfg.NodeIP.String()
		st.HostIPs = []*corev1.HostIP{{Ip: st.HostIP}}
	}
	if w.ip.IsValid() {
		st.PodIP = w.ip.String()
		st.PodIPs = []*corev1.PodIP{{Ip: st.PodIP}}
	}
	st.StartTime = timestamppb.New(w.startTime.UTC().Truncate(time.Second))
	if w.written != nil && proto.Equal(w.written, st) {
		return nil
	}
	if proto.Equal(w.pod.GetStatus(), st) {
		w.written = st
		return nil
	}
	if err := w.p.api.WriteStatus(ctx, w.pod, st); err != nil {
		return err
	}
	w.written = st
	return nil
}

// podRecord is what Sweep needs to tear down a pod it no longer sees.
func writePodRecord(dir string, pod *corev1.Pod) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	md := pod.GetMetadata()
	rec := md.GetNamespace() + "\n" + md.GetName() + "\n" + md.GetUid() + "\n"
	p := filepath.Join(dir, "pod")
	if err := os.WriteFile(p+".tmp", []byte(rec), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// readPodRecord reads what writePodRecord wrote in dir.
func readPodRecord(dir string) *metav1.ObjectMeta {
	b, err := os.ReadFile(filepath.Join(dir, "pod"))
	if err != nil {
		return &metav1.ObjectMeta{}
	}
	f := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(f) != 3 {
		return &metav1.ObjectMeta{}
	}
	return &metav1.ObjectMeta{Namespace: f[0], Name: f[1], Uid: f[2]}
}

// ContainerRef is one run of a pod's container, as logs and exec need it.
type ContainerRef struct {
	ID string // the runtime's container ID
	// LogPaths are the run's CRI log files, oldest first (the rotated one,
	// then the live one), as CopyLogs takes them.
	LogPaths []string
	// Running asks the runtime whether the run may still write output; it
	// is false for a previous run.
	Running StillRunning
}

// podView is a worker's pod as Container sees it: published after each sync,
// never changed afterwards.
type podView struct {
	namespace, name, uid string
	logDir               string   // logs/<ns>_<pod>_<uid>
	names                []string // init containers, then containers
	defaultName          string   // the only container, or the default-container annotation's
	ctrs                 map[string]ctrView
}

// ctrView is one container of a podView.
type ctrView struct {
	id       string // current run; "" when none
	restarts int32
	waiting  string // why there is no run
}

// publishView replaces the worker's view. Only the worker's goroutine calls it.
func (w *podWorker) publishView() {
	md := w.pod.GetMetadata()
	v := &podView{namespace: md.GetNamespace(), name: md.GetName(), uid: w.uid,
		logDir: filepath.Join(w.p.cfg.Root, "logs", md.GetNamespace()+"_"+md.GetName()+"_"+w.uid), ctrs: map[string]ctrView{}}
	for _, c := range w.pod.GetSpec().GetInitContainers() {
		v.names = append(v.names, c.GetName())
	}
	for _, c := range w.pod.GetSpec().GetContainers() {
		v.names = append(v.names, c.GetName())
	}
	if cs := w.pod.GetSpec().GetContainers(); len(cs) == 1 {
		v.defaultName = cs[0].GetName()
	}
	if d := md.GetAnnotations()["kubectl.kubernetes.io/default-container"]; d != "" {
		v.defaultName = d
	}
	for name, cs := range w.ctrs {
		v.ctrs[name] = ctrView{id: cs.id, restarts: cs.restarts, waiting: cs.waiting.GetReason()}
	}
	w.view.Store(v)
}

// Container finds a container run of a pod on this node for logs and exec:
// the current run, or with previous the one before it. uid, when not empty,
// selects that instance of the pod; container "" means the pod's default
// container. It may be called from any goroutine and does not block on the
// workers. Errors: ErrNotFound (wrapped) for a pod this node does not run;
// otherwise the kubelet's words for an unknown or unnamed container, one
// not started yet, or no previous run.
func (p *Pods) Container(namespace, pod, uid, container string, previous bool) (ContainerRef, error) {
	var v *podView
	p.mu.Lock()
	for _, w := range p.workers {
		if wv := w.view.Load(); wv != nil && wv.namespace == namespace && wv.name == pod && (uid == "" || wv.uid == uid) {
			v = wv
			break
		}
	}
	p.mu.Unlock()
	if v == nil {
		return ContainerRef{}, fmt.Errorf("pod %q in namespace %q on this node: %w", pod, namespace, ErrNotFound)
	}
	if container == "" {
		if v.defaultName == "" {
			return ContainerRef{}, fmt.Errorf("a container name must be specified for pod %s, choose one of: %v", pod, v.names)
		}
		container = v.defaultName
	}
	known := false
	for _, n := range v.names {
		known = known || n == container
	}
	if !known {
		return ContainerRef{}, fmt.Errorf("container %s is not valid for pod %s", container, pod)
	}
	cv := v.ctrs[container]
	logs := func(restart int32) []string {
		path := filepath.Join(v.logDir, container, strconv.Itoa(int(restart))+".log")
		return []string{path + ".1", path}
	}
	if previous {
		if cv.restarts < 1 {
			return ContainerRef{}, fmt.Errorf("previous terminated container %q in pod %q not found", container, pod)
		}
		return ContainerRef{ID: containerID(v.uid, container, cv.restarts-1), LogPaths: logs(cv.restarts - 1),
			Running: func() bool { return false }}, nil
	}
	if cv.id == "" {
		reason := cv.waiting
		if reason == "" {
			reason = "ContainerCreating"
		}
		return ContainerRef{}, fmt.Errorf("container %q in pod %q is waiting to start: %s", container, pod, reason)
	}
	id := cv.id
	return ContainerRef{ID: id, LogPaths: logs(cv.restarts), Running: func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := p.rt.State(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return false
		}
		return err != nil || st.Status == StateRunning || st.Status == StateCreated
	}}, nil
}

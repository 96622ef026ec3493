package ctrl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/sched"
)

// SchedulerConfig configures the scheduling loop.
type SchedulerConfig struct {
	// Name is the schedulerName this loop serves ("" in a pod means it too).
	Name string
	// BatchSize bounds how many pending pods one pass decides.
	BatchSize int
	// BindWorkers is how many binds are in flight at once; Raft groups concurrent
	// binds into one disk write and one replication round.
	BindWorkers int
	// RetryUnschedulable is how often pods that fit nowhere are tried again even
	// when nothing changed (node and pod changes retry them at once).
	RetryUnschedulable time.Duration
	Sched              sched.Config
	Clock              Clock
	Logger             *slog.Logger
}

// DefaultSchedulerConfig returns the settings the control plane uses.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{Name: "default-scheduler", BatchSize: 1000, BindWorkers: 64,
		RetryUnschedulable: time.Minute, Sched: sched.DefaultConfig(), Clock: RealClock(), Logger: slog.Default()}
}

// Validate checks the settings.
func (c SchedulerConfig) Validate() error {
	if c.Name == "" || c.BatchSize < 1 || c.BindWorkers < 1 || c.RetryUnschedulable <= 0 {
		return fmt.Errorf("scheduler: name, batch size, bind workers and retry period must be set, got %q %d %d %s",
			c.Name, c.BatchSize, c.BindWorkers, c.RetryUnschedulable)
	}
	if c.Clock == nil || c.Logger == nil {
		return errors.New("scheduler: clock and logger are required")
	}
	return c.Sched.Validate()
}

// Scheduler is the loop around internal/sched: informers on nodes and pods feed
// its cache and a FIFO of pending pods; each pass decides a batch and binds the
// placed pods through pods/binding (with the pod's UID as precondition), and
// records FailedScheduling events and PodScheduled=False for the others, which
// wait until a node or pod changes. It runs on the Raft leader only.
type Scheduler struct {
	cfg    SchedulerConfig
	conn   grpc.ClientConnInterface
	pods   corev1.PodsClient
	events *EventRecorder
	algo   *sched.Scheduler
	wake   chan struct{} // 1 slot: a pass is due
	shared *Informers    // nil: Run uses informers of its own

	mu      sync.Mutex // guards everything below
	cache   *sched.Cache
	active  []string          // pending pod keys in arrival order
	queued  map[string]bool   // keys in active
	unsched map[string]string // pods that fit nowhere -> the message they got
	binding map[string]bool   // keys with a bind in flight
	podInf  *Informer[*corev1.Pod]
}

// NewScheduler returns a scheduler talking to the API through conn.
func NewScheduler(conn grpc.ClientConnInterface, cfg SchedulerConfig) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	algo, err := sched.New(cfg.Sched)
	if err != nil {
		return nil, err
	}
	cache, _ := sched.NewCache(nil, nil)
	return &Scheduler{cfg: cfg, conn: conn, pods: corev1.NewPodsClient(conn), algo: algo, cache: cache,
		events: NewEventRecorder(corev1.NewEventsClient(conn), cfg.Name, cfg.Clock, cfg.Logger),
		wake:   make(chan struct{}, 1), queued: map[string]bool{}, unsched: map[string]string{}, binding: map[string]bool{}}, nil
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (s *Scheduler) UseInformers(f *Informers) { s.shared = f }

// Run schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, s.shared, s.conn, s.cfg.Clock, s.cfg.Logger)
	if err != nil {
		return err
	}
	nodeInf, podInf := f.Nodes(), f.Pods()
	s.mu.Lock()
	s.podInf = podInf
	s.mu.Unlock()
	_ = nodeInf.AddHandler(HandlerFuncs[*corev1.Node]{
		Add:    func(n *corev1.Node) { s.nodeChanged(nil, n) },
		Update: func(o, n *corev1.Node) { s.nodeChanged(o, n) },
		Delete: func(n *corev1.Node) {
			s.mu.Lock()
			s.cache.RemoveNode(n.GetMetadata().GetName())
			s.mu.Unlock()
		},
	})
	_ = podInf.AddHandler(HandlerFuncs[*corev1.Pod]{
		Add:    func(p *corev1.Pod) { s.podChanged(nil, p) },
		Update: func(o, p *corev1.Pod) { s.podChanged(o, p) },
		Delete: s.podDeleted,
	})
	g.Go(func() error { return s.events.Run(ctx) })
	g.Go(func() error {
		if err := nodeInf.WaitSynced(ctx); err != nil {
			return nil
		}
		if err := podInf.WaitSynced(ctx); err != nil {
			return nil
		}
		return s.loop(ctx)
	})
	return g.Wait()
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) mine(p *corev1.Pod) bool {
	n := p.GetSpec().GetSchedulerName()
	return n == "" || n == s.cfg.Name
}

func (s *Scheduler) nodeChanged(old, n *corev1.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cache.UpdateNode(n); err != nil {
		s.cfg.Logger.Warn("node left out of scheduling", "node", n.GetMetadata().GetName(), "err", err)
		return
	}
	if old == nil || nodeSchedulingChanged(old, n) {
		s.retryUnschedulableLocked()
	}
}

// nodeSchedulingChanged reports whether what the filters look at changed.
func nodeSchedulingChanged(a, b *corev1.Node) bool {
	if !proto.Equal(a.GetSpec(), b.GetSpec()) || !mapsEqual(a.GetMetadata().GetLabels(), b.GetMetadata().GetLabels()) {
		return true
	}
	if !proto.Equal(&corev1.NodeStatus{Allocatable: a.GetStatus().GetAllocatable(), Capacity: a.GetStatus().GetCapacity()},
		&corev1.NodeStatus{Allocatable: b.GetStatus().GetAllocatable(), Capacity: b.GetStatus().GetCapacity()}) {
		return true
	}
	return readyStatus(a) != readyStatus(b)
}

func readyStatus(n *corev1.Node) string {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus()
		}
	}
	return ""
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (s *Scheduler) podChanged(old, p *corev1.Pod) {
	key := KeyOf(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.GetSpec().GetNodeName() != "" {
		if err := s.cache.AddPod(p); err != nil {
			s.cfg.Logger.Warn("pod left out of node usage", "pod", key, "err", err)
		}
		delete(s.unsched, key)
		return
	}
	if !s.mine(p) || p.GetMetadata().GetDeletionTimestamp() != nil || s.binding[key] {
		return
	}
	if _, waiting := s.unsched[key]; waiting {
		if old != nil && proto.Equal(old.GetSpec(), p.GetSpec()) {
			return // only its status moved (our own PodScheduled=False, say)
		}
		delete(s.unsched, key)
	}
	s.enqueueLocked(key)
}

func (s *Scheduler) podDeleted(p *corev1.Pod) {
	key := KeyOf(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache.RemovePod(p)
	delete(s.unsched, key)
	if p.GetSpec().GetNodeName() != "" {
		s.retryUnschedulableLocked() // room was freed
	}
}

func (s *Scheduler) enqueueLocked(key string) {
	if !s.queued[key] {
		s.queued[key] = true
		s.active = append(s.active, key)
		s.poke()
	}
}

func (s *Scheduler) retryUnschedulableLocked() {
	for key := range s.unsched {
		delete(s.unsched, key)
		s.enqueueLocked(key)
	}
}

type bindJob struct {
	pod  *corev1.Pod
	node string
}

func (s *Scheduler) loop(ctx context.Context) error {
	jobs := make(chan bindJob, s.cfg.BindWorkers)
	var wg sync.WaitGroup
	for range s.cfg.BindWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s.bind(ctx, j)
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()
	retry := s.cfg.Clock.NewTimer(s.cfg.RetryUnschedulable)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C():
			s.mu.Lock()
			s.retryUnschedulableLocked()
			s.mu.Unlock()
			retry = s.cfg.Clock.NewTimer(s.cfg.RetryUnschedulable)
			continue
		case <-s.wake:
		}
		for {
			decisions := s.pass()
			if len(decisions) == 0 {
				break
			}
			for _, d := range decisions {
				switch {
				case d.Node != "":
					select {
					case jobs <- bindJob{pod: d.Pod, node: d.Node}:
					case <-ctx.Done():
						return nil
					}
				case d.Message != "":
					s.unschedulable(ctx, d.Pod, d.Message)
				}
			}
		}
	}
}

// pass decides up to BatchSize pending pods.
func (s *Scheduler) pass() []sched.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.active), s.cfg.BatchSize)
	keys := s.active[:n]
	var pods []*corev1.Pod
	for _, key := range keys {
		delete(s.queued, key)
		p, ok := s.podInf.GetByKey(key)
		if !ok || p.GetSpec().GetNodeName() != "" || p.GetMetadata().GetDeletionTimestamp() != nil || s.binding[key] {
			continue
		}
		pods = append(pods, p)
	}
	s.active = append(s.active[:0:0], s.active[n:]...)
	if len(pods) == 0 {
		if len(s.active) > 0 {
			s.poke()
		}
		return nil
	}
	decisions := s.algo.Schedule(s.cache, pods)
	for _, d := range decisions {
		key := KeyOf(d.Pod)
		switch {
		case d.Node != "":
			s.binding[key] = true
		case d.Message != "":
			s.unsched[key] = d.Message
		default:
			s.cfg.Logger.Warn("pod not scheduled", "pod", key, "err", d.Err)
		}
	}
	return decisions
}

// bind binds one placed pod; on failure the assumption is forgotten and the pod
// tried again later unless it got bound or deleted meanwhile.
func (s *Scheduler) bind(ctx context.Context, j bindJob) {
	md := j.pod.GetMetadata()
	key := KeyOf(j.pod)
	_, err := s.pods.Bind(ctx, &corev1.CreateBindingRequest{Namespace: md.GetNamespace(), Name: md.GetName(),
		Body: &corev1.Binding{Metadata: &metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), Uid: md.GetUid()},
			Target: &corev1.ObjectReference{Kind: "Node", ApiVersion: "v1", Name: j.node}}})
	s.mu.Lock()
	delete(s.binding, key)
	if err != nil {
		s.cache.Forget(j.pod)
	}
	s.mu.Unlock()
	if err == nil {
		s.events.Record(Ref("Pod", "v1", md), "Normal", "Scheduled",
			fmt.Sprintf("Successfully assigned %s/%s to %s", md.GetNamespace(), md.GetName(), j.node))
		return
	}
	if ctx.Err() != nil {
		return
	}
	s.cfg.Logger.Debug("bind failed", "pod", key, "node", j.node, "err", err)
	t := s.cfg.Clock.NewTimer(time.Second)
	go func() {
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C():
			s.mu.Lock()
			if p, ok := s.podInf.GetByKey(key); ok && p.GetSpec().GetNodeName() == "" && p.GetMetadata().GetUid() == md.GetUid() {
				s.enqueueLocked(key)
			}
			s.mu.Unlock()
		}
	}()
}

// unschedulable records why pod fits nowhere: a FailedScheduling event and the
// PodScheduled=False condition, as kube-scheduler does.
func (s *Scheduler) unschedulable(ctx context.Context, pod *corev1.Pod, msg string) {
	s.events.Record(Ref("Pod", "v1", pod.GetMetadata()), "Warning", "FailedScheduling", msg)
	for _, c := range pod.GetStatus().GetConditions() {
		if c.GetType() == "PodScheduled" && c.GetStatus() == "False" && c.GetMessage() == msg {
			return
		}
	}
	next := proto.Clone(pod).(*corev1.Pod)
	if next.Status == nil {
		next.Status = &corev1.PodStatus{}
	}
	if next.Status.Phase == "" {
		next.Status.Phase = "Pending"
	}
	cond := &corev1.PodCondition{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: msg,
		LastTransitionTime: timestamppb.New(s.cfg.Clock.Now())}
	replaced := false
	for i, c := range next.Status.Conditions {
		if c.GetType() == "PodScheduled" {
			next.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		next.Status.Conditions = append(next.Status.Conditions, cond)
	}
	md := pod.GetMetadata()
	go func() {
		// Conditioned on the version read: a conflict means the pod moved on.
		_, err := s.pods.UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: md.GetNamespace(), Name: md.GetName(), Body: next})
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Debug("pod condition", "pod", KeyOf(pod), "err", err)
		}
	}()
}

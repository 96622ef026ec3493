// Package hollow runs simulated ("hollow") nodes, as kubemark does: each one
// registers a Node, renews its Lease, posts its status and reports the pods bound
// to it as running, with fake pod IPs from its podCIDR, without starting any
// container. Thousands of them share one process, one pod watch, one node watch
// and one pool of API workers, so that schedulers, controllers and the control
// plane can be tested and benchmarked at cluster scale on one machine.
//
// See internal/agent/DESIGN.md for the decisions behind it.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ErrUnknownNode is returned for a node name this Agent does not run.
var ErrUnknownNode = errors.New("not a node of this agent")

// Agent runs Config.Count hollow nodes against a control plane. Create it with
// New and run it with Run; Pause, Resume, Names and Registered may be called from
// any goroutine, before or during Run.
type Agent struct {
	cfg    Config
	conns  *failover
	names  []string
	index  map[string]int // node name -> its number
	ready  chan struct{}  // closed once every node has registered
	ran    atomic.Bool
	wakeup chan struct{} // 1-slot: a node was paused or resumed

	mu      sync.Mutex      // guards paused and toggled
	paused  map[string]bool // nodes that act dead
	toggled map[string]bool // nodes paused or resumed since the loop last looked
}

// New returns an Agent that talks to the control plane through conns, one per
// peer, failing over between them. It does not contact anything until Run.
func New(cfg Config, conns ...grpc.ClientConnInterface) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hollow config: %w", err)
	}
	if len(conns) == 0 {
		return nil, errors.New("hollow: at least one control-plane connection is required")
	}
	a := &Agent{
		cfg:     cfg,
		conns:   &failover{conns: conns},
		index:   make(map[string]int, cfg.Count),
		ready:   make(chan struct{}),
		wakeup:  make(chan struct{}, 1),
		paused:  map[string]bool{},
		toggled: map[string]bool{},
	}
	for i := range cfg.Count {
		name := cfg.nodeName(i)
		a.names = append(a.names, name)
		a.index[name] = i
	}
	return a, nil
}

// Names returns the names of the nodes, in order.
func (a *Agent) Names() []string { return append([]string(nil), a.names...) }

// Registered is closed once every node has registered for the first time: its
// Node exists with status Ready and its Lease exists. A node paused before it
// registered registers when resumed.
func (a *Agent) Registered() <-chan struct{} { return a.ready }

// Pause makes a node act dead, as if its kubelet had stopped: no more Lease
// renewals, status updates or pod changes from it, until Resume. A call already
// in flight may still land.
func (a *Agent) Pause(name string) error { return a.setPaused(name, true) }

// Resume undoes Pause: the node renews its Lease and posts its status at once,
// then catches up with its pods.
func (a *Agent) Resume(name string) error { return a.setPaused(name, false) }

func (a *Agent) setPaused(name string, p bool) error {
	if _, ok := a.index[name]; !ok {
		return fmt.Errorf("node %q: %w", name, ErrUnknownNode)
	}
	a.mu.Lock()
	if a.paused[name] != p {
		a.paused[name] = p
		a.toggled[name] = true
	}
	a.mu.Unlock()
	select {
	case a.wakeup <- struct{}{}:
	default:
	}
	return nil
}

func (a *Agent) isPaused(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paused[name]
}

// takeToggled returns and forgets the nodes paused or resumed since the last call.
func (a *Agent) takeToggled() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for n := range a.toggled {
		out = append(out, n)
	}
	clear(a.toggled)
	return out
}

// Run registers the nodes and keeps them alive until ctx ends, then returns nil.
// It returns an error only when called twice.
func (a *Agent) Run(ctx context.Context) error {
	if a.ran.Swap(true) {
		return errors.New("hollow: Run called twice")
	}
	g, ctx := errgroup.WithContext(ctx)
	l := newLoop(a)
	for range a.cfg.Workers {
		g.Go(func() error { return l.work(ctx) })
	}
	podSelector, nodeSelector := "spec.nodeName!=", ""
	if a.cfg.Count == 1 {
		podSelector, nodeSelector = "spec.nodeName="+a.names[0], "metadata.name="+a.names[0]
	}
	g.Go(func() error { return listWatch(ctx, a, podAPI, podSelector, l.podChanges) })
	g.Go(func() error { return listWatch(ctx, a, nodeAPI, nodeSelector, l.nodeChanges) })
	g.Go(func() error { return l.run(ctx) })
	return g.Wait()
}

// job is one piece of API work. run executes on a worker goroutine and must not
// touch the loop's state; the function it returns is applied on the loop
// goroutine afterwards.
type job struct {
	run func(ctx context.Context) func()
}

// loop owns every node's and pod's state. One goroutine (run) reads and writes
// it; watches feed it through channels and workers report back through results.
type loop struct {
	a           *Agent
	nodes       map[string]*node
	podChanges  chan change[*corev1.Pod]
	nodeChanges chan change[*corev1.Node]
	jobs        chan job
	results     chan func()
	// urgent holds lease renewals, registrations and status updates, which go
	// ahead of the pod work in queue so that a burst of pods never lets a Lease
	// expire.
	urgent, queue []job
	timers        timers
	registered    int
	swept         bool // the Runner was told which pods exist
}

func newLoop(a *Agent) *loop {
	l := &loop{
		a:           a,
		nodes:       make(map[string]*node, len(a.names)),
		podChanges:  make(chan change[*corev1.Pod], 256),
		nodeChanges: make(chan change[*corev1.Node], 64),
		jobs:        make(chan job),
		results:     make(chan func(), 256),
	}
	for i, name := range a.names {
		l.nodes[name] = &node{name: name, index: i, address: a.cfg.nodeAddress(i), pods: map[string]*pod{}}
	}
	return l
}

// work runs jobs until ctx ends.
func (l *loop) work(ctx context.Context) error {
	for {
		select {
		case j := <-l.jobs:
			apply := j.run(ctx)
			select {
			case l.results <- apply:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (l *loop) run(ctx context.Context) error {
	for _, n := range l.nodes {
		l.syncNode(n)
	}
	var (
		timerC <-chan time.Time
		armed  time.Time
	)
	for {
		if due, ok := l.timers.next(); ok && (timerC == nil || due.Before(armed)) {
			timerC, armed = l.a.cfg.Clock.After(due.Sub(l.now())), due
		}
		var (
			jobs chan job
			next job
		)
		switch {
		case len(l.urgent) > 0:
			jobs, next = l.jobs, l.urgent[0]
		case len(l.queue) > 0:
			jobs, next = l.jobs, l.queue[0]
		}
		select {
		case <-ctx.Done():
			return nil
		case jobs <- next:
			if len(l.urgent) > 0 {
				l.urgent[0] = job{}
				l.urgent = l.urgent[1:]
			} else {
				l.queue[0] = job{}
				l.queue = l.queue[1:]
			}
		case apply := <-l.results:
			apply()
		case c := <-l.podChanges:
			l.onPods(c)
		case c := <-l.nodeChanges:
			l.onNodes(c)
		case <-timerC:
			timerC = nil
			for _, t := range l.timers.popDue(l.now()) {
				t.fn()
			}
		case <-l.a.wakeup:
			for _, name := range l.a.takeToggled() {
				l.onToggled(l.nodes[name])
			}
		}
	}
}

func (l *loop) now() time.Time { return l.a.cfg.Clock.Now() }

// dispatch queues a job; urgent jobs go before all pod work.
func (l *loop) dispatch(urgent bool, run func(ctx context.Context) func()) {
	if urgent {
		l.urgent = append(l.urgent, job{run: run})
	} else {
		l.queue = append(l.queue, job{run: run})
	}
}

// jitter returns d less up to 20%, so that nodes started together spread out.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// podTimes is what the bench saw of one pod.
type podTimes struct {
	uid     string
	issued  time.Time // just before its Create call was issued
	created time.Time // its Create call returned
	bound   time.Time // first seen in the watch with spec.nodeName
	shim    time.Time // the node's debug log says its container's shim is ready ("created")
	started time.Time // containerStatuses[0].state.running.startedAt (the runtime's record)
	running time.Time // first seen in the watch with phase Running
}

// tracker follows every pod of the bench namespace through one watch.
type tracker struct {
	mu      sync.Mutex // guards the fields below
	pods    map[string]*podTimes
	changed chan struct{} // closed (and replaced) on every event
	err     error         // why the watch ended
}

func newTracker() *tracker {
	return &tracker{pods: map[string]*podTimes{}, changed: make(chan struct{})}
}

func (t *tracker) get(name string) *podTimes {
	p := t.pods[name]
	if p == nil {
		p = &podTimes{}
		t.pods[name] = p
	}
	return p
}

// follow lists the namespace's pods, then watches from the list's
// resourceVersion until ctx ends or the watch fails.
func (t *tracker) follow(ctx context.Context, pods corev1.PodsClient) error {
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: benchNamespace})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	stream, err := pods.Watch(ctx, &metav1.ListRequest{Namespace: benchNamespace, ResourceVersion: list.GetMetadata().GetResourceVersion(), Watch: true})
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				t.mu.Lock()
				t.err = fmt.Errorf("pod watch ended: %w", err)
				close(t.changed)
				t.changed = make(chan struct{})
				t.mu.Unlock()
				return
			}
			t.observe(ev, time.Now())
		}
	}()
	return nil
}

func (t *tracker) observe(ev *corev1.PodWatchEvent, now time.Time) {
	pod := ev.GetObject()
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.get(pod.GetMetadata().GetName())
	if p.uid == "" {
		p.uid = pod.GetMetadata().GetUid()
	}
	switch ev.GetType() {
	case "ADDED", "MODIFIED":
		if p.bound.IsZero() && pod.GetSpec().GetNodeName() != "" {
			p.bound = now
		}
		for _, cs := range pod.GetStatus().GetContainerStatuses() {
			if s := cs.GetState().GetRunning().GetStartedAt(); s != nil && p.started.IsZero() {
				p.started = s.AsTime()
			}
		}
		if p.running.IsZero() && pod.GetStatus().GetPhase() == "Running" {
			p.running = now
		}
	default:
		return
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// wait waits until done (called with the lock held) is true.
func (t *tracker) wait(ctx context.Context, what string, done func() bool) error {
	for {
		t.mu.Lock()
		ok, err, ch := done(), t.err, t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}

func (t *tracker) setIssued(name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(name).issued = at
}

func (t *tracker) setCreated(name, uid string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.get(name)
	p.created = at
	if p.uid == "" {
		p.uid = uid
	}
}

func (t *tracker) snapshot(names []string) []podTimes {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]podTimes, 0, len(names))
	for _, n := range names {
		out = append(out, *t.get(n))
	}
	return out
}

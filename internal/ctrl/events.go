package ctrl

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// EventRecorder writes core/v1 Events about objects, as Kubernetes' recorder
// does: the same (object, type, reason, message) again bumps the count and
// lastTimestamp of the Event it made instead of making another. Writes happen on
// Run's goroutine; Record never blocks and drops events when the backlog is full
// (logged), so a loop never waits on its events.
type EventRecorder struct {
	client    corev1.EventsClient
	component string
	clock     Clock
	logger    *slog.Logger
	ch        chan eventReq

	mu   sync.Mutex // guards seen
	seen map[string]*corev1.Event
}

type eventReq struct {
	ref                  *corev1.ObjectReference
	typ, reason, message string
}

// NewEventRecorder records events as component (e.g. "default-scheduler").
func NewEventRecorder(client corev1.EventsClient, component string, clock Clock, logger *slog.Logger) *EventRecorder {
	return &EventRecorder{client: client, component: component, clock: clock, logger: logger,
		ch: make(chan eventReq, 4096), seen: map[string]*corev1.Event{}}
}

// Ref is the object reference of obj for an event.
func Ref(kind, apiVersion string, md *metav1.ObjectMeta) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: kind, ApiVersion: apiVersion, Namespace: md.GetNamespace(),
		Name: md.GetName(), Uid: md.GetUid(), ResourceVersion: md.GetResourceVersion()}
}

// Record queues an event of type Normal or Warning.
func (r *EventRecorder) Record(ref *corev1.ObjectReference, typ, reason, message string) {
	select {
	case r.ch <- eventReq{ref: ref, typ: typ, reason: reason, message: message}:
	default:
		r.logger.Warn("event dropped: backlog full", "reason", reason, "object", ref.GetNamespace()+"/"+ref.GetName())
	}
}

// Run writes queued events until ctx ends.
func (r *EventRecorder) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-r.ch:
			if err := r.write(ctx, e); err != nil && ctx.Err() == nil {
				r.logger.Warn("write event", "reason", e.reason, "err", err)
			}
		}
	}
}

func (r *EventRecorder) write(ctx context.Context, e eventReq) error {
	ns := e.ref.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	key := e.ref.GetUid() + "\x00" + e.typ + "\x00" + e.reason + "\x00" + e.message
	now := timestamppb.New(r.clock.Now())
	r.mu.Lock()
	prev := r.seen[key]
	r.mu.Unlock()
	if prev != nil {
		next := prevCopy(prev)
		next.Count++
		next.LastTimestamp = now
		out, err := r.client.Update(ctx, &corev1.UpdateEventRequest{Namespace: ns, Name: next.GetMetadata().GetName(), Body: next})
		if err == nil {
			r.remember(key, out)
			return nil
		}
		// The event was deleted or changed: start a new one.
	}
	ev := &corev1.Event{
		Metadata:       &metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s", e.ref.GetName(), strconv.FormatInt(r.clock.Now().UnixNano(), 16)), Namespace: ns},
		InvolvedObject: e.ref, Reason: e.reason, Message: e.message, Type: e.typ,
		Source:         &corev1.EventSource{Component: r.component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1, ReportingComponent: r.component,
	}
	out, err := r.client.Create(ctx, &corev1.CreateEventRequest{Namespace: ns, Body: ev})
	if err != nil {
		return err
	}
	r.remember(key, out)
	return nil
}

func (r *EventRecorder) remember(key string, ev *corev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) > 10000 {
		clear(r.seen) // a bound, not a cache policy: repeats after this make new events
	}
	r.seen[key] = ev
}

func prevCopy(e *corev1.Event) *corev1.Event { return proto.Clone(e).(*corev1.Event) }

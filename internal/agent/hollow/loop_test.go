package hollow

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// runUntil plays the loop by hand until cond holds: it runs the queued jobs one
// at a time, applying each result, and fires the timers (retries after failed
// calls) as they fall due.
func runUntil(t *testing.T, l *loop, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		var j job
		switch {
		case len(l.urgent) > 0:
			j, l.urgent = l.urgent[0], l.urgent[1:]
		case len(l.queue) > 0:
			j, l.queue = l.queue[0], l.queue[1:]
		default:
			time.Sleep(10 * time.Millisecond)
			for _, tm := range l.timers.popDue(l.now()) {
				tm.fn()
			}
			continue
		}
		j.run(context.Background())()
	}
}

// The API server deletes pods at once today, so a pod with deletionTimestamp set
// cannot be made through it: the event is fed to the loop directly.
func TestTerminatingPodIsDeletedAndItsIPReleased(t *testing.T) {
	c := testcluster.New(t, 3)
	cfg := DefaultConfig()
	cfg.Prefix, cfg.PodCIDR = "del", netip.MustParsePrefix("10.244.0.0/16")
	cfg.Logger, cfg.RetryInterval = slog.New(slog.NewTextHandler(io.Discard, nil)), 50*time.Millisecond
	a, err := New(cfg, c.Peers[0].Conn)
	if err != nil {
		t.Fatal(err)
	}
	l := newLoop(a)
	n := l.nodes["del-0"]
	l.syncNode(n)
	runUntil(t, l, "registration", func() bool { return n.registered && n.ips != nil })

	pods := corev1.NewPodsClient(c.Peers[1].Conn)
	ctx := context.Background()
	created, err := pods.Create(ctx, &corev1.CreatePodRequest{Namespace: "default", Body: &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "t"},
		Spec:     &corev1.PodSpec{NodeName: "del-0", Containers: []*corev1.Container{{Name: "a", Image: "x:1"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l.onPods(change[*corev1.Pod]{typ: "ADDED", obj: created})
	runUntil(t, l, "pod running", func() bool { return n.pods["default/t"].running })
	running, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if running.GetStatus().GetPodIP() != "10.244.0.1" || len(n.ips.used) != 1 {
		t.Fatalf("pod status %v, ips in use %v", running.GetStatus(), n.ips.used)
	}

	terminating := proto.Clone(running).(*corev1.Pod)
	terminating.Metadata.DeletionTimestamp = timestamppb.New(time.Now())
	terminating.Metadata.DeletionGracePeriodSeconds = proto.Int64(30)
	l.onPods(change[*corev1.Pod]{typ: "MODIFIED", obj: terminating})
	runUntil(t, l, "pod deleted", func() bool { return n.pods["default/t"].deleted })
	if _, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "t"}); status.Code(err) != codes.NotFound {
		t.Fatalf("pod not deleted: %v", err)
	}
	if len(n.ips.used) != 0 {
		t.Errorf("IPs still in use: %v", n.ips.used)
	}
	l.onPods(change[*corev1.Pod]{typ: "DELETED", obj: terminating})
	if len(n.pods) != 0 {
		t.Errorf("pods still tracked: %v", n.pods)
	}
}

package apiserver_test

import (
	"context"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// Regression for an anomaly the Jepsen-style suite found (leadership changes
// under CAS load): a freshly elected leader whose FSM had not yet applied the
// entries of earlier terms validated a write against that stale state and
// answered NotFound for an object an earlier leader had acknowledged. A new
// leader must catch up (its first barrier) before it validates writes.
func TestNewLeaderDoesNotAnswerNotFoundForAcknowledgedCreate(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := c.Leader()
	f := c.Peers[(l+1)%3]

	// The follower replicates and votes but applies nothing.
	f.HoldApplies()
	cms := corev1.NewConfigMapsClient(c.Peers[l].Conn)
	body := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "acked", Namespace: "default"}, Data: map[string]string{"v": "1"}}
	created, err := cms.Create(ctx, &corev1.CreateConfigMapRequest{Namespace: "default", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Peers[l].Raft.TransferLeadership(ctx, f.ID); err != nil {
		t.Fatalf("transfer leadership to %s: %v", f.ID, err)
	}
	c.WaitFor(5*time.Second, f.ID+" leads", f.Raft.IsLeader)
	if _, ok := f.FSM.View().Get("ConfigMap", "default", "acked"); ok {
		t.Fatal("the new leader already applied the create: the test would prove nothing")
	}

	// Let it catch up a little later, while the update waits.
	go func() { time.Sleep(300 * time.Millisecond); f.ReleaseApplies() }()
	body.Data["v"] = "2"
	body.Metadata.ResourceVersion = created.GetMetadata().GetResourceVersion()
	updated, err := corev1.NewConfigMapsClient(f.Conn).Update(ctx, &corev1.UpdateConfigMapRequest{Namespace: "default", Name: "acked", Body: body})
	if err != nil {
		t.Fatalf("update on the new leader of an acknowledged object: %v", err)
	}
	if updated.GetData()["v"] != "2" {
		t.Fatalf("updated data = %v", updated.GetData())
	}
}

// Regression for an anomaly the hollow-node agent found under load: a leader's FSM
// applies committed entries asynchronously, so a follower could apply an entry,
// show it in a watch, and the client's next write, validated by the leader against
// its older state, got NotFound for an object the client had just seen.
func TestLeaderWriteDoesNotAnswerNotFoundForWhatAFollowerShowed(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := c.Peers[c.Leader()]
	f := c.Peers[(c.Leader()+1)%3]

	l.HoldApplies()
	body := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "seen", Namespace: "default"}, Data: map[string]string{"v": "1"}}
	go func() {
		// Blocks until the leader applies it: its answer is not what this test reads.
		_, _ = corev1.NewConfigMapsClient(l.Conn).Create(ctx, &corev1.CreateConfigMapRequest{Namespace: "default", Body: body})
	}()
	c.WaitFor(5*time.Second, "the follower applies the create", func() bool {
		_, ok := f.FSM.View().Get("ConfigMap", "default", "seen")
		return ok
	})
	if _, ok := l.FSM.View().Get("ConfigMap", "default", "seen"); ok {
		t.Fatal("the leader already applied the create: the test would prove nothing")
	}
	go func() { time.Sleep(300 * time.Millisecond); l.ReleaseApplies() }()
	upd := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "seen", Namespace: "default"}, Data: map[string]string{"v": "2"}}
	if _, err := corev1.NewConfigMapsClient(f.Conn).Update(ctx, &corev1.UpdateConfigMapRequest{Namespace: "default", Name: "seen", Body: upd}); err != nil {
		t.Fatalf("update of an object a follower already showed: %v", err)
	}
}

package apiserver_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/apiserver"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// TestPartitionedLeaderRefusesStaleReads partitions the leader away, lets the
// majority elect a new leader and acknowledge a newer write, and checks that the old
// leader refuses a default (linearizable) read instead of serving its stale value,
// while a resourceVersion=0 read is still served from its local state.
func TestPartitionedLeaderRefusesStaleReads(t *testing.T) {
	stale, err := partitionedLeaderRead(t, testcluster.New(t, 3), true)
	if err == nil {
		t.Fatalf("partitioned old leader served a linearizable read: %v", stale)
	}
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("partitioned old leader: got %v, want Unavailable or DeadlineExceeded", err)
	}
}

// TestUnsafeStaleReadsServeStaleData is the negative control: with the read index
// switched off, the same scenario does serve the overtaken value.
func TestUnsafeStaleReadsServeStaleData(t *testing.T) {
	c := testcluster.New(t, 3, func(c *apiserver.Config) { c.UnsafeStaleReads = true })
	got, err := partitionedLeaderRead(t, c, false)
	if err != nil || got["v"] != "1" {
		t.Fatalf("with --unsafe-stale-reads the partitioned leader should serve v=1: %v %v", got, err)
	}
}

// partitionedLeaderRead writes v=1 through the leader, partitions it away, has the
// majority's new leader acknowledge v=2, and returns what a default read on the old
// leader answers. It also checks the rest of the contract: local reads, healing and,
// with checkMajority, linearizable reads on the majority.
func partitionedLeaderRead(t *testing.T, c *testcluster.Cluster, checkMajority bool) (map[string]string, error) {
	t.Helper()
	ctx := context.Background()
	old := c.Leader()
	if old < 0 {
		t.Fatal("no leader")
	}
	cms := func(i int) corev1.ConfigMapsClient { return corev1.NewConfigMapsClient(c.Peers[i].Conn) }
	created, err := cms(old).Create(ctx, &corev1.CreateConfigMapRequest{Namespace: "default",
		Body: &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: "x"}, Data: map[string]string{"v": "1"}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	c.Partition(old)
	var nw int
	c.WaitFor(10*time.Second, "a new leader in the majority", func() bool {
		for i, p := range c.Peers {
			if i != old && p.Raft.IsLeader() {
				nw = i
				return true
			}
		}
		return false
	})
	created.Data["v"] = "2"
	updated, err := cms(nw).Update(ctx, &corev1.UpdateConfigMapRequest{Namespace: "default", Name: "x", Body: created})
	if err != nil {
		t.Fatalf("update through the new leader: %v", err)
	}

	rctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	got, readErr := cms(old).Get(rctx, &metav1.GetRequest{Namespace: "default", Name: "x"})
	_ = updated

	stale, err := cms(old).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "x", ResourceVersion: "0"})
	if err != nil {
		t.Fatalf("resourceVersion=0 read on the partitioned peer: %v", err)
	}
	if stale.GetData()["v"] != "1" {
		t.Fatalf("local read on the partitioned peer: got %v, want its own (stale) value 1", stale.GetData())
	}

	// The majority serves the new value linearizably from any of its peers.
	for i := range c.Peers {
		if i == old || !checkMajority {
			continue
		}
		got, err := cms(i).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "x"})
		if err != nil || got.GetData()["v"] != "2" {
			t.Fatalf("peer %d: got %v, %v; want v=2", i, got.GetData(), err)
		}
	}

	c.Heal()
	c.WaitFor(10*time.Second, "the old leader to catch up", func() bool {
		o, ok := c.Peers[old].FSM.View().Get("ConfigMap", "default", "x")
		return ok && o.(*corev1.ConfigMap).GetData()["v"] == "2"
	})
	healed, err := cms(old).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "x"})
	if err != nil || healed.GetData()["v"] != "2" {
		t.Fatalf("healed old leader: got %v, %v; want v=2", healed.GetData(), err)
	}
	return got.GetData(), readErr
}

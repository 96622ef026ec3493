package sched

import (
	"errors"
	"testing"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// TestCacheEvents feeds one cache a sequence of events and checks what it accounts on
// node "a" after each.
func TestCacheEvents(t *testing.T) {
	c := mustCache(t, []*corev1.Node{newNode("a"), newNode("b")})
	alloc := Usage{AllocatableMilliCPU: 4000, AllocatableMemory: 8 << 30, AllocatablePods: 110}
	with := func(cpu, mem, pods int64) Usage {
		u := alloc
		u.RequestedMilliCPU, u.RequestedMemory, u.Pods = cpu, mem, pods
		return u
	}
	steps := []struct {
		name   string
		event  func() error
		want   Usage
		listed bool // a is one of the nodes Schedule considers
		known  bool // Usage("a") reports it
	}{
		{"empty", func() error { return nil }, with(0, 0, 0), true, true},
		{"bound pod", func() error { return c.AddPod(newPod("p1", "1", "1Gi", on("a"))) }, with(1000, 1<<30, 1), true, true},
		{"pending pod is not counted", func() error { return c.AddPod(newPod("p2", "1", "1Gi")) }, with(1000, 1<<30, 1), true, true},
		{"pod on another node", func() error { return c.AddPod(newPod("p3", "1", "1Gi", on("b"))) }, with(1000, 1<<30, 1), true, true},
		{"update replaces", func() error { return c.AddPod(newPod("p1", "2", "1Gi", on("a"))) }, with(2000, 1<<30, 1), true, true},
		{"second pod", func() error { return c.AddPod(newPod("p4", "500m", "", on("a"))) }, with(2500, 1<<30, 2), true, true},
		{"terminal pod leaves", func() error { return c.AddPod(newPod("p4", "500m", "", on("a"), phase("Succeeded"))) }, with(2000, 1<<30, 1), true, true},
		{"terminal pod is not added", func() error { return c.AddPod(newPod("p5", "1", "", on("a"), phase("Failed"))) }, with(2000, 1<<30, 1), true, true},
		{"node update keeps pods", func() error {
			return c.UpdateNode(newNode("a", allocatable("cpu", "8", "memory", "8Gi", "pods", "110")))
		}, Usage{AllocatableMilliCPU: 8000, AllocatableMemory: 8 << 30, AllocatablePods: 110, RequestedMilliCPU: 2000, RequestedMemory: 1 << 30, Pods: 1}, true, true},
		{"node removed, pods stay", func() error { c.RemoveNode("a"); return nil }, with(2000, 1<<30, 1).withoutAlloc(), false, true},
		{"node back", func() error { return c.UpdateNode(newNode("a")) }, with(2000, 1<<30, 1), true, true},
		{"pod deleted", func() error { c.RemovePod(newPod("p1", "", "")); return nil }, with(0, 0, 0), true, true},
		{"removing twice is harmless", func() error { c.RemovePod(newPod("p1", "", "")); return nil }, with(0, 0, 0), true, true},
		{"node deleted", func() error { c.RemoveNode("a"); return nil }, Usage{}, false, false},
		{"pod before its node", func() error { return c.AddPod(newPod("p6", "1", "2Gi", on("a"))) }, Usage{RequestedMilliCPU: 1000, RequestedMemory: 2 << 30, Pods: 1}, false, true},
		{"node arrives", func() error { return c.UpdateNode(newNode("a")) }, with(1000, 2<<30, 1), true, true},
		{"invalid pod leaves the cache unchanged", func() error {
			err := c.AddPod(newPod("p6", "many", "", on("a")))
			if !errors.Is(err, ErrInvalidQuantity) {
				return errors.New("want ErrInvalidQuantity")
			}
			return nil
		}, with(1000, 2<<30, 1), true, true},
		{"invalid node leaves the cache unchanged", func() error {
			err := c.UpdateNode(newNode("a", allocatable("cpu", "x")))
			if !errors.Is(err, ErrInvalidQuantity) {
				return errors.New("want ErrInvalidQuantity")
			}
			return nil
		}, with(1000, 2<<30, 1), true, true},
	}
	for _, s := range steps {
		if err := s.event(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, ok := c.Usage("a")
		if ok != s.known || got != s.want {
			t.Fatalf("%s: Usage(a) = %+v, %v; want %+v, %v", s.name, got, ok, s.want, s.known)
		}
		listed := false
		for i, n := range c.list {
			if n.idx != i {
				t.Fatalf("%s: node %s at %d has idx %d", s.name, n.name, i, n.idx)
			}
			listed = listed || n.name == "a"
		}
		if listed != s.listed {
			t.Fatalf("%s: a listed = %v, want %v", s.name, listed, s.listed)
		}
	}
}

func (u Usage) withoutAlloc() Usage {
	u.AllocatableMilliCPU, u.AllocatableMemory, u.AllocatablePods = 0, 0, 0
	return u
}

func TestNewCacheReportsInvalidObjects(t *testing.T) {
	c, err := NewCache(
		[]*corev1.Node{newNode("good"), newNode("bad", allocatable("cpu", "?"))},
		[]*corev1.Pod{newPod("ok", "1", "", on("good")), newPod("broken", "?", "", on("good"))},
	)
	if !errors.Is(err, ErrInvalidQuantity) {
		t.Fatalf("err = %v, want ErrInvalidQuantity", err)
	}
	if c.NumNodes() != 1 {
		t.Errorf("NumNodes = %d, want 1", c.NumNodes())
	}
	if u, _ := c.Usage("good"); u.Pods != 1 || u.RequestedMilliCPU != 1000 {
		t.Errorf("Usage(good) = %+v, want the valid pod only", u)
	}
}

func TestForget(t *testing.T) {
	tests := []struct {
		name       string
		afterBind  func(c *Cache, p *corev1.Pod) // what happens between Schedule and Forget
		wantForgot bool
		wantPods   int64
	}{
		{"bind failed", func(*Cache, *corev1.Pod) {}, true, 0},
		{"bind confirmed by the watch", func(c *Cache, p *corev1.Pod) {
			bound := newPod(p.Metadata.Name, "1", "", on("a"))
			if err := c.AddPod(bound); err != nil {
				t.Fatal(err)
			}
		}, false, 1},
		{"pod deleted meanwhile", func(c *Cache, p *corev1.Pod) { c.RemovePod(p) }, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCache(t, []*corev1.Node{newNode("a", allocatable("cpu", "1", "memory", "1Gi", "pods", "10"))})
			s := mustScheduler(t, DefaultConfig())
			p := newPod("p", "1", "")
			if d := s.Schedule(c, []*corev1.Pod{p})[0]; d.Node != "a" {
				t.Fatalf("decision = %+v, want node a", d)
			}
			// Assumed: the node is full for the next pod.
			if d := s.Schedule(c, []*corev1.Pod{newPod("q", "1", "")})[0]; d.Message != "0/1 nodes are available: 1 Insufficient cpu." {
				t.Fatalf("next pod: %+v, want Insufficient cpu", d)
			}
			tc.afterBind(c, p)
			if got := c.Forget(p); got != tc.wantForgot {
				t.Errorf("Forget = %v, want %v", got, tc.wantForgot)
			}
			if c.Forget(p) {
				t.Error("second Forget = true, want false")
			}
			if u, _ := c.Usage("a"); u.Pods != tc.wantPods || u.RequestedMilliCPU != tc.wantPods*1000 {
				t.Errorf("Usage(a) = %+v, want %d pods of 1 cpu", u, tc.wantPods)
			}
			// Forgotten, the pod can be scheduled again.
			if tc.wantForgot {
				if d := s.Schedule(c, []*corev1.Pod{p})[0]; d.Node != "a" {
					t.Errorf("rescheduled: %+v, want node a", d)
				}
			}
		})
	}
}

func TestWorkloadKey(t *testing.T) {
	tests := []struct {
		name   string
		a, b   *corev1.Pod
		same   bool
		noneOf bool // a belongs to no workload
	}{
		{name: "same controller", a: newPod("a", "", "", ownedBy("rs1")), b: newPod("b", "", "", ownedBy("rs1"), podLabels("x", "1")), same: true},
		{name: "other controller", a: newPod("a", "", "", ownedBy("rs1")), b: newPod("b", "", "", ownedBy("rs2"))},
		{name: "same labels", a: newPod("a", "", "", podLabels("app", "web", "tier", "fe")), b: newPod("b", "", "", podLabels("tier", "fe", "app", "web")), same: true},
		{name: "other labels", a: newPod("a", "", "", podLabels("app", "web")), b: newPod("b", "", "", podLabels("app", "db"))},
		{name: "labels in another namespace", a: newPod("a", "", "", podLabels("app", "web")),
			b: newPod("b", "", "", podLabels("app", "web"), func(p *corev1.Pod) { p.Metadata.Namespace = "other" })},
		{name: "no owner, no labels", a: newPod("a", "", ""), b: newPod("b", "", ""), noneOf: true, same: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka, kb := workloadKey(tc.a), workloadKey(tc.b)
			if (ka == kb) != tc.same {
				t.Errorf("keys %x and %x: same = %v, want %v", ka, kb, ka == kb, tc.same)
			}
			if (ka == 0) != tc.noneOf {
				t.Errorf("key %x: none = %v, want %v", ka, ka == 0, tc.noneOf)
			}
		})
	}
}

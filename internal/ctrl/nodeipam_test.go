package ctrl

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func ipamNode(name, cidr string) *corev1.Node {
	return &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name}, Spec: &corev1.NodeSpec{PodCIDR: cidr}}
}

func TestPodCIDRsAssign(t *testing.T) {
	p := DefaultPodCIDRs()
	got, err := p.Assign([]*corev1.Node{ipamNode("b", ""), ipamNode("a", "10.244.0.0/24"), ipamNode("c", ""), ipamNode("x", "192.168.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"b": "10.244.1.0/24", "c": "10.244.2.0/24"}
	if len(got) != len(want) || got["b"] != want["b"] || got["c"] != want["c"] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestPodCIDRsFull(t *testing.T) {
	p := PodCIDRs{ClusterCIDR: netip.MustParsePrefix("10.0.0.0/23"), NodeMaskSize: 24}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := p.Assign([]*corev1.Node{ipamNode("a", ""), ipamNode("b", "10.0.1.0/24"), ipamNode("c", "")})
	if !errors.Is(err, ErrCIDRFull) {
		t.Fatalf("err = %v, want ErrCIDRFull", err)
	}
	if len(got) != 1 || got["a"] != "10.0.0.0/24" {
		t.Fatalf("got %v", got)
	}
}

func TestPodCIDRsValidate(t *testing.T) {
	for _, p := range []PodCIDRs{
		{ClusterCIDR: netip.MustParsePrefix("10.0.0.0/16"), NodeMaskSize: 8},
		{ClusterCIDR: netip.MustParsePrefix("10.0.0.0/16"), NodeMaskSize: 31},
		{ClusterCIDR: netip.MustParsePrefix("fd00::/64"), NodeMaskSize: 80},
		{},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
}

// TestNodeIPAMLoopReportsCIDRNotAvailable: over a real store, nodes get ranges
// until the cluster CIDR is used up; the node left without one gets the
// CIDRNotAvailable event, once.
func TestNodeIPAMLoopReportsCIDRNotAvailable(t *testing.T) {
	c := testcluster.New(t, 1)
	conn := c.Peers[0].Conn
	nodes, events := corev1.NewNodesClient(conn), corev1.NewEventsClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	ipam := NewNodeIPAM(conn, PodCIDRs{ClusterCIDR: netip.MustParsePrefix("10.0.0.0/23"), NodeMaskSize: 24}, RealClock(), discardLogger())
	done := make(chan error, 1)
	go func() { done <- ipam.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for _, name := range []string{"a", "b", "c"} {
		if _, err := nodes.Create(ctx, &corev1.CreateNodeRequest{Body: &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name}}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := nodes.List(ctx, &metav1.ListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		cidrs := map[string]string{}
		for _, n := range list.GetItems() {
			cidrs[n.GetMetadata().GetName()] = n.GetSpec().GetPodCIDR()
		}
		evs, err := events.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs.GetItems() {
			if e.GetReason() == "CIDRNotAvailable" {
				got = append(got, e.GetInvolvedObject().GetName()+": "+e.GetMessage())
			}
		}
		if cidrs["a"] == "10.0.0.0/24" && cidrs["b"] == "10.0.1.0/24" && cidrs["c"] == "" && len(got) == 1 {
			if got[0] != "c: Node c status is now: CIDRNotAvailable" {
				t.Fatalf("event %q", got[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CIDRs %v, CIDRNotAvailable events %q", cidrs, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

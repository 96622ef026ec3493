package ctrl

import (
	"errors"
	"net/netip"
	"testing"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
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

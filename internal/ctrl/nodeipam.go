package ctrl

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ErrCIDRFull means every per-node range of the cluster CIDR is taken.
var ErrCIDRFull = errors.New("no free pod CIDR left in the cluster CIDR")

// PodCIDRs is the node IPAM of the cluster: ClusterCIDR (default 10.244.0.0/16)
// cut into ranges of NodeMaskSize bits (default /24), one per node, as
// kube-controller-manager's range allocator does.
type PodCIDRs struct {
	ClusterCIDR  netip.Prefix
	NodeMaskSize int
}

// DefaultPodCIDRs returns 10.244.0.0/16 in /24s.
func DefaultPodCIDRs() PodCIDRs {
	return PodCIDRs{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeMaskSize: 24}
}

// Validate checks that the cluster CIDR is IPv4 and the node size fits in it.
func (p PodCIDRs) Validate() error {
	if !p.ClusterCIDR.IsValid() || !p.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("cluster CIDR %s: must be an IPv4 prefix", p.ClusterCIDR)
	}
	if p.NodeMaskSize < p.ClusterCIDR.Bits() || p.NodeMaskSize > 30 {
		return fmt.Errorf("node CIDR mask size /%d: must be between /%d and /30", p.NodeMaskSize, p.ClusterCIDR.Bits())
	}
	if p.NodeMaskSize-p.ClusterCIDR.Bits() > 20 {
		return fmt.Errorf("node CIDR mask size /%d: more than 2^20 ranges in %s", p.NodeMaskSize, p.ClusterCIDR)
	}
	return nil
}

// Assign decides the podCIDR of every node that has none: the lowest free range,
// nodes taken in name order. Ranges already on nodes (inside the cluster CIDR)
// are kept and never handed out twice. It returns node name -> CIDR for the
// nodes to update, and ErrCIDRFull (with the nodes that got nothing) when the
// ranges run out; the assignments made before that are still returned. Pure.
func (p PodCIDRs) Assign(nodes []*corev1.Node) (map[string]string, error) {
	used := map[netip.Prefix]bool{}
	var want []string
	for _, n := range nodes {
		if c := n.GetSpec().GetPodCIDR(); c != "" {
			if pfx, err := netip.ParsePrefix(c); err == nil && p.ClusterCIDR.Contains(pfx.Addr()) {
				used[pfx.Masked()] = true
			}
			continue
		}
		want = append(want, n.GetMetadata().GetName())
	}
	sort.Strings(want)
	out := map[string]string{}
	total := 1 << (p.NodeMaskSize - p.ClusterCIDR.Bits())
	next := 0
	for i, name := range want {
		for ; next < total && used[p.nth(next)]; next++ {
		}
		if next == total {
			return out, fmt.Errorf("%w: %s (%d nodes without one)", ErrCIDRFull, p.ClusterCIDR, len(want)-i)
		}
		out[name] = p.nth(next).String()
		used[p.nth(next)] = true
	}
	return out, nil
}

// nth is the i-th node range of the cluster CIDR.
func (p PodCIDRs) nth(i int) netip.Prefix {
	base := p.ClusterCIDR.Masked().Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(i) << (32 - p.NodeMaskSize)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.NodeMaskSize)
}

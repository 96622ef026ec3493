package hollow

import "net/netip"

// ipam hands out a node's pod IPs from its podCIDR: always the lowest free host
// address, as host-local does after a restart. Owned by the agent's loop
// goroutine; not safe for concurrent use.
type ipam struct {
	cidr netip.Prefix
	used map[netip.Addr]string // address -> key of the pod holding it
}

func newIPAM(cidr netip.Prefix) *ipam {
	return &ipam{cidr: cidr.Masked(), used: map[netip.Addr]string{}}
}

// allocate returns the lowest free host address for holder, or false when the
// range is full.
func (m *ipam) allocate(holder string) (netip.Addr, bool) {
	for a := m.cidr.Addr().Next(); a.IsValid() && m.cidr.Contains(a); a = a.Next() {
		if m.isBroadcast(a) {
			break
		}
		if _, taken := m.used[a]; !taken {
			m.used[a] = holder
			return a, true
		}
	}
	return netip.Addr{}, false
}

// claim records that holder already has a, as reported by a pod that was
// running before this agent started. It fails when a is outside the range, not
// a host address, or held by another pod.
func (m *ipam) claim(a netip.Addr, holder string) bool {
	if !m.cidr.Contains(a) || a == m.cidr.Addr() || m.isBroadcast(a) {
		return false
	}
	if h, taken := m.used[a]; taken && h != holder {
		return false
	}
	m.used[a] = holder
	return true
}

// release frees a if holder holds it.
func (m *ipam) release(a netip.Addr, holder string) {
	if h, ok := m.used[a]; ok && h == holder {
		delete(m.used, a)
	}
}

func (m *ipam) isBroadcast(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	next := a.Next()
	return !next.IsValid() || !m.cidr.Contains(next)
}

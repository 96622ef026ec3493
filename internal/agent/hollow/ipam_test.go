package hollow

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

func TestIPAMHandsOutTheLowestFreeHostAddress(t *testing.T) {
	m := newIPAM(netip.MustParsePrefix("10.244.3.0/24"))
	want := func(holder, addr string) {
		t.Helper()
		got, ok := m.allocate(holder)
		if !ok || got.String() != addr {
			t.Fatalf("allocate(%s) = %s, %v; want %s", holder, got, ok, addr)
		}
	}
	want("a", "10.244.3.1")
	want("b", "10.244.3.2")
	want("c", "10.244.3.3")
	m.release(netip.MustParseAddr("10.244.3.2"), "someone-else")
	want("d", "10.244.3.4")
	m.release(netip.MustParseAddr("10.244.3.2"), "b")
	want("e", "10.244.3.2")

	if m.claim(netip.MustParseAddr("10.244.3.1"), "x") {
		t.Error("claimed an address another pod holds")
	}
	for _, a := range []string{"10.244.3.0", "10.244.3.255", "10.244.4.1"} {
		if m.claim(netip.MustParseAddr(a), "x") {
			t.Errorf("claimed %s, not a host address of the range", a)
		}
	}
	if !m.claim(netip.MustParseAddr("10.244.3.200"), "x") || !m.claim(netip.MustParseAddr("10.244.3.200"), "x") {
		t.Error("could not claim a free address (twice, by its holder)")
	}
}

func TestIPAMRunsOut(t *testing.T) {
	for _, tc := range []struct {
		cidr  string
		hosts int
	}{
		{"10.0.0.0/30", 2},
		{"10.0.0.0/29", 6},
		{"fd00::/126", 3},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			m := newIPAM(netip.MustParsePrefix(tc.cidr))
			for i := range tc.hosts {
				if _, ok := m.allocate(string(rune('a' + i))); !ok {
					t.Fatalf("allocation %d failed", i)
				}
			}
			if a, ok := m.allocate("z"); ok {
				t.Fatalf("allocated %s from a full range", a)
			}
		})
	}
}

func TestConfigAddresses(t *testing.T) {
	c := DefaultConfig()
	c.Count, c.PodCIDR = 300, netip.MustParsePrefix("10.244.0.0/16")
	for i, want := range map[int][2]string{
		0:   {"10.200.0.1", "10.244.0.0/24"},
		1:   {"10.200.0.2", "10.244.1.0/24"},
		255: {"10.200.1.0", "10.244.255.0/24"},
	} {
		if got := c.nodeAddress(i).String(); got != want[0] {
			t.Errorf("node %d address %s, want %s", i, got, want[0])
		}
		if got := c.selfPodCIDR(i).String(); got != want[1] {
			t.Errorf("node %d podCIDR %s, want %s", i, got, want[1])
		}
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "fewer than 300 nodes") {
		t.Errorf("300 nodes in 256 /24s: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"default", func(*Config) {}, ""},
		{"no nodes", func(c *Config) { c.Count = 0 }, "at least 1"},
		{"bad name", func(c *Config) { c.Prefix = "UPPER" }, "node name"},
		{"bad cpu", func(c *Config) { c.CPU = "four" }, "cpu"},
		{"zero pods", func(c *Config) { c.Pods = "0" }, "pods must be positive"},
		{"small node cidr", func(c *Config) { c.NodeCIDR, c.Count = netip.MustParsePrefix("10.0.0.0/30"), 3 }, "fewer than 3 nodes"},
		{"pod cidr size", func(c *Config) { c.PodCIDR, c.NodePodCIDRBits = netip.MustParsePrefix("10.244.0.0/16"), 8 }, "must lie between"},
		{"short lease", func(c *Config) { c.LeaseDuration = 15 * time.Second }, "at least twice"},
		{"fractional lease", func(c *Config) { c.LeaseDuration = 40500 * time.Millisecond }, "whole seconds"},
		{"negative delay", func(c *Config) { c.StartDelay = -time.Second }, "negative"},
		{"no workers", func(c *Config) { c.Workers = 0 }, "workers"},
		{"no clock", func(c *Config) { c.Clock = nil }, "clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNodeStatusKeepsTransitionsAndOthersConditions(t *testing.T) {
	a := &Agent{cfg: DefaultConfig()}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	prev := a.nodeStatus(0, nil, t0)
	for _, c := range prev.Conditions {
		if c.Type == "Ready" {
			c.Status = "Unknown" // the node lifecycle controller's verdict
		}
	}
	prev.Conditions = append(prev.Conditions, &corev1.NodeCondition{Type: "NetworkUnavailable", Status: "False"})
	st := a.nodeStatus(0, prev, t1)
	got := map[string]*corev1.NodeCondition{}
	for _, c := range st.GetConditions() {
		got[c.GetType()] = c
	}
	if len(got) != 5 || got["NetworkUnavailable"] == nil {
		t.Fatalf("conditions %v", st.GetConditions())
	}
	for typ, wantTransition := range map[string]time.Time{"Ready": t1, "MemoryPressure": t0, "DiskPressure": t0, "PIDPressure": t0} {
		c := got[typ]
		if !c.GetLastTransitionTime().AsTime().Equal(wantTransition) || !c.GetLastHeartbeatTime().AsTime().Equal(t1) {
			t.Errorf("%s: transition %s heartbeat %s", typ, c.GetLastTransitionTime().AsTime(), c.GetLastHeartbeatTime().AsTime())
		}
	}
	if got["Ready"].GetStatus() != "True" {
		t.Errorf("Ready is %s", got["Ready"].GetStatus())
	}
}

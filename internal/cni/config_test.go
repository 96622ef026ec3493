package cni

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func validConfig() Config {
	c := DefaultConfig()
	c.PodCIDR = netip.MustParsePrefix("10.250.0.0/24")
	return c
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"default with CIDR", func(*Config) {}, true},
		{"zero bridge and netns dir take defaults", func(c *Config) { c.Bridge, c.NetnsDir = "", "" }, true},
		{"/30 fits a gateway and a pod", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.250.0.4/30") }, true},
		{"MTU", func(c *Config) { c.MTU = 1450 }, true},
		{"host netns", func(c *Config) { c.HostNetns = "/var/run/netns/node1" }, true},
		{"no CIDR", func(c *Config) { c.PodCIDR = netip.Prefix{} }, false},
		{"CIDR not a network address", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.250.0.7/24") }, false},
		{"IPv6 CIDR", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("fd00::/64") }, false},
		{"/31 too small", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.250.0.0/31") }, false},
		{"no plugin dirs", func(c *Config) { c.PluginDirs = nil }, false},
		{"relative plugin dir", func(c *Config) { c.PluginDirs = []string{"bin/cni"} }, false},
		{"relative data dir", func(c *Config) { c.DataDir = "data" }, false},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"relative netns dir", func(c *Config) { c.NetnsDir = "netns" }, false},
		{"relative host netns", func(c *Config) { c.HostNetns = "node1" }, false},
		{"bridge name too long", func(c *Config) { c.Bridge = "rafter-bridge-xyz" }, false},
		{"bridge name with slash", func(c *Config) { c.Bridge = "raf/ter" }, false},
		{"MTU too small", func(c *Config) { c.MTU = 60 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConflist(t *testing.T) {
	c := validConfig()
	c.Bridge = "br-test"
	c.DataDir = "/data"
	c.MTU = 1400
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      "br-test",
		"isGateway":   true,
		"ipMasq":      false, // the node-wide rule masquerades
		"hairpinMode": true,
		"mtu":         1400.0,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  []any{[]any{map[string]any{"subnet": "10.250.0.0/24", "gateway": "10.250.0.1"}}},
			"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
			"dataDir": "/data/ipam",
		},
	}
	portmap := map[string]any{
		"type":         "portmap",
		"capabilities": map[string]any{"portMappings": true},
		"backend":      "nftables",
	}
	for _, tc := range []struct {
		name    string
		encode  func() ([]byte, error)
		plugins []any
	}{
		{"with ports", c.conflistJSON, []any{bridge, portmap}},
		{"without ports", c.noPortsConflistJSON, []any{bridge}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.encode()
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"cniVersion": "1.0.0", "name": "rafter", "plugins": tc.plugins}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("conflist:\n got %s\nwant %v", raw, want)
			}
		})
	}
}

// fakeBinaries makes a dir with empty executables of the given names.
func fakeBinaries(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNewMissingDependency(t *testing.T) {
	plugins := fakeBinaries(t, pluginTypes...)
	withNft := fakeBinaries(t, "nft")
	for _, tc := range []struct {
		name       string
		pluginDirs []string
		path       string
		ok         bool
	}{
		{"all there", []string{plugins}, withNft, true},
		{"plugins in the second dir", []string{t.TempDir(), plugins}, withNft, true},
		{"no plugins", []string{t.TempDir()}, withNft, false},
		{"only some plugins", []string{fakeBinaries(t, "bridge", "host-local")}, withNft, false},
		{"no nft", []string{plugins}, t.TempDir(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", tc.path)
			c := validConfig()
			c.PluginDirs = tc.pluginDirs
			c.DataDir = filepath.Join(t.TempDir(), "data")
			_, err := New(c)
			if tc.ok && err != nil {
				t.Fatalf("New: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrMissingDependency) {
				t.Fatalf("New = %v, want ErrMissingDependency", err)
			}
			if _, err := os.Stat(c.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("New wrote %s (stat: %v)", c.DataDir, err)
			}
		})
	}
}

func fakeNetwork(t *testing.T) *Network {
	t.Helper()
	t.Setenv("PATH", fakeBinaries(t, "nft"))
	c := validConfig()
	c.PluginDirs = []string{fakeBinaries(t, pluginTypes...)}
	c.DataDir = t.TempDir()
	n, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPortMappings(t *testing.T) {
	n := fakeNetwork(t)
	got, err := n.portMappings([]PortMapping{
		{HostPort: 80, ContainerPort: 8080},
		{HostPort: 53, ContainerPort: 5353, Protocol: ProtocolUDP, HostIP: netip.MustParseAddr("127.0.0.1")},
		{HostPort: 9, ContainerPort: 9, Protocol: ProtocolSCTP},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []portMapEntry{
		{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"},
		{HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: "127.0.0.1"},
		{HostPort: 9, ContainerPort: 9, Protocol: "sctp"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("portMappings = %+v, want %+v", got, want)
	}
	for _, bad := range []PortMapping{
		{HostPort: 0, ContainerPort: 80},
		{HostPort: 80, ContainerPort: 0},
		{HostPort: 80, ContainerPort: 80, Protocol: "ICMP"},
		{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}, // the API spells it TCP
		{HostPort: 80, ContainerPort: 80, HostIP: netip.MustParseAddr("::1")},
	} {
		if _, err := n.portMappings([]PortMapping{bad}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("portMappings(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestRuntimeConf(t *testing.T) {
	n := fakeNetwork(t)
	rt := n.runtimeConf(PodRef{Namespace: "ns", Name: "web", UID: "u1"}, "/run/netns/x", "eth0")
	if rt.ContainerID != "u1" || rt.NetNS != "/run/netns/x" || rt.IfName != "eth0" {
		t.Fatalf("runtimeConf = %+v", rt)
	}
	want := [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", "ns"},
		{"K8S_POD_NAME", "web"},
		{"K8S_POD_INFRA_CONTAINER_ID", "u1"},
		{"K8S_POD_UID", "u1"},
	}
	if !reflect.DeepEqual(rt.Args, want) {
		t.Fatalf("args = %v, want %v", rt.Args, want)
	}
	for _, bad := range []PodRef{{Name: "a", UID: "u"}, {Namespace: "n", UID: "u"}, {Namespace: "n", Name: "a"}, {Namespace: "n", Name: "a;b", UID: "u"}} {
		if err := validPod(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("validPod(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestAllocatedReadsHostLocalFiles(t *testing.T) {
	n := fakeNetwork(t)
	if got, err := n.Allocated(); err != nil || len(got) != 0 {
		t.Fatalf("Allocated before any Add = %v, %v; want empty", got, err)
	}
	dir := filepath.Join(n.cfg.DataDir, "ipam", NetworkName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"10.250.0.2":         "uid-1\r\neth0",
		"10.250.0.3":         "uid-2", // written by an older host-local
		"last_reserved_ip.0": "10.250.0.3",
		"lock":               "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := n.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{
		netip.MustParseAddr("10.250.0.2"): "uid-1",
		netip.MustParseAddr("10.250.0.3"): "uid-2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Allocated = %v, want %v", got, want)
	}
}

func TestNetnsNames(t *testing.T) {
	n := fakeNetwork(t)
	for _, bad := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := n.NewNetns(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NewNetns(%q) = %v, want ErrInvalidArgument", bad, err)
		}
		if err := n.DeleteNetns(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("DeleteNetns(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// NetworkName is the name of the conflist: it names host-local's directory
// under DataDir/ipam and libcni's cache files.
const NetworkName = "rafter"

// loopbackNetworkName named the one-plugin list (the loopback plugin) that
// brought lo up before Add did it over netlink. Pods attached then have a
// libcni cache entry under this name, which Del and GC remove.
const loopbackNetworkName = "rafter-loopback"

// cniVersion is the spec version of the lists; libcni v1.3 and the plugins
// v1.10 implement it.
const cniVersion = "1.0.0"

// PodInterface is the name of the pod's interface inside its netns.
const PodInterface = "eth0"

// The plugin binaries the conflists name; New checks that each is in
// Config.PluginDirs.
var pluginTypes = []string{"bridge", "host-local", "portmap"}

// Config says how a Network attaches pods. It is a plain value: New copies it.
type Config struct {
	// PluginDirs are searched in order for the plugin binaries (bridge,
	// host-local, portmap). Absolute paths.
	PluginDirs []string
	// NetnsDir is where NewNetns bind-mounts named netns, like
	// `ip netns add`. Absolute; zero means DefaultNetnsDir.
	NetnsDir string
	// Bridge is the Linux bridge pods attach to; the bridge plugin creates it
	// on the first Add and gives it the gateway address. At most 15 bytes;
	// zero means DefaultBridge.
	Bridge string
	// PodCIDR is this node's IPv4 pod range, a network address (10.250.1.0/24,
	// not 10.250.1.7/24) of at most /30. Its first address is the gateway (the
	// bridge's address); host-local allocates pods from the rest.
	PodCIDR netip.Prefix
	// DataDir holds the state that outlives a process: host-local's
	// allocations under DataDir/ipam/<NetworkName>/ and libcni's cache (the
	// config, runtime args and result of each attached pod) under
	// DataDir/cache/results/. Absolute.
	DataDir string
	// MTU of the veths and the bridge; zero leaves the plugin's default (the
	// bridge's current MTU or 1500).
	MTU int
	// HostNetns is the path of the network namespace that plays the node's
	// root netns: the bridge, the pods' host-side veths, the routes and the
	// NAT rules live there. Empty means the calling process's own netns, which
	// is what the node agent uses; tests set it to a netns they made so that
	// nothing touches the machine's root netns.
	HostNetns string
}

// Defaults used by DefaultConfig and for zero fields in New.
const (
	DefaultNetnsDir  = "/var/run/netns"
	DefaultBridge    = "rafter0"
	DefaultPluginDir = "/opt/cni/bin"
	DefaultDataDir   = "/var/lib/rafter/cni"
)

// DefaultConfig returns a Config with every field but PodCIDR set.
func DefaultConfig() Config {
	return Config{
		PluginDirs: []string{DefaultPluginDir},
		NetnsDir:   DefaultNetnsDir,
		Bridge:     DefaultBridge,
		DataDir:    DefaultDataDir,
	}
}

// withDefaults fills the zero fields that have a default.
func (c Config) withDefaults() Config {
	if c.NetnsDir == "" {
		c.NetnsDir = DefaultNetnsDir
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	c.PluginDirs = append([]string(nil), c.PluginDirs...)
	return c
}

// Validate checks the fields and how they fit together. It reads nothing from
// the machine. Zero NetnsDir and Bridge are accepted: New fills them in. Every
// error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	if len(c.PluginDirs) == 0 {
		return fmt.Errorf("%w: no plugin dirs", ErrInvalidConfig)
	}
	for _, d := range c.PluginDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("%w: plugin dir %q is not absolute", ErrInvalidConfig, d)
		}
	}
	if !filepath.IsAbs(c.NetnsDir) {
		return fmt.Errorf("%w: netns dir %q is not absolute", ErrInvalidConfig, c.NetnsDir)
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("%w: data dir %q is not absolute", ErrInvalidConfig, c.DataDir)
	}
	if c.HostNetns != "" && !filepath.IsAbs(c.HostNetns) {
		return fmt.Errorf("%w: host netns %q is not absolute", ErrInvalidConfig, c.HostNetns)
	}
	if err := validIfName(c.Bridge); err != nil {
		return fmt.Errorf("%w: bridge: %v", ErrInvalidConfig, err)
	}
	p := c.PodCIDR
	switch {
	case !p.IsValid():
		return fmt.Errorf("%w: pod CIDR not set", ErrInvalidConfig)
	case !p.Addr().Is4():
		return fmt.Errorf("%w: pod CIDR %s is not IPv4", ErrInvalidConfig, p)
	case p.Masked() != p:
		return fmt.Errorf("%w: pod CIDR %s is not a network address (want %s)", ErrInvalidConfig, p, p.Masked())
	case p.Bits() > 30:
		return fmt.Errorf("%w: pod CIDR %s leaves no room for a gateway and a pod (want /30 or wider)", ErrInvalidConfig, p)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("%w: MTU %d out of range 68..65535", ErrInvalidConfig, c.MTU)
	}
	return nil
}

// validIfName applies the kernel's rules for a link name.
func validIfName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid name %q", name)
	case len(name) > 15:
		return fmt.Errorf("name %q longer than 15 bytes", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("name %q contains '/', ':' or a space", name)
	}
	return nil
}

// gateway is the first address of the pod CIDR.
func (c Config) gateway() netip.Addr { return c.PodCIDR.Addr().Next() }

// ipamDir is host-local's dataDir; host-local adds NetworkName below it.
func (c Config) ipamDir() string { return filepath.Join(c.DataDir, "ipam") }

// cacheDir is libcni's cache dir.
func (c Config) cacheDir() string { return filepath.Join(c.DataDir, "cache") }

// The JSON shapes below are the subset of each plugin's config we set.

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgeConf struct {
	Type        string   `json:"type"`
	Bridge      string   `json:"bridge"`
	IsGateway   bool     `json:"isGateway"`
	IPMasq      bool     `json:"ipMasq"`
	HairpinMode bool     `json:"hairpinMode"`
	MTU         int      `json:"mtu,omitempty"`
	IPAM        ipamConf `json:"ipam"`
}

type ipamConf struct {
	Type    string        `json:"type"`
	Ranges  [][]ipamRange `json:"ranges"`
	Routes  []ipamRoute   `json:"routes"`
	DataDir string        `json:"dataDir"`
}

type ipamRange struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type portmapConf struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	Backend      string          `json:"backend"`
}

// conflistJSON is the list for pods with port mappings: bridge with
// host-local, then portmap.
//
//   - bridge: creates Config.Bridge with the gateway address (isGateway, which
//     also turns on IPv4 forwarding in the host netns) and a veth per pod with
//     hairpin mode (a pod reaches itself through a hostPort). Its ipMasq is
//     off: that ran `nft` to add a rule per pod on every ADD and DEL. One
//     node-wide rule does it instead (ensureNodeRules).
//   - host-local: allocates from PodCIDR, gateway = first address, default
//     route via the gateway, files under Config.ipamDir().
//   - portmap: DNAT rules (nftables table "ip cni_hostport") for the
//     portMappings capability, which Add passes as runtime config.
func (c Config) conflistJSON() ([]byte, error) {
	return c.conflist(true)
}

// noPortsConflistJSON is the list for pods without port mappings: bridge
// with host-local only. portmap would do nothing for them but cost an exec
// on ADD and on DEL. It has the main list's name, so host-local's directory
// and libcni's cache key are the same; Del runs whichever list the cache
// holds for the pod.
func (c Config) noPortsConflistJSON() ([]byte, error) {
	return c.conflist(false)
}

func (c Config) conflist(portmap bool) ([]byte, error) {
	plugins := []any{bridgeConf{
		Type:        "bridge",
		Bridge:      c.Bridge,
		IsGateway:   true,
		IPMasq:      false,
		HairpinMode: true,
		MTU:         c.MTU,
		IPAM: ipamConf{
			Type: "host-local",
			Ranges: [][]ipamRange{{{
				Subnet:  c.PodCIDR.String(),
				Gateway: c.gateway().String(),
			}}},
			Routes:  []ipamRoute{{Dst: "0.0.0.0/0"}},
			DataDir: c.ipamDir(),
		},
	}}
	if portmap {
		plugins = append(plugins, portmapConf{
			Type:         "portmap",
			Capabilities: map[string]bool{"portMappings": true},
			Backend:      "nftables",
		})
	}
	return json.Marshal(conflist{CNIVersion: cniVersion, Name: NetworkName, Plugins: plugins})
}

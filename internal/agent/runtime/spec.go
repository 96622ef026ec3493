package runtime

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// maxIDLen bounds container IDs (a 64-hex-digit ID fits).
const maxIDLen = 64

// validateID accepts what libcontainer accepts, minus names that start with
// a dot, '-' or '_'.
func validateID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: id %q must be 1 to %d characters", ErrInvalidSpec, id, maxIDLen)
	}
	for i := range len(id) {
		c := id[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return fmt.Errorf("%w: id %q: only letters, digits, '_', '-' and '.' (not first) are allowed", ErrInvalidSpec, id)
		}
	}
	return nil
}

// validate checks s for a runtime whose cgroups live under cgroupRoot.
func (s *ContainerSpec) validate(cgroupRoot string) error {
	if err := validateID(s.ID); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: container %s: %s", ErrInvalidSpec, s.ID, fmt.Sprintf(format, args...))
	}
	if !filepath.IsAbs(s.Rootfs) {
		return bad("rootfs %q must be an absolute path", s.Rootfs)
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return bad("no command")
	}
	if s.Cwd != "" && !path.IsAbs(s.Cwd) {
		return bad("cwd %q must be absolute", s.Cwd)
	}
	if s.NetnsPath != "" && !filepath.IsAbs(s.NetnsPath) {
		return bad("netns path %q must be absolute", s.NetnsPath)
	}
	if s.LogPath != "" && !filepath.IsAbs(s.LogPath) {
		return bad("log path %q must be absolute", s.LogPath)
	}
	if s.LogMaxBytes < 0 {
		return bad("negative log size limit")
	}
	r := s.Resources
	if r.MemoryLimit < 0 || r.CPUQuota < 0 {
		return bad("negative resource limit")
	}
	if r.CPUShares != 0 && (r.CPUShares < 2 || r.CPUShares > 262144) {
		return bad("cpu shares %d out of range 2..262144", r.CPUShares)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			return bad("mount destination %q must be absolute", m.Destination)
		}
		switch m.Type {
		case "", "bind":
			if !filepath.IsAbs(m.Source) {
				return bad("bind mount source %q must be absolute", m.Source)
			}
		case "tmpfs":
		default:
			return bad("mount %s: type %q is neither bind nor tmpfs", m.Destination, m.Type)
		}
	}
	if _, err := s.cgroupParent(cgroupRoot); err != nil {
		return bad("%v", err)
	}
	return nil
}

// cgroupParent returns the pod cgroup, checked to be within cgroupRoot.
func (s *ContainerSpec) cgroupParent(cgroupRoot string) (string, error) {
	if s.CgroupParent == "" {
		return cgroupRoot, nil
	}
	if err := checkCgroupName(s.CgroupParent); err != nil {
		return "", fmt.Errorf("cgroup parent: %w", err)
	}
	if s.CgroupParent != cgroupRoot && !strings.HasPrefix(s.CgroupParent, cgroupRoot+"/") {
		return "", fmt.Errorf("cgroup parent %q is outside the runtime's cgroup root %q", s.CgroupParent, cgroupRoot)
	}
	return s.CgroupParent, nil
}

// newRecord validates spec and fixes where its cgroup goes.
func newRecord(spec ContainerSpec, cgroupRoot string) (containerRecord, error) {
	if err := spec.validate(cgroupRoot); err != nil {
		return containerRecord{}, err
	}
	parent, _ := spec.cgroupParent(cgroupRoot)
	return containerRecord{
		Spec:       spec,
		CgroupPath: "/" + parent + "/" + spec.ID,
		CgroupRoot: cgroupRoot,
	}, nil
}

// defaultCapabilities are the capabilities containerd and Docker give a
// container by default.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// deviceNodes are the device files created in the container's /dev: null,
// zero, full, random, urandom and tty, as runc's defaults describe them.
func deviceNodes() []*devices.Device {
	var nodes []*devices.Device
	for _, d := range specconv.AllowedDevices {
		if d.Path != "" {
			c := *d
			nodes = append(nodes, &c)
		}
	}
	return nodes
}

// deviceRules allows the device nodes, ptys (/dev/pts/*, /dev/ptmx) and
// nothing else, mknod included.
func deviceRules() []*devices.Rule {
	var rules []*devices.Rule
	for _, d := range deviceNodes() {
		rules = append(rules, &d.Rule)
	}
	for _, r := range []devices.Rule{
		{Type: devices.CharDevice, Major: 136, Minor: devices.Wildcard, Permissions: "rwm", Allow: true}, // /dev/pts/*
		{Type: devices.CharDevice, Major: 5, Minor: 2, Permissions: "rwm", Allow: true},                  // /dev/ptmx
	} {
		rules = append(rules, &r)
	}
	return rules
}

const (
	defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	defaultCPUPeriod  = 100000
)

// standardMounts are the filesystems every container gets.
func standardMounts() []*configs.Mount {
	return []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: defaultMountFlags},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: defaultMountFlags, Data: "mode=1777,size=65536k"},
		{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: defaultMountFlags},
		{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: defaultMountFlags | unix.MS_RDONLY},
		{Source: "cgroup", Destination: "/sys/fs/cgroup", Device: "cgroup", Flags: defaultMountFlags | unix.MS_RELATIME | unix.MS_RDONLY},
	}
}

// libcontainerConfig turns the record into libcontainer's configuration.
func (r *containerRecord) libcontainerConfig() (*configs.Config, error) {
	s := &r.Spec
	caps := &configs.Capabilities{
		Bounding:  defaultCapabilities,
		Effective: defaultCapabilities,
		Permitted: defaultCapabilities,
	}
	example := specconv.Example().Linux
	oomScoreAdj := 0 // not the shim's (see protectShim) nor the agent's
	cfg := &configs.Config{
		OomScoreAdj:   &oomScoreAdj,
		Rootfs:        s.Rootfs,
		Hostname:      s.Hostname,
		Capabilities:  caps,
		Devices:       deviceNodes(),
		MaskPaths:     example.MaskedPaths,
		ReadonlyPaths: example.ReadonlyPaths,
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS},
			{Type: configs.NEWUTS},
			{Type: configs.NEWIPC},
			{Type: configs.NEWPID},
			{Type: configs.NEWNET, Path: s.NetnsPath},
		},
	}
	if s.NetnsPath == "" {
		cfg.Networks = []*configs.Network{{Type: "loopback"}}
	}
	if cgroups.IsCgroup2UnifiedMode() {
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWCGROUP})
	} else {
		// On cgroup v1, libcontainer mounts the hierarchies read-only on a
		// writable tmpfs; make that read-only too.
		cfg.ReadonlyPaths = append(slices.Clip(cfg.ReadonlyPaths), "/sys/fs/cgroup")
	}

	replaced := make(map[string]bool)
	var user []*configs.Mount
	for _, m := range s.Mounts {
		cm, err := convertMount(m)
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		replaced[path.Clean(m.Destination)] = true
		user = append(user, cm)
	}
	for _, m := range standardMounts() {
		if !replaced[m.Destination] {
			cfg.Mounts = append(cfg.Mounts, m)
		}
	}
	cfg.Mounts = append(cfg.Mounts, user...)

	cg, err := r.cgroupConfig()
	if err != nil {
		return nil, err
	}
	cfg.Cgroups = cg
	return cfg, nil
}

// cgroupConfig is the container's cgroup with its limits, for cgroup v1 and
// v2 alike.
func (r *containerRecord) cgroupConfig() (*cgroups.Cgroup, error) {
	res := r.Spec.Resources
	rs := &cgroups.Resources{
		Devices:   deviceRules(),
		Memory:    res.MemoryLimit,
		CpuQuota:  res.CPUQuota,
		CpuPeriod: res.CPUPeriod,
	}
	if rs.CpuQuota > 0 && rs.CpuPeriod == 0 {
		rs.CpuPeriod = defaultCPUPeriod
	}
	v2 := cgroups.IsCgroup2UnifiedMode()
	if res.CPUShares != 0 {
		if v2 {
			rs.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(res.CPUShares)
		} else {
			rs.CpuShares = res.CPUShares
		}
	}
	if res.MemoryLimit > 0 && (v2 || swapAccounting()) {
		// memory+swap equal to memory: no swap.
		rs.MemorySwap = res.MemoryLimit
	}
	return &cgroups.Cgroup{Path: r.CgroupPath, Resources: rs}, nil
}

// swapAccounting reports whether cgroup v1 can limit memory+swap.
func swapAccounting() bool {
	mnt, err := cgroups.FindCgroupMountpoint("", "memory")
	return err == nil && cgroups.PathExists(filepath.Join(mnt, "memory.memsw.limit_in_bytes"))
}

// mountFlags are the mount(8) options that are flags; the bool is whether
// the option clears the flag instead of setting it.
var mountFlags = map[string]struct {
	clear bool
	flag  int
}{
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"noatime":     {false, unix.MS_NOATIME},
	"atime":       {true, unix.MS_NOATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"bind":        {false, unix.MS_BIND},
	"rbind":       {false, unix.MS_BIND | unix.MS_REC},
}

var mountPropagation = map[string]int{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// convertMount turns a Mount into libcontainer's form. Bind mounts are
// recursive unless the options say "bind"; unknown options of a tmpfs are
// its data ("size=64m"), of a bind mount an error.
func convertMount(m Mount) (*configs.Mount, error) {
	cm := &configs.Mount{Destination: path.Clean(m.Destination)}
	var data []string
	for _, o := range m.Options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				cm.Flags &^= f.flag
				cm.ClearedFlags |= f.flag
			} else {
				cm.Flags |= f.flag
			}
			continue
		}
		if p, ok := mountPropagation[o]; ok {
			cm.PropagationFlags = append(cm.PropagationFlags, p)
			continue
		}
		data = append(data, o)
	}
	if m.ReadOnly {
		cm.Flags |= unix.MS_RDONLY
	}
	switch m.Type {
	case "", "bind":
		if len(data) > 0 {
			return nil, fmt.Errorf("%w: unknown bind mount options %q", ErrInvalidSpec, data)
		}
		if cm.Flags&unix.MS_BIND == 0 {
			cm.Flags |= unix.MS_BIND | unix.MS_REC
		}
		cm.Device = "bind"
		cm.Source = m.Source
	case "tmpfs":
		cm.Device = "tmpfs"
		cm.Source = "tmpfs"
		if m.Source != "" {
			cm.Source = m.Source
		}
		cm.Data = strings.Join(data, ",")
	}
	return cm, nil
}

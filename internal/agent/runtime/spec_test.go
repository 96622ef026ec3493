package runtime

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"c1":                            true,
		"pod.container_0-1":             true,
		strings.Repeat("a", maxIDLen):   true,
		strings.Repeat("a", maxIDLen+1): false,
		"":                              false,
		".hidden":                       false,
		"-x":                            false,
		"a/b":                           false,
		"..":                            false,
		"a b":                           false,
	} {
		if err := validateID(id); (err == nil) != ok {
			t.Errorf("validateID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	good := func() ContainerSpec {
		return ContainerSpec{ID: "c", Rootfs: "/rootfs", Args: []string{"/bin/sh"}, CgroupParent: "rafter/pod1"}
	}
	for _, tc := range []struct {
		name   string
		change func(*ContainerSpec)
		want   string // in the error; "" for valid
	}{
		{"valid", func(*ContainerSpec) {}, ""},
		{"default parent", func(s *ContainerSpec) { s.CgroupParent = "" }, ""},
		{"parent is the root", func(s *ContainerSpec) { s.CgroupParent = "rafter" }, ""},
		{"parent outside root", func(s *ContainerSpec) { s.CgroupParent = "rafterx/pod" }, "outside"},
		{"parent escapes", func(s *ContainerSpec) { s.CgroupParent = "rafter/../x" }, "clean"},
		{"absolute parent", func(s *ContainerSpec) { s.CgroupParent = "/rafter/pod" }, "clean"},
		{"relative rootfs", func(s *ContainerSpec) { s.Rootfs = "rootfs" }, "rootfs"},
		{"no command", func(s *ContainerSpec) { s.Args = nil }, "no command"},
		{"relative cwd", func(s *ContainerSpec) { s.Cwd = "work" }, "cwd"},
		{"relative log", func(s *ContainerSpec) { s.LogPath = "c.log" }, "log path"},
		{"bad shares", func(s *ContainerSpec) { s.Resources.CPUShares = 1 }, "shares"},
		{"negative memory", func(s *ContainerSpec) { s.Resources.MemoryLimit = -1 }, "negative"},
		{"mount type", func(s *ContainerSpec) { s.Mounts = []Mount{{Destination: "/x", Type: "nfs"}} }, "neither"},
		{"relative bind source", func(s *ContainerSpec) { s.Mounts = []Mount{{Source: "x", Destination: "/x"}} }, "source"},
		{"relative destination", func(s *ContainerSpec) { s.Mounts = []Mount{{Type: "tmpfs", Destination: "x"}} }, "destination"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(&s)
			err := s.validate("rafter")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validate = %v, want nil", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validate = %v, want ErrInvalidSpec about %q", err, tc.want)
			}
		})
	}
}

func TestNewRecordCgroupPath(t *testing.T) {
	rec, err := newRecord(ContainerSpec{ID: "c", Rootfs: "/r", Args: []string{"x"}, CgroupParent: "rafter/pod1"}, "rafter")
	if err != nil || rec.CgroupPath != "/rafter/pod1/c" {
		t.Errorf("cgroup path = %q, %v", rec.CgroupPath, err)
	}
	rec, err = newRecord(ContainerSpec{ID: "c", Rootfs: "/r", Args: []string{"x"}}, "rafter")
	if err != nil || rec.CgroupPath != "/rafter/c" {
		t.Errorf("cgroup path without parent = %q, %v", rec.CgroupPath, err)
	}
}

func TestConvertMount(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Mount
		want configs.Mount
		err  bool
	}{
		{
			name: "read-only file bind",
			in:   Mount{Source: "/pod/hosts", Destination: "/etc/hosts", ReadOnly: true},
			want: configs.Mount{Source: "/pod/hosts", Destination: "/etc/hosts", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY},
		},
		{
			name: "non-recursive bind with flags",
			in:   Mount{Source: "/data", Destination: "/data/", Type: "bind", Options: []string{"bind", "nosuid", "rslave"}},
			want: configs.Mount{Source: "/data", Destination: "/data", Device: "bind", Flags: unix.MS_BIND | unix.MS_NOSUID, PropagationFlags: []int{unix.MS_SLAVE | unix.MS_REC}},
		},
		{
			name: "rw clears ro",
			in:   Mount{Source: "/data", Destination: "/data", Options: []string{"ro", "rw"}},
			want: configs.Mount{Source: "/data", Destination: "/data", Device: "bind", Flags: unix.MS_BIND | unix.MS_REC, ClearedFlags: unix.MS_RDONLY},
		},
		{
			name: "tmpfs with data",
			in:   Mount{Destination: "/scratch", Type: "tmpfs", Options: []string{"nodev", "size=64m", "mode=1777"}},
			want: configs.Mount{Source: "tmpfs", Destination: "/scratch", Device: "tmpfs", Flags: unix.MS_NODEV, Data: "size=64m,mode=1777"},
		},
		{
			name: "bind with data",
			in:   Mount{Source: "/data", Destination: "/data", Options: []string{"size=1"}},
			err:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := convertMount(tc.in)
			if tc.err {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Errorf("convertMount = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("convertMount =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestLibcontainerConfig(t *testing.T) {
	rec, err := newRecord(ContainerSpec{
		ID: "c", Rootfs: "/r", Args: []string{"x"}, Hostname: "h",
		NetnsPath: "/var/run/netns/pod",
		Mounts:    []Mount{{Destination: "/dev/shm", Type: "tmpfs", Options: []string{"size=1m"}}},
		Resources: Resources{MemoryLimit: 1 << 20, CPUQuota: 20000},
	}, "rafter")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := rec.libcontainerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Namespaces.PathOf(configs.NEWNET); p != "/var/run/netns/pod" {
		t.Errorf("netns path = %q", p)
	}
	if len(cfg.Networks) != 0 {
		t.Errorf("a joined netns gets networks %+v; its loopback is CNI's", cfg.Networks)
	}
	var shm []*configs.Mount
	for _, m := range cfg.Mounts {
		if m.Destination == "/dev/shm" {
			shm = append(shm, m)
		}
	}
	if len(shm) != 1 || shm[0].Data != "size=1m" {
		t.Errorf("/dev/shm mounts = %+v, want only the spec's", shm)
	}
	if cfg.Cgroups.Path != "/rafter/c" || cfg.Cgroups.Resources.CpuPeriod != defaultCPUPeriod || cfg.Cgroups.Resources.Memory != 1<<20 {
		t.Errorf("cgroups = %+v %+v", cfg.Cgroups, cfg.Cgroups.Resources)
	}
	if cfg.OomScoreAdj == nil || *cfg.OomScoreAdj != 0 {
		t.Errorf("oom score adj = %v, want 0 (not the shim's)", cfg.OomScoreAdj)
	}
	for _, r := range cfg.Cgroups.Resources.Devices {
		if r.Permissions == "m" {
			t.Errorf("device rule %+v allows mknod", r)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	for name, change := range map[string]func(*Config){
		"relative root":     func(c *Config) { c.Root = "run" },
		"long root":         func(c *Config) { c.Root = "/" + strings.Repeat("r", 100) },
		"relative binary":   func(c *Config) { c.Binary = "nodeagent" },
		"empty cgroup root": func(c *Config) { c.CgroupRoot = "" },
		"absolute cgroup":   func(c *Config) { c.CgroupRoot = "/rafter" },
		"no logger":         func(c *Config) { c.Logger = nil },
	} {
		c := DefaultConfig()
		change(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Validate = %v, want ErrInvalidSpec", name, err)
		}
	}
}

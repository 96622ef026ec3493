package runtime

import (
	"github.com/opencontainers/runc/libcontainer"

	// Device rules for the devices cgroup (v1) and its eBPF program (v2).
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter joins and creates the namespaces in C before the Go runtime
	// starts, when the binary runs as a container's init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init is the body of `<binary> init`, the first process of every container
// and exec: libcontainer re-executes the binary that created the container
// (the shim, or the agent for Exec) with the argument "init". main must call
// it before doing anything else when os.Args[1] == "init". It does not
// return.
func Init() {
	libcontainer.Init()
}

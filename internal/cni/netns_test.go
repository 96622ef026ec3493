package cni

import (
	"os"
	"path/filepath"
	"testing"
)

// TestNoThreadIsLeftInAPodNetns: a goroutine locked to the process's main
// thread that exits does not end that thread; Go parks it for good. Before
// onThreadIn moved its thread back, a pod netns made or entered that way
// could stay on the parked main thread and never be freed (seen in CI as a
// pod veth that never left the bridge). After many namespace switches, every
// thread of the process must still be in the netns it started in.
func TestNoThreadIsLeftInAPodNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: unshare(CLONE_NEWNET)")
	}
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		if err := onThreadIn(unshareNetns, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(task)
		if err != nil {
			continue // the thread exited meanwhile
		}
		if ns != own {
			t.Errorf("%s is in %s, want the process's own %s", task, ns, own)
		}
	}
}

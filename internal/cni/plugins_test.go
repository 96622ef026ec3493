package cni_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/rafter-dev/rafter/internal/cni"
)

// TestPortmapOnlyWithPorts: a pod without port mappings is attached with a
// list that has no portmap, and its Del (from libcni's cache) runs none; a
// pod with mappings runs portmap on ADD and on DEL. A wrapper portmap logs
// each call and runs the real one.
func TestPortmapOnlyWithPorts(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	wrapper := t.TempDir()
	script := `#!/bin/sh
echo "$CNI_COMMAND $CNI_CONTAINERID" >>"$PORTMAP_LOG"
exec "$REAL_PORTMAP"
`
	if err := os.WriteFile(filepath.Join(wrapper, "portmap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "portmap.log")
	t.Setenv("PORTMAP_LOG", logFile)
	t.Setenv("REAL_PORTMAP", filepath.Join(pluginDir, "portmap"))
	calls := func() string {
		t.Helper()
		b, err := os.ReadFile(logFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.7.0/24"), bridge: "rft7"}
	n, host := newNode(t, tc, wrapper)
	bare := &pod{ref: cni.PodRef{Namespace: "default", Name: "bare", UID: "uid-bare"}, name: "pod-bare"}
	mapped := &pod{ref: cni.PodRef{Namespace: "default", Name: "mapped", UID: "uid-mapped"}, name: "pod-mapped",
		ports: []cni.PortMapping{{HostPort: 30300, ContainerPort: containerPort}}}
	addPods(ctx, t, n, bare, mapped)
	if got, want := calls(), "ADD uid-mapped"; got != want {
		t.Fatalf("portmap calls after Add of both pods:\n%s\nwant %q", got, want)
	}
	if got := natRules(t, host, mapped.ref.UID); got.hostport == 0 {
		t.Fatalf("mapped pod: %+v rules, want hostport rules", got)
	}
	mapped.lis = listenIn(t, mapped.path, fmt.Sprintf(":%d", containerPort), "hello from mapped")
	expectGreeting(t, host, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 30300), "hello from mapped")

	if err := n.Del(ctx, bare.ref, bare.path); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(), "ADD uid-mapped"; got != want {
		t.Fatalf("portmap calls after Del of the pod without ports:\n%s\nwant %q", got, want)
	}
	if err := n.Del(ctx, mapped.ref, mapped.path); err != nil {
		t.Fatal(err)
	}
	if got, want := calls(), "ADD uid-mapped\nDEL uid-mapped"; got != want {
		t.Fatalf("portmap calls after Del of the pod with ports:\n%s\nwant %q", got, want)
	}
	if got := natRules(t, host, mapped.ref.UID); got != (ruleCount{}) {
		t.Fatalf("mapped pod: %+v rules after Del, want none", got)
	}
	if got := allocated(t, n); len(got) != 0 {
		t.Fatalf("Allocated after Del = %v, want none", got)
	}
}

// TestLoopbackWithoutPlugin: PluginDirs has no loopback plugin (TestMain
// leaves it out), and Add brings lo up over netlink: 127.0.0.1 answers
// inside the pod. A pod attached by an older version has a libcni cache
// entry for the loopback list; Del removes it, and GC removes one whose
// pod is gone.
func TestLoopbackWithoutPlugin(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(pluginDir, "loopback")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the test plugin dir has a loopback plugin (stat: %v)", err)
	}
	tc := podTest{isolated: true, cidr: netip.MustParsePrefix("10.250.8.0/24"), bridge: "rft8"}
	n, _ := newNode(t, tc)
	p := &pod{ref: cni.PodRef{Namespace: "default", Name: "lo", UID: "uid-lo"}, name: "pod-lo"}
	var err error
	if p.path, err = n.NewNetns(p.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Del(context.Background(), p.ref, p.path); err != nil {
			t.Error(err)
		}
		mustDeleteNetns(t, n, p.name)
	})
	withNetlink(t, p.path, func(h *netlink.Handle) {
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if lo.Attrs().Flags&net.FlagUp != 0 {
			t.Fatal("lo is up in a new netns before Add")
		}
	})
	if p.res, err = n.Add(ctx, p.ref, p.path, nil); err != nil {
		t.Fatal(err)
	}
	checkPodNetns(t, p, tc.cidr.Bits(), tc.cidr.Addr().Next())
	p.lis = listenIn(t, p.path, fmt.Sprintf("127.0.0.1:%d", containerPort), "hello on lo")
	expectGreeting(t, p.path, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), containerPort), "hello on lo")

	// Cache entries as libcni wrote them for the loopback list.
	results := filepath.Join(n.Config().DataDir, "cache", "results")
	legacy := func(uid string) string {
		path := filepath.Join(results, "rafter-loopback-"+uid+"-lo")
		entry := fmt.Sprintf(`{"kind":"cniCacheV1","containerId":%q,"config":"e30=","ifName":"lo",`+
			`"networkName":"rafter-loopback","netns":%q,"cniArgs":[["K8S_POD_NAMESPACE","default"],["K8S_POD_NAME","x"]],`+
			`"result":{"cniVersion":"1.0.0"}}`, uid, p.path)
		if err := os.WriteFile(path, []byte(entry), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mine, ghost := legacy(p.ref.UID), legacy("uid-lo-ghost")
	if err := n.Del(ctx, p.ref, p.path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mine); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("loopback cache entry of the deleted pod: stat %v, want gone", err)
	}
	if _, err := os.Stat(ghost); err != nil {
		t.Fatalf("another pod's loopback cache entry: %v, want it kept by Del", err)
	}
	if err := n.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(results); err != nil || len(ents) != 0 {
		t.Fatalf("libcni cache after GC: %v, %v; want empty", ents, err)
	}
}

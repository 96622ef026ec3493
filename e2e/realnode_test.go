package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/cni"
	"github.com/rafter-dev/rafter/internal/cni/cnitest"
	"github.com/rafter-dev/rafter/internal/testimage"
)

// The real node agent's end-to-end tests: 3 controlplane peers, one nodeagent
// running pods with libcontainer and CNI on this machine (root only), and an
// image built from testdata/podapp served by a registry on 127.0.0.1.

// realClusterCIDR is the pod range of these tests: private, and only ever on
// the bridge the CNI plugins make here.
const realClusterCIDR = "10.251.0.0/16"

// e2eBridge is the tests' pod bridge, apart from the default one `make run`
// uses, and removed after each test.
const e2eBridge = "rafter-e2e0"

// podappImage builds testdata/podapp statically into a one-layer image (the
// binary as /app, /bin/cat a link to it) and pushes it to a registry on
// 127.0.0.1; it returns the image reference.
func podappImage(t *testing.T) string {
	t.Helper()
	bin, err := testimage.BuildPodapp("..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(bin)
	if err != nil {
		t.Fatal(err)
	}
	reg := testimage.NewRegistry()
	t.Cleanup(reg.Close)
	ref, err := reg.Push(img, "rafter/podapp:1")
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// startRealNode runs `nodeagent --name=name` (a real node) against the
// cluster; it returns the process and its data directory.
func (c *cluster) startRealNode(name string, pluginDir string) (*exec.Cmd, string) {
	c.t.Helper()
	var addrs []string
	for _, p := range c.procs {
		addrs = append(addrs, p.grpcAddr)
	}
	dataDir := filepath.Join(c.dir, "node-"+name)
	log := &syncBuffer{}
	cmd := exec.Command(nodeagentBin, "--name="+name, "--server="+strings.Join(addrs, ","), "--data-dir="+dataDir,
		"--node-ip=127.0.0.1", "--cni-bin-dir="+pluginDir, "--runtime-root=/run/rafter-e2e/"+name,
		"--lease-interval=1s", "--log-level=debug", "--bridge="+e2eBridge,
		"--agent-port=0") // any free port: a local `make run` node may hold 10250
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.t.Cleanup(func() {
		// The bridge and the node's masquerade rule outlive the agent (as on
		// a real node); the tests' ones go.
		if l, err := netlink.LinkByName(e2eBridge); err == nil {
			_ = netlink.LinkDel(l)
		}
		ncfg := cni.DefaultConfig()
		ncfg.PluginDirs, ncfg.Bridge, ncfg.DataDir = []string{pluginDir}, e2eBridge, c.dir
		ncfg.PodCIDR = netip.MustParsePrefix("10.251.0.0/24")
		if n, err := cni.New(ncfg); err == nil {
			if err := n.RemoveNodeRules(); err != nil {
				c.t.Errorf("remove the node's masquerade rule: %v", err)
			}
		}
	})
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if c.t.Failed() {
			c.t.Logf("nodeagent %s log:\n%s", name, tail(log.String(), 80))
		}
	})
	return cmd, dataDir
}

// viaBridge fails the test unless traffic to ip goes out on a bridge device of
// the pod network (never off this machine).
func viaBridge(t *testing.T, ip netip.Addr) {
	t.Helper()
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil || len(routes) == 0 {
		t.Fatalf("route to %s: %v", ip, err)
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil || link.Type() != "bridge" {
		t.Fatalf("route to %s leaves through %v (%v), not the pod bridge", ip, link, err)
	}
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestRealPodsRunServeAndLeaveNothingBehind: must-shows 1, 2 and 5 of the node
// agent — a Deployment of 3 replicas really runs (processes, cgroups, an IP
// each on the node's podCIDR, answering curl from the host), sees env from a
// Secret and a ConfigMap and a configMap volume, and deleting it leaves no
// process, cgroup, mount, netns or IP allocation.
func TestRealPodsRunServeAndLeaveNothingBehind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the real node agent needs root")
	}
	pluginDir := cnitest.BuildPlugins(t)
	image := podappImage(t)
	c := newCluster(t, 3, "--cluster-cidr="+realClusterCIDR)
	_, dataDir := c.startRealNode("rn1", pluginDir)
	c.waitNodes(1)

	manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: hi-there, app.conf: "mode=real"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podapp}
spec:
  replicas: 3
  selector: {matchLabels: {app: podapp}}
  template:
    metadata: {labels: {app: podapp}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: %s
        ports: [{containerPort: 8080, name: http}]
        env:
        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        volumeMounts: [{name: config, mountPath: /etc/config}]
        resources: {limits: {memory: 64Mi, cpu: 500m}}
      volumes:
      - {name: config, configMap: {name: cfg}}
`, image)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	var running []*corev1.Pod
	c.eventually(120*time.Second, "3 pods Running and Ready", func() error {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=podapp"})
		if err != nil {
			return err
		}
		running = running[:0]
		var states []string
		for _, p := range list.GetItems() {
			if p.GetStatus().GetPhase() == "Running" && podReady(p) {
				running = append(running, p)
			}
			for _, cs := range p.GetStatus().GetContainerStatuses() {
				states = append(states, fmt.Sprintf("%s:%v", p.GetMetadata().GetName(), cs.GetState()))
			}
		}
		if len(running) != 3 {
			return fmt.Errorf("%d running; %s", len(running), strings.Join(states, "; "))
		}
		return nil
	})
	node, err := corev1.NewNodesClient(c.conn(1)).Get(ctx, &metav1.GetRequest{Name: "rn1"})
	if err != nil {
		t.Fatal(err)
	}
	podCIDR := netip.MustParsePrefix(node.GetSpec().GetPodCIDR())
	ips := map[string]bool{}
	for _, p := range running {
		name := p.GetMetadata().GetName()
		ip, err := netip.ParseAddr(p.GetStatus().GetPodIP())
		if err != nil || !podCIDR.Contains(ip) || ips[ip.String()] {
			t.Fatalf("pod %s has IP %q, want a unique one in %s", name, p.GetStatus().GetPodIP(), podCIDR)
		}
		ips[ip.String()] = true
		viaBridge(t, ip)
		base := "http://" + ip.String() + ":8080"
		c.eventually(20*time.Second, "pod "+name+" answers", func() error {
			body, err := httpGet(base + "/")
			if err != nil {
				return err
			}
			if body != "hello from "+name+"\n" {
				return fmt.Errorf("body %q", body)
			}
			return nil
		})
		for path, want := range map[string]string{
			"/env?name=PASSWORD": "hunter2", "/env?name=GREETING": "hi-there", "/env?name=POD_NAME": name,
			"/env?name=FROM_IMAGE": "yes", "/file?path=/etc/config/app.conf": "mode=real",
			"/file?path=/etc/hostname": name + "\n",
		} {
			if body, err := httpGet(base + path); err != nil || body != want {
				t.Errorf("%s%s = %q, %v; want %q", name, path, body, err, want)
			}
		}
		cs := p.GetStatus().GetContainerStatuses()[0]
		if !strings.HasPrefix(cs.GetImageID(), strings.Split(image, ":")[0]) || !strings.Contains(cs.GetImageID(), "@sha256:") {
			t.Errorf("imageID %q", cs.GetImageID())
		}
	}
	// The processes and their cgroups exist.
	procs := podappProcesses(t)
	if len(procs) != 3 {
		t.Fatalf("%d podapp processes run, want 3: %v", len(procs), procs)
	}
	for _, pid := range procs {
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if !strings.Contains(string(cg), "rafter") {
			t.Errorf("process %d is in no rafter cgroup:\n%s", pid, cg)
		}
		if limit := memoryLimitOf(t, pid); limit != 64<<20 {
			t.Errorf("process %d has memory limit %d, want 64Mi", pid, limit)
		}
	}

	// Deleting the Deployment leaves nothing behind.
	c.ctl("delete", "deployment", "podapp")
	c.eventually(90*time.Second, "all pods gone", func() error {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=podapp"})
		if err != nil {
			return err
		}
		if n := len(list.GetItems()); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	c.eventually(20*time.Second, "nothing left on the node", func() error {
		var left []string
		if p := podappProcesses(t); len(p) > 0 {
			left = append(left, fmt.Sprintf("processes %v", p))
		}
		if cg := rafterCgroups(uidsOf(running)); len(cg) > 0 {
			left = append(left, fmt.Sprintf("cgroups %v", cg))
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, dataDir) {
				left = append(left, "mount "+line)
			}
		}
		for _, uid := range uidsOf(running) {
			if _, err := os.Stat("/var/run/netns/" + uid); err == nil {
				left = append(left, "netns "+uid)
			}
		}
		ipam, _ := os.ReadDir(filepath.Join(dataDir, "cni", "ipam", "rafter"))
		for _, e := range ipam {
			if _, err := netip.ParseAddr(e.Name()); err == nil {
				left = append(left, "IP allocation "+e.Name())
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left behind: %s", strings.Join(left, "; "))
		}
		return nil
	})
}

func uidsOf(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.GetMetadata().GetUid())
	}
	return out
}

// podappProcesses lists the PIDs of running podapp servers (their /proc/PID/exe is /app inside a container).
func podappProcesses(t *testing.T) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		if args := strings.Split(string(cmdline), "\x00"); len(args) > 0 && args[0] == "/app" {
			out = append(out, pid)
		}
	}
	return out
}

// memoryLimitOf reads the memory limit of pid's cgroup (v1 or v2).
func memoryLimitOf(t *testing.T, pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var path string
		switch {
		case strings.Contains(","+f[1]+",", ",memory,"):
			path = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes")
		case f[1] == "" && f[0] == "0":
			path = filepath.Join("/sys/fs/cgroup", f[2], "memory.max")
		default:
			continue
		}
		if v, err := os.ReadFile(path); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
			return n
		}
	}
	return -1
}

// rafterCgroups lists the cgroup directories of these pods (by UID) left
// under the rafter cgroup root of any hierarchy.
func rafterCgroups(uids []string) []string {
	var out []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/rafter")
	for _, root := range roots {
		for _, uid := range uids {
			if _, err := os.Stat(filepath.Join(root, "pod"+uid)); err == nil {
				out = append(out, filepath.Join(root, "pod"+uid))
			}
		}
	}
	return out
}

// realSetup starts the cluster, the node and the image for a real-node test.
func realSetup(t *testing.T) (*cluster, string, *exec.Cmd, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the real node agent needs root")
	}
	pluginDir := cnitest.BuildPlugins(t)
	image := podappImage(t)
	c := newCluster(t, 3, "--cluster-cidr="+realClusterCIDR)
	cmd, dataDir := c.startRealNode("rn1", pluginDir)
	c.waitNodes(1)
	// Containers outlive their agent by design: every pod goes before the
	// node and the cluster stop (cleanups run last-registered first).
	t.Cleanup(func() { c.deleteAllPods(dataDir) })
	return c, image, cmd, dataDir, pluginDir
}

// deleteAllPods deletes the pods of the default namespace and waits until the
// node has stopped their containers.
func (c *cluster) deleteAllPods(dataDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default"})
	if err != nil {
		c.t.Logf("cleanup: list pods: %v", err)
		return
	}
	var uids []string
	for _, p := range list.GetItems() {
		uids = append(uids, p.GetMetadata().GetUid())
		_, _ = pods.Delete(ctx, &metav1.DeleteRequest{Namespace: "default", Name: p.GetMetadata().GetName()})
	}
	// A deleted pod stays Terminating until the node has stopped it and
	// released its network; its netns and cgroups are checked as well.
	torn := func() bool {
		for _, uid := range uids {
			if _, err := os.Stat("/var/run/netns/" + uid); err == nil {
				return false
			}
		}
		return len(rafterCgroups(uids)) == 0
	}
	for ctx.Err() == nil {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default"})
		if err == nil && len(list.GetItems()) == 0 && len(podappProcesses(c.t)) == 0 && torn() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Errorf("cleanup: pods or containers left: %v", podappProcesses(c.t))
}

// podStatus reads pod name's container status.
func containerStatus(ctx context.Context, t *testing.T, pods corev1.PodsClient, name string) (*corev1.Pod, *corev1.ContainerStatus, error) {
	p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: name})
	if err != nil {
		return nil, nil, err
	}
	cs := p.GetStatus().GetContainerStatuses()
	if len(cs) == 0 {
		return p, nil, fmt.Errorf("pod %s has no container status yet", name)
	}
	return p, cs[0], nil
}

// pidOf finds the PID of the podapp process whose hostname is the pod's name.
func pidOf(t *testing.T, pod string) int {
	for _, pid := range podappProcesses(t) {
		host, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/hostname", pid))
		if err == nil && strings.TrimSpace(string(host)) == pod {
			return pid
		}
	}
	return 0
}

// TestRealContainersFailAndRecover: must-show 3 — a killed process restarts
// (restartCount 1); a failing liveness probe restarts the container; a failing
// readiness probe takes the pod out of its Service's ready addresses; a 32Mi
// limit exceeded ends in OOMKilled; exit 1 under restartPolicy Always reaches
// CrashLoopBackOff with growing delays.
func TestRealContainersFailAndRecover(t *testing.T) {
	c, image, _, _, _ := realSetup(t)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: probed, labels: {app: probed}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: %[1]s
    ports: [{containerPort: 8080, name: http}]
    livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, failureThreshold: 2}
    readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: probed}
spec:
  selector: {app: probed}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: %[1]s
    args: ["-alloc", "100000000"]
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: app
    image: %[1]s
    args: ["-exit", "1"]
`, image)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	eps := corev1.NewEndpointsServiceClient(c.conn(1))

	// The crasher's back-off messages, in the order they appear.
	var backoffMu sync.Mutex
	var backoffs []string
	go func() {
		for ctx.Err() == nil {
			if _, cs, err := containerStatus(ctx, t, pods, "crasher"); err == nil {
				if w := cs.GetState().GetWaiting(); w.GetReason() == "CrashLoopBackOff" {
					d := strings.SplitN(w.GetMessage(), " ", 3)[1]
					backoffMu.Lock()
					if len(backoffs) == 0 || backoffs[len(backoffs)-1] != d {
						backoffs = append(backoffs, d)
					}
					backoffMu.Unlock()
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// Ready, and in the Service's ready addresses.
	var podIP string
	c.eventually(60*time.Second, "probed Running, Ready and an endpoint", func() error {
		p, cs, err := containerStatus(ctx, t, pods, "probed")
		if err != nil {
			return err
		}
		if !cs.GetReady() {
			return fmt.Errorf("not ready: %v", cs.GetState())
		}
		podIP = p.GetStatus().GetPodIP()
		ep, err := eps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "probed"})
		if err != nil {
			return err
		}
		if s := ep.GetSubsets(); len(s) != 1 || len(s[0].GetAddresses()) != 1 || s[0].GetAddresses()[0].GetIp() != podIP {
			return fmt.Errorf("endpoints %v", ep.GetSubsets())
		}
		return nil
	})

	// Killing the process: restartCount 1.
	pid := pidOf(t, "probed")
	if pid == 0 {
		t.Fatal("no process for pod probed")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.eventually(30*time.Second, "probed restarted once after the kill", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "probed")
		if err != nil {
			return err
		}
		if cs.GetRestartCount() != 1 || cs.GetState().GetRunning() == nil || cs.GetLastState().GetTerminated().GetExitCode() != 137 {
			return fmt.Errorf("restartCount %d state %v last %v", cs.GetRestartCount(), cs.GetState(), cs.GetLastState())
		}
		return nil
	})

	// Readiness fails: out of the ready addresses, into the not-ready ones.
	c.eventually(10*time.Second, "new process", func() error {
		if pidOf(t, "probed") == 0 || pidOf(t, "probed") == pid {
			return fmt.Errorf("no new process yet")
		}
		return nil
	})
	pid = pidOf(t, "probed")
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/unready", pid), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.eventually(30*time.Second, "probed not ready and out of the ready endpoints", func() error {
		ep, err := eps.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "probed"})
		if err != nil {
			return err
		}
		s := ep.GetSubsets()
		if len(s) != 1 || len(s[0].GetAddresses()) != 0 || len(s[0].GetNotReadyAddresses()) != 1 {
			return fmt.Errorf("endpoints %v", s)
		}
		return nil
	})

	// Liveness fails: the container is restarted.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/unhealthy", pid), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.eventually(40*time.Second, "probed restarted by its liveness probe", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "probed")
		if err != nil {
			return err
		}
		if cs.GetRestartCount() < 2 || cs.GetState().GetRunning() == nil {
			return fmt.Errorf("restartCount %d state %v", cs.GetRestartCount(), cs.GetState())
		}
		return nil
	})
	c.eventually(30*time.Second, "probed ready again in a fresh container", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "probed")
		if err != nil {
			return err
		}
		if !cs.GetReady() {
			return fmt.Errorf("not ready")
		}
		return nil
	})

	// OOM.
	c.eventually(60*time.Second, "hungry OOMKilled", func() error {
		p, cs, err := containerStatus(ctx, t, pods, "hungry")
		if err != nil {
			return err
		}
		if term := cs.GetState().GetTerminated(); term.GetReason() != "OOMKilled" || p.GetStatus().GetPhase() != "Failed" {
			return fmt.Errorf("phase %s state %v", p.GetStatus().GetPhase(), cs.GetState())
		}
		return nil
	})

	// CrashLoopBackOff with growing delays: 10s, then 20s.
	c.eventually(90*time.Second, "crasher in CrashLoopBackOff, 10s then 20s", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "crasher")
		if err != nil {
			return err
		}
		backoffMu.Lock()
		seen := slices.Clone(backoffs)
		backoffMu.Unlock()
		if len(seen) < 2 || seen[0] != "10s" || seen[1] != "20s" || cs.GetLastState().GetTerminated().GetExitCode() != 1 {
			return fmt.Errorf("back-offs seen %v; state %v restarts %d", seen, cs.GetState(), cs.GetRestartCount())
		}
		return nil
	})
}

// TestRealAgentRestartKeepsContainers: must-show 6 — the agent killed with -9
// and started again: the running containers keep their PIDs and restartCount.
func TestRealAgentRestartKeepsContainers(t *testing.T) {
	c, image, cmd, _, pluginDir := realSetup(t)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - {name: app, image: %s}
`, image)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	var before *corev1.ContainerStatus
	c.eventually(60*time.Second, "steady running", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "steady")
		if err != nil {
			return err
		}
		if cs.GetState().GetRunning() == nil || !cs.GetReady() {
			return fmt.Errorf("state %v", cs.GetState())
		}
		before = cs
		return nil
	})
	pid := pidOf(t, "steady")
	if pid == 0 {
		t.Fatal("no process for steady")
	}
	_ = cmd.Process.Kill()
	time.Sleep(500 * time.Millisecond)
	if pidOf(t, "steady") != pid {
		t.Fatal("the container did not survive the agent's kill -9")
	}
	cmd2, _ := c.startRealNode("rn1", pluginDir)
	time.Sleep(3 * time.Second) // several resyncs of the restarted agent
	c.eventually(30*time.Second, "steady still running, same process", func() error {
		_, cs, err := containerStatus(ctx, t, pods, "steady")
		if err != nil {
			return err
		}
		if got := pidOf(t, "steady"); got != pid {
			return fmt.Errorf("pid %d, was %d", got, pid)
		}
		if cs.GetRestartCount() != before.GetRestartCount() || cs.GetContainerID() != before.GetContainerID() || cs.GetState().GetRunning() == nil {
			return fmt.Errorf("status %v, was %v", cs, before)
		}
		return nil
	})
	// A pod deleted while the agent is down is torn down when it returns.
	p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "steady"})
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd2.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	c.ctl("delete", "pod", "steady")
	if pidOf(t, "steady") != pid {
		t.Fatal("the container went away without an agent")
	}
	c.startRealNode("rn1", pluginDir)
	c.eventually(30*time.Second, "what steady left is gone", func() error {
		if pidOf(t, "steady") != 0 {
			return fmt.Errorf("process still there")
		}
		if _, err := os.Stat("/var/run/netns/" + p.GetMetadata().GetUid()); err == nil {
			return fmt.Errorf("netns still there")
		}
		if cg := rafterCgroups([]string{p.GetMetadata().GetUid()}); len(cg) > 0 {
			return fmt.Errorf("cgroups %v", cg)
		}
		return nil
	})
}

// TestRealInitContainersRunFirst: init containers run to completion, in order,
// before the pod's containers start; a failing one under restartPolicy Never
// fails the pod without starting them.
func TestRealInitContainersRunFirst(t *testing.T) {
	c, image, _, _, _ := realSetup(t)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: inits}
spec:
  initContainers:
  - {name: first, image: %[1]s, command: ["/bin/cat", "/etc/hostname"]}
  - {name: second, image: %[1]s, args: ["-exit", "0"]}
  containers:
  - {name: app, image: %[1]s}
---
apiVersion: v1
kind: Pod
metadata: {name: badinit}
spec:
  restartPolicy: Never
  initContainers:
  - {name: broken, image: %[1]s, args: ["-exit", "3"]}
  containers:
  - {name: app, image: %[1]s}
`, image)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	c.eventually(60*time.Second, "inits Running after both init containers succeeded", func() error {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "inits"})
		if err != nil {
			return err
		}
		inits := p.GetStatus().GetInitContainerStatuses()
		if len(inits) != 2 || p.GetStatus().GetPhase() != "Running" {
			return fmt.Errorf("phase %s, init statuses %v", p.GetStatus().GetPhase(), inits)
		}
		first, second := inits[0].GetState().GetTerminated(), inits[1].GetState().GetTerminated()
		if first.GetExitCode() != 0 || second.GetExitCode() != 0 || first == nil || second == nil {
			return fmt.Errorf("init states %v / %v", inits[0].GetState(), inits[1].GetState())
		}
		// In order: the second started after the first finished, the app after both.
		app := p.GetStatus().GetContainerStatuses()[0].GetState().GetRunning()
		if second.GetStartedAt().AsTime().Before(first.GetFinishedAt().AsTime()) || app.GetStartedAt().AsTime().Before(second.GetFinishedAt().AsTime()) {
			return fmt.Errorf("out of order: first %v, second %v, app %v", first, second, app)
		}
		return nil
	})
	c.eventually(60*time.Second, "badinit Failed without starting its container", func() error {
		p, err := pods.Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "badinit"})
		if err != nil {
			return err
		}
		inits := p.GetStatus().GetInitContainerStatuses()
		if p.GetStatus().GetPhase() != "Failed" || len(inits) != 1 || inits[0].GetState().GetTerminated().GetExitCode() != 3 {
			return fmt.Errorf("phase %s, init statuses %v", p.GetStatus().GetPhase(), inits)
		}
		if cs := p.GetStatus().GetContainerStatuses(); len(cs) != 1 || cs[0].GetState().GetRunning() != nil || cs[0].GetContainerID() != "" {
			return fmt.Errorf("the app container of badinit started: %v", cs)
		}
		return nil
	})
}

package hollow_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/agent/hollow"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// fakeClock moves only when Advance is called.
type fakeClock struct {
	mu      sync.Mutex // guards now and waiters
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After waits for Advance, except that waits of up to realWait (the retries
// after a failed call, which an election under load may cause) pass in real
// time and move the clock as far as they wait: the tests need not know about
// them, as long as they expect the clock to creep forward a little.
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= realWait {
		time.AfterFunc(max(d, 0), func() {
			c.advanceTo(at)
			ch <- c.Now()
		})
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: at, ch: ch})
	return ch
}

// realWait is the retry interval of the tests.
const realWait = 50 * time.Millisecond

func (c *fakeClock) Advance(d time.Duration) { c.advanceTo(c.Now().Add(d)) }

// advanceTo moves the clock to t unless it is already later, and fires the
// waiters that fall due.
func (c *fakeClock) advanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs an agent of count nodes until the test ends (or stop is called)
// and waits until they have registered.
func start(t *testing.T, cfg hollow.Config, conns ...grpc.ClientConnInterface) (a *hollow.Agent, stop func()) {
	t.Helper()
	a, err := hollow.New(cfg, conns...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-a.Registered():
	case err := <-done:
		t.Fatalf("Run returned before registering: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("nodes did not register")
	}
	return a, stop
}

func testConfig(prefix string, count int) hollow.Config {
	cfg := hollow.DefaultConfig()
	cfg.Prefix, cfg.Count = prefix, count
	cfg.PodCIDR = netip.MustParsePrefix("10.244.0.0/16")
	cfg.RetryInterval = realWait
	cfg.Logger = quietLogger()
	return cfg
}

func conns(c *testcluster.Cluster) []grpc.ClientConnInterface {
	var out []grpc.ClientConnInterface
	for _, p := range c.Peers {
		out = append(out, p.Conn)
	}
	return out
}

func getNode(t *testing.T, c *testcluster.Cluster, name string) *corev1.Node {
	t.Helper()
	n, err := corev1.NewNodesClient(c.Peers[0].Conn).Get(context.Background(), &metav1.GetRequest{Name: name})
	if err != nil {
		t.Fatalf("get node %s: %v", name, err)
	}
	return n
}

func getLease(t *testing.T, c *testcluster.Cluster, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := coordinationv1.NewLeasesClient(c.Peers[0].Conn).Get(context.Background(), &metav1.GetRequest{Namespace: hollow.LeaseNamespace, Name: name})
	if err != nil {
		t.Fatalf("get lease %s: %v", name, err)
	}
	return l
}

func getPod(t *testing.T, c *testcluster.Cluster, name string) *corev1.Pod {
	t.Helper()
	p, err := corev1.NewPodsClient(c.Peers[0].Conn).Get(context.Background(), &metav1.GetRequest{Namespace: "default", Name: name})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

func createPod(t *testing.T, c *testcluster.Cluster, name, nodeName string) {
	t.Helper()
	p := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name},
		Spec: &corev1.PodSpec{NodeName: nodeName, Containers: []*corev1.Container{
			{Name: "app", Image: "example.com/app:1"},
			{Name: "sidecar", Image: "example.com/sidecar:1"},
		}},
	}
	if _, err := corev1.NewPodsClient(c.Peers[1].Conn).Create(context.Background(), &corev1.CreatePodRequest{Namespace: "default", Body: p}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
}

func deletePod(t *testing.T, c *testcluster.Cluster, name string) {
	t.Helper()
	pods := corev1.NewPodsClient(c.Peers[2].Conn)
	if _, err := pods.Delete(context.Background(), &metav1.DeleteRequest{Namespace: "default", Name: name}); err != nil {
		t.Fatalf("delete pod %s: %v", name, err)
	}
	// Terminating until the hollow node has released it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := pods.Get(context.Background(), &metav1.GetRequest{Namespace: "default", Name: name})
		if status.Code(err) == codes.NotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not gone 20s after its deletion: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func condition(conds []*corev1.NodeCondition, typ string) *corev1.NodeCondition {
	for _, c := range conds {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// waitRunning waits until the pod is Running and returns it.
func waitRunning(t *testing.T, c *testcluster.Cluster, name string) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	c.WaitFor(30*time.Second, "pod "+name+" running", func() bool {
		p = getPod(t, c, name)
		return p.GetStatus().GetPhase() == "Running"
	})
	return p
}

func TestRegisterNodesAndLeases(t *testing.T) {
	c := testcluster.New(t, 3)
	a, _ := start(t, testConfig("hollow", 3), conns(c)...)

	addrs := map[string]bool{}
	cidrs := map[string]bool{}
	for _, name := range a.Names() {
		n := getNode(t, c, name)
		if got := n.GetMetadata().GetLabels()["kubernetes.io/hostname"]; got != name {
			t.Errorf("%s: hostname label %q", name, got)
		}
		ready := condition(n.GetStatus().GetConditions(), "Ready")
		if ready.GetStatus() != "True" || ready.GetReason() != "KubeletReady" || ready.GetLastHeartbeatTime() == nil {
			t.Errorf("%s: Ready condition %v", name, ready)
		}
		for res, want := range map[string]string{"cpu": "4", "memory": "16Gi", "pods": "110"} {
			if got := n.GetStatus().GetCapacity()[res].GetStringValue(); got != want {
				t.Errorf("%s: capacity %s = %q, want %q", name, res, got, want)
			}
			if got := n.GetStatus().GetAllocatable()[res].GetStringValue(); got != want {
				t.Errorf("%s: allocatable %s = %q, want %q", name, res, got, want)
			}
		}
		if n.GetStatus().GetNodeInfo().GetKubeletVersion() == "" {
			t.Errorf("%s: no nodeInfo", name)
		}
		var ip string
		for _, ad := range n.GetStatus().GetAddresses() {
			if ad.GetType() == "InternalIP" {
				ip = ad.GetAddress()
			}
		}
		if !netip.MustParsePrefix("10.200.0.0/16").Contains(netip.MustParseAddr(ip)) || addrs[ip] {
			t.Errorf("%s: InternalIP %q not a fresh address from 10.200.0.0/16", name, ip)
		}
		addrs[ip] = true
		cidr := n.GetSpec().GetPodCIDR()
		if p, err := netip.ParsePrefix(cidr); err != nil || p.Bits() != 24 || cidrs[cidr] {
			t.Errorf("%s: podCIDR %q not a fresh /24", name, cidr)
		}
		cidrs[cidr] = true

		l := getLease(t, c, name)
		if l.GetSpec().GetHolderIdentity() != name || l.GetSpec().GetLeaseDurationSeconds() != 40 || l.GetSpec().GetRenewTime() == nil {
			t.Errorf("%s: lease spec %v", name, l.GetSpec())
		}
		if refs := l.GetMetadata().GetOwnerReferences(); len(refs) != 1 || refs[0].GetKind() != "Node" || refs[0].GetUid() != n.GetMetadata().GetUid() {
			t.Errorf("%s: lease owners %v", name, refs)
		}
	}
	if err := a.Pause("nope"); !errors.Is(err, hollow.ErrUnknownNode) {
		t.Errorf("Pause of an unknown node: %v", err)
	}
}

func TestPodsRunWithIPsFromThePodCIDR(t *testing.T) {
	c := testcluster.New(t, 3)
	cfg := testConfig("pods", 3)
	_, stop := start(t, cfg, conns(c)...)
	node := "pods-1"
	cidr := netip.MustParsePrefix(getNode(t, c, node).GetSpec().GetPodCIDR())
	hostIP := ""
	for _, ad := range getNode(t, c, node).GetStatus().GetAddresses() {
		if ad.GetType() == "InternalIP" {
			hostIP = ad.GetAddress()
		}
	}

	createPod(t, c, "a", node)
	createPod(t, c, "b", node)
	pa, pb := waitRunning(t, c, "a"), waitRunning(t, c, "b")
	for _, p := range []*corev1.Pod{pa, pb} {
		st := p.GetStatus()
		if !cidr.Contains(netip.MustParseAddr(st.GetPodIP())) {
			t.Errorf("%s: podIP %s outside %s", p.GetMetadata().GetName(), st.GetPodIP(), cidr)
		}
		if st.GetHostIP() != hostIP || !podReady(p) || st.GetStartTime() == nil {
			t.Errorf("%s: status %v", p.GetMetadata().GetName(), st)
		}
		if len(st.GetContainerStatuses()) != 2 {
			t.Fatalf("%s: container statuses %v", p.GetMetadata().GetName(), st.GetContainerStatuses())
		}
		for _, cs := range st.GetContainerStatuses() {
			if !cs.GetReady() || !cs.GetStarted() || cs.GetState().GetRunning().GetStartedAt() == nil || cs.GetImageID() != "hollow://"+cs.GetImage() {
				t.Errorf("%s: container status %v", p.GetMetadata().GetName(), cs)
			}
		}
	}
	ipA, ipB := pa.GetStatus().GetPodIP(), pb.GetStatus().GetPodIP()
	if ipA == ipB {
		t.Fatalf("two pods share %s", ipA)
	}

	// A deleted pod's IP is free again: the lowest free one goes to the next pod.
	lower := "a"
	if netip.MustParseAddr(ipB).Less(netip.MustParseAddr(ipA)) {
		lower = "b"
	}
	freed := getPod(t, c, lower).GetStatus().GetPodIP()
	deletePod(t, c, lower)
	createPod(t, c, "c", node)
	if got := waitRunning(t, c, "c").GetStatus().GetPodIP(); got != freed {
		t.Errorf("pod c got %s, want the freed %s", got, freed)
	}

	// Pods on other nodes get IPs from their own node's podCIDR.
	createPod(t, c, "d", "pods-2")
	other := netip.MustParsePrefix(getNode(t, c, "pods-2").GetSpec().GetPodCIDR())
	if ip := waitRunning(t, c, "d").GetStatus().GetPodIP(); !other.Contains(netip.MustParseAddr(ip)) {
		t.Errorf("pod d on pods-2 got %s, outside %s", ip, other)
	}

	// A pod on the host's network has the node's address.
	hn := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "hostnet"},
		Spec:     &corev1.PodSpec{NodeName: node, HostNetwork: true, Containers: []*corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if _, err := corev1.NewPodsClient(c.Peers[0].Conn).Create(context.Background(), &corev1.CreatePodRequest{Namespace: "default", Body: hn}); err != nil {
		t.Fatal(err)
	}
	if ip := waitRunning(t, c, "hostnet").GetStatus().GetPodIP(); ip != hostIP {
		t.Errorf("hostNetwork pod has IP %s, want the node's %s", ip, hostIP)
	}

	// A restarted agent adopts its nodes and running pods: IPs stay, new pods
	// get other ones.
	stop()
	survivor := "a"
	if lower == "a" {
		survivor = "b"
	}
	kept := getPod(t, c, survivor).GetStatus().GetPodIP()
	start(t, cfg, conns(c)...)
	createPod(t, c, "e", node)
	ipE := waitRunning(t, c, "e").GetStatus().GetPodIP()
	if ipE == kept || ipE == getPod(t, c, "c").GetStatus().GetPodIP() {
		t.Errorf("pod e got %s, already held", ipE)
	}
	if got := getPod(t, c, survivor).GetStatus().GetPodIP(); got != kept {
		t.Errorf("pod %s changed IP from %s to %s", survivor, kept, got)
	}
}

func TestFailsOverToAReachablePeer(t *testing.T) {
	c := testcluster.New(t, 3)
	dead, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	start(t, testConfig("fo", 2), dead, c.Peers[2].Conn)
	createPod(t, c, "x", "fo-0")
	waitRunning(t, c, "x")
}

func TestPauseStopsLeaseRenewals(t *testing.T) {
	c := testcluster.New(t, 3)
	clock := newFakeClock()
	cfg := testConfig("paused", 3)
	cfg.Clock, cfg.StartDelay = clock, 5*time.Second
	a, _ := start(t, cfg, conns(c)...)
	names := a.Names()
	renewedAt := func(name string) time.Time { return getLease(t, c, name).GetSpec().GetRenewTime().AsTime() }
	waitRenewed := func(names []string, since time.Time) {
		t.Helper()
		for _, n := range names {
			c.WaitFor(30*time.Second, n+" renewed since "+since.String(), func() bool { return !renewedAt(n).Before(since) })
		}
	}
	waitRenewed(names, clock.Now())

	clock.Advance(cfg.LeaseInterval)
	waitRenewed(names, clock.Now())

	if err := a.Pause(names[0]); err != nil {
		t.Fatal(err)
	}
	last := renewedAt(names[0])
	clock.Advance(cfg.LeaseInterval)
	waitRenewed(names[1:], clock.Now())
	if got := renewedAt(names[0]); !got.Equal(last) {
		t.Errorf("paused node renewed its lease at %s, after %s", got, last)
	}

	// A paused node starts no pods either; Resume renews at once and catches up.
	createPod(t, c, "p", names[0])
	clock.Advance(cfg.StartDelay)
	time.Sleep(200 * time.Millisecond)
	if ph := getPod(t, c, "p").GetStatus().GetPhase(); ph != "Pending" {
		t.Errorf("pod on a paused node is %s", ph)
	}
	if err := a.Resume(names[0]); err != nil {
		t.Fatal(err)
	}
	waitRenewed(names[:1], clock.Now())
	waitStarted(t, c, clock, cfg.StartDelay, "p")

	// The start delay holds pods back until it has passed.
	createPod(t, c, "q", names[1])
	time.Sleep(200 * time.Millisecond)
	if ph := getPod(t, c, "q").GetStatus().GetPhase(); ph != "Pending" {
		t.Errorf("pod is %s before its start delay passed", ph)
	}
	waitStarted(t, c, clock, cfg.StartDelay, "q")
}

// waitStarted advances the clock by the start delay until the pod runs: the
// agent may not have seen the pod yet when the clock first moves.
func waitStarted(t *testing.T, c *testcluster.Cluster, clock *fakeClock, delay time.Duration, name string) {
	t.Helper()
	c.WaitFor(30*time.Second, "pod "+name+" running", func() bool {
		if getPod(t, c, name).GetStatus().GetPhase() == "Running" {
			return true
		}
		clock.Advance(delay)
		time.Sleep(50 * time.Millisecond)
		return false
	})
}

func TestWaitsForPodCIDRAndStaysReady(t *testing.T) {
	c := testcluster.New(t, 3)
	cfg := testConfig("wait", 2)
	cfg.PodCIDR = netip.Prefix{} // as with a podCIDR controller
	start(t, cfg, conns(c)...)
	nodes := corev1.NewNodesClient(c.Peers[0].Conn)
	ctx := context.Background()

	createPod(t, c, "p", "wait-0")
	time.Sleep(200 * time.Millisecond)
	if ph := getPod(t, c, "p").GetStatus().GetPhase(); ph != "Pending" {
		t.Fatalf("pod is %s on a node without a podCIDR", ph)
	}
	n := getNode(t, c, "wait-0")
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.7.0/24", []string{"10.244.7.0/24"}
	if _, err := nodes.Update(ctx, &corev1.UpdateNodeRequest{Name: "wait-0", Body: n}); err != nil {
		t.Fatal(err)
	}
	if ip := waitRunning(t, c, "p").GetStatus().GetPodIP(); ip != "10.244.7.1" {
		t.Errorf("pod IP %s, want 10.244.7.1", ip)
	}

	// The node lifecycle controller's verdict is overruled by a live node at once.
	n = getNode(t, c, "wait-1")
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" {
			cond.Status, cond.Reason = "Unknown", "NodeStatusUnknown"
		}
	}
	if _, err := nodes.UpdateStatus(ctx, &corev1.UpdateNodeRequest{Name: "wait-1", Body: n}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(30*time.Second, "wait-1 ready again", func() bool {
		return condition(getNode(t, c, "wait-1").GetStatus().GetConditions(), "Ready").GetStatus() == "True"
	})
}

func TestManyNodesShareOneWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("registers hundreds of nodes")
	}
	c := testcluster.New(t, 3)
	cfg := testConfig("many", 300)
	cfg.PodCIDR = netip.MustParsePrefix("10.128.0.0/9")
	a, _ := start(t, cfg, conns(c)...)
	names := a.Names()
	for i := range 30 {
		createPod(t, c, "m"+strconv.Itoa(i), names[i*10])
	}
	for i := range 30 {
		waitRunning(t, c, "m"+strconv.Itoa(i))
	}
	list, err := coordinationv1.NewLeasesClient(c.Peers[0].Conn).List(context.Background(), &metav1.ListRequest{Namespace: hollow.LeaseNamespace})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetItems()) != len(names) {
		t.Errorf("%d leases for %d nodes", len(list.GetItems()), len(names))
	}
}

package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
)

// echoEnv makes the test binary an echo server instead of running tests: the
// network tests start it in every peer's namespace with Command.
const echoEnv = "NETNS_TEST_ECHO_ADDR"

const (
	echoPort = 7000
	// probeTimeout bounds each probe; probes run in parallel, so a check of
	// the whole matrix takes about this long.
	probeTimeout = 500 * time.Millisecond
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(echoEnv); addr != "" {
		os.Exit(runEcho(addr))
	}
	os.Exit(m.Run())
}

// runEcho serves TCP echo on addr, says "ready" on stdout once listening, and
// exits when stdin closes, so a helper never outlives a crashed test.
func runEcho(addr string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go serveEcho(l)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
}

// newTestNetwork builds a network whose leftovers are removed when the test
// ends, and starts an echo helper in every peer and in the test process.
func newTestNetwork(t *testing.T, prefix string, peers int, subnet string) *Network {
	t.Helper()
	n, err := NewWithConfig(Config{Prefix: prefix, Peers: peers, Subnet: netip.MustParsePrefix(subnet)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	hostL, err := net.Listen("tcp", net.JoinHostPort(n.HostAddr(), fmt.Sprint(echoPort)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostL.Close() })
	go serveEcho(hostL)

	var wg sync.WaitGroup
	errs := make([]error, peers)
	for i := 0; i < peers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = startEcho(t, n, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return n
}

// startEcho runs the test binary as an echo server inside peer i's namespace,
// stopped when the test ends.
func startEcho(t *testing.T, n *Network, i int) error {
	cmd := n.Command(i, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=:%d", echoEnv, echoPort))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start echo in %s: %w", n.Name(i), err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		return fmt.Errorf("echo in %s: %q, %v: %s", n.Name(i), line, err, stderr.String())
	}
	return nil
}

// host stands for the root namespace in probes.
const host = -1

func addrOf(n *Network, i int) string {
	if i == host {
		return n.HostAddr()
	}
	return n.Addr(i)
}

func dialFrom(ctx context.Context, n *Network, from int, network, addr string) (net.Conn, error) {
	if from == host {
		return n.HostDialContext(ctx, network, addr)
	}
	return n.DialContext(ctx, from, network, addr)
}

// tcpOK reports whether a TCP echo round trip from -> to works. TCP needs
// packets in both directions, so a one-way cut fails it either way round.
func tcpOK(t *testing.T, n *Network, from, to int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := dialFrom(ctx, n, from, "tcp", net.JoinHostPort(addrOf(n, to), fmt.Sprint(echoPort)))
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return false
	}
	if string(buf) != "ping\n" {
		t.Errorf("echo %d -> %d returned %q", from, to, buf)
	}
	return true
}

// udpOK reports whether a datagram sent from -> to arrives: the receiving
// socket is opened in to's namespace and read by the test itself, so the
// probe needs packets in one direction only and shows asymmetric cuts.
func udpOK(t *testing.T, n *Network, from, to int) bool {
	var pc net.PacketConn
	var err error
	if to == host {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(n.HostAddr(), "0"))
	} else {
		pc, err = n.ListenPacket(to, "udp", net.JoinHostPort(n.Addr(to), "0"))
	}
	if err != nil {
		t.Errorf("listen udp in %d: %v", to, err)
		return false
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := dialFrom(ctx, n, from, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Errorf("dial udp %d -> %d: %v", from, to, err)
		return false
	}
	defer c.Close()
	token := fmt.Sprintf("%d->%d", from, to)
	if _, err := c.Write([]byte(token)); err != nil {
		t.Errorf("send udp %d -> %d: %v", from, to, err)
		return false
	}
	_ = pc.SetReadDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 64)
	k, src, err := pc.ReadFrom(buf)
	if err != nil {
		return false
	}
	if string(buf[:k]) != token || src.(*net.UDPAddr).IP.String() != addrOf(n, from) {
		t.Errorf("udp %d -> %d: got %q from %v", from, to, buf[:k], src)
	}
	return true
}

// expectCuts probes every ordered pair of endpoints (the peers and the root
// namespace), in parallel, and checks that exactly the directed peer pairs in
// cut lose their datagrams, and that TCP fails exactly where either direction
// is cut. It also checks that Reachable agrees.
func expectCuts(t *testing.T, n *Network, cut ...[2]int) {
	t.Helper()
	dropped := map[[2]int]bool{}
	for _, c := range cut {
		dropped[c] = true
	}
	type result struct {
		from, to int
		proto    string
		got      bool
		want     bool
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for from := host; from < n.Peers(); from++ {
		for to := host; to < n.Peers(); to++ {
			if from == to {
				continue
			}
			udpWant := !dropped[[2]int{from, to}]
			tcpWant := udpWant && !dropped[[2]int{to, from}]
			if from != host && to != host && n.Reachable(from, to) != udpWant {
				t.Errorf("Reachable(%d, %d) = %v, want %v", from, to, !udpWant, udpWant)
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				got := udpOK(t, n, from, to)
				mu.Lock()
				results = append(results, result{from, to, "udp", got, udpWant})
				mu.Unlock()
			}()
			go func() {
				defer wg.Done()
				got := tcpOK(t, n, from, to)
				mu.Lock()
				results = append(results, result{from, to, "tcp", got, tcpWant})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	name := func(i int) string {
		if i == host {
			return "root"
		}
		return fmt.Sprint(i)
	}
	for _, r := range results {
		if r.got != r.want {
			t.Errorf("%s %s -> %s: delivered=%v, want %v", r.proto, name(r.from), name(r.to), r.got, r.want)
		}
	}
}

// pairs lists a->b and b->a for each pair.
func pairs(ps ...[2]int) [][2]int {
	var out [][2]int
	for _, p := range ps {
		out = append(out, p, [2]int{p[1], p[0]})
	}
	return out
}

// expectGone checks that nothing named after prefix is left: no namespace, no
// root-namespace link.
func expectGone(t *testing.T, prefix string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			t.Errorf("namespace left: %s", line)
		}
	}
	out, err = exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], prefix+"-") {
			t.Errorf("link left: %s", line)
		}
	}
	if _, err := os.Stat(NSDir + "/" + prefix + "-hub"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hub namespace still mounted: %v", err)
	}
}

func TestThreePeers(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const prefix = "njt3"
	n := newTestNetwork(t, prefix, 3, "10.231.203.0/24")

	if got, want := n.Addr(2), "10.231.203.3"; got != want {
		t.Errorf("Addr(2) = %s, want %s", got, want)
	}
	if got, want := n.NSPath(0), "/var/run/netns/njt3-1"; got != want {
		t.Errorf("NSPath(0) = %s, want %s", got, want)
	}

	if _, err := n.DialContext(context.Background(), 0, "tcp", "localhost:7000"); err == nil {
		t.Error("DialContext accepted a host name, which would resolve outside the namespace")
	}

	t.Log("full connectivity")
	expectCuts(t, n)

	t.Log("partition {0} | {1,2}")
	if err := n.Partition([]int{0}, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, pairs([2]int{0, 1}, [2]int{0, 2})...)

	t.Log("heal")
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n)

	t.Log("drop 0 -> 1, then also 2 -> 0")
	if err := n.Drop(0, 1); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, [2]int{0, 1})
	if err := n.Drop(2, 0); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, [2]int{0, 1}, [2]int{2, 0})

	t.Log("invalid faults change nothing")
	for _, err := range []error{
		n.Partition([]int{0}, []int{1}),
		n.Partition([]int{0, 1}, []int{1, 2}),
		n.Drop(1, 1),
		n.Drop(0, 3),
		n.Isolate(-1),
		n.Bridge([]int{0}, []int{1}, 1),
	} {
		if !errors.Is(err, ErrInvalidFault) {
			t.Errorf("err = %v, want ErrInvalidFault", err)
		}
	}
	if n.Reachable(0, 1) || n.Reachable(2, 0) || !n.Reachable(1, 0) {
		t.Error("an invalid fault changed the drops")
	}

	t.Log("isolate replaces the drops")
	if err := n.Isolate(1); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, pairs([2]int{1, 0}, [2]int{1, 2})...)

	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n)

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	expectGone(t, prefix)
	if err := n.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := n.Heal(); !errors.Is(err, ErrClosed) {
		t.Errorf("Heal after Close = %v, want ErrClosed", err)
	}
	if _, err := n.HostDialContext(context.Background(), "udp", net.JoinHostPort(n.Addr(0), "9")); err == nil {
		t.Error("HostDialContext works after Close; it must not reach past the test network")
	}
}

func TestFivePeers(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const prefix = "njt5"
	n := newTestNetwork(t, prefix, 5, "10.231.205.0/24")

	expectCuts(t, n)

	t.Log("majorities ring: each peer hears only its neighbours")
	if err := n.Ring(); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, pairs([2]int{0, 2}, [2]int{0, 3}, [2]int{1, 3}, [2]int{1, 4}, [2]int{2, 4})...)
	if got := ruleCount(t, n, 0); got != 2 {
		t.Errorf("peer 0 has %d drop rules, want 2", got)
	}

	t.Log("bridge: {0,1} | {3,4}, 2 sees both")
	if err := n.Bridge([]int{0, 1}, []int{3, 4}, 2); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, pairs([2]int{0, 3}, [2]int{0, 4}, [2]int{1, 3}, [2]int{1, 4})...)

	t.Log("majority/minority split")
	if err := n.Partition([]int{0, 1, 2}, []int{3, 4}); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n, pairs([2]int{0, 3}, [2]int{0, 4}, [2]int{1, 3}, [2]int{1, 4}, [2]int{2, 3}, [2]int{2, 4})...)

	t.Log("heal")
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	expectCuts(t, n)
	if got := ruleCount(t, n, 0); got != 0 {
		t.Errorf("peer 0 has %d drop rules after Heal, want 0", got)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	expectGone(t, prefix)
}

// A crashed run leaves namespaces and links behind; New with the same prefix
// removes them and builds a working network.
func TestLeftoversRemoved(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const prefix = "njts"
	subnet := netip.MustParsePrefix("10.231.207.0/24")
	old, err := NewWithConfig(Config{Prefix: prefix, Peers: 4, Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Partition([]int{0, 1}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	// old is abandoned without Close, as a crash would leave it.

	n := newTestNetwork(t, prefix, 2, subnet.String())
	expectCuts(t, n)
	if _, err := os.Stat(NSDir + "/" + prefix + "-3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover namespace %s-3: %v", prefix, err)
	}

	// A second network on the same subnet cannot be routed.
	if _, err := NewWithConfig(Config{Prefix: "njtx", Peers: 1, Subnet: subnet}); !errors.Is(err, ErrSubnetInUse) {
		t.Errorf("New on a used subnet = %v, want ErrSubnetInUse", err)
	}
	expectGone(t, "njtx")

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	expectGone(t, prefix)
}

// ruleCount is the number of rules in peer i's jepsen input chain.
func ruleCount(t *testing.T, n *Network, i int) int {
	t.Helper()
	f, err := os.Open(n.NSPath(i))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: "input", Table: tbl})
	if err != nil {
		t.Fatal(err)
	}
	return len(rules)
}

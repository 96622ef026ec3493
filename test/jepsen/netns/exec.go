package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Command returns a command that runs name with args inside peer i's
// namespace, as `ip netns exec <ns> name args...`. ip execs the program in
// place, so once started cmd.Process is the program itself and signals
// (SIGKILL, SIGSTOP, SIGCONT) reach it, not a wrapper. The program also gets
// its own mount namespace with /sys remounted for the network namespace, as
// `ip netns exec` always does.
func (n *Network) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name(i), name}, args...)...)
}

// DialContext dials address from inside peer i's namespace: the socket is
// created there, so the connection's packets come from Addr(i) and are subject
// to the partitions. It is for clients that must live in a peer's namespace;
// clients in the root namespace dial peers directly (see HostDialContext).
// It blocks an OS thread for the duration of the dial; address must be
// numeric (a name lookup would run outside the namespace).
func (n *Network) DialContext(ctx context.Context, i int, network, address string) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", address, n.Name(i), err)
	} else if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s from %s: address must be a numeric IP: %w", address, n.Name(i), err)
	}
	var c net.Conn
	err := inNamespace(n.NSPath(i), func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen opens a stream listener inside peer i's namespace (as net.Listen).
// Accept may be called from any goroutine.
func (n *Network) Listen(i int, network, address string) (net.Listener, error) {
	var l net.Listener
	err := inNamespace(n.NSPath(i), func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside peer i's namespace (as
// net.ListenPacket).
func (n *Network) ListenPacket(i int, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := inNamespace(n.NSPath(i), func() error {
		var err error
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

// HostDialContext dials address from the root namespace with the socket bound
// to HostLink, so the connection can only use this network: once the network
// is closed the dial fails instead of following the default route. Its
// signature fits grpc.WithContextDialer after binding network to "tcp". A
// plain net.Dial to Addr(i) from the root namespace works as well.
func (n *Network) HostDialContext(ctx context.Context, network, address string) (net.Conn, error) {
	link := n.HostLink()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, link)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("bind to device %s: %w", link, serr)
		}
		return nil
	}}
	return d.DialContext(ctx, network, address)
}

// inNamespace runs f on an OS thread switched into the network namespace at
// path, so sockets f creates belong to that namespace, and waits for it. f must
// not start goroutines that create sockets: they would run elsewhere. If the
// thread cannot be switched back it stays locked, and the runtime discards it
// when the goroutine ends.
func inNamespace(path string, f func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

package jepsen

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/rafter-dev/rafter/test/jepsen/netns"
)

// netnsPlatform runs each peer as a process of this host in its own network
// namespace (see package netns), its data and output under dir.
type netnsPlatform struct {
	*netns.Network
	bin, dir string
	procs    []*proc
}

// proc is one peer's current process.
type proc struct {
	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
}

func newNetnsPlatform(bin, dir, prefix string, n int) (*netnsPlatform, error) {
	nw, err := netns.New(prefix, n)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	p := &netnsPlatform{Network: nw, bin: bin, dir: dir}
	for i := 0; i < n; i++ {
		p.procs = append(p.procs, &proc{})
	}
	return p, nil
}

func (p *netnsPlatform) addr(i int) string    { return p.Network.Addr(i) }
func (p *netnsPlatform) dataDir(i int) string { return filepath.Join(p.dir, fmt.Sprintf("p%d", i+1)) }
func (p *netnsPlatform) logPath(i int) string {
	return filepath.Join(p.dir, fmt.Sprintf("p%d.log", i+1))
}

func (p *netnsPlatform) start(i int, args []string) error {
	pr := p.procs[i]
	pr.mu.Lock()
	defer pr.mu.Unlock()
	cmd := p.Network.Command(i, p.bin, args...)
	f, err := os.OpenFile(p.logPath(i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start p%d: %w", i+1, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	pr.cmd, pr.done = cmd, done
	return nil
}

// signal sends sig to peer i's process (the controlplane itself: `ip netns exec`
// execs into it).
func (p *netnsPlatform) signal(i int, sig syscall.Signal) {
	pr := p.procs[i]
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.cmd != nil && pr.cmd.Process != nil {
		_ = pr.cmd.Process.Signal(sig)
	}
}

func (p *netnsPlatform) pause(i int)  { p.signal(i, syscall.SIGSTOP) }
func (p *netnsPlatform) resume(i int) { p.signal(i, syscall.SIGCONT) }

func (p *netnsPlatform) kill(i int) {
	p.signal(i, syscall.SIGCONT)
	p.signal(i, syscall.SIGKILL)
	pr := p.procs[i]
	pr.mu.Lock()
	done := pr.done
	pr.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (p *netnsPlatform) running(i int) bool {
	pr := p.procs[i]
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.done == nil {
		return false
	}
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

func (p *netnsPlatform) wipe(i int) error { return os.RemoveAll(p.dataDir(i)) }

func (p *netnsPlatform) saveLogs(dir string) {
	for i := range p.procs {
		if b, err := os.ReadFile(p.logPath(i)); err == nil {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%d.log", i+1)), b, 0o644)
		}
	}
}

func (p *netnsPlatform) close() {
	for i := range p.procs {
		p.kill(i)
	}
	_ = p.Network.Close()
}

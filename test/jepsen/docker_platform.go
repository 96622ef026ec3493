package jepsen

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rafter-dev/rafter/test/jepsen/netns"
)

// dockerPlatform runs each peer in a Docker container of image on a network of
// its own, <prefix>-net, with a fixed address (.11, .12, ...) so that a
// restarted or recreated container keeps it. Data dirs are host directories
// under dir bind-mounted at /data. Faults: nftables drop rules installed in
// each container's network namespace (the same rules as netnsPlatform, made
// over netlink from this host, since the image holds nothing but the binary),
// `docker kill -s KILL` then `docker start`, `docker pause`/`unpause`.
// Everything is driven through the docker command.
type dockerPlatform struct {
	*netns.Rules
	image, dir, prefix string
	subnet             netip.Prefix
	n                  int

	mu   sync.Mutex // guards args and logs
	args [][]string // what each container was created with; nil = none
	logs [][]byte   // output of containers removed to be recreated
}

// DockerImage is the image `make docker-image` builds and the Docker platform
// runs by default: the static controlplane binary and nothing else.
const DockerImage = "rafter/controlplane:dev"

func newDockerPlatform(ctx context.Context, image, dir, prefix string, n int) (*dockerPlatform, error) {
	if _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		return nil, fmt.Errorf("image %s (make docker-image builds it): %w", image, err)
	}
	h := fnv.New32a()
	h.Write([]byte(prefix))
	p := &dockerPlatform{image: image, dir: dir, prefix: prefix, n: n,
		subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 232, byte(h.Sum32()), 0}), 24),
		args:   make([][]string, n), logs: make([][]byte, n)}
	p.Rules = netns.NewRules(n, p.ip, p.nsPath)
	p.removeAll(ctx) // leftovers of a crashed run with the same prefix
	if _, err := docker(ctx, "network", "create", "--subnet", p.subnet.String(), "--label", "rafter.jepsen="+prefix, p.network()); err != nil {
		return nil, err
	}
	return p, nil
}

// docker runs the docker command and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (p *dockerPlatform) network() string   { return p.prefix + "-net" }
func (p *dockerPlatform) name(i int) string { return fmt.Sprintf("%s-p%d", p.prefix, i+1) }

func (p *dockerPlatform) ip(i int) netip.Addr {
	a := p.subnet.Addr().As4()
	a[3] = byte(11 + i)
	return netip.AddrFrom4(a)
}

func (p *dockerPlatform) addr(i int) string    { return p.ip(i).String() }
func (p *dockerPlatform) dataDir(int) string   { return "/data" }
func (p *dockerPlatform) hostDir(i int) string { return filepath.Join(p.dir, fmt.Sprintf("p%d", i+1)) }
func (p *dockerPlatform) bg() context.Context  { return context.Background() }
func (p *dockerPlatform) inspect(i int, f string) (string, error) {
	return docker(p.bg(), "inspect", "--format", f, p.name(i))
}

// nsPath is the network namespace of peer i's running container, or "" when it
// is not running.
func (p *dockerPlatform) nsPath(i int) (string, error) {
	out, err := p.inspect(i, "{{.State.Pid}}")
	if err != nil {
		return "", err
	}
	pid, err := strconv.Atoi(out)
	if err != nil || pid == 0 {
		return "", err
	}
	return fmt.Sprintf("/proc/%d/ns/net", pid), nil
}

// start starts peer i's container; a container created with other arguments
// (a peer rejoining with --join) is replaced, its output kept for saveLogs.
func (p *dockerPlatform) start(i int, args []string) error {
	ctx := p.bg()
	p.mu.Lock()
	same := p.args[i] != nil && slices.Equal(p.args[i], args)
	p.mu.Unlock()
	if !same {
		if err := p.remove(i); err != nil {
			return err
		}
		if err := os.MkdirAll(p.hostDir(i), 0o755); err != nil {
			return err
		}
		create := append([]string{"create", "--name", p.name(i), "--label", "rafter.jepsen=" + p.prefix,
			"--network", p.network(), "--ip", p.addr(i), "--hostname", fmt.Sprintf("p%d", i+1),
			"-v", p.hostDir(i) + ":/data", p.image}, args...)
		if _, err := docker(ctx, create...); err != nil {
			return err
		}
		p.mu.Lock()
		p.args[i] = slices.Clone(args)
		p.mu.Unlock()
	}
	_, err := docker(ctx, "start", p.name(i))
	return err
}

// remove deletes peer i's container, if any, keeping its output.
func (p *dockerPlatform) remove(i int) error {
	p.mu.Lock()
	created := p.args[i] != nil
	p.mu.Unlock()
	if !created {
		return nil
	}
	out, _ := exec.Command("docker", "logs", p.name(i)).CombinedOutput()
	if _, err := docker(p.bg(), "rm", "-f", p.name(i)); err != nil {
		return err
	}
	p.mu.Lock()
	p.logs[i] = append(p.logs[i], out...)
	p.args[i] = nil
	p.mu.Unlock()
	return nil
}

func (p *dockerPlatform) paused(i int) bool {
	out, err := p.inspect(i, "{{.State.Paused}}")
	return err == nil && out == "true"
}

func (p *dockerPlatform) pause(i int) { _, _ = docker(p.bg(), "pause", p.name(i)) }

func (p *dockerPlatform) resume(i int) {
	if p.paused(i) {
		_, _ = docker(p.bg(), "unpause", p.name(i))
	}
}

func (p *dockerPlatform) kill(i int) {
	p.resume(i)
	if p.running(i) {
		_, _ = docker(p.bg(), "kill", "--signal", "KILL", p.name(i))
	}
	_, _ = docker(p.bg(), "wait", p.name(i))
}

func (p *dockerPlatform) running(i int) bool {
	out, err := p.inspect(i, "{{.State.Running}}")
	return err == nil && out == "true"
}

func (p *dockerPlatform) wipe(i int) error { return os.RemoveAll(p.hostDir(i)) }

func (p *dockerPlatform) saveLogs(dir string) {
	for i := 0; i < p.n; i++ {
		out, _ := exec.Command("docker", "logs", p.name(i)).CombinedOutput()
		p.mu.Lock()
		all := append(slices.Clone(p.logs[i]), out...)
		p.mu.Unlock()
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%d.log", i+1)), all, 0o644)
	}
}

// removeAll deletes every container and network labelled with the prefix.
func (p *dockerPlatform) removeAll(ctx context.Context) {
	if ids, err := docker(ctx, "ps", "-aq", "--filter", "label=rafter.jepsen="+p.prefix); err == nil && ids != "" {
		_, _ = docker(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	if ids, err := docker(ctx, "network", "ls", "-q", "--filter", "label=rafter.jepsen="+p.prefix); err == nil && ids != "" {
		_, _ = docker(ctx, append([]string{"network", "rm"}, strings.Fields(ids)...)...)
	}
}

func (p *dockerPlatform) close() {
	_ = p.Heal()
	p.removeAll(p.bg())
}

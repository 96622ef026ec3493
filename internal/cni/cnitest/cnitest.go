// Package cnitest provides the CNI reference plugins to tests that run the
// real internal/cni (its own tests, and later the agent's). The plugins are
// built from the Go module proxy with `go install`, the same command as
// `make cni-plugins`, and cached per machine.
package cnitest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Version is the github.com/containernetworking/plugins release built; keep
// it equal to the Makefile's cni-plugins target.
const Version = "v1.10.0"

// Packages are the plugins internal/cni uses, as paths in the plugins module.
var Packages = []string{
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/meta/portmap",
}

var (
	once     sync.Once
	buildDir string
	buildErr error
)

// BuildPlugins returns a directory holding the plugin binaries, failing tb if
// they cannot be built. See Build.
func BuildPlugins(tb testing.TB) string {
	tb.Helper()
	dir, err := Build()
	if err != nil {
		tb.Fatalf("build CNI plugins: %v", err)
	}
	return dir
}

// Build returns os.TempDir()/rafter-cni-plugins-<Version>-<GOOS>-<GOARCH>,
// building the plugins there on first use (a few seconds with a warm module
// cache) and reusing them afterwards, also across test processes. It is safe
// to call from concurrent processes: each builds into a private directory and
// renames it into place, and a loser of that race uses the winner's. It also
// makes sure the nft binary that the plugins' nftables backends run is
// present (see EnsureNft). The result is computed once per process.
func Build() (string, error) {
	once.Do(func() {
		if buildErr = EnsureNft(); buildErr != nil {
			return
		}
		buildDir, buildErr = build()
	})
	return buildDir, buildErr
}

func build() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("rafter-cni-plugins-%s-%s-%s", Version, runtime.GOOS, runtime.GOARCH))
	if complete(dir) {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "rafter-cni-plugins-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"install"}
	for _, p := range Packages {
		args = append(args, p+"@"+Version)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = tmp // outside any module: `go install pkg@version` needs none
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s plugins: %w\n%s", Version, err, out)
	}
	if !complete(tmp) {
		return "", fmt.Errorf("go install %s plugins: binaries missing in %s", Version, tmp)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if complete(dir) {
			return dir, nil // another process won the race
		}
		// An incomplete leftover: replace it.
		if rerr := os.RemoveAll(dir); rerr != nil {
			return "", errors.Join(err, rerr)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func complete(dir string) bool {
	for _, p := range Packages {
		fi, err := os.Stat(filepath.Join(dir, filepath.Base(p)))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// EnsureNft makes sure the nft binary is in PATH. The bridge plugin's
// ipMasqBackend "nftables" and portmap's backend "nftables" both go through
// sigs.k8s.io/knftables, which runs `nft`. When it is missing and we are root
// on a machine with apt-get (Debian, as the build machines), it installs
// Debian's nftables package, as hack/docker-engine.sh installs docker.io.
func EnsureNft() error {
	if _, err := exec.LookPath("nft"); err == nil {
		return nil
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		return errors.New("nft not in PATH: install Debian's nftables package (apt-get install nftables)")
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "nftables"}} {
		cmd := exec.Command(apt, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %v: %w\n%s", args, err, out)
		}
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("nft not in PATH after installing nftables: %w", err)
	}
	return nil
}

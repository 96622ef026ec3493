// Package testimage builds the image the node-agent tests, benchmarks and
// `make run` use: e2e/testdata/podapp compiled statically into a one-layer
// image (/app, with /bin/cat a link to it), and serves images from an
// in-process registry on 127.0.0.1.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BuildPodapp compiles the podapp program found under repoRoot
// (e2e/testdata/podapp) with CGO_ENABLED=0 into dir and returns the binary's path.
func BuildPodapp(repoRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "podapp")
	cmd := exec.Command("go", "build", "-o", bin, "./e2e/testdata/podapp")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build podapp: %w\n%s", err, out)
	}
	return bin, nil
}

// Rootfs is the podapp image's filesystem as a tar stream: directories for the
// runtime's mounts, /app and /bin/cat -> /app.
func Rootfs(binary string) ([]byte, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/cat", Typeflag: tar.TypeSymlink, Linkname: "/app", Mode: 0o777}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layer.Bytes(), nil
}

// Image is the podapp image: Rootfs as its one layer, Entrypoint /app.
func Image(binary string) (v1.Image, error) {
	raw, err := Rootfs(binary)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	return mutate.Config(img, v1.Config{Entrypoint: []string{"/app"}, Env: []string{"PATH=/bin", "FROM_IMAGE=yes"}, WorkingDir: "/"})
}

// Registry is an in-memory registry on 127.0.0.1.
type Registry struct {
	srv *httptest.Server
	// Host is its host:port.
	Host string
}

// NewRegistry starts a registry; Close stops it.
func NewRegistry() *Registry {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	return &Registry{srv: srv, Host: strings.TrimPrefix(srv.URL, "http://")}
}

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

// Push stores img as Host/repoTag ("rafter/podapp:1") and returns the full reference.
func (r *Registry) Push(img v1.Image, repoTag string) (string, error) {
	ref := r.Host + "/" + repoTag
	n, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(n, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, nil
}

// WriteTarball writes img tagged ref as a docker-save tarball to path (what
// `ctl image load` takes).
func WriteTarball(img v1.Image, ref, path string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

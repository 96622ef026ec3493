package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// These tests mount overlayfs, chown, mknod and set trusted xattrs: they
// need root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlayfs, chown, mknod, trusted xattrs)")
	}
}

// --- a registry that counts requests and may demand basic auth ---

type testRegistry struct {
	host       string
	user, pass string // basic auth demanded when user is set

	mu   sync.Mutex
	reqs []string // "METHOD /path"
}

func newTestRegistry(t *testing.T, user, pass string) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{user: user, pass: pass}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, r.Method+" "+r.URL.Path)
		tr.mu.Unlock()
		if tr.user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != tr.user || p != tr.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="rafter-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = nil
}

func (r *testRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// count counts requests with method whose path contains substr.
func (r *testRegistry) count(method, substr string) int {
	n := 0
	for _, q := range r.requests() {
		m, p, _ := strings.Cut(q, " ")
		if m == method && strings.Contains(p, substr) {
			n++
		}
	}
	return n
}

func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if r.user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return r.host + "/" + repoTag
}

// --- test images built from hand-written tar layers ---

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

type tarEntry struct {
	hdr  tar.Header
	body string
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func file(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, body: body}
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func tarBytes(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layer(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var testConfig = v1.Config{
	Entrypoint:   []string{"/app/hello"},
	Cmd:          []string{"--greeting", "hi"},
	Env:          []string{"PATH=/bin", "A=1"},
	WorkingDir:   "/app",
	User:         "1000:1000",
	ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}},
}

func image(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = testConfig
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// The layers of the main test image.
func baseLayer(t *testing.T) v1.Layer {
	suid := file("bin/suid", "#!/bin/true\n")
	suid.hdr.Mode = 0o4755
	owned := file("bin/base", "base-bin")
	owned.hdr.Mode, owned.hdr.Uid, owned.hdr.Gid = 0o755, 1000, 2000
	return layer(t,
		dir("etc/"), dir("bin/"), dir("data/"), dir("opq/"), dir("opq/sub/"),
		file("etc/config", "v1"),
		file("etc/removed", "gone soon"),
		file("opq/lower1", "hidden"),
		file("opq/sub/lower2", "hidden too"),
		owned, suid,
		symlink("bin/link", "base"),
		file("data/hard1", "shared inode"),
		hardlink("data/hard2", "data/hard1"),
	)
}

func changeLayer(t *testing.T) v1.Layer {
	return layer(t,
		dir("etc/"),
		file("etc/config", "v2"),
		file("etc/.wh.removed", ""),
		dir("opq/"),
		file("opq/.wh..wh..opq", ""),
		file("opq/new", "visible"),
		hardlink("bin/hl-lower", "bin/base"), // target only in the layer below
		symlink("bin/abs", "/etc/config"),
	)
}

func appLayer(t *testing.T, hello string) v1.Layer {
	return layer(t, dir("app/"), file("app/hello", hello))
}

func testImage(t *testing.T) v1.Image {
	return image(t, baseLayer(t), changeLayer(t), appLayer(t, "hello v1"))
}

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	requireRoot(t)
	s, err := NewStore(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ids, _ := s.Mounted()
		for _, id := range ids {
			if err := s.Unmount(id); err != nil {
				t.Errorf("cleanup unmount %s: %v", id, err)
			}
		}
	})
	return s
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertAbsent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: want absent, got err=%v", p, err)
	}
}

// assertMergedView checks the merged view of testImage at rootfs.
func assertMergedView(t *testing.T, rootfs string) {
	t.Helper()
	j := func(p string) string { return filepath.Join(rootfs, p) }
	if got := readFile(t, j("etc/config")); got != "v2" {
		t.Errorf("etc/config = %q, want the upper layer's v2", got)
	}
	assertAbsent(t, j("etc/removed"))
	assertAbsent(t, j("opq/lower1"))
	assertAbsent(t, j("opq/sub"))
	if got := readFile(t, j("opq/new")); got != "visible" {
		t.Errorf("opq/new = %q", got)
	}
	if got, err := os.Readlink(j("bin/link")); err != nil || got != "base" {
		t.Errorf("bin/link -> %q, %v; want base", got, err)
	}
	if got := readFile(t, j("bin/link")); got != "base-bin" {
		t.Errorf("through bin/link: %q", got)
	}
	if got, err := os.Readlink(j("bin/abs")); err != nil || got != "/etc/config" {
		t.Errorf("bin/abs -> %q, %v", got, err)
	}
	h1, err1 := os.Stat(j("data/hard1"))
	h2, err2 := os.Stat(j("data/hard2"))
	if err1 != nil || err2 != nil || !os.SameFile(h1, h2) {
		t.Errorf("data/hard1 and data/hard2 are not one inode: %v %v", err1, err2)
	}
	if got := readFile(t, j("data/hard2")); got != "shared inode" {
		t.Errorf("data/hard2 = %q", got)
	}
	if got := readFile(t, j("bin/hl-lower")); got != "base-bin" {
		t.Errorf("bin/hl-lower (hardlink to a lower layer) = %q", got)
	}
	fi, err := os.Lstat(j("bin/base"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1000 || st.Gid != 2000 || fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(testTime) {
		t.Errorf("bin/base: uid=%d gid=%d mode=%v mtime=%v", st.Uid, st.Gid, fi.Mode(), fi.ModTime())
	}
	if fi, err := os.Stat(j("bin/suid")); err != nil || fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("bin/suid lost its setuid bit: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Lstat(j("etc")); err != nil || !fi.ModTime().Equal(testTime) {
		t.Errorf("etc mtime not kept: %v", err)
	}
	if got := readFile(t, j("app/hello")); got != "hello v1" {
		t.Errorf("app/hello = %q", got)
	}
}

// --- tests ---

func TestEnsurePullsAndMounts(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	img := testImage(t)
	ref := reg.push(t, "team/app:v1", img)
	s := newStore(t, Options{Insecure: []string{reg.host}})

	got, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	if got.Ref != ref || got.Digest != digestOf(t, img) || got.ID != cfgName.String() {
		t.Errorf("image = %+v; want ref %s digest %s id %s", got, ref, digestOf(t, img), cfgName)
	}
	if want := reg.host + "/team/app@" + got.Digest; got.RepoDigest() != want {
		t.Errorf("RepoDigest = %s, want %s", got.RepoDigest(), want)
	}
	wantCfg := ImageConfig{
		Entrypoint: testConfig.Entrypoint, Cmd: testConfig.Cmd, Env: testConfig.Env,
		WorkingDir: "/app", User: "1000:1000", ExposedPorts: []string{"53/udp", "8080/tcp"},
	}
	if !reflect.DeepEqual(got.Config, wantCfg) {
		t.Errorf("config = %+v, want %+v", got.Config, wantCfg)
	}
	cf, _ := img.ConfigFile()
	if len(got.Layers) != 3 {
		t.Fatalf("layers = %v", got.Layers)
	}
	for i, l := range got.Layers {
		if want := filepath.Join(s.root, "layers", cf.RootFS.DiffIDs[i].Hex); l != want {
			t.Errorf("layer %d = %s, want %s", i, l, want)
		}
	}

	// The change layer holds overlayfs whiteouts.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(got.Layers[1], "etc/removed"), &st); err != nil ||
		st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/removed in the change layer is not a 0/0 char device: %v mode=%o", err, st.Mode)
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(got.Layers[1], "opq"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opq is not opaque: %q %v", buf[:n], err)
	}

	root1, err := s.Mount("c1", got)
	if err != nil {
		t.Fatal(err)
	}
	assertMergedView(t, root1)
	root2, err := s.Mount("c2", got)
	if err != nil {
		t.Fatal(err)
	}
	if root1 == root2 {
		t.Fatal("two containers share a rootfs")
	}
	if again, err := s.Mount("c1", got); err != nil || again != root1 {
		t.Errorf("second Mount(c1) = %q, %v; want %q", again, err, root1)
	}

	// Writes stay in their container.
	if err := os.WriteFile(filepath.Join(root1, "etc/config"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root1, "scratch"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root1, "app/hello")); err != nil {
		t.Fatal(err)
	}
	assertMergedView(t, root2)
	assertAbsent(t, filepath.Join(root2, "scratch"))
	if got := readFile(t, filepath.Join(got.Layers[1], "etc/config")); got != "v2" {
		t.Errorf("a container write reached the layer: %q", got)
	}

	if ids, err := s.Mounted(); err != nil || !reflect.DeepEqual(ids, []string{"c1", "c2"}) {
		t.Errorf("Mounted = %v, %v", ids, err)
	}
	if err := s.Unmount("c1"); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.Mounted(); err != nil || !reflect.DeepEqual(ids, []string{"c2"}) {
		t.Errorf("Mounted after Unmount(c1) = %v, %v", ids, err)
	}
	assertAbsent(t, filepath.Join(s.root, "containers", "c1"))
	if err := s.Unmount("c1"); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	if err := s.Unmount("never-mounted"); err != nil {
		t.Errorf("Unmount of an unknown container: %v", err)
	}
	assertMergedView(t, root2)
	if err := s.Unmount("c2"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Mounted(); len(ids) != 0 {
		t.Errorf("still mounted: %v", ids)
	}

	// A new Store on the same root knows the image.
	s2, err := NewStore(s.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if img2, ok := s2.Get(ref); !ok || !reflect.DeepEqual(img2, got) {
		t.Errorf("after reopen Get = %+v, %v; want %+v", img2, ok, got)
	}
	if img2, ok := s2.Get(got.RepoDigest()); !ok || img2.Digest != got.Digest {
		t.Errorf("Get(repo@digest) = %+v, %v", img2, ok)
	}
}

func TestMountInvalid(t *testing.T) {
	s := newStore(t, Options{})
	for _, id := range []string{"", ".", "..", "a/b", "a,b", "a:b"} {
		if _, err := s.Mount(id, &Image{}); !errors.Is(err, ErrInvalidContainerID) {
			t.Errorf("Mount(%q) = %v, want ErrInvalidContainerID", id, err)
		}
	}
	outside := t.TempDir()
	if _, err := s.Mount("c", &Image{Layers: []string{outside}}); !errors.Is(err, ErrLayerMissing) {
		t.Errorf("Mount with a layer outside the store = %v, want ErrLayerMissing", err)
	}
	if ids, _ := s.Mounted(); len(ids) != 0 {
		t.Errorf("mounted: %v", ids)
	}
}

func TestMountSingleLayerAndEmpty(t *testing.T) {
	s := newStore(t, Options{})
	var buf bytes.Buffer
	one := image(t, appLayer(t, "solo"))
	none := image(t)
	tagOne, _ := name.NewTag("example.com/one:v1")
	tagNone, _ := name.NewTag("example.com/none:v1")
	if err := tarball.MultiRefWrite(map[name.Reference]v1.Image{tagOne: one, tagNone: none}, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(&buf); err != nil {
		t.Fatal(err)
	}
	img, _ := s.Get("example.com/one:v1")
	rootfs, err := s.Mount("one", img)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(rootfs, "app/hello")); got != "solo" {
		t.Errorf("app/hello = %q", got)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "w"), nil, 0o644); err != nil {
		t.Errorf("single-layer rootfs is not writable: %v", err)
	}
	// A layer listed twice is one lower dir: overlayfs refuses duplicates.
	twice := image(t, appLayer(t, "again"), layer(t, dir("app/"), file("app/mid", "mid")), appLayer(t, "again"))
	tagTwice, _ := name.NewTag("example.com/twice:v1")
	var buf2 bytes.Buffer
	if err := tarball.Write(tagTwice, twice, &buf2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(&buf2); err != nil {
		t.Fatal(err)
	}
	img, _ = s.Get("example.com/twice:v1")
	if len(img.Layers) != 3 || img.Layers[0] != img.Layers[2] {
		t.Fatalf("layers %v", img.Layers)
	}
	rootfs, err = s.Mount("twice", img)
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(rootfs, "app/hello")) != "again" || readFile(t, filepath.Join(rootfs, "app/mid")) != "mid" {
		t.Error("wrong merged view of a repeated layer")
	}

	img, _ = s.Get("example.com/none:v1")
	rootfs, err = s.Mount("none", img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "w"), nil, 0o644); err != nil {
		t.Errorf("layerless rootfs is not writable: %v", err)
	}
}

// Layer paths too long for one page of mount options go as /proc/self/fd.
func TestMountLongOptions(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	ref := reg.push(t, "team/app:v1", testImage(t))
	s := newStore(t, Options{})
	img, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func(old int) { maxMountData = old }(maxMountData)
	maxMountData = 400 // three layer paths and upper/work do not fit, fd paths do
	rootfs, err := s.Mount("long", img)
	if err != nil {
		t.Fatal(err)
	}
	assertMergedView(t, rootfs)

	// A failed Mount leaves nothing behind.
	maxMountData = 10
	if _, err := s.Mount("toolong", img); err == nil {
		t.Fatal("mount options longer than the limit accepted")
	}
	assertAbsent(t, filepath.Join(s.root, "containers", "toolong"))
}

func TestEnsureMultiPlatform(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	mine := image(t, appLayer(t, "mine"))
	other := image(t, appLayer(t, "other arch"))
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "arm64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref, err := name.ParseReference(reg.host + "/team/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{})
	img, err := s.Ensure(context.Background(), ref.String(), PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	mineID, _ := mine.ConfigName()
	if img.Digest != digestOf(t, idx) || img.ID != mineID.String() {
		t.Errorf("digest %s id %s; want the index digest %s and this platform's config %s", img.Digest, img.ID, digestOf(t, idx), mineID)
	}
	otherLayers, _ := other.Layers()
	if n := reg.count("GET", "/blobs/"+digestOf(t, otherLayers[0])); n != 0 {
		t.Errorf("the other platform's layer was downloaded %d times", n)
	}
	rootfs, err := s.Mount("c", img)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(rootfs, "app/hello")); got != "mine" {
		t.Errorf("app/hello = %q", got)
	}

	// A lone image for another architecture is refused.
	cf, _ := other.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = otherArch
	foreign, err := mutate.ConfigFile(other, cf)
	if err != nil {
		t.Fatal(err)
	}
	fref := reg.push(t, "team/foreign:v1", foreign)
	if _, err := s.Ensure(context.Background(), fref, PullIfNotPresent, nil); err == nil || !strings.Contains(err.Error(), "linux/"+otherArch) {
		t.Errorf("image for linux/%s: %v", otherArch, err)
	}
}

func TestIfNotPresentUsesCache(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	ref := reg.push(t, "team/app:v1", testImage(t))
	s := newStore(t, Options{})
	first, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.reset()
	second, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reqs := reg.requests(); len(reqs) != 0 {
		t.Errorf("IfNotPresent with a cached image made requests: %v", reqs)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Ensure = %+v, want %+v", second, first)
	}
	// An empty policy on a non-latest tag is IfNotPresent too.
	if _, err := s.Ensure(context.Background(), ref, "", nil); err != nil || len(reg.requests()) != 0 {
		t.Errorf("default policy for :v1: %v, requests %v", err, reg.requests())
	}
}

func TestAlwaysReresolves(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	base, change := baseLayer(t), changeLayer(t)
	v1img := image(t, base, change, appLayer(t, "hello v1"))
	ref := reg.push(t, "team/app:stable", v1img)
	s := newStore(t, Options{})
	ctx := context.Background()

	first, err := s.Ensure(ctx, ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Unchanged tag: one HEAD, no manifest GET, no blob.
	reg.reset()
	again, err := s.Ensure(ctx, ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != first.Digest {
		t.Errorf("digest changed without a push: %s -> %s", first.Digest, again.Digest)
	}
	if h, g, b := reg.count("HEAD", "/manifests/"), reg.count("GET", "/manifests/"), reg.count("GET", "/blobs/"); h != 1 || g != 0 || b != 0 {
		t.Errorf("unchanged Always: %d manifest HEADs, %d manifest GETs, %d blob GETs; want 1, 0, 0 (%v)", h, g, b, reg.requests())
	}

	// A new image under the same tag sharing two layers.
	newTop := appLayer(t, "hello v2")
	v2img := image(t, base, change, newTop)
	reg.push(t, "team/app:stable", v2img)
	reg.reset()
	second, err := s.Ensure(ctx, ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.Digest != digestOf(t, v2img) || second.Digest == first.Digest {
		t.Errorf("Always did not re-resolve: digest %s, want %s", second.Digest, digestOf(t, v2img))
	}
	for _, l := range []v1.Layer{base, change} {
		if n := reg.count("GET", "/blobs/"+digestOf(t, l)); n != 0 {
			t.Errorf("shared layer %s downloaded %d times", digestOf(t, l), n)
		}
	}
	if n := reg.count("GET", "/blobs/"+digestOf(t, newTop)); n != 1 {
		t.Errorf("new layer downloaded %d times, want 1", n)
	}
	rootfs, err := s.Mount("c", second)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(rootfs, "app/hello")); got != "hello v2" {
		t.Errorf("app/hello = %q", got)
	}
	if cur, _ := s.Get(ref); cur.Digest != second.Digest {
		t.Errorf("Get after re-pull = %s", cur.Digest)
	}
	if old, ok := s.Get(first.RepoDigest()); !ok || old.Digest != first.Digest {
		t.Errorf("the old image is no longer found by digest: %+v %v", old, ok)
	}

	// ":latest" defaults to Always.
	reg.push(t, "team/app:latest", v2img)
	if _, err := s.Ensure(ctx, reg.host+"/team/app", "", nil); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	if _, err := s.Ensure(ctx, reg.host+"/team/app", "", nil); err != nil {
		t.Fatal(err)
	}
	if n := reg.count("HEAD", "/manifests/latest"); n != 1 {
		t.Errorf("default policy for latest made %d HEADs, want 1", n)
	}
}

func TestNeverPolicy(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	ref := reg.push(t, "team/app:v1", testImage(t))
	s := newStore(t, Options{})
	reg.reset()
	_, err := s.Ensure(context.Background(), ref, PullNever, nil)
	if !errors.Is(err, ErrNeverPull) {
		t.Fatalf("Never without a cached image: %v, want ErrNeverPull", err)
	}
	if want := fmt.Sprintf("Container image %q is not present with pull policy of Never", ref); err.Error() != want {
		t.Errorf("message %q, want kubelet's %q", err, want)
	}
	if reqs := reg.requests(); len(reqs) != 0 {
		t.Errorf("Never asked the registry: %v", reqs)
	}
	pulled, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.reset()
	got, err := s.Ensure(context.Background(), ref, PullNever, nil)
	if err != nil || got.Digest != pulled.Digest {
		t.Errorf("Never with a cached image = %+v, %v", got, err)
	}
	if reqs := reg.requests(); len(reqs) != 0 {
		t.Errorf("Never asked the registry: %v", reqs)
	}
}

func TestBasicAuth(t *testing.T) {
	reg := newTestRegistry(t, "alice", "s3cret")
	ref := reg.push(t, "private/app:v1", testImage(t))
	s := newStore(t, Options{Insecure: []string{reg.host}})
	ctx := context.Background()

	_, err := s.Ensure(ctx, ref, PullAlways, nil)
	var pe *PullError
	if !errors.As(err, &pe) || pe.Ref != ref {
		t.Fatalf("without credentials: %v, want a *PullError for %s", err, ref)
	}
	if !strings.Contains(err.Error(), "UNAUTHORIZED") || !strings.Contains(err.Error(), ref) {
		t.Errorf("message %q lacks the registry's UNAUTHORIZED or the ref", err)
	}

	wrong := fmt.Sprintf(`{"auths":{%q:{"username":"alice","password":"nope"}}}`, reg.host)
	creds, err := CredentialsFromDockerConfigJSON([]byte(wrong))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(ctx, ref, PullAlways, creds); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("wrong password: %v", err)
	}

	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	right := fmt.Sprintf(`{"auths":{"other.example.com":{"auth":"Ym9iOng="},"http://%s":{"auth":%q}}}`, reg.host, auth)
	if creds, err = CredentialsFromDockerConfigJSON([]byte(right)); err != nil {
		t.Fatal(err)
	}
	img, err := s.Ensure(ctx, ref, PullAlways, creds)
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	if _, err := s.Mount("c", img); err != nil {
		t.Fatal(err)
	}

	legacy := fmt.Sprintf(`{%q:{"auth":%q,"email":"a@example.com"}}`, reg.host, auth)
	if creds, err = CredentialsFromDockerCfg([]byte(legacy)); err != nil {
		t.Fatal(err)
	}
	if c := creds[reg.host]; c.Username != "alice" || c.Password != "s3cret" {
		t.Errorf("legacy .dockercfg parsed as %+v", c)
	}
}

func TestMissingTag(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	reg.push(t, "team/app:v1", testImage(t))
	s := newStore(t, Options{})
	ref := reg.host + "/team/app:nope"
	_, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
	var pe *PullError
	if !errors.As(err, &pe) || pe.Ref != ref {
		t.Fatalf("missing tag: %v, want a *PullError for %s", err, ref)
	}
	if !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || !strings.Contains(err.Error(), ref) {
		t.Errorf("message %q lacks MANIFEST_UNKNOWN or the ref", err)
	}
	if _, err := s.Ensure(context.Background(), "UPPER/Case:tag", PullIfNotPresent, nil); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("invalid name: %v, want ErrInvalidReference", err)
	}
}

// countingHandler counts log records by message and diffID.
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "diffID" {
			key += " " + a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.counts[key]++
	h.mu.Unlock()
	return nil
}

func TestConcurrentEnsureUnpacksOnce(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	img := testImage(t)
	ref := reg.push(t, "team/app:v1", img)
	logs := &countingHandler{counts: map[string]int{}}
	s := newStore(t, Options{Logger: slog.New(logs)})
	reg.reset()

	const n = 8
	var wg sync.WaitGroup
	results := make([]*Image, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Ensure(context.Background(), ref, PullAlways, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Ensure %d: %v", i, errs[i])
		}
		if results[i].Digest != digestOf(t, img) {
			t.Errorf("Ensure %d: digest %s", i, results[i].Digest)
		}
	}
	layers, _ := img.Layers()
	cf, _ := img.ConfigFile()
	for i, l := range layers {
		if got := reg.count("GET", "/blobs/"+digestOf(t, l)); got != 1 {
			t.Errorf("layer %d downloaded %d times, want 1", i, got)
		}
		if got := logs.counts["unpacked layer "+cf.RootFS.DiffIDs[i].String()]; got != 1 {
			t.Errorf("layer %d unpacked %d times, want 1", i, got)
		}
	}
}

func TestNewStoreCleansStaging(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	half := filepath.Join(root, "tmp", "layer-123")
	if err := os.MkdirAll(half, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(root, Options{}); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, half)
	if _, err := NewStore(filepath.Join(root, "a:b"), Options{}); err == nil {
		t.Error("a root with ':' was accepted")
	}
}

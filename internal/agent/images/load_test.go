package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestLoadDockerSave(t *testing.T) {
	s := newStore(t, Options{})
	app := testImage(t)
	other := image(t, appLayer(t, "other"))
	refs := map[name.Reference]v1.Image{}
	for r, img := range map[string]v1.Image{"example.com/team/app:v1": app, "app:also": app, "example.com/other:v9": other} {
		tag, err := name.NewTag(r)
		if err != nil {
			t.Fatal(err)
		}
		refs[tag] = img
	}
	var buf bytes.Buffer
	if err := tarball.MultiRefWrite(refs, &buf); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	imgs, err := s.Load(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Ref)
	}
	wantNames := []string{"docker.io/library/app:also", "example.com/other:v9", "example.com/team/app:v1"}
	if slices.Sort(names); !slices.Equal(names, wantNames) {
		t.Errorf("loaded %v, want %v", names, wantNames)
	}
	appImg, ok := s.Get("example.com/team/app:v1")
	if !ok {
		t.Fatal("loaded image not found")
	}
	if also, ok := s.Get("app:also"); !ok || also.ID != appImg.ID || also.Digest != appImg.Digest {
		t.Errorf("second tag of one image: %+v %v", also, ok)
	}
	cfgName, _ := app.ConfigName()
	if appImg.ID != cfgName.String() || len(appImg.Layers) != 3 || appImg.Config.WorkingDir != "/app" {
		t.Errorf("loaded image %+v", appImg)
	}
	rootfs, err := s.Mount("c", appImg)
	if err != nil {
		t.Fatal(err)
	}
	assertMergedView(t, rootfs)
	if _, err := s.Ensure(context.Background(), "example.com/other:v9", PullNever, nil); err != nil {
		t.Errorf("Never after Load: %v", err)
	}

	// The same archive gzip-compressed, into another store.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	zw.Close()
	s2 := newStore(t, Options{})
	if imgs, err := s2.Load(&gz); err != nil || len(imgs) != 3 {
		t.Fatalf("gzip archive: %d images, %v", len(imgs), err)
	}
	if img, ok := s2.Get("example.com/team/app:v1"); !ok || img.Digest != appImg.Digest {
		t.Errorf("gzip archive gave %+v, %v", img, ok)
	}
}

// tarDir writes dir as a tar with paths relative to it.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLoadOCILayout(t *testing.T) {
	s := newStore(t, Options{})
	app := testImage(t)
	unnamed := image(t, appLayer(t, "unnamed"))
	multi := image(t, appLayer(t, "multi"))
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        multi,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	})

	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(app, layout.WithAnnotations(map[string]string{annotationRefName: "example.com/oci/app:v1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(unnamed, layout.WithAnnotations(map[string]string{annotationRefName: "latest"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		annotationContainerdName: "example.com/oci/multi:v2", annotationRefName: "v2",
	})); err != nil {
		t.Fatal(err)
	}

	imgs, err := s.Load(bytes.NewReader(tarDir(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Fatalf("loaded %d images: %+v", len(imgs), imgs)
	}
	byRef := map[string]*Image{}
	for _, img := range imgs {
		byRef[img.Ref] = img
	}
	got := byRef["example.com/oci/app:v1"]
	if got == nil || got.Digest != digestOf(t, app) {
		t.Fatalf("named image: %+v", got)
	}
	if u := byRef[""]; u == nil || u.Digest != digestOf(t, unnamed) {
		t.Errorf("image named only by a bare tag: %+v", u)
	}
	if m := byRef["example.com/oci/multi:v2"]; m == nil || m.Digest != digestOf(t, idx) {
		t.Errorf("multi-platform entry: %+v, want the index digest %s", m, digestOf(t, idx))
	} else if rootfs, err := s.Mount("multi", m); err != nil {
		t.Error(err)
	} else if got := readFile(t, filepath.Join(rootfs, "app/hello")); got != "multi" {
		t.Errorf("multi app/hello = %q", got)
	}
	rootfs, err := s.Mount("c", got)
	if err != nil {
		t.Fatal(err)
	}
	assertMergedView(t, rootfs)
	if n := len(s.List()); n != 3 {
		t.Errorf("List has %d images, want 3", n)
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	s := newStore(t, Options{})
	if _, err := s.Load(bytes.NewReader(tarBytes(t, file("hello.txt", "hi")))); !errors.Is(err, ErrUnknownArchive) {
		t.Errorf("plain tar: %v, want ErrUnknownArchive", err)
	}
	if _, err := s.Load(bytes.NewReader(tarBytes(t, file("../manifest.json", "[]")))); !errors.Is(err, ErrUnsafeLayer) {
		t.Errorf("archive escaping its dir: %v, want ErrUnsafeLayer", err)
	}
}

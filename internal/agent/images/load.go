package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

var gzipMagic = []byte{0x1f, 0x8b}

// Load stores the images of an archive, as `docker load` or `ctr image
// import` do, and returns one Image per name (and one per unnamed image).
// The archive, possibly gzip-compressed, is either
//   - a docker-save tarball (manifest.json, as go-containerregistry's tarball
//     package writes it too): names from RepoTags, else from "repositories";
//   - an OCI image layout (oci-layout, index.json, blobs/): names from the
//     io.containerd.image.name annotation, else from
//     org.opencontainers.image.ref.name when it is a full name (a bare tag
//     names no repository, so such an image stays unnamed). A
//     multi-platform entry contributes its image for this node's platform.
//
// When both are present (docker 25+), the OCI layout is used. Load blocks
// until every image is unpacked. Errors: ErrUnknownArchive, ErrUnsafeLayer
// (wrapped), or the first failure; images stored before it stay stored.
func (s *Store) Load(r io.Reader) ([]*Image, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	dir, err := os.MkdirTemp(s.path("tmp"), "load-")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("removing load staging dir", "dir", dir, "err", err)
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer root.Close()
	links, err := extractArchive(root, r)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	ctx := context.Background()
	switch {
	case fileExists(root, "index.json") && fileExists(root, "oci-layout"):
		if links {
			return nil, fmt.Errorf("load: %w: OCI layout archive holds links", ErrUnknownArchive)
		}
		return s.loadLayout(ctx, dir)
	case fileExists(root, "manifest.json"):
		return s.loadDockerSave(ctx, root)
	default:
		return nil, fmt.Errorf("load: %w", ErrUnknownArchive)
	}
}

func fileExists(root *os.Root, name string) bool {
	fi, err := root.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// extractArchive writes the archive's regular files, directories and links
// under root; anything else is ignored. os.Root keeps every write and every
// later read inside root. It reports whether the archive held links.
func extractArchive(root *os.Root, r io.Reader) (links bool, err error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return links, nil
		}
		if err != nil {
			return links, err
		}
		p, err := cleanName(hdr.Name)
		if err != nil {
			return links, err
		}
		if p == "." {
			continue
		}
		if dir := path.Dir(p); dir != "." {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return links, unsafe(err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(p, 0o700)
		case tar.TypeReg:
			var f *os.File
			if f, err = root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case tar.TypeSymlink:
			links = true
			err = root.Symlink(hdr.Linkname, p)
		case tar.TypeLink:
			links = true
			var target string
			if target, err = cleanName(hdr.Linkname); err == nil {
				err = root.Link(target, p)
			}
		}
		if err != nil {
			return links, fmt.Errorf("%s: %w", hdr.Name, unsafe(err))
		}
	}
}

// loadLayout stores the images of the OCI layout in dir.
func (s *Store) loadLayout(ctx context.Context, dir string) ([]*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var out []*Image
	for _, desc := range im.Manifests {
		var img v1.Image
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", desc.Digest, err)
			}
			if img, err = platformImage(child); err != nil {
				return nil, fmt.Errorf("load %s: %w", desc.Digest, err)
			}
		case desc.MediaType.IsImage():
			if img, err = idx.Image(desc.Digest); err != nil {
				return nil, fmt.Errorf("load %s: %w", desc.Digest, err)
			}
		default:
			s.log.Debug("skipping non-image entry in OCI layout", "digest", desc.Digest.String(), "mediaType", string(desc.MediaType))
			continue
		}
		var refs []string
		if ref := layoutName(desc.Annotations); ref != "" {
			r, err := s.parse(ref)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", desc.Digest, err)
			}
			refs = append(refs, normalize(r))
		}
		imgs, err := s.loadImage(ctx, desc.Digest.String(), img, refs)
		if err != nil {
			return nil, err
		}
		out = append(out, imgs...)
	}
	return out, nil
}

// layoutName is the image name an index.json entry carries, or "".
func layoutName(ann map[string]string) string {
	if n := ann[annotationContainerdName]; n != "" {
		return n
	}
	n := ann[annotationRefName]
	if strings.ContainsAny(n, "/:@") {
		return n
	}
	return ""
}

// platformImage picks this node's image out of an index.
func platformImage(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range im.Manifests {
		if m.MediaType.IsImage() && m.Platform != nil &&
			m.Platform.OS == nodePlatform.OS && m.Platform.Architecture == nodePlatform.Architecture {
			return idx.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s/%s in the index", nodePlatform.OS, nodePlatform.Architecture)
}

func (s *Store) loadImage(ctx context.Context, digest string, img v1.Image, refs []string) ([]*Image, error) {
	rec, err := s.importImage(ctx, digest, img)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", digest, err)
	}
	return s.recordEach(rec, refs)
}

// recordEach stores rec under refs and returns one Image per ref, or one
// unnamed Image if there are none.
func (s *Store) recordEach(rec *imageRecord, refs []string) ([]*Image, error) {
	if len(refs) == 0 {
		img, err := s.record(rec, nil)
		if err != nil {
			return nil, err
		}
		return []*Image{img}, nil
	}
	var out []*Image
	for _, ref := range refs {
		img, err := s.record(rec, []string{ref})
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// loadDockerSave stores the images of an extracted docker-save archive.
func (s *Store) loadDockerSave(ctx context.Context, root *os.Root) ([]*Image, error) {
	data, err := root.ReadFile("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var manifest tarball.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return nil, fmt.Errorf("load: manifest.json: %w", err)
	}
	repoTags, err := legacyRepositories(root)
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, entry := range manifest {
		tags := entry.RepoTags
		if len(tags) == 0 && len(entry.Layers) > 0 {
			tags = repoTags[path.Dir(entry.Layers[len(entry.Layers)-1])]
		}
		var refs []string
		for _, t := range tags {
			r, err := s.parse(t)
			if err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
			refs = append(refs, normalize(r))
		}
		rec, err := s.importDockerSave(ctx, root, entry)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", entry.Config, err)
		}
		imgs, err := s.recordEach(rec, refs)
		if err != nil {
			return nil, err
		}
		out = append(out, imgs...)
	}
	return out, nil
}

// legacyRepositories reads the old "repositories" file ({"repo": {"tag":
// "top layer id"}}) into top layer id -> "repo:tag" names.
func legacyRepositories(root *os.Root) (map[string][]string, error) {
	data, err := root.ReadFile("repositories")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(data, &repos); err != nil {
		return nil, fmt.Errorf("load: repositories: %w", err)
	}
	out := map[string][]string{}
	for repo, tags := range repos {
		for tag, id := range tags {
			out[id] = append(out[id], repo+":"+tag)
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, nil
}

// importDockerSave unpacks one manifest.json entry. Its Digest is that of
// the manifest containerd's import would write for it: the config and the
// layer files as they are in the archive (gzip or plain tar).
func (s *Store) importDockerSave(ctx context.Context, root *os.Root, entry tarball.Descriptor) (*imageRecord, error) {
	raw, err := root.ReadFile(entry.Config)
	if err != nil {
		return nil, unsafe(err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	configDigest := sha256Hash(raw)
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(raw)), Digest: configDigest},
	}
	for _, l := range entry.Layers {
		desc, err := layerFileDescriptor(root, l)
		if err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, desc)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	open := make([]func() (io.ReadCloser, error), len(entry.Layers))
	for i, l := range entry.Layers {
		open[i] = func() (io.ReadCloser, error) { return openLayerFile(root, l) }
	}
	return s.importLayers(ctx, sha256Hash(mb).String(), configDigest.String(), cfg, open)
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// layerFileDescriptor hashes a layer file of a docker-save archive.
func layerFileDescriptor(root *os.Root, name string) (v1.Descriptor, error) {
	f, err := root.Open(name)
	if err != nil {
		return v1.Descriptor{}, unsafe(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	mt := types.DockerUncompressedLayer
	if magic, _ := br.Peek(2); bytes.Equal(magic, gzipMagic) {
		mt = types.DockerLayer
	}
	h := sha256.New()
	n, err := io.Copy(h, br)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{
		MediaType: mt,
		Size:      n,
		Digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))},
	}, nil
}

// openLayerFile opens a layer file of a docker-save archive as a plain tar
// stream.
func openLayerFile(root *os.Root, name string) (io.ReadCloser, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, unsafe(err)
	}
	br := bufio.NewReader(f)
	if magic, _ := br.Peek(2); !bytes.Equal(magic, gzipMagic) {
		return struct {
			io.Reader
			io.Closer
		}{br, f}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, closers{zr, f}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Package images is the node agent's image store: it pulls images from OCI
// registries with go-containerregistry, loads docker-save and OCI layout
// tarballs, unpacks each layer once into its own directory, and mounts
// container root filesystems as overlayfs over those layers.
//
// See DESIGN.md for the on-disk layout and the decisions behind it.
package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/rafter-dev/rafter/internal/atomicfile"
	"golang.org/x/sync/singleflight"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNeverPull: the image is absent and the pull policy is Never
	// (kubelet's ErrImageNeverPull).
	ErrNeverPull = errors.New("image not present with pull policy of Never")
	// ErrInvalidReference: the image name does not parse (kubelet's
	// InvalidImageName).
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrUnsafeLayer: a layer tar has an entry that would be written outside
	// its layer directory; the whole layer is rejected.
	ErrUnsafeLayer = errors.New("unsafe layer")
	// ErrUnknownArchive: Load was given something that is neither a
	// docker-save tarball nor an OCI image layout tarball.
	ErrUnknownArchive = errors.New("not a docker-save or OCI layout archive")
	// ErrLayerMissing: Mount was given an image whose layer directories are
	// not (or no longer) in the store.
	ErrLayerMissing = errors.New("image layer missing from the store")
	// ErrInvalidContainerID: a container ID that is not a single plain path
	// component.
	ErrInvalidContainerID = errors.New("invalid container id")
)

// Options configures a Store.
type Options struct {
	// Insecure lists registries ("host" or "host:port", or a CIDR such as
	// "10.0.0.0/8") that may be reached over plain HTTP or over TLS without
	// certificate verification, as Docker's insecure-registries. Loopback
	// registries (localhost, 127.0.0.0/8, ::1) are always allowed over HTTP;
	// every other registry must speak verified HTTPS.
	Insecure []string
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

// Image is one image known to the store. Values returned by the Store are
// copies: callers may keep and modify them.
type Image struct {
	// Ref is the normalized name the image was pulled or loaded as
	// ("docker.io/library/nginx:1.27", "registry:5000/app@sha256:..."). It is
	// empty for an image loaded from an archive that gave it no name.
	Ref string
	// ID is the digest of the image config ("sha256:..."), the image ID of
	// docker and crictl.
	ID string
	// Digest is the manifest digest the reference resolved to: for a
	// multi-platform image, the index digest, as containerd records it.
	Digest string
	// Config is the part of the image config a container runtime needs.
	Config ImageConfig
	// Layers are the unpacked layer directories, lowest first.
	Layers []string
}

// RepoDigest returns "repository@digest", what a kubelet reports as a
// container's imageID. For an unnamed image it returns the Digest.
func (i *Image) RepoDigest() string {
	if i.Ref == "" {
		return i.Digest
	}
	return repository(i.Ref) + "@" + i.Digest
}

// ImageConfig is the runtime part of an OCI image config.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	// ExposedPorts are "port/proto" ("80/tcp"), sorted.
	ExposedPorts []string `json:"exposedPorts,omitempty"`
}

// Store is the node's image store. All methods are safe for concurrent use.
// It owns everything under its root directory; two Stores must not share a
// root.
type Store struct {
	root      string // absolute, symlinks resolved, as /proc/self/mountinfo shows it
	log       *slog.Logger
	transport *registryTransport

	layerFlight singleflight.Group // keyed by diffID: one unpack per layer at a time

	writeMu sync.Mutex // orders record file writes with the map updates that follow them

	mu     sync.Mutex              // guards refs and images; never held during I/O
	refs   map[string]string       // normalized ref -> digest
	images map[string]*imageRecord // digest -> record

	mountMu sync.Mutex // serializes Mount and Unmount, so "is it mounted" and the mount are one step
}

// imageRecord is root/images/digests/<hex>.json.
type imageRecord struct {
	Digest  string      `json:"digest"`
	ID      string      `json:"id"`
	Config  ImageConfig `json:"config"`
	DiffIDs []string    `json:"diffIDs"`
}

// refRecord is root/images/refs/<sha256(ref)>.json.
type refRecord struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// NewStore opens (or creates) the store under root. It removes staging
// leftovers of a previous process and forgets records whose layers are gone.
// root must not contain ':' or ',' (they would break overlay mount options).
func NewStore(root string, opts Options) (*Store, error) {
	if strings.ContainsAny(root, ":,") {
		return nil, fmt.Errorf("image store root %q: must not contain ':' or ','", root)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr, err := newRegistryTransport(opts.Insecure)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if strings.ContainsAny(abs, ":,") {
		return nil, fmt.Errorf("image store root %q: must not contain ':' or ','", abs)
	}
	s := &Store{
		root:      abs,
		log:       log,
		transport: tr,
		refs:      map[string]string{},
		images:    map[string]*imageRecord{},
	}
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("image store: clean staging dir: %w", err)
	}
	for _, d := range []string{"tmp", "layers", "containers", "empty", "images/refs", "images/digests"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := s.loadRecords(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) layerDir(diffID string) string {
	return s.path("layers", strings.TrimPrefix(diffID, "sha256:"))
}

// loadRecords reads the image records written by earlier processes.
func (s *Store) loadRecords() error {
	digests, err := os.ReadDir(s.path("images", "digests"))
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, e := range digests {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec imageRecord
		if err := readJSON(s.path("images", "digests", e.Name()), &rec); err != nil {
			s.log.Warn("skipping unreadable image record", "file", e.Name(), "err", err)
			continue
		}
		if missing := s.missingLayer(&rec); missing != "" {
			s.log.Warn("forgetting image with a missing layer", "digest", rec.Digest, "layer", missing)
			continue
		}
		s.images[rec.Digest] = &rec
	}
	refs, err := os.ReadDir(s.path("images", "refs"))
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	for _, e := range refs {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec refRecord
		if err := readJSON(s.path("images", "refs", e.Name()), &rec); err != nil {
			s.log.Warn("skipping unreadable ref record", "file", e.Name(), "err", err)
			continue
		}
		if _, ok := s.images[rec.Digest]; ok {
			s.refs[rec.Ref] = rec.Digest
		}
	}
	return nil
}

func (s *Store) missingLayer(rec *imageRecord) string {
	for _, d := range rec.DiffIDs {
		if _, err := os.Stat(s.layerDir(d)); err != nil {
			return d
		}
	}
	return ""
}

// Get returns the image stored under ref (any spelling that normalizes to the
// same name: "nginx" is "docker.io/library/nginx:latest"). It does no I/O.
func (s *Store) Get(ref string) (*Image, bool) {
	r, err := s.parse(ref)
	if err != nil {
		return nil, false
	}
	return s.lookup(normalize(r))
}

func (s *Store) lookup(ref string) (*Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.refs[ref]
	if !ok {
		return nil, false
	}
	return s.imageLocked(ref, s.images[d]), true
}

// List returns every stored image, one per name (a pulled tag also gives a
// "repo@digest" name), sorted by Ref; images with no name come first, one
// per digest.
func (s *Store) List() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	named := map[string]bool{}
	var out []*Image
	for ref, d := range s.refs {
		named[d] = true
		out = append(out, s.imageLocked(ref, s.images[d]))
	}
	for d, rec := range s.images {
		if !named[d] {
			out = append(out, s.imageLocked("", rec))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ref != out[j].Ref {
			return out[i].Ref < out[j].Ref
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

// imageLocked builds a fresh Image from a record. s.mu must be held.
func (s *Store) imageLocked(ref string, rec *imageRecord) *Image {
	img := &Image{
		Ref:    ref,
		ID:     rec.ID,
		Digest: rec.Digest,
		Config: ImageConfig{
			Entrypoint:   cloneStrings(rec.Config.Entrypoint),
			Cmd:          cloneStrings(rec.Config.Cmd),
			Env:          cloneStrings(rec.Config.Env),
			WorkingDir:   rec.Config.WorkingDir,
			User:         rec.Config.User,
			ExposedPorts: cloneStrings(rec.Config.ExposedPorts),
		},
	}
	for _, d := range rec.DiffIDs {
		img.Layers = append(img.Layers, s.layerDir(d))
	}
	return img
}

func cloneStrings(in []string) []string {
	if in == nil {
		return nil
	}
	return append([]string(nil), in...)
}

// record stores rec and points refs at it: the digest record first, then the
// ref records, each written atomically, so a crash leaves either the old or
// the new name. Every layer of rec must already be unpacked.
func (s *Store) record(rec *imageRecord, refs []string) (*Image, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	stored, ok := s.images[rec.Digest]
	s.mu.Unlock()
	if !ok {
		name := strings.TrimPrefix(rec.Digest, "sha256:") + ".json"
		if err := atomicfile.WriteJSON(s.path("images", "digests", name), rec); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.images[rec.Digest] = rec
		s.mu.Unlock()
		stored = rec
	}
	for _, ref := range refs {
		s.mu.Lock()
		same := s.refs[ref] == rec.Digest
		s.mu.Unlock()
		if same {
			continue
		}
		sum := sha256.Sum256([]byte(ref))
		name := hex.EncodeToString(sum[:]) + ".json"
		if err := atomicfile.WriteJSON(s.path("images", "refs", name), refRecord{Ref: ref, Digest: rec.Digest}); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.refs[ref] = rec.Digest
		s.mu.Unlock()
	}
	ref := ""
	if len(refs) > 0 {
		ref = refs[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.imageLocked(ref, stored), nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// exists reports whether path exists; stat errors count as absent.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

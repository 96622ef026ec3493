package images

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PullPolicy is a container's imagePullPolicy, with Kubernetes' meaning.
type PullPolicy string

const (
	// PullAlways resolves the reference at the registry on every Ensure and
	// downloads only the layers the node lacks.
	PullAlways PullPolicy = "Always"
	// PullIfNotPresent uses the image stored under the reference, if any,
	// without asking the registry.
	PullIfNotPresent PullPolicy = "IfNotPresent"
	// PullNever never asks the registry: the image must be stored already.
	PullNever PullPolicy = "Never"
)

// nodePlatform is the platform picked out of multi-platform images.
var nodePlatform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// PullError is how Ensure reports a failed pull (kubelet's ErrImagePull):
// its message carries the registry's own error text, such as
// "MANIFEST_UNKNOWN: manifest unknown" or "UNAUTHORIZED: ...". Err may be
// unwrapped to a *transport.Error of go-containerregistry, a context error,
// ErrUnsafeLayer or a local I/O error.
type PullError struct {
	// Ref is the image reference as the caller spelled it.
	Ref string
	Err error
}

func (e *PullError) Error() string {
	return fmt.Sprintf("pull image %q: %v", e.Ref, e.Err)
}

func (e *PullError) Unwrap() error { return e.Err }

// neverPullError has kubelet's text for ErrImageNeverPull and matches
// ErrNeverPull.
type neverPullError struct{ ref string }

func (e *neverPullError) Error() string {
	return fmt.Sprintf("Container image %q is not present with pull policy of Never", e.ref)
}

func (e *neverPullError) Unwrap() error { return ErrNeverPull }

// Ensure makes the image named ref present on the node according to policy
// and returns it. An empty policy is Kubernetes' default: Always for the
// "latest" tag or no tag, IfNotPresent otherwise.
//
// Errors: ErrInvalidReference (wrapped) for a name that does not parse; an
// error matching ErrNeverPull for a missing image under PullNever; a
// *PullError for any failure to pull. Ensure blocks until the image is
// unpacked or ctx ends; concurrent calls for images that share layers
// download and unpack each shared layer once.
func (s *Store) Ensure(ctx context.Context, ref string, policy PullPolicy, creds Credentials) (*Image, error) {
	r, err := s.parse(ref)
	if err != nil {
		return nil, err
	}
	key := normalize(r)
	if policy == "" {
		policy = defaultPolicy(r)
	}
	switch policy {
	case PullNever:
		if img, ok := s.lookup(key); ok {
			return img, nil
		}
		return nil, &neverPullError{ref: ref}
	case PullIfNotPresent:
		if img, ok := s.lookup(key); ok {
			return img, nil
		}
	case PullAlways:
	default:
		return nil, fmt.Errorf("image %q: unknown pull policy %q", ref, policy)
	}
	img, err := s.pull(ctx, r, key, creds)
	if err != nil {
		return nil, &PullError{Ref: ref, Err: err}
	}
	return img, nil
}

func defaultPolicy(r name.Reference) PullPolicy {
	if t, ok := r.(name.Tag); ok && t.TagStr() == "latest" {
		return PullAlways
	}
	return PullIfNotPresent
}

// pull resolves r at the registry and makes its image present. It asks with
// HEAD first: an unchanged tag then costs one request and downloads nothing
// (registries such as Docker Hub do not count HEADs against pull limits).
// The manifest is fetched by the digest HEAD returned, so a tag that moves
// meanwhile cannot mix two images.
func (s *Store) pull(ctx context.Context, r name.Reference, key string, creds Credentials) (*Image, error) {
	puller, err := remote.NewPuller(
		remote.WithTransport(s.transport),
		remote.WithAuth(creds.authenticator(r.Context())),
		remote.WithPlatform(nodePlatform),
		remote.WithUserAgent("rafter-nodeagent"),
	)
	if err != nil {
		return nil, err
	}
	refs := []string{key}
	target := r
	head, herr := puller.Head(ctx, r)
	if herr == nil {
		d := head.Digest.String()
		refs = appendDigestRef(refs, r, d)
		if img, ok, err := s.recordIfKnown(d, refs); ok || err != nil {
			return img, err
		}
		target = r.Context().Digest(d)
	} else {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A HEAD response has no body: the GET below gives the registry's
		// own words if it fails too.
		s.log.Debug("manifest HEAD failed, trying GET", "image", key, "err", herr)
	}
	desc, err := puller.Get(ctx, target)
	if err != nil {
		return nil, err
	}
	d := desc.Digest.String()
	if herr != nil {
		refs = appendDigestRef(refs, r, d)
		if img, ok, err := s.recordIfKnown(d, refs); ok || err != nil {
			return img, err
		}
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("resolve %s for %s/%s: %w", d, nodePlatform.OS, nodePlatform.Architecture, err)
	}
	rec, err := s.importImage(ctx, d, img)
	if err != nil {
		return nil, err
	}
	s.log.Debug("pulled image", "image", key, "digest", d)
	return s.record(rec, refs)
}

// recordIfKnown points refs at the stored image with digest d, if there is
// one.
func (s *Store) recordIfKnown(d string, refs []string) (*Image, bool, error) {
	s.mu.Lock()
	rec, ok := s.images[d]
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	img, err := s.record(rec, refs)
	return img, true, err
}

// appendDigestRef adds "repo@digest" for a tag reference, so a pod naming
// the image by digest finds it too, as with containerd's repo digests.
func appendDigestRef(refs []string, r name.Reference, d string) []string {
	if _, ok := r.(name.Tag); !ok {
		return refs
	}
	return append(refs, normalize(r.Context().Digest(d)))
}

// parse parses an image reference; registries in the insecure list get
// go-containerregistry's Insecure option (plain HTTP allowed).
func (s *Store) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidReference, ref, err)
	}
	if s.transport.insecure(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidReference, ref, err)
		}
	}
	return r, nil
}

// normalize spells a reference as containerd and the kubelet report it:
// "docker.io/library/nginx:latest", "host:5000/app@sha256:...".
func normalize(r name.Reference) string {
	repo := r.Context()
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	if d, ok := r.(name.Digest); ok {
		return reg + "/" + repo.RepositoryStr() + "@" + d.DigestStr()
	}
	return reg + "/" + repo.RepositoryStr() + ":" + r.Identifier()
}

// repository strips the tag or digest from a normalized reference.
func repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		return ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[:i]
	}
	return ref
}

// registryTransport is the HTTP transport for every registry request. It
// allows plain HTTP and unverified TLS only to insecure registries (plain
// HTTP also to loopback), whatever go-containerregistry's own heuristics
// would allow (it falls back to HTTP for any RFC 1918 address).
type registryTransport struct {
	verified   http.RoundTripper
	unverified http.RoundTripper
	hosts      map[string]bool // "host" (any port) or "host:port"
	nets       []*net.IPNet
}

var _ http.RoundTripper = (*registryTransport)(nil)

func newRegistryTransport(insecure []string) (*registryTransport, error) {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("http.DefaultTransport is not an *http.Transport")
	}
	unverified := base.Clone()
	unverified.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries the operator listed as insecure
	t := &registryTransport{verified: base.Clone(), unverified: unverified, hosts: map[string]bool{}}
	for _, h := range insecure {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, n, err := net.ParseCIDR(h); err == nil {
			t.nets = append(t.nets, n)
			continue
		}
		if strings.Contains(h, "/") {
			return nil, fmt.Errorf("insecure registry %q: want host, host:port or a CIDR", h)
		}
		t.hosts[h] = true
	}
	return t, nil
}

// insecure reports whether the registry host[:port] is in the insecure list.
func (t *registryTransport) insecure(host string) bool {
	if t.hosts[host] {
		return true
	}
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	if t.hosts[hostname] {
		return true
	}
	if ip := net.ParseIP(strings.Trim(hostname, "[]")); ip != nil {
		for _, n := range t.nets {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

func loopback(host string) bool {
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	if hostname == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(hostname, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if t.insecure(host) {
		return t.unverified.RoundTrip(req)
	}
	if req.URL.Scheme == "http" && !loopback(host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing plain HTTP to %s: not an insecure registry", host)
	}
	return t.verified.RoundTrip(req)
}

// imageConfig extracts the runtime part of an image config.
func imageConfig(cfg *v1.ConfigFile) ImageConfig {
	c := cfg.Config
	out := ImageConfig{
		Entrypoint: cloneStrings(c.Entrypoint),
		Cmd:        cloneStrings(c.Cmd),
		Env:        cloneStrings(c.Env),
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	return out
}

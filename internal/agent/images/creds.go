package images

import (
	"encoding/json"
	"fmt"
	"net"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Credentials are registry credentials from a pod's imagePullSecrets, keyed
// as in a docker config: "registry.example.com", "host:5000",
// "https://index.docker.io/v1/", "*.example.com/team". A nil Credentials
// pulls anonymously. Merge several secrets by copying their maps into one.
type Credentials map[string]authn.AuthConfig

// CredentialsFromDockerConfigJSON parses the ".dockerconfigjson" key of a
// kubernetes.io/dockerconfigjson Secret: {"auths": {"host": {...}}}. Each
// entry may carry "username"/"password", a base64 "auth" of user:password,
// "identitytoken" or "registrytoken".
func CredentialsFromDockerConfigJSON(data []byte) (Credentials, error) {
	var cfg struct {
		Auths Credentials `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse .dockerconfigjson: %w", err)
	}
	if cfg.Auths == nil {
		return Credentials{}, nil
	}
	return cfg.Auths, nil
}

// CredentialsFromDockerCfg parses the ".dockercfg" key of a legacy
// kubernetes.io/dockercfg Secret: the "auths" map without its wrapper.
func CredentialsFromDockerCfg(data []byte) (Credentials, error) {
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse .dockercfg: %w", err)
	}
	if c == nil {
		c = Credentials{}
	}
	return c, nil
}

// credKey is a parsed Credentials key.
type credKey struct {
	host string // may hold '*' globs per DNS label
	port string
	path string // repository path prefix, "" for all
}

// dockerHub is the canonical host of Docker Hub, as go-containerregistry
// names it; hubAliases are other names users put in docker configs.
const dockerHub = name.DefaultRegistry

var hubAliases = map[string]bool{"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true}

func parseCredKey(k string) credKey {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	hostport, p, _ := strings.Cut(k, "/")
	p = strings.Trim(p, "/")
	// "index.docker.io/v1/" and friends name the API version, not a path.
	if p == "v1" || p == "v2" {
		p = ""
	} else if rest, ok := strings.CutPrefix(p, "v1/"); ok {
		p = rest
	} else if rest, ok := strings.CutPrefix(p, "v2/"); ok {
		p = rest
	}
	host, port := hostport, ""
	if h, pt, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, pt
	}
	host = strings.ToLower(host)
	if hubAliases[host] {
		host = dockerHub
	}
	return credKey{host: host, port: port, path: p}
}

func (k credKey) matches(host, port, repo string) bool {
	if k.port != port {
		return false
	}
	pl, hl := strings.Split(k.host, "."), strings.Split(host, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return k.path == "" || repo == k.path || strings.HasPrefix(repo, k.path+"/")
}

// authenticator picks the credential for repo as the kubelet's keyring
// does: the key must match the registry host (with '*' globs per label),
// its port exactly, and prefix the repository path. Of several matches the
// one with the longest path, then without globs, wins.
func (c Credentials) authenticator(repo name.Repository) authn.Authenticator {
	reg := strings.ToLower(repo.RegistryStr())
	host, port := reg, ""
	if h, p, err := net.SplitHostPort(reg); err == nil {
		host, port = h, p
	}
	if hubAliases[host] {
		host = dockerHub
	}
	type match struct {
		raw string
		key credKey
	}
	var ms []match
	for raw := range c {
		if k := parseCredKey(raw); k.matches(host, port, repo.RepositoryStr()) {
			ms = append(ms, match{raw, k})
		}
	}
	if len(ms) == 0 {
		return authn.Anonymous
	}
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if len(a.key.path) != len(b.key.path) {
			return len(a.key.path) > len(b.key.path)
		}
		if ga, gb := strings.Contains(a.key.host, "*"), strings.Contains(b.key.host, "*"); ga != gb {
			return !ga
		}
		return a.raw < b.raw
	})
	cfg := c[ms[0].raw]
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(cfg)
}

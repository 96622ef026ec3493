package images

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestCredentialsMatching(t *testing.T) {
	creds := Credentials{
		"https://index.docker.io/v1/":   {Username: "hub"},
		"registry.example.com":          {Username: "plain"},
		"registry.example.com/team":     {Username: "team"},
		"registry.example.com/team/app": {Username: "app"},
		"*.corp.example":                {Username: "glob"},
		"build.corp.example":            {Username: "exact"},
		"http://local:5000":             {Username: "local"},
	}
	tests := []struct {
		image string
		want  string // username, "" for anonymous
	}{
		{"nginx", "hub"},
		{"docker.io/library/nginx:1.27", "hub"},
		{"registry.example.com/other/x", "plain"},
		{"registry.example.com/team/x", "team"},
		{"registry.example.com/team/app:v1", "app"},
		{"registry.example.com/team/application", "team"}, // path prefix is by segment
		{"registry.example.com:5000/team/x", ""},          // ports must match
		{"a.corp.example/x", "glob"},
		{"build.corp.example/x", "exact"}, // no glob wins over a glob
		{"a.b.corp.example/x", ""},        // one glob, one label
		{"local:5000/x", "local"},
		{"local/x", "hub"}, // a bare first component is a Docker Hub namespace
		{"local:5001/x", ""},
		{"quay.io/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			ref, err := name.ParseReference(tt.image)
			if err != nil {
				t.Fatal(err)
			}
			a := creds.authenticator(ref.Context())
			if tt.want == "" {
				if a != authn.Anonymous {
					t.Errorf("got %v, want anonymous", a)
				}
				return
			}
			cfg, err := a.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Username != tt.want {
				t.Errorf("got %q, want %q", cfg.Username, tt.want)
			}
		})
	}
	if a := Credentials(nil).authenticator(name.MustParseReference("nginx").Context()); a != authn.Anonymous {
		t.Errorf("nil credentials: %v", a)
	}
}

func TestCredentialsFromDockerConfigJSON(t *testing.T) {
	c, err := CredentialsFromDockerConfigJSON([]byte(`{"auths":{"r.example.com":{"auth":"dTpwOng="},"t.example.com":{"identitytoken":"tok"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c["r.example.com"]; got.Username != "u" || got.Password != "p:x" {
		t.Errorf("auth field decoded as %+v", got)
	}
	if got := c["t.example.com"]; got.IdentityToken != "tok" {
		t.Errorf("identity token: %+v", got)
	}
	if c, err := CredentialsFromDockerConfigJSON([]byte(`{}`)); err != nil || len(c) != 0 {
		t.Errorf("empty config: %v %v", c, err)
	}
	for _, bad := range []string{`nope`, `{"auths":{"r":{"auth":"!!!"}}}`} {
		if _, err := CredentialsFromDockerConfigJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

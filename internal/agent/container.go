// Package agent is the node agent (kubelet): it registers the Node, renews its
// Lease, runs the pods bound to it through a container runtime, a network and an
// image store, probes them and reports their status. This file and env.go hold
// the pure part of turning a pod's container into what the runtime runs.
package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ImageConfig is what a container inherits from its image's configuration.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	WorkingDir string
}

// Command returns the argv a container runs, by Kubernetes' rules: command
// replaces the image's Entrypoint (and then the image's Cmd is ignored), args
// replaces the image's Cmd; $(VAR) references in both are expanded with the
// container's environment env (from the pod spec, not the image), "$$" is a
// literal "$", and a reference to an undefined variable stays as written. An
// empty result is an error naming the container.
func Command(c *corev1.Container, img ImageConfig, env map[string]string) ([]string, error) {
	var argv []string
	switch {
	case len(c.GetCommand()) > 0:
		argv = append(slices.Clone(c.GetCommand()), c.GetArgs()...)
	case len(c.GetArgs()) > 0:
		argv = append(slices.Clone(img.Entrypoint), c.GetArgs()...)
	default:
		argv = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %q: no command specified and the image has no Entrypoint or Cmd", c.GetName())
	}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	for i, a := range argv {
		argv[i] = Expand(a, lookup)
	}
	return argv, nil
}

// Expand replaces $(NAME) in s with lookup(NAME) as Kubernetes expands
// command, args and env values: "$$" becomes "$", a reference whose name is not
// defined is kept as written, and an unterminated "$(" is literal.
func Expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// WorkingDir is the container's workingDir, else the image's, else "/".
func WorkingDir(c *corev1.Container, img ImageConfig) string {
	switch {
	case c.GetWorkingDir() != "":
		return c.GetWorkingDir()
	case img.WorkingDir != "":
		return img.WorkingDir
	}
	return "/"
}

// ProcessEnv merges the image's environment with the container's (the
// container wins) into the KEY=VALUE list the process gets, sorted by name so
// that the same inputs always give the same list.
func ProcessEnv(img ImageConfig, env map[string]string) []string {
	all := map[string]string{}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		all[k] = v
	}
	maps.Copy(all, env)
	out := make([]string, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, k+"="+all[k])
	}
	return out
}

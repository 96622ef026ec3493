package runtime

import (
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Config configures a Libcontainer runtime.
type Config struct {
	// Root holds one directory per container: the spec, the shim's socket,
	// log and records, and libcontainer's own state. It should not outlive a
	// reboot (the containers do not), hence /run.
	Root string
	// Binary is the executable re-executed as the shim ("shim" argument, see
	// RunShim) and as libcontainer's container init ("init", see Init).
	// Default: the running executable.
	Binary string
	// CgroupRoot is the cgroup, relative to every hierarchy's root, under
	// which all containers live (their CgroupParent must be inside it).
	CgroupRoot string
	Logger     *slog.Logger
}

// DefaultConfig returns the configuration a node agent uses.
func DefaultConfig() Config {
	return Config{
		Root:       "/run/rafter/runtime",
		CgroupRoot: "rafter",
		Logger:     slog.Default(),
	}
}

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = 107

// minIDRoom is how long an ID Root must leave room for in socket paths.
const minIDRoom = 16

// Validate checks the fields and how they fit together.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("%w: root %q must be an absolute path", ErrInvalidSpec, c.Root)
	}
	if n := len(socketPath(c.Root, strings.Repeat("x", minIDRoom))); n > maxSocketPath {
		return fmt.Errorf("%w: root %q is too long: shim socket paths would pass %d bytes", ErrInvalidSpec, c.Root, maxSocketPath)
	}
	if c.Binary != "" && !filepath.IsAbs(c.Binary) {
		return fmt.Errorf("%w: binary %q must be an absolute path", ErrInvalidSpec, c.Binary)
	}
	if err := checkCgroupName(c.CgroupRoot); err != nil {
		return fmt.Errorf("%w: cgroup root: %v", ErrInvalidSpec, err)
	}
	if c.Logger == nil {
		return fmt.Errorf("%w: logger is nil", ErrInvalidSpec)
	}
	return nil
}

// checkCgroupName accepts a clean, relative, non-empty cgroup path.
func checkCgroupName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty")
	case path.IsAbs(name), path.Clean(name) != name, name == ".", name == ".." || strings.HasPrefix(name, "../"):
		return fmt.Errorf("%q must be a clean relative path", name)
	}
	return nil
}

// resolveBinary fills in the default executable.
func (c Config) resolveBinary() (string, error) {
	if c.Binary != "" {
		return c.Binary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return exe, nil
}

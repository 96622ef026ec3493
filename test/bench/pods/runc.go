package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rafter-dev/rafter/internal/testimage"
)

// The baseline: Debian's runc starting the podapp root filesystem, the
// least any runtime does to start that process. `runc run -d` returns once
// the container's process has been started (create, then start: the init
// execs /app), which is the runtime's side of "Running". The process's stdio
// are files (terminal false, no console socket); each container gets runc's
// default namespaces (a new netns with lo only, no CNI), a cgroup under
// /rafter-bench-runc, and a bundle of its own whose root is the one unpacked
// rootfs. Two runs: one container at a time (each removed with
// `runc delete -f` before the next), then as many at once as the pods of the
// burst, all started together, which is the floor for the burst on this
// machine.

const runcCgroupParent = "rafter-bench-runc"

type runcResult struct {
	run, del []time.Duration // sequential runs; sorted
	burst    []time.Duration // the runs started together; sorted
	wall     time.Duration   // of those
}

func benchRunc(ctx context.Context, c config) (res *runcResult, err error) {
	fmt.Fprintf(os.Stderr, "bench-pods: %d x runc run -d, then %d at once\n", c.runcRuns, c.pods)
	dir := filepath.Join(c.workDir, "runc")
	r := &runcBench{runc: c.runc, stateRoot: filepath.Join(runtimeParent, "runc"), dir: dir}
	defer func() {
		if cerr := cleanupRunc(c.runc, r.stateRoot, dir); cerr != nil && err == nil {
			err = cerr
		}
	}()
	rootfs, err := testimage.Rootfs(c.podapp)
	if err != nil {
		return nil, err
	}
	r.rootfs = filepath.Join(dir, "rootfs")
	if err := untar(rootfs, r.rootfs); err != nil {
		return nil, fmt.Errorf("unpack the podapp rootfs: %w", err)
	}
	if out, err := exec.Command(c.runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %w\n%s", err, out)
	}
	if r.spec, err = os.ReadFile(filepath.Join(dir, "config.json")); err != nil {
		return nil, err
	}
	if r.stdio, err = os.Create(filepath.Join(dir, "stdio.log")); err != nil {
		return nil, err
	}
	defer r.stdio.Close()

	res = &runcResult{}
	const warm = 3
	for i := range c.runcRuns + warm {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := fmt.Sprintf("rafter-bench-%03d", i)
		d, err := r.run(id)
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		if err := r.delete(id); err != nil {
			return nil, err
		}
		if i >= warm {
			res.run = append(res.run, d)
			res.del = append(res.del, time.Since(t1))
		}
	}
	sortDurations(res.run)
	sortDurations(res.del)

	var ids []string
	for i := range c.pods {
		id := fmt.Sprintf("rafter-bench-b%03d", i)
		if err := r.bundle(id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	res.burst = make([]time.Duration, len(ids))
	start := time.Now()
	g, _ := errgroup.WithContext(ctx)
	for i, id := range ids {
		g.Go(func() error {
			d, err := r.run(id)
			res.burst[i] = d
			return err
		})
	}
	err = g.Wait()
	res.wall = time.Since(start)
	if err != nil {
		return nil, err
	}
	sortDurations(res.burst)
	g, _ = errgroup.WithContext(ctx)
	g.SetLimit(c.clients)
	for _, id := range ids {
		g.Go(func() error { return r.delete(id) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

type runcBench struct {
	runc, stateRoot string
	dir, rootfs     string
	spec            []byte // `runc spec`'s config.json
	stdio           *os.File
}

// bundle writes the bundle of container id: `runc spec`'s config with /app
// as the process and the image's env, no terminal, the shared rootfs,
// writable (as an overlay is), and a cgroup of its own under runcCgroupParent.
func (r *runcBench) bundle(id string) error {
	var cfg map[string]any
	if err := json.Unmarshal(r.spec, &cfg); err != nil {
		return fmt.Errorf("runc spec's config.json: %w", err)
	}
	process, _ := cfg["process"].(map[string]any)
	root, _ := cfg["root"].(map[string]any)
	linux, _ := cfg["linux"].(map[string]any)
	if process == nil || root == nil || linux == nil {
		return errors.New("runc spec's config.json lacks process, root or linux")
	}
	process["terminal"] = false
	process["args"] = []string{"/app"}
	process["env"] = []string{"PATH=/bin", "FROM_IMAGE=yes"}
	root["path"], root["readonly"] = r.rootfs, false
	cfg["hostname"] = id
	linux["cgroupsPath"] = "/" + runcCgroupParent + "/" + id
	out, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	b := filepath.Join(r.dir, "bundles", id)
	if err := os.MkdirAll(b, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b, "config.json"), out, 0o644)
}

// run writes the container's bundle, then times `runc run -d` and checks
// that the container runs.
func (r *runcBench) run(id string) (time.Duration, error) {
	if _, err := os.Stat(filepath.Join(r.dir, "bundles", id, "config.json")); err != nil {
		if err := r.bundle(id); err != nil {
			return 0, err
		}
	}
	cmd := exec.Command(r.runc, "--root", r.stateRoot, "run", "-d", "--bundle", filepath.Join(r.dir, "bundles", id), id)
	cmd.Stdout, cmd.Stderr = r.stdio, r.stdio
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("runc run -d %s: %w (see %s)", id, err, r.stdio.Name())
	}
	if out, err := exec.Command(r.runc, "--root", r.stateRoot, "state", id).CombinedOutput(); err != nil || !bytes.Contains(out, []byte(`"status": "running"`)) {
		return 0, fmt.Errorf("runc state %s after run -d: %v\n%s", id, err, out)
	}
	return d, nil
}

func (r *runcBench) delete(id string) error {
	if out, err := exec.Command(r.runc, "--root", r.stateRoot, "delete", "-f", id).CombinedOutput(); err != nil {
		return fmt.Errorf("runc delete -f %s: %w\n%s", id, err, out)
	}
	return os.RemoveAll(filepath.Join(r.dir, "bundles", id))
}

// untar unpacks a tar stream of directories, regular files and symlinks into
// dir.
func untar(data []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected tar entry type %c", h.Name, h.Typeflag)
		}
	}
}

// modeBits turns tar's setuid/setgid/sticky bits into os.FileMode's.
func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// cleanupRunc deletes any container left in the state root, then the state
// root, the bundles and the cgroup parent in every hierarchy.
func cleanupRunc(runc, stateRoot, dir string) error {
	var errs []error
	if out, err := exec.Command(runc, "--root", stateRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			if out, err := exec.Command(runc, "--root", stateRoot, "delete", "-f", id).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("runc delete -f %s: %w: %s", id, err, out))
			}
		}
	}
	if err := os.RemoveAll(stateRoot); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(runtimeParent) // only when empty
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + runcCgroupParent)
	if fi, err := os.Stat("/sys/fs/cgroup/" + runcCgroupParent); err == nil && fi.IsDir() {
		dirs = append(dirs, "/sys/fs/cgroup/"+runcCgroupParent)
	}
	for _, d := range dirs {
		removeCgroup(d)
		if _, err := os.Stat(d); err == nil {
			errs = append(errs, fmt.Errorf("cgroup %s left (a runc container still in it?)", d))
		}
	}
	return errors.Join(errs...)
}

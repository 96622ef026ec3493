package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ClaimSource resolves a pod's PersistentVolumeClaims to their bound volumes.
type ClaimSource interface {
	PersistentVolumeClaim(namespace, name string) (*corev1.PersistentVolumeClaim, error)
	PersistentVolume(name string) (*corev1.PersistentVolume, error)
}

// Volumes prepares the volumes of pods under Root/<pod UID>/volumes/<kind>/<name>
// (the kubelet's layout): emptyDir (a directory, or tmpfs for medium Memory),
// hostPath (with its type checks), configMap and secret (files written
// atomically: a timestamped directory, a "..data" link swapped to it, and one
// link per file, so a container never sees half an update), and
// persistentVolumeClaim (the bound PersistentVolume's hostPath or local path).
type Volumes struct {
	Root    string
	Objects ObjectSource
	Claims  ClaimSource
	Clock   Clock
}

// VolumePaths maps a pod's volume names to their host paths.
type VolumePaths map[string]string

// Setup prepares every volume of pod, or refreshes configMap and secret
// contents when called again; it returns the host path of each. An error names
// the volume and, for missing objects, is a *ConfigError with the kubelet's text.
func (v *Volumes) Setup(pod *corev1.Pod) (VolumePaths, error) {
	uid := pod.GetMetadata().GetUid()
	if uid == "" || strings.ContainsAny(uid, "/.") {
		return nil, fmt.Errorf("pod has no usable UID %q", uid)
	}
	ns := pod.GetMetadata().GetNamespace()
	out := VolumePaths{}
	for _, vol := range pod.GetSpec().GetVolumes() {
		name := vol.GetName()
		var path string
		var err error
		switch {
		case vol.GetEmptyDir() != nil:
			path, err = v.emptyDir(uid, name, vol.GetEmptyDir())
		case vol.GetHostPath() != nil:
			path, err = hostPath(vol.GetHostPath().GetPath(), vol.GetHostPath().Type)
		case vol.GetConfigMap() != nil:
			src := vol.GetConfigMap()
			path = v.dir(uid, "kubernetes.io~configmap", name)
			var files map[string][]byte
			cm, gerr := v.Objects.ConfigMap(ns, src.GetName())
			switch {
			case errors.Is(gerr, ErrNotFound) && src.GetOptional():
				files = map[string][]byte{}
			case gerr != nil:
				err = objectError("configmap", src.GetName(), gerr)
			default:
				files = map[string][]byte{}
				for k, val := range cm.GetData() {
					files[k] = []byte(val)
				}
				maps.Copy(files, cm.GetBinaryData())
			}
			if err == nil {
				err = v.project(path, files, src.GetItems(), src.DefaultMode, src.GetOptional(), "configmap")
			}
		case vol.GetSecret() != nil:
			src := vol.GetSecret()
			path = v.dir(uid, "kubernetes.io~secret", name)
			var files map[string][]byte
			s, gerr := v.Objects.Secret(ns, src.GetSecretName())
			switch {
			case errors.Is(gerr, ErrNotFound) && src.GetOptional():
				files = map[string][]byte{}
			case gerr != nil:
				err = objectError("secret", src.GetSecretName(), gerr)
			default:
				files = maps.Clone(s.GetData())
			}
			if err == nil {
				err = v.project(path, files, src.GetItems(), src.DefaultMode, src.GetOptional(), "secret")
			}
		case vol.GetPersistentVolumeClaim() != nil:
			path, err = v.claim(ns, vol.GetPersistentVolumeClaim().GetClaimName())
		default:
			err = &ConfigError{Message: fmt.Sprintf("volume %q: this agent supports emptyDir, hostPath, configMap, secret and persistentVolumeClaim volumes", name)}
		}
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				return nil, &ConfigError{Message: fmt.Sprintf("volume %q: %s", name, ce.Message)}
			}
			return nil, fmt.Errorf("volume %q: %w", name, err)
		}
		out[name] = path
	}
	return out, nil
}

func (v *Volumes) dir(uid, kind, name string) string {
	return filepath.Join(v.Root, uid, "volumes", kind, name)
}

func (v *Volumes) emptyDir(uid, name string, src *corev1.EmptyDirVolumeSource) (string, error) {
	path := v.dir(uid, "kubernetes.io~empty-dir", name)
	if err := os.MkdirAll(path, 0o777); err != nil {
		return "", err
	}
	if err := os.Chmod(path, 0o777); err != nil { // as the kubelet: any container user may write
		return "", err
	}
	if src.GetMedium() != "Memory" || isMountPoint(path) {
		return path, nil
	}
	opts := "mode=0777"
	if sl := src.GetSizeLimit(); sl != nil {
		q, err := Quantity(sl)
		if err != nil {
			return "", &ConfigError{Message: fmt.Sprintf("sizeLimit: %v", err)}
		}
		opts += ",size=" + strconv.FormatInt(q.Value(), 10)
	}
	if err := unix.Mount("tmpfs", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", path, err)
	}
	return path, nil
}

// isMountPoint reports whether path is a mount point (its device differs from
// its parent's).
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// hostPath checks (and for the *OrCreate types, makes) a hostPath volume.
func hostPath(path string, typ *string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", &ConfigError{Message: fmt.Sprintf("hostPath %q must be an absolute path", path)}
	}
	t := ""
	if typ != nil {
		t = *typ
	}
	fi, err := os.Stat(path)
	exists := err == nil
	fail := func(what string) (string, error) {
		return "", &ConfigError{Message: fmt.Sprintf("hostPath type check failed: %s is not %s", path, what)}
	}
	switch t {
	case "":
	case "DirectoryOrCreate":
		if !exists {
			if err := os.MkdirAll(path, 0o755); err != nil {
				return "", err
			}
		} else if !fi.IsDir() {
			return fail("a directory")
		}
	case "Directory":
		if !exists || !fi.IsDir() {
			return fail("a directory")
		}
	case "FileOrCreate":
		if !exists {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return "", err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			f.Close()
		} else if !fi.Mode().IsRegular() {
			return fail("a file")
		}
	case "File":
		if !exists || !fi.Mode().IsRegular() {
			return fail("a file")
		}
	case "Socket":
		if !exists || fi.Mode()&fs.ModeSocket == 0 {
			return fail("a socket file")
		}
	case "CharDevice":
		if !exists || fi.Mode()&fs.ModeCharDevice == 0 {
			return fail("a character device")
		}
	case "BlockDevice":
		if !exists || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
			return fail("a block device")
		}
	default:
		return "", &ConfigError{Message: fmt.Sprintf("hostPath type %q is not supported", t)}
	}
	return path, nil
}

// claim resolves a PersistentVolumeClaim to the host path of its bound volume.
func (v *Volumes) claim(ns, name string) (string, error) {
	if v.Claims == nil {
		return "", &ConfigError{Message: "persistentVolumeClaim volumes are not supported here"}
	}
	pvc, err := v.Claims.PersistentVolumeClaim(ns, name)
	if err != nil {
		return "", objectError("persistentvolumeclaim", name, err)
	}
	if pvc.GetStatus().GetPhase() != "Bound" || pvc.GetSpec().GetVolumeName() == "" {
		return "", &ConfigError{Message: fmt.Sprintf("persistentvolumeclaim %q is not bound", name)}
	}
	pv, err := v.Claims.PersistentVolume(pvc.GetSpec().GetVolumeName())
	if err != nil {
		return "", objectError("persistentvolume", pvc.GetSpec().GetVolumeName(), err)
	}
	switch {
	case pv.GetSpec().GetHostPath() != nil:
		return hostPath(pv.GetSpec().GetHostPath().GetPath(), pv.GetSpec().GetHostPath().Type)
	case pv.GetSpec().GetLocal() != nil:
		return hostPath(pv.GetSpec().GetLocal().GetPath(), nil)
	}
	return "", &ConfigError{Message: fmt.Sprintf("persistentvolume %q: only hostPath and local volumes can be mounted by this agent", pv.GetMetadata().GetName())}
}

// project writes files (all keys, or the items chosen) into dir the way the
// kubelet's atomic writer does. Modes come from item.mode, else defaultMode,
// else 0644.
func (v *Volumes) project(dir string, data map[string][]byte, items []*corev1.KeyToPath, defaultMode *int32, optional bool, kind string) error {
	mode := fs.FileMode(0o644)
	if defaultMode != nil {
		mode = fs.FileMode(*defaultMode) & fs.ModePerm
	}
	files := map[string]projected{}
	if len(items) == 0 {
		for k, d := range data {
			files[k] = projected{d, mode}
		}
	}
	for _, it := range items {
		d, ok := data[it.GetKey()]
		if !ok {
			if optional {
				continue
			}
			return &ConfigError{Message: fmt.Sprintf("%s references non-existent config key: %s", kind, it.GetKey())}
		}
		m := mode
		if it.Mode != nil {
			m = fs.FileMode(it.GetMode()) & fs.ModePerm
		}
		files[it.GetPath()] = projected{d, m}
	}
	for p := range files {
		if filepath.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") || p == "" || strings.HasPrefix(p, "..") {
			return &ConfigError{Message: fmt.Sprintf("invalid path %q in %s volume", p, kind)}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if sameProjection(dir, files) {
		return nil // a refresh with nothing new writes nothing
	}
	now := time.Now()
	if v.Clock != nil {
		now = v.Clock.Now()
	}
	ts, err := os.MkdirTemp(dir, now.UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	for p, f := range files {
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(full, f.mode); err != nil {
			return err
		}
	}
	// Swap ..data to the new directory in one rename, then make sure every
	// top-level name links through it and nothing else remains.
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		return err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	top := map[string]bool{}
	for p := range files {
		top[strings.SplitN(p, "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") {
			continue
		}
		if !top[n] {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	for n := range top {
		link := filepath.Join(dir, n)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", n) {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(filepath.Join("..data", n), link); err != nil {
			return err
		}
	}
	if old != "" && old != filepath.Base(ts) {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// projected is one file of a configMap or secret volume.
type projected struct {
	data []byte
	mode fs.FileMode
}

// sameProjection reports whether dir's current data (behind ..data) is exactly
// want: the same paths, contents and modes.
func sameProjection(dir string, want map[string]projected) bool {
	target, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		return false
	}
	data := filepath.Join(dir, target)
	seen := 0
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(data, path)
		w, ok := want[rel]
		info, ierr := d.Info()
		if !ok || ierr != nil || info.Mode().Perm() != w.mode {
			return errDiffers
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil || !bytes.Equal(b, w.data) {
			return errDiffers
		}
		seen++
		return nil
	})
	return err == nil && seen == len(want)
}

var errDiffers = errors.New("projection differs")

// TearDown unmounts what Setup mounted for the pod with this UID and removes
// its volume directories. Host paths are never touched.
func (v *Volumes) TearDown(uid string) error {
	if uid == "" || strings.ContainsAny(uid, "/.") {
		return fmt.Errorf("invalid pod UID %q", uid)
	}
	base := filepath.Join(v.Root, uid)
	empty := filepath.Join(base, "volumes", "kubernetes.io~empty-dir")
	entries, _ := os.ReadDir(empty)
	for _, e := range entries {
		p := filepath.Join(empty, e.Name())
		if isMountPoint(p) {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
	}
	return os.RemoveAll(base)
}

// Mount is one bind mount of a volume into a container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ContainerMounts turns c's volumeMounts into bind mounts from paths (from
// Setup). subPath must stay inside its volume; it is created as a directory
// when missing, as the kubelet does.
func ContainerMounts(c *corev1.Container, paths VolumePaths) ([]Mount, error) {
	var out []Mount
	for _, vm := range c.GetVolumeMounts() {
		src, ok := paths[vm.GetName()]
		if !ok {
			return nil, &ConfigError{Message: fmt.Sprintf("volumeMount %q of container %q names no volume of the pod", vm.GetName(), c.GetName())}
		}
		if sp := vm.GetSubPath(); sp != "" {
			if filepath.IsAbs(sp) || slices.Contains(strings.Split(filepath.ToSlash(sp), "/"), "..") {
				return nil, &ConfigError{Message: fmt.Sprintf("subPath %q of volumeMount %q must be a relative path inside the volume", sp, vm.GetName())}
			}
			src = filepath.Join(src, sp)
			if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, Mount{Source: src, Destination: vm.GetMountPath(), ReadOnly: vm.GetReadOnly()})
	}
	return out, nil
}

package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount mounts the root filesystem of container containerID: an overlayfs
// with the image's layer directories as lower dirs (top first) and an upper
// and work dir private to the container under root/containers/<id>. It
// returns the rootfs path. Mounting a container that is already mounted
// returns the same path and changes nothing, whatever img is. Mount and
// Unmount calls are serialized; ErrLayerMissing means img's layers are not
// in this store.
func (s *Store) Mount(containerID string, img *Image) (string, error) {
	if err := checkContainerID(containerID); err != nil {
		return "", err
	}
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	dir := s.path("containers", containerID)
	rootfs := filepath.Join(dir, "rootfs")
	mounted, err := mountinfo.Mounted(rootfs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("mount %s: %w", containerID, err)
	}
	if mounted {
		return rootfs, nil
	}
	// Top first. A layer listed twice (identical diffs) is kept where it is
	// topmost: overlayfs refuses a lower dir twice, and the lower copy can
	// change nothing the upper copy does not set again.
	lowers := make([]string, 0, len(img.Layers))
	seen := map[string]bool{}
	for i := len(img.Layers) - 1; i >= 0; i-- {
		l := img.Layers[i]
		if filepath.Dir(l) != s.path("layers") || !exists(l) {
			return "", fmt.Errorf("mount %s: %w: %s", containerID, ErrLayerMissing, l)
		}
		if !seen[l] {
			seen[l] = true
			lowers = append(lowers, l)
		}
	}
	if len(lowers) == 0 {
		lowers = []string{s.path("empty")} // an image with no layers: overlayfs needs one lower dir
	}
	fresh := !exists(dir)
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	err = nil
	for _, d := range []string{upper, work, rootfs} {
		if err == nil {
			err = os.MkdirAll(d, 0o755)
		}
	}
	if err == nil {
		err = mountOverlay(lowers, upper, work, rootfs)
	}
	if err != nil {
		if fresh {
			os.RemoveAll(dir)
		}
		return "", fmt.Errorf("mount %s: %w", containerID, err)
	}
	return rootfs, nil
}

// mountOverlay mounts an overlayfs at target. The mount options must fit in
// a page; when the layer paths do not, each lower dir is passed as a short
// /proc/self/fd/N path of an O_PATH descriptor held open during the mount.
func mountOverlay(lowers []string, upper, work, target string) error {
	opts := func(lowers []string) string {
		return "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	}
	data := opts(lowers)
	if len(data) >= maxMountData {
		short := make([]string, len(lowers))
		for i, l := range lowers {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		data = opts(short)
		if len(data) >= maxMountData {
			return fmt.Errorf("%d layers do not fit in overlay mount options", len(lowers))
		}
	}
	return unix.Mount("overlay", target, "overlay", 0, data)
}

// maxMountData is the size limit of mount(2)'s data: one page, with its NUL.
// A variable so tests can force the descriptor path.
var maxMountData = os.Getpagesize()

// Unmount unmounts container containerID's rootfs (lazily if it is busy)
// and removes its directories. Unmounting a container that is not mounted,
// or does not exist, is not an error.
func (s *Store) Unmount(containerID string) error {
	if err := checkContainerID(containerID); err != nil {
		return err
	}
	s.mountMu.Lock()
	defer s.mountMu.Unlock()
	dir := s.path("containers", containerID)
	rootfs := filepath.Join(dir, "rootfs")
	mounted, err := mountinfo.Mounted(rootfs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmount %s: %w", containerID, err)
	}
	if mounted {
		err := unix.Unmount(rootfs, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(rootfs, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", containerID, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("unmount %s: %w", containerID, err)
	}
	return nil
}

// Mounted returns the IDs of the containers whose rootfs is mounted, sorted.
func (s *Store) Mounted() ([]string, error) {
	prefix := s.path("containers") + "/"
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(s.path("containers")))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, m := range infos {
		rest := strings.TrimPrefix(m.Mountpoint, prefix)
		id, tail, ok := strings.Cut(rest, "/")
		if !ok || tail != "rootfs" || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

func checkContainerID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/,:\x00") {
		return fmt.Errorf("%w: %q", ErrInvalidContainerID, id)
	}
	return nil
}

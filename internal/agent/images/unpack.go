package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."     // aufs bookkeeping (".wh..wh.plnk", ...), ignored
	whiteoutOpaque = ".wh..wh..opq" // the directory hides everything below it
)

// errRootEscape is the error os.Root returns for a name that leaves its
// directory, directly or through a symlink. The os package does not export
// it, so it is learned once by asking for "..".
var errRootEscape = func() error {
	r, err := os.OpenRoot("/")
	if err != nil {
		return nil
	}
	defer r.Close()
	_, err = r.Open("../x")
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return nil
}()

// unsafe turns os.Root's escape error into ErrUnsafeLayer.
func unsafe(err error) error {
	if errRootEscape != nil && errors.Is(err, errRootEscape) {
		return fmt.Errorf("%w: %w", ErrUnsafeLayer, err)
	}
	return err
}

// unpackLayer extracts the layer tar r into dir (empty, on a filesystem that
// supports overlayfs whiteouts and trusted xattrs) and reads r to its end.
//
// Every write goes through an os.Root on dir, or through a directory file
// descriptor obtained from it, with the last path component never followed:
// an entry named with "..", or reached through a symlink that leaves dir, is
// an ErrUnsafeLayer and nothing is written outside dir. Symlinks themselves
// may point anywhere: their targets are resolved inside the container.
//
// OCI whiteouts become overlayfs ones: ".wh.NAME" a 0/0 character device
// NAME, ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory.
// A hardlink to a file of a lower layer (lowers, top first) becomes a copy.
// Block and character devices are skipped (the runtime provides /dev).
func unpackLayer(ctx context.Context, dir string, r io.Reader, lowers []string, log *slog.Logger) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, lowers: lowers, log: log}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, unsafe(err))
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	return u.finish()
}

type unpacker struct {
	root   *os.Root
	lowers []string
	log    *slog.Logger
	dirs   []dirTimes // directory times, set last: adding entries changes them
}

type dirTimes struct {
	path         string
	atime, mtime time.Time
}

// cleanName turns a tar entry name into a clean path relative to the layer
// ("." for the layer root). Leading slashes are dropped; any ".." component
// is an ErrUnsafeLayer.
func cleanName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q has a \"..\" component", ErrUnsafeLayer, name)
		}
	}
	return path.Clean("./" + n), nil
}

func splitPath(p string) (dir, base string) {
	dir, base = path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// openDir opens directory dir of the layer, creating missing parents (0755,
// as docker does for entries whose directory the tar never lists).
func (u *unpacker) openDir(dir string) (*os.File, error) {
	if dir != "." {
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return u.root.Open(dir)
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if p == "." {
		return nil // the layer root: the merged root's attributes come from the container's upper dir
	}
	dir, base := splitPath(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		u.log.Debug("skipping device node in layer", "path", p)
		return nil
	default:
		u.log.Debug("skipping unsupported layer entry", "path", p, "type", string(hdr.Typeflag))
		return nil
	}

	parent, err := u.openDir(dir)
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())

	// Whatever this layer already has under the name is replaced, except a
	// directory by a directory (which keeps its contents).
	var st unix.Stat_t
	existingDir := false
	switch err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		existingDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		if hdr.Typeflag != tar.TypeDir || !existingDir {
			if err := u.root.RemoveAll(p); err != nil {
				return err
			}
			existingDir = false
		}
	case !errors.Is(err, unix.ENOENT):
		return err
	}

	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !existingDir {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = u.fdMeta(fd, hdr, mode)
		unix.Close(fd)
		if err != nil {
			return err
		}
		u.dirs = append(u.dirs, dirTimes{path: p, atime: accessTime(hdr), mtime: hdr.ModTime})
		return nil
	case tar.TypeReg:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), base)
		_, err = io.Copy(f, body)
		if err == nil {
			err = u.fdMeta(int(f.Fd()), hdr, mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
			return err
		}
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return err
		}
	case tar.TypeLink:
		return u.hardlink(p, pfd, base, hdr)
	}
	return setTimes(pfd, base, accessTime(hdr), hdr.ModTime)
}

// fdMeta sets owner, mode and xattrs of a file or directory open as fd, in
// that order: chown clears set-id bits and file capabilities.
func (u *unpacker) fdMeta(fd int, hdr *tar.Header, mode uint32) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		// trusted.* (overlayfs' own: opaque, redirect, metacopy) and
		// security.* other than capabilities are not an image's to set.
		if !strings.HasPrefix(attr, "user.") && attr != "security.capability" {
			u.log.Debug("skipping xattr in layer", "path", hdr.Name, "xattr", attr)
			continue
		}
		if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	return nil
}

// whiteout records that this layer deletes dir/NAME (".wh.NAME") or hides
// all of dir below it (".wh..wh..opq").
func (u *unpacker) whiteout(dir, base string) error {
	parent, err := u.openDir(dir)
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	if base == whiteoutOpaque {
		return unix.Fsetxattr(pfd, "trusted.overlay.opaque", []byte("y"), 0)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		u.log.Debug("skipping whiteout metadata in layer", "path", path.Join(dir, base))
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafeLayer, path.Join(dir, base))
	}
	if err := u.root.RemoveAll(path.Join(dir, name)); err != nil {
		return err
	}
	return unix.Mknodat(pfd, name, unix.S_IFCHR, int(unix.Mkdev(0, 0)))
}

// hardlink creates p (base in directory pfd) as a hardlink to the entry's
// Linkname in this layer, or as a copy of it from the nearest lower layer
// that has it: overlayfs cannot link across layers.
func (u *unpacker) hardlink(p string, pfd int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return err
	}
	if target == "." || target == p {
		return fmt.Errorf("hardlink to %q", hdr.Linkname)
	}
	if _, err := u.root.Lstat(target); err == nil {
		return u.root.Link(target, p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, lower := range u.lowers {
		done, err := u.copyFromLower(lower, target, pfd, base)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("hardlink target %q is in no layer", hdr.Linkname)
}

// copyFromLower copies lower/target to base in pfd if lower has it. A
// whiteout of target in lower ends the search: done with an error.
func (u *unpacker) copyFromLower(lower, target string, pfd int, base string) (bool, error) {
	lr, err := os.OpenRoot(lower)
	if err != nil {
		return false, err
	}
	defer lr.Close()
	fi, err := lr.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, unsafe(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("stat %s: no unix stat", target)
	}
	atime := time.Unix(st.Atim.Unix())
	switch {
	case fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0:
		return true, fmt.Errorf("hardlink target %q is deleted by a lower layer", target)
	case fi.Mode().IsRegular():
		src, err := lr.Open(target)
		if err != nil {
			return true, err
		}
		defer src.Close()
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return true, err
		}
		dst := os.NewFile(uintptr(fd), base)
		_, err = io.Copy(dst, src)
		if err == nil {
			err = unix.Fchown(fd, int(st.Uid), int(st.Gid))
		}
		if err == nil {
			err = unix.Fchmod(fd, st.Mode&0o7777)
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return true, err
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := lr.Readlink(target)
		if err != nil {
			return true, err
		}
		if err := unix.Symlinkat(link, pfd, base); err != nil {
			return true, err
		}
		if err := unix.Fchownat(pfd, base, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return true, err
		}
	default:
		return true, fmt.Errorf("hardlink target %q is a %v", target, fi.Mode().Type())
	}
	u.log.Debug("hardlink to a lower layer copied", "target", target)
	return true, setTimes(pfd, base, atime, fi.ModTime())
}

// finish sets directory times, deepest last-listed first.
func (u *unpacker) finish() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		dir, base := splitPath(d.path)
		parent, err := u.root.Open(dir)
		if err != nil {
			return unsafe(err)
		}
		err = setTimes(int(parent.Fd()), base, d.atime, d.mtime)
		parent.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

// setTimes sets the times of base in directory pfd without following a
// symlink.
func setTimes(pfd int, base string, atime, mtime time.Time) error {
	ts := []unix.Timespec{
		{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
	return unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

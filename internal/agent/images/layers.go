package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/rafter-dev/rafter/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// importImage unpacks every layer of img the store lacks and returns the
// record to store under digest. For a remote image only the missing layers
// are downloaded.
func (s *Store) importImage(ctx context.Context, digest string, img v1.Image) (*imageRecord, error) {
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}
	open := make([]func() (io.ReadCloser, error), len(layers))
	for i, l := range layers {
		open[i] = l.Uncompressed
	}
	return s.importLayers(ctx, digest, id.String(), cfg, open)
}

// importLayers unpacks the layers the store lacks, lowest first; open[i]
// gives the uncompressed tar stream of the layer with the config's i-th
// diffID and is called only if that layer is missing.
func (s *Store) importLayers(ctx context.Context, digest, id string, cfg *v1.ConfigFile, open []func() (io.ReadCloser, error)) (*imageRecord, error) {
	// An index was already resolved to this platform; a lone image for
	// another one would only fail later, at exec.
	if cfg.OS != "" && cfg.OS != nodePlatform.OS || cfg.Architecture != "" && cfg.Architecture != nodePlatform.Architecture {
		return nil, fmt.Errorf("image is for %s/%s, node is %s/%s", cfg.OS, cfg.Architecture, nodePlatform.OS, nodePlatform.Architecture)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(open) {
		return nil, fmt.Errorf("image config lists %d layers, manifest %d", len(diffIDs), len(open))
	}
	rec := &imageRecord{Digest: digest, ID: id, Config: imageConfig(cfg)}
	var lowers []string // top first
	for i, d := range diffIDs {
		if err := s.ensureLayer(ctx, d, open[i], lowers); err != nil {
			return nil, err
		}
		rec.DiffIDs = append(rec.DiffIDs, d.String())
		lowers = append([]string{s.layerDir(d.String())}, lowers...)
	}
	return rec, nil
}

// ensureLayer makes root/layers/<diffID hex> exist, unpacking open's tar
// stream into it if it does not. Concurrent calls for one diffID share one
// unpack; a caller whose own ctx is alive retries if the unpack it waited
// for was cancelled by another caller's ctx. lowers are the directories of
// the layers below, top first, for hardlinks to lower layers.
func (s *Store) ensureLayer(ctx context.Context, diffID v1.Hash, open func() (io.ReadCloser, error), lowers []string) error {
	dir := s.layerDir(diffID.String())
	if exists(dir) {
		return nil
	}
	for {
		ch := s.layerFlight.DoChan(diffID.String(), func() (any, error) {
			if exists(dir) {
				return nil, nil
			}
			return nil, s.unpack(ctx, diffID, open, lowers)
		})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case res := <-ch:
			if res.Err != nil && res.Shared && ctx.Err() == nil &&
				(errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded)) {
				continue
			}
			return res.Err
		}
	}
}

// unpack extracts one layer into a staging directory, checks that the
// uncompressed stream hashes to diffID, flushes it to disk and renames it
// into place, so root/layers never holds a partial layer.
func (s *Store) unpack(ctx context.Context, diffID v1.Hash, open func() (io.ReadCloser, error), lowers []string) error {
	rc, err := open()
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer rc.Close()
	tmp, err := os.MkdirTemp(s.path("tmp"), "layer-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			if err := os.RemoveAll(tmp); err != nil {
				s.log.Warn("removing staged layer", "dir", tmp, "err", err)
			}
		}
	}()
	h := sha256.New()
	if err := unpackLayer(ctx, tmp, io.TeeReader(rc, h), lowers, s.log); err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID.String() {
		return fmt.Errorf("layer %s: uncompressed content has digest %s", diffID, got)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := syncFS(tmp); err != nil {
		return fmt.Errorf("layer %s: sync: %w", diffID, err)
	}
	dir := s.layerDir(diffID.String())
	if err := os.Rename(tmp, dir); err != nil {
		if exists(dir) {
			return nil // unpacked meanwhile by someone else; ours is removed
		}
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	done = true
	if err := atomicfile.SyncDir(s.path("layers")); err != nil {
		return fmt.Errorf("layer %s: sync: %w", diffID, err)
	}
	s.log.Debug("unpacked layer", "diffID", diffID.String())
	return nil
}

// syncFS flushes the filesystem holding dir: one syscall instead of an fsync
// per unpacked file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

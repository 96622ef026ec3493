package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMaliciousLayers(t *testing.T) {
	reg := newTestRegistry(t, "", "")
	outside := t.TempDir()
	deep := strings.Repeat("../", 30) + strings.TrimPrefix(outside, "/")
	cases := map[string][]tarEntry{
		"dotdot file":           {file("../../../../"+strings.TrimPrefix(outside, "/")+"/pwned", "x")},
		"dotdot inside":         {dir("a/"), file("a/../../pwned", "x")},
		"absolute symlink dir":  {symlink("evil", outside), file("evil/pwned", "x")},
		"relative symlink dir":  {symlink("evil", deep), file("evil/pwned", "x")},
		"nested symlink":        {dir("d/"), symlink("d/up", ".."), symlink("esc", "d/up/.."), file("esc/pwned", "x")},
		"hardlink dotdot":       {hardlink("hl", "../../../../etc/passwd")},
		"hardlink via symlink":  {symlink("etc", "/etc"), hardlink("hl", "etc/passwd")},
		"whiteout via symlink":  {symlink("evil", outside), file("evil/.wh.victim", "")},
		"opaque via symlink":    {symlink("evil", outside), file("evil/.wh..wh..opq", "")},
		"dir through symlink":   {symlink("evil", outside), dir("evil/sub/")},
		"symlink over symlink":  {symlink("evil", outside), symlink("evil/x", "/")},
		"fifo through symlink":  {symlink("evil", outside), {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "evil/fifo", Mode: 0o644}}},
		"dotdot whiteout":       {file(".wh...", "")},
		"dotdot in link target": {dir("a/"), hardlink("a/hl", "a/../../x")},
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{})
	i := 0
	for nameOf, entries := range cases {
		i++
		t.Run(nameOf, func(t *testing.T) {
			l := layer(t, entries...)
			ref := reg.push(t, fmt.Sprintf("evil/case%d:v1", i), image(t, l))
			_, err := s.Ensure(context.Background(), ref, PullIfNotPresent, nil)
			if err == nil {
				t.Fatal("malicious layer accepted")
			}
			if !errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("error %v is not ErrUnsafeLayer", err)
			}
			t.Logf("rejected: %v", err)
			diffID, _ := l.DiffID()
			assertAbsent(t, filepath.Join(s.root, "layers", diffID.Hex))
			if _, ok := s.Get(ref); ok {
				t.Error("rejected image is in the store")
			}
		})
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "victim" || readFile(t, filepath.Join(outside, "victim")) != "keep" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("something was written outside the layer: %v", names)
	}
	if fi, err := os.Stat("/etc/passwd"); err != nil || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("/etc/passwd gained a link: %v", err)
	}
	if staged, _ := os.ReadDir(filepath.Join(s.root, "tmp")); len(staged) != 0 {
		t.Errorf("staging dir not cleaned: %d entries", len(staged))
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		unsafe   bool
	}{
		{"a/b", "a/b", false},
		{"./a/b/", "a/b", false},
		{"/abs/x", "abs/x", false},
		{"./", ".", false},
		{"a//b/./c", "a/b/c", false},
		{"../x", "", true},
		{"a/../../x", "", true},
		{"a/..", "", true},
		{"..", "", true},
		{"a/..b", "a/..b", false},
	}
	for _, tt := range tests {
		got, err := cleanName(tt.in)
		if (err != nil) != tt.unsafe || got != tt.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q, unsafe=%v", tt.in, got, err, tt.want, tt.unsafe)
		}
	}
}

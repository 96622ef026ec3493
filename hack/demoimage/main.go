// Command demoimage writes the demo image `make run` loads onto the local node:
// e2e/testdata/podapp built into an image (internal/testimage), saved as a
// docker-save tarball for `ctl image load`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rafter-dev/rafter/internal/testimage"
)

func main() {
	out := flag.String("o", ".run/demo.tar", "tarball to write")
	tag := flag.String("tag", "rafter.local/demo:1", "image name and tag")
	flag.Parse()
	if err := run(*out, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "demoimage:", err)
		os.Exit(1)
	}
}

func run(out, tag string) error {
	dir, err := os.MkdirTemp("", "rafter-demoimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := testimage.BuildPodapp(".", dir)
	if err != nil {
		return err
	}
	img, err := testimage.Image(bin)
	if err != nil {
		return err
	}
	if err := testimage.WriteTarball(img, tag, out); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s)\n", out, tag)
	return nil
}

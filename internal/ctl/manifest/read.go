package manifest

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// manifestExts are the file name extensions read from directories, as kubectl
// reads them. A file named directly is read whatever its name.
var manifestExts = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// Read reads every document from paths: files, directories (their *.yaml, *.yml
// and *.json files in lexical order; subdirectories only when recursive, like
// kubectl -R) and "-" for stdin, which is read to its end. Objects come back in
// the order of paths, then files, then documents.
//
// A bad document gives one *Error and never stops the others; a source that
// cannot be read gives one *Error with Index -1 (wrapping the I/O error). Read
// does not talk to any server and is safe for concurrent use if stdin is.
func Read(paths []string, recursive bool, stdin io.Reader) ([]Object, []error) {
	var objs []Object
	var errs []error
	add := func(source string, data []byte) {
		o, e := Decode(source, data)
		objs = append(objs, o...)
		errs = append(errs, e...)
	}
	for _, p := range paths {
		if p == "-" {
			if stdin == nil {
				errs = append(errs, &Error{Source: p, Index: -1, Msg: "no standard input to read"})
				continue
			}
			data, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, sourceError(p, err))
				continue
			}
			add(p, data)
			continue
		}
		files, err := manifestFiles(p, recursive)
		if err != nil {
			errs = append(errs, sourceError(p, err))
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, sourceError(f, err))
				continue
			}
			add(f, data)
		}
	}
	return objs, errs
}

// errNoManifests is returned by manifestFiles for a directory holding no file
// with a manifest extension.
var errNoManifests = errors.New("no .json, .yaml or .yml files")

// manifestFiles lists the files path stands for: itself when it is not a
// directory, else its manifest files in lexical order, descending into
// subdirectories only when recursive.
func manifestFiles(path string, recursive bool) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if manifestExts[filepath.Ext(p)] {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errNoManifests
	}
	return files, nil
}

// sourceError reports that source could not be read. The message leaves out
// the path that os errors repeat, since Error names the source already.
func sourceError(source string, err error) *Error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == source {
		msg = pe.Err.Error()
	}
	return &Error{Source: source, Index: -1, Msg: msg, Err: err}
}

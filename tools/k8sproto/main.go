// Command k8sproto generates Rafter's Kubernetes-shaped protobuf schema from the
// Go types of k8s.io/api, by reflection over the structs and their json tags:
// proto field names are Kubernetes' JSON names, so protojson's JSON of the
// generated messages is Kubernetes' JSON.
//
// It writes, under -proto: rafter/<group>/v1/types.proto for every Go package
// reached from the kinds, rafter/<group>/v1/services.proto for every group with
// kinds, and rafter/meta/v1/requests.proto; and it writes -kinds (the kinds
// table, gen/rafter/kinds/kinds.go). Field numbers are append-only: an existing
// types.proto is parsed and its numbers kept. Run it through gen.sh, which then
// runs buf generate.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
)

func main() {
	protoRoot := flag.String("proto", "proto/api", "root of the proto source tree")
	kindsOut := flag.String("kinds", "gen/rafter/kinds/kinds.go", "output path of the kinds table")
	flag.Parse()
	files, err := generate(*protoRoot, *kindsOut)
	if err != nil {
		log.Fatalf("k8sproto: %v", err)
	}
	if err := writeFiles(files); err != nil {
		log.Fatalf("k8sproto: %v", err)
	}
}

// generate builds every output file in memory, keyed by path. It reads the
// existing types.proto files under protoRoot to keep their field numbers.
func generate(protoRoot, kindsOut string) (map[string][]byte, error) {
	s, err := buildSchema(kindTable, extraTypes)
	if err != nil {
		return nil, fmt.Errorf("reflect k8s types: %w", err)
	}
	files := map[string][]byte{}
	byPkg := map[*protoPackage][]kindSpec{}
	for _, k := range kindTable {
		pkg, _ := packageByGoPath(k.Object.PkgPath())
		byPkg[pkg] = append(byPkg[pkg], k)
	}
	for _, pkg := range packages {
		msgs := s.messages[pkg]
		if len(msgs) == 0 {
			return nil, fmt.Errorf("package %s: no types reachable from the kinds", pkg.GoPath)
		}
		path := filepath.Join(protoRoot, typesFile(pkg))
		prev, err := readPrevious(path)
		if err != nil {
			return nil, err
		}
		defined := map[string]bool{}
		for _, m := range msgs {
			p := prev[m.Name]
			if p == nil && pkg.Short == "meta" && reusableRequestTypes[m.Name] {
				// Moving from requests.proto to types.proto keeps the wire numbers.
				if p, err = requestNumbers(m.Name); err != nil {
					return nil, err
				}
			}
			m.Reserved = assignNumbers(m, p)
			defined[m.Name] = true
		}
		files[path] = renderTypes(pkg, msgs, sourceOf(pkg))
		if pkg.Short == "meta" {
			b, err := renderRequests(pkg, defined)
			if err != nil {
				return nil, err
			}
			files[filepath.Join(protoRoot, requestsFile)] = b
		}
		if ks := byPkg[pkg]; len(ks) > 0 {
			b, err := renderServices(pkg, ks, defined)
			if err != nil {
				return nil, err
			}
			files[filepath.Join(protoRoot, servicesFile(pkg))] = b
		}
	}
	b, err := renderKinds(kindTable)
	if err != nil {
		return nil, err
	}
	files[kindsOut] = b
	return files, nil
}

// readPrevious parses the existing generated file at path; a missing file has
// no previous numbers.
func readPrevious(path string) (map[string]*previousMessage, error) {
	src, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read previous numbers: %w", err)
	}
	prev, err := parsePrevious(string(src))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return prev, nil
}

// sourceOf names the Go package and module version a types.proto comes from.
func sourceOf(pkg *protoPackage) string {
	mod := "k8s.io/api"
	if pkg.Short == "meta" {
		mod = "k8s.io/apimachinery"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == mod {
				return pkg.GoPath + " (" + mod + " " + d.Version + ")"
			}
		}
	}
	return pkg.GoPath
}

// writeFiles writes every file whose content changed, creating directories.
func writeFiles(files map[string][]byte) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := os.WriteFile(p, files[p], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

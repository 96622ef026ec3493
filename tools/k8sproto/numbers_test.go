package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func testMessage(names ...string) *message {
	m := &message{Pkg: &protoPackage{Short: "test"}, Name: "Thing"}
	for _, n := range names {
		m.Fields = append(m.Fields, &field{Name: n, Type: "string"})
	}
	return m
}

// renumber renders m as the previous file, then assigns numbers to next from it.
func renumber(t *testing.T, prev, next *message) {
	t.Helper()
	parsed, err := parsePrevious(string(renderTypes(prev.Pkg, []*message{prev}, "test")))
	if err != nil {
		t.Fatal(err)
	}
	next.Reserved = assignNumbers(next, parsed["Thing"])
}

func numbers(m *message) map[string]int {
	out := map[string]int{}
	for _, f := range m.Fields {
		out[f.Name] = f.Number
	}
	return out
}

func reservedNumbers(m *message) []int {
	var out []int
	for _, r := range m.Reserved {
		out = append(out, r.Number)
	}
	return out
}

func TestFieldNumbersAreAppendOnly(t *testing.T) {
	v1 := testMessage("a", "b", "c")
	v1.Reserved = assignNumbers(v1, nil)
	eq(t, "v1", numbers(v1), map[string]int{"a": 1, "b": 2, "c": 3})

	// b removed, x added, order changed: kept numbers stay, b is reserved.
	v2 := testMessage("c", "x", "a")
	renumber(t, v1, v2)
	eq(t, "v2", numbers(v2), map[string]int{"a": 1, "c": 3, "x": 4})
	eq(t, "v2 reserved", reservedNumbers(v2), []int{2})

	// b comes back: it may have a new type, so it gets a new number and 2 stays retired.
	v3 := testMessage("a", "b", "c", "x")
	renumber(t, v2, v3)
	eq(t, "v3", numbers(v3), map[string]int{"a": 1, "b": 5, "c": 3, "x": 4})
	eq(t, "v3 reserved", reservedNumbers(v3), []int{2})

	// Removing the newest field never lets its number be reused.
	v4 := testMessage("a", "b", "c", "y")
	renumber(t, v3, v4)
	eq(t, "v4", numbers(v4), map[string]int{"a": 1, "b": 5, "c": 3, "y": 6})
	eq(t, "v4 reserved", reservedNumbers(v4), []int{2, 4})

	// Rendering the same state again is byte-identical.
	again := testMessage("a", "b", "c", "y")
	renumber(t, v4, again)
	if a, b := renderTypes(v4.Pkg, []*message{v4}, "test"), renderTypes(again.Pkg, []*message{again}, "test"); string(a) != string(b) {
		t.Errorf("not stable:\n%s\n---\n%s", a, b)
	}
}

func TestParsePreviousRejectsWhatItCannotRead(t *testing.T) {
	for name, src := range map[string]string{
		"unknown line":    "message A {\n  oneof x {\n}\n",
		"number reused":   "message A {\n  string a = 1;\n  string b = 1;\n}\n",
		"reserved reused": "message A {\n  string a = 1;\n  reserved 1; // b\n}\n",
		"unclosed":        "message A {\n  string a = 1;\n",
		"field twice":     "message A {\n  string a = 1;\n  int32 a = 2;\n}\n",
	} {
		if _, err := parsePrevious(src); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestGeneratorKeepsNumbers runs the whole generator against an older version
// of core/v1/types.proto in which fields were numbered differently, one field
// did not exist yet and one since-removed field existed.
func TestGeneratorKeepsNumbers(t *testing.T) {
	root := t.TempDir()
	kindsOut := filepath.Join(root, "kinds.go")
	files, err := generate(root, kindsOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(files); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "rafter/core/v1/types.proto")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	podSpec := messageBody(t, string(src), "PodSpec")
	volumes := strconv.Itoa(numberIn(t, podSpec, "volumes"))
	// The "old" file: volumes had number 90, hostIPC did not exist yet (added
	// upstream later), and a since-removed field "legacy" had volumes' number.
	old := podSpec
	old = strings.Replace(old, "repeated Volume volumes = "+volumes+";", "repeated Volume volumes = 90;", 1)
	old = regexp.MustCompile(`\n  bool hostIPC = \d+;`).ReplaceAllString(old, "")
	old = strings.Replace(old, "\n}", "\n  string legacy = "+volumes+";\n}", 1)
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), podSpec, old, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	files, err = generate(root, kindsOut)
	if err != nil {
		t.Fatal(err)
	}
	got := messageBody(t, string(files[path]), "PodSpec")
	eq(t, "volumes keeps its old number", numberIn(t, got, "volumes"), 90)
	eq(t, "new field hostIPC gets the next free number", numberIn(t, got, "hostIPC"), 91)
	if !strings.Contains(got, "reserved "+volumes+"; // legacy") {
		t.Errorf("removed field legacy is not reserved:\n%s", got)
	}
	// Every other message is unchanged.
	rest := strings.Replace(string(files[path]), got, "", 1)
	if want := strings.Replace(string(src), podSpec, "", 1); rest != want {
		t.Error("regenerating changed messages other than PodSpec")
	}
}

// messageBody returns "message Name {...}" from a .proto source.
func messageBody(t *testing.T, src, name string) string {
	t.Helper()
	start := strings.Index(src, "\nmessage "+name+" {\n")
	if start < 0 {
		t.Fatalf("no message %s", name)
	}
	end := strings.Index(src[start:], "\n}\n")
	return src[start+1 : start+end+2]
}

func numberIn(t *testing.T, body, field string) int {
	t.Helper()
	m := regexp.MustCompile(`\s` + field + ` = (\d+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no field %s in\n%s", field, body)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCommittedFilesUpToDate regenerates the protos and kinds.go in memory
// from the committed protos and compares them with the committed files.
// check.sh does the same for everything buf generates as well.
func TestCommittedFilesUpToDate(t *testing.T) {
	files, err := generate("../../proto/api", "../../gen/rafter/kinds/kinds.go")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v (run tools/k8sproto/gen.sh)", path, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run tools/k8sproto/gen.sh", path)
		}
	}
}

// TestReflectedDeleteOptionsKeepRequestNumbers: Eviction reaches
// metav1.DeleteOptions, which moves DeleteOptions and Preconditions from
// requests.proto into meta/v1/types.proto. Generated into an empty tree (no
// previous types.proto), they keep the numbers requests.proto gave them, and
// fields requests.proto did not have get new numbers after them.
func TestReflectedDeleteOptionsKeepRequestNumbers(t *testing.T) {
	root := t.TempDir()
	files, err := generate(root, filepath.Join(root, "kinds.go"))
	if err != nil {
		t.Fatal(err)
	}
	types, err := parsePrevious(string(files[filepath.Join(root, "rafter/meta/v1/types.proto")]))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DeleteOptions", "Preconditions"} {
		fixed, err := requestNumbers(name)
		if err != nil {
			t.Fatal(err)
		}
		got := types[name]
		if got == nil {
			t.Fatalf("types.proto has no %s", name)
		}
		for f, n := range fixed.Numbers {
			if got.Numbers[f] != n {
				t.Errorf("%s.%s = %d, want %d (its number in requests.proto)", name, f, got.Numbers[f], n)
			}
		}
	}
	if n := types["DeleteOptions"].Numbers["ignoreStoreReadErrorWithClusterBreakingPotential"]; n != 8 {
		t.Errorf("DeleteOptions.ignoreStoreReadErrorWithClusterBreakingPotential = %d, want 8 (after the fixed 1-7)", n)
	}
	if strings.Contains(string(files[filepath.Join(root, requestsFile)]), "message DeleteOptions") {
		t.Error("requests.proto still declares DeleteOptions")
	}
}

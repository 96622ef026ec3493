package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// rawDoc is one document of a source, as JSON, before it is looked at: either
// json is set or err says why the document could not even be parsed.
type rawDoc struct {
	index int    // 0-based among the source's non-empty documents
	json  []byte // the document as JSON
	err   *Error // a syntax error; json is nil
}

// splitSource cuts a source into documents and turns each into JSON. A source
// whose first character opens a JSON object or array is read as a stream of
// JSON values; if that fails it is read as YAML (flow-style YAML starts with a
// brace too), unless the file is named *.json. Empty documents are left out.
func splitSource(source string, data []byte) []rawDoc {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		docs, ok := splitJSON(source, data)
		if ok || strings.EqualFold(filepath.Ext(source), ".json") {
			return docs
		}
	}
	return splitYAML(source, data)
}

// splitJSON reads data as a stream of JSON values, one document each. ok is
// false when the stream has a syntax error; docs then ends with that error, as
// nothing after it can be found again.
func splitJSON(source string, data []byte) (docs []rawDoc, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, true
		}
		if err != nil {
			at := int64(len(data))
			var se *json.SyntaxError
			if errors.As(err, &se) {
				at = se.Offset - 1 // Offset counts the bytes read, the bad one included
			}
			msg := err.Error()
			if errors.Is(err, io.ErrUnexpectedEOF) {
				msg = "unexpected end of JSON input"
			}
			docs = append(docs, rawDoc{index: len(docs), err: &Error{
				Source: source, Index: len(docs), Line: lineAt(data, at), Msg: msg,
			}})
			return docs, false
		}
		start := dec.InputOffset() - int64(len(raw))
		if key, at, dup := duplicateJSONKey(raw); dup {
			docs = append(docs, rawDoc{index: len(docs), err: &Error{
				Source: source, Index: len(docs), Line: lineAt(data, start+at),
				Msg: fmt.Sprintf("key %q already set in map", key),
			}})
			continue
		}
		if string(raw) == "null" {
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			compact.Reset()
			compact.Write(raw)
		}
		docs = append(docs, rawDoc{index: len(docs), json: compact.Bytes()})
	}
}

// duplicateJSONKey finds the first key that appears twice in one object of the
// JSON value raw, and the offset in raw just after it. Kubernetes' strict
// decoding rejects duplicate fields; encoding/json would silently keep the last.
func duplicateJSONKey(raw []byte) (key string, at int64, found bool) {
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", 0, false // io.EOF, or an error Decode reported already
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, wantKey: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				top := stack[n-1]
				if top.keys[t] {
					return t, dec.InputOffset(), true
				}
				top.keys[t] = true
				top.wantKey = false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// lineAt is the 1-based line of data that byte offset at falls on.
func lineAt(data []byte, at int64) int {
	if at > int64(len(data)) {
		at = int64(len(data))
	}
	if at < 0 {
		at = 0
	}
	return bytes.Count(data[:at], []byte("\n")) + 1
}

// splitYAML cuts data into YAML documents at "---" lines (a document may also
// end with a "..." line) and converts each with sigs.k8s.io/yaml's strict
// conversion, which rejects duplicate keys. Each document's first line is
// tracked so that YAML errors name the line within the whole file.
func splitYAML(source string, data []byte) []rawDoc {
	var docs []rawDoc
	var cur []byte // the current document's lines
	start := 0     // the 1-based line in data of cur's first line
	flush := func() {
		chunk := cur
		cur = nil
		if blankYAML(chunk) {
			return
		}
		j, err := yaml.YAMLToJSONStrict(chunk)
		switch {
		case err != nil:
			docs = append(docs, rawDoc{index: len(docs), err: yamlError(source, len(docs), start, chunk, err)})
		case string(j) != "null":
			docs = append(docs, rawDoc{index: len(docs), json: j})
		}
	}
	lineNo := 0
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		lineNo++
		if after, ok := marker(line, "---"); ok {
			flush()
			if after = bytes.TrimSpace(after); len(after) > 0 && after[0] != '#' {
				// "--- {a: b}" or "--- |": the document starts on this line.
				start, cur = lineNo, append(cur, line...)
			}
			continue
		}
		if _, ok := marker(line, "..."); ok {
			flush()
			continue
		}
		if len(cur) == 0 {
			start = lineNo
		}
		cur = append(cur, line...)
	}
	flush()
	return docs
}

// marker reports whether line is a YAML document marker m ("---" or "...") at
// column 0, and returns what follows it on the line.
func marker(line []byte, m string) ([]byte, bool) {
	if !bytes.HasPrefix(line, []byte(m)) {
		return nil, false
	}
	after := line[len(m):]
	if len(after) > 0 && after[0] != ' ' && after[0] != '\t' && after[0] != '\r' && after[0] != '\n' {
		return nil, false
	}
	return after, true
}

// blankYAML reports whether chunk holds nothing but blank lines, comments and
// directives (%YAML, %TAG).
func blankYAML(chunk []byte) bool {
	for _, line := range bytes.Split(chunk, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && line[0] != '%' {
			return false
		}
	}
	return true
}

var (
	// yamlLineRE matches the "line N: message" of a go-yaml error.
	yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// yamlError turns a conversion error of the document chunk, which starts at
// line start of source, into an *Error whose Line is within the whole source.
func yamlError(source string, index, start int, chunk []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	e := &Error{Source: source, Index: index, Line: start, Msg: msg}
	fileLine := func(s string) int {
		n, _ := strconv.Atoi(s)
		return start + n - 1
	}
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:"); ok {
		// Duplicate keys and the like: one "  line N: ..." line each.
		var msgs []string
		for _, l := range strings.Split(rest, "\n") {
			l = strings.TrimSpace(l)
			m := yamlLineRE.FindStringSubmatch(l)
			switch {
			case m == nil:
				if l != "" {
					msgs = append(msgs, l)
				}
			case len(msgs) == 0:
				e.Line = fileLine(m[1])
				msgs = append(msgs, m[2])
			default:
				msgs = append(msgs, fmt.Sprintf("line %d: %s", fileLine(m[1]), m[2]))
			}
		}
		e.Msg = strings.Join(msgs, "; ")
		return e
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, e.Msg = fileLine(m[1]), m[2]
		lines := strings.Split(string(chunk), "\n")
		if i := e.Line - start; i >= 0 && i < len(lines) && !strings.Contains(e.Msg, "tab") {
			indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
			if strings.Contains(indent, "\t") {
				e.Msg += " (a tab is used for indentation; YAML allows only spaces)"
			}
		}
	}
	return e
}

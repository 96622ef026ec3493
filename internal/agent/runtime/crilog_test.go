package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var logTime = time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)

func fixedClock() time.Time { return logTime }

func TestCRILogFormat(t *testing.T) {
	long := strings.Repeat("x", maxLogLine+10)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lines", "hello\nworld\n", []string{"stdout F hello", "stdout F world"}},
		{"empty line", "\n", []string{"stdout F "}},
		{"no final newline", "a\nlast", []string{"stdout F a", "stdout F last"}},
		{"carriage return kept", "a\r\n", []string{"stdout F a\r"}},
		{"long line", long + "\n", []string{"stdout P " + long[:maxLogLine], "stdout F " + long[maxLogLine:]}},
		{"nothing", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			l, err := openCRILog(path, 0, fixedClock)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.copyStream("stdout", strings.NewReader(tc.in)); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			for _, w := range tc.want {
				want.WriteString("2016-10-06T00:17:09.669794202Z " + w + "\n")
			}
			if string(data) != want.String() {
				t.Errorf("log =\n%q\nwant\n%q", data, want.String())
			}
		})
	}
}

func TestCRILogRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	// Each record is 31 bytes of prefix plus the text and a newline.
	record := len("2016-10-06T00:17:09.669794202Z stderr F 0123456789\n")
	l, err := openCRILog(path, int64(3*record), fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Repeat("0123456789\n", 8)
	if err := l.copyStream("stderr", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// 8 records, 3 per file: the oldest file was replaced by the next one.
	for file, records := range map[string]int{path: 2, path + ".1": 3} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != records*record {
			t.Errorf("%s holds %d bytes, want %d records of %d", file, len(data), records, record)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files, want 2", len(entries))
	}

	// A reopened log appends and keeps counting from the file's size.
	l, err = openCRILog(path, int64(3*record), fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.copyStream("stderr", strings.NewReader("0123456789\n0123456789\n")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(record) {
		t.Errorf("after reopening: %v, %v; want one record in a fresh file", fi.Size(), err)
	}
}

func TestCRILogDiscard(t *testing.T) {
	l, err := openCRILog("", 10, fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.copyStream("stdout", strings.NewReader("dropped\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

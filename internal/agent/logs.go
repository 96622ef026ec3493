package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// LogOptions are `ctl logs`' (kubectl logs') choices.
type LogOptions struct {
	Tail       int  // last N lines only; < 0: all
	Follow     bool // keep streaming until ctx ends or the container stops
	Timestamps bool // prefix each line with its RFC3339Nano time
	LimitBytes int64
}

// LogLine is one line of a container log file in the CRI format
// ("2016-10-06T00:17:09.669794202Z stdout F text"); a line written in parts
// ("P") is joined with the rest of it.
type LogLine struct {
	Time   time.Time
	Stream string
	Text   []byte // without the trailing newline
}

// ParseLogLine reads one CRI log line; partial says whether the text continues
// on the next line.
func ParseLogLine(b []byte) (l LogLine, partial bool, err error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	f := bytes.SplitN(b, []byte(" "), 4)
	if len(f) < 3 {
		return LogLine{}, false, fmt.Errorf("malformed log line %q", b)
	}
	t, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return LogLine{}, false, fmt.Errorf("log line time: %w", err)
	}
	l = LogLine{Time: t, Stream: string(f[1])}
	if len(f) == 4 {
		l.Text = f[3]
	}
	return l, string(f[2]) == "P", nil
}

// StillRunning tells a following reader whether more output may come.
type StillRunning func() bool

// CopyLogs writes the text of the CRI log files, oldest first (e.g. path.1
// then path), to w as kubectl logs prints it. With Follow it keeps reading
// path — also across a rotation, which it notices by path's inode changing —
// until ctx ends or running reports false and nothing more was written.
func CopyLogs(ctx context.Context, w io.Writer, opts LogOptions, running StillRunning, files ...string) error {
	var lines []LogLine
	var pending *LogLine
	emit := func(l LogLine, partial bool) {
		if pending != nil {
			pending.Text = append(pending.Text, l.Text...)
			l = *pending
			pending = nil
		}
		if partial {
			cp := l
			cp.Text = bytes.Clone(l.Text)
			pending = &cp
			return
		}
		lines = append(lines, LogLine{Time: l.Time, Stream: l.Stream, Text: bytes.Clone(l.Text)})
	}
	last := files[len(files)-1]
	var f *os.File
	for i, p := range files {
		h, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		r := bufio.NewReader(h)
		for {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 && b[len(b)-1] == '\n' {
				if l, partial, perr := ParseLogLine(b); perr == nil {
					emit(l, partial)
				}
			} else if len(b) > 0 && i == len(files)-1 {
				// An unfinished line at the end of the live file: re-read it later.
				_, _ = h.Seek(-int64(len(b)), io.SeekCurrent)
			}
			if err != nil {
				break
			}
		}
		if p == last && opts.Follow {
			f = h
		} else {
			h.Close()
		}
	}
	if opts.Tail >= 0 && len(lines) > opts.Tail {
		lines = lines[len(lines)-opts.Tail:]
	}
	var written int64
	write := func(l LogLine) error {
		var buf []byte
		if opts.Timestamps {
			buf = append(buf, l.Time.UTC().Format(time.RFC3339Nano)...)
			buf = append(buf, ' ')
		}
		buf = append(append(buf, l.Text...), '\n')
		if opts.LimitBytes > 0 && written+int64(len(buf)) > opts.LimitBytes {
			buf = buf[:opts.LimitBytes-written]
		}
		n, err := w.Write(buf)
		written += int64(n)
		if fl, ok := w.(interface{ Flush() }); ok {
			fl.Flush()
		}
		return err
	}
	for _, l := range lines {
		if err := write(l); err != nil {
			return err
		}
		if opts.LimitBytes > 0 && written >= opts.LimitBytes {
			return nil
		}
	}
	if !opts.Follow {
		return nil
	}
	return follow(ctx, f, last, running, emit, &lines, write)
}

// follow polls the live log file for new lines.
func follow(ctx context.Context, f *os.File, path string, running StillRunning, emit func(LogLine, bool), lines *[]LogLine, write func(LogLine) error) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var r *bufio.Reader
	if f != nil {
		r = bufio.NewReader(f)
	}
	var carry []byte
	idle := 0
	for {
		*lines = (*lines)[:0]
		progressed := false
		if r != nil {
			for {
				b, err := r.ReadBytes('\n')
				carry = append(carry, b...)
				if err != nil {
					break
				}
				if l, partial, perr := ParseLogLine(carry); perr == nil {
					emit(l, partial)
				}
				carry = carry[:0]
				progressed = true
			}
		}
		for _, l := range *lines {
			if err := write(l); err != nil {
				return err
			}
		}
		// A rotation renames path away and starts a new file: switch to it
		// once the old one is read to its end.
		if st, err := os.Stat(path); err == nil && len(carry) == 0 {
			var cur os.FileInfo
			if f != nil {
				cur, _ = f.Stat()
			}
			if cur == nil || !os.SameFile(cur, st) {
				if nf, err := os.Open(path); err == nil {
					if f != nil {
						f.Close()
					}
					f, r = nf, bufio.NewReader(nf)
					progressed = true
				}
			}
		}
		if progressed {
			idle = 0
		} else {
			idle++
		}
		if running != nil && !running() && idle > 2 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

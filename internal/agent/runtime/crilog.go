package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// maxLogLine is the longest text one CRI log record carries; longer lines are
// split into partial records, as containerd does.
const maxLogLine = 16 * 1024

const (
	tagPartial = 'P'
	tagFull    = 'F'
)

// criLog writes a container's stdout and stderr to one file in the CRI log
// format that kubelets and `kubectl logs` read:
//
//	2016-10-06T00:17:09.669794202Z stdout F hello
//
// and rotates it at maxBytes, keeping one older file (path.1). The shim owns
// it; copyStream may run concurrently for both streams.
type criLog struct {
	path     string
	maxBytes int64
	now      func() time.Time

	mu   sync.Mutex // guards f and size
	f    *os.File
	size int64
}

// openCRILog appends to path, creating it and its directory. An empty path
// gives a log that discards everything.
func openCRILog(path string, maxBytes int64, now func() time.Time) (*criLog, error) {
	l := &criLog{path: path, maxBytes: maxBytes, now: now}
	if path == "" {
		return l, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *criLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// copyStream reads r until EOF and logs each line as stream ("stdout" or
// "stderr"). It keeps reading after a write error, so that the container
// never blocks on a full pipe, and returns the first such error.
func (l *criLog) copyStream(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	var firstErr error
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tag := byte(tagFull)
			switch {
			case line[len(line)-1] == '\n':
				line = line[:len(line)-1]
			case errors.Is(err, bufio.ErrBufferFull):
				tag = tagPartial
			}
			if werr := l.write(stream, tag, line); werr != nil && firstErr == nil {
				firstErr = werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return firstErr
		default:
			if firstErr == nil {
				firstErr = err
			}
			return firstErr
		}
	}
}

// write appends one record, rotating first if it would pass maxBytes. A
// record is never split across files.
func (l *criLog) write(stream string, tag byte, text []byte) error {
	ts := l.now().UTC().Format(time.RFC3339Nano)
	rec := make([]byte, 0, len(ts)+len(stream)+len(text)+5)
	rec = append(rec, ts...)
	rec = append(rec, ' ')
	rec = append(rec, stream...)
	rec = append(rec, ' ', tag, ' ')
	rec = append(rec, text...)
	rec = append(rec, '\n')

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		if l.path == "" {
			return nil
		}
		// A failed rotation left no file; try again.
		if err := l.open(); err != nil {
			return err
		}
	}
	if l.maxBytes > 0 && l.size > 0 && l.size+int64(len(rec)) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(rec)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// rotate renames the log to path.1 and starts a new one. Callers hold l.mu.
func (l *criLog) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	return l.open()
}

// Close closes the file; call it after every copyStream has returned.
func (l *criLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

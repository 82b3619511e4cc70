//go:build linux

package shim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/driver"
)

// maxLine is the longest line stored; longer output is split.
const maxLine = 64 << 10

// logWriter appends timestamped lines to <dir>/log, rotating by size to
// log.1 (newest) … log.N.
type logWriter struct {
	dir   string
	max   int64
	files int
	f     *os.File
	size  int64
}

func openLogWriter(dir string, max int64, files int) (*logWriter, error) {
	w := &logWriter{dir: dir, max: max, files: files}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *logWriter) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, logFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("shim: open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("shim: open log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// rotate shifts log.i to log.i+1, log to log.1 and opens a fresh log.
func (w *logWriter) rotate() error {
	w.f.Close()
	w.f = nil
	base := filepath.Join(w.dir, logFile)
	_ = os.Remove(fmt.Sprintf("%s.%d", base, w.files))
	for i := w.files - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", base, i), fmt.Sprintf("%s.%d", base, i+1))
	}
	if err := os.Rename(base, base+".1"); err != nil {
		return err
	}
	return w.open()
}

// writeLine stores one line (without its newline) with a timestamp.
func (w *logWriter) writeLine(line []byte) {
	if w.f == nil {
		if w.open() != nil {
			return
		}
	}
	rec := make([]byte, 0, len(line)+40)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, ' ')
	rec = append(rec, line...)
	rec = append(rec, '\n')
	if w.size > 0 && w.size+int64(len(rec)) > w.max {
		if w.rotate() != nil && w.f == nil {
			return
		}
	}
	n, _ := w.f.Write(rec)
	w.size += int64(n)
}

// copyLines logs r line by line until EOF.
func (w *logWriter) copyLines(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			w.writeLine(bytes.TrimSuffix(line, []byte("\n")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Close closes the current log file; it may be called more than once.
func (w *logWriter) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// logFiles lists the log files of dir, oldest first.
func logFiles(dir string) []string {
	base := filepath.Join(dir, logFile)
	var rotated []string
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", base, i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		rotated = append([]string{p}, rotated...)
	}
	return append(rotated, base)
}

// Logs streams the workload's stdout and stderr lines, across rotated
// files. Tail keeps only the last lines; Follow keeps streaming until ctx
// ends, the reader is closed, or the workload has exited and everything
// was read.
func Logs(ctx context.Context, dir string, opts driver.LogOptions) (io.ReadCloser, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("shim: logs: %w", err)
	}
	pr, pw := io.Pipe()
	// Unblock a write nobody reads when ctx ends.
	stop := context.AfterFunc(ctx, func() { pw.Close() })
	go func() {
		defer stop()
		lr := &logReader{dir: dir, out: pw, opts: opts, ctx: ctx}
		pw.CloseWithError(lr.run())
	}()
	return pr, nil
}

// logReader does the work of Logs.
type logReader struct {
	dir  string
	out  *io.PipeWriter
	opts driver.LogOptions
	ctx  context.Context
	// ring holds the last opts.Tail lines while reading existing logs.
	ring    [][]byte
	partial []byte
}

// emit writes a stored line in the requested format.
func (r *logReader) emit(line []byte) error {
	if !r.opts.Timestamps {
		if i := bytes.IndexByte(line, ' '); i >= 0 {
			line = line[i+1:]
		}
	}
	_, err := r.out.Write(append(line, '\n'))
	return err
}

// take handles one stored line while catching up: kept for Tail, else
// written at once.
func (r *logReader) take(line []byte, catchingUp bool) error {
	if catchingUp && r.opts.Tail > 0 {
		r.ring = append(r.ring, bytes.Clone(line))
		if len(r.ring) > r.opts.Tail {
			r.ring = r.ring[1:]
		}
		return nil
	}
	return r.emit(line)
}

// drain reads f to its current end, handing complete lines to take.
func (r *logReader) drain(f *os.File, catchingUp bool) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				r.partial = append(r.partial, data...)
				break
			}
			line := data[:i]
			if len(r.partial) > 0 {
				line = append(r.partial, line...)
				r.partial = nil
			}
			if werr := r.take(line, catchingUp); werr != nil {
				return werr
			}
			data = data[i+1:]
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *logReader) run() error {
	base := filepath.Join(r.dir, logFile)
	files := logFiles(r.dir)
	var cur *os.File
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue // not written yet, or rotated away meanwhile
		}
		if err := r.drain(f, true); err != nil {
			f.Close()
			return err
		}
		if p == base {
			cur = f // keep reading the live file from here
		} else {
			f.Close()
			r.partial = nil
		}
	}
	for _, l := range r.ring {
		if err := r.emit(l); err != nil {
			return err
		}
	}
	r.ring = nil
	if !r.opts.Follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		finished := false
		if st, err := Read(r.dir); err != nil || !st.Running {
			finished = true // read what is there, then stop
		}
		// Follow rotations: finish the old file, then go on with the new.
		for {
			if cur != nil {
				if err := r.drain(cur, false); err != nil {
					return err
				}
			}
			if sameFile(cur, base) {
				break
			}
			f, err := os.Open(base)
			if err != nil {
				break
			}
			if cur != nil {
				cur.Close()
			}
			cur, r.partial = f, nil
		}
		if finished {
			return nil
		}
		select {
		case <-r.ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// sameFile reports whether f is still the file at path.
func sameFile(f *os.File, path string) bool {
	if f == nil {
		return false
	}
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return err2 != nil // nothing new at path: keep f
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

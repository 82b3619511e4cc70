package remote

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// Frames of any length and content come back whole and in order, up to
// the limit; a longer one is refused, never cut.
func FuzzReadFrameLine(f *testing.F) {
	f.Add([]byte("{\"id\":1}\n{\"id\":2}\n"), 8)
	f.Add(bytes.Repeat([]byte("x"), 100), 20)
	f.Add([]byte("\n\n{"), 1)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		limit = 16 + abs(limit)%64
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var got []byte
		for {
			line, err := ReadFrameLine(br, limit)
			if errors.Is(err, ErrFrameTooLarge) {
				i := bytes.IndexByte(in[len(got):], '\n')
				if i >= 0 && i+1 <= limit || i < 0 && len(in)-len(got) <= limit {
					t.Fatalf("a frame of %d bytes refused with limit %d", i+1, limit)
				}
				return
			}
			if len(line) > limit {
				t.Fatalf("a frame of %d bytes with limit %d", len(line), limit)
			}
			got = append(got, line...)
			if err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
			if line[len(line)-1] != '\n' {
				t.Fatalf("frame %q has no newline", line)
			}
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("read %q from %q", got, in)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

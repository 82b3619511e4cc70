package remote

import (
	"bufio"
	"errors"
)

// ErrFrameTooLarge: a session frame longer than its reader's limit.
var ErrFrameTooLarge = errors.New("session frame too large")

// ReadFrameLine reads one newline-terminated frame of at most limit
// bytes. The result may alias br's buffer: use it before the next read.
func ReadFrameLine(br *bufio.Reader, limit int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil || !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	buf := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > limit {
			return nil, ErrFrameTooLarge
		}
		if err == nil || !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/berth-dev/berth/internal/model"
)

// pullProgress renders image pull progress: one line per layer, redrawn
// in place on a terminal, status changes only otherwise.
type pullProgress struct {
	w      io.Writer
	tty    bool
	layers map[string]model.PullProgress
	order  []string
	drawn  int
}

func newPullProgress(w *os.File) *pullProgress {
	fi, err := w.Stat()
	return &pullProgress{w: w, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0, layers: map[string]model.PullProgress{}}
}

func (p *pullProgress) update(u model.PullProgress) {
	key := u.Layer
	prev, seen := p.layers[key]
	if !seen {
		p.order = append(p.order, key)
	}
	p.layers[key] = u
	if p.tty {
		p.redraw()
		return
	}
	if !seen || prev.Status != u.Status {
		fmt.Fprintln(p.w, pullLine(u))
	}
}

func (p *pullProgress) redraw() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\033[%dA", p.drawn)
	}
	keys := append([]string(nil), p.order...)
	sort.SliceStable(keys, func(i, j int) bool { return keys[i] == "" && keys[j] != "" })
	for _, k := range keys {
		fmt.Fprintf(p.w, "\033[2K%s\n", pullLine(p.layers[k]))
	}
	p.drawn = len(keys)
}

func (p *pullProgress) finish() {}

func pullLine(u model.PullProgress) string {
	var b strings.Builder
	if u.Layer != "" {
		b.WriteString(shortDigest(u.Layer) + ": ")
	}
	b.WriteString(u.Status)
	if u.Total > 0 {
		fmt.Fprintf(&b, " %s/%s", model.ByteSize(u.Complete).Human(), model.ByteSize(u.Total).Human())
	}
	return b.String()
}

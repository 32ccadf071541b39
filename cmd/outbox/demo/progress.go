package demo

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// display writes the progress line: rewritten in place on a terminal, a new
// line each time otherwise.
type display struct {
	out     io.Writer
	live    bool
	start   time.Time
	chaos   bool
	written bool // a live line is on screen
}

// show writes the line for the current state.
func (d *display) show(phase string, p progress, kills int) {
	elapsed := time.Since(d.start).Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  %-8s written %s  delivered %s  lag %s  p50 %s  p99 %s",
		elapsed, phase, thousands(p.committed), thousands(p.delivered), thousands(p.committed-p.delivered), short(p.p50), short(p.p99))
	if d.chaos {
		fmt.Fprintf(&b, "  relay kills %d", kills)
	}
	if d.live {
		fmt.Fprintf(d.out, "\r%s\x1b[K", b.String())
		d.written = true
		return
	}
	fmt.Fprintln(d.out, b.String())
}

// done ends a live line, so that what follows starts on a line of its own.
func (d *display) done() {
	if d.live && d.written {
		fmt.Fprintln(d.out)
		d.written = false
	}
}

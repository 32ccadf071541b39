package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress tells a person what the run is doing: one line per step with
// its result and, on a terminal, a live count that rewrites the line.
type progress struct {
	w     io.Writer
	live  bool
	start time.Time

	mu    sync.Mutex
	label string
	shown int // width of the live text on the line, to blank it
	total int // steps announced, for "step n/total"
	n     int
}

func newProgress(w io.Writer, live bool, total int) *progress {
	return &progress{w: w, live: live, start: time.Now(), total: total}
}

// step starts a step.
func (p *progress) step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.label = fmt.Sprintf(format, args...)
	elapsed := time.Since(p.start).Truncate(time.Second)
	head := fmt.Sprintf("[%d/%d %v] %s", p.n, p.total, elapsed, p.label)
	if p.live {
		fmt.Fprintf(p.w, "%s ", head)
		p.shown = 0
		return
	}
	fmt.Fprintf(p.w, "%s\n", head)
}

// update shows a live count on a terminal; elsewhere it does nothing, so
// that a log file holds one line per step.
func (p *progress) update(format string, args ...any) {
	if !p.live {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	text := fmt.Sprintf(format, args...)
	fmt.Fprintf(p.w, "%s%s", strings.Repeat("\b \b", p.shown), text)
	p.shown = len(text)
}

// done ends the step with its result.
func (p *progress) done(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text := fmt.Sprintf(format, args...)
	if p.live {
		fmt.Fprintf(p.w, "%s→ %s\n", strings.Repeat("\b \b", p.shown), text)
		p.shown = 0
		return
	}
	fmt.Fprintf(p.w, "    → %s\n", text)
}

// watch calls show every interval until the returned stop is called, for
// live counts.
func (p *progress) watch(interval time.Duration, show func()) (stop func()) {
	if !p.live {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				show()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

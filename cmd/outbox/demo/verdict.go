package demo

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/conformance/ledger"
)

// Verdict is the outcome of a demo run: the ledger's comparison of what the
// service committed with what the consumer received, and the run's figures.
type Verdict struct {
	// Report is the ledger's verdict (ledger.Ledger): committed,
	// delivered, lost, duplicates, order violations, ...
	ledger.Report

	// Elapsed is how long the service wrote; Drain how long the last
	// events then took to arrive (or the drain timeout, when some never
	// did).
	Elapsed, Drain time.Duration

	// WriteErrors counts transactions of the service that failed (they
	// rolled back, or their outcome is unknown; the ledger knows which).
	WriteErrors int

	// P50 and P99 are quantiles of the commit-to-delivery latency: from
	// the service's Commit returning to the consumer receiving the event.
	P50, P99 time.Duration

	// RelayStarts counts the relays started, RelayKills the ones killed
	// by chaos, and RelayCrashes the ones that exited on their own.
	RelayStarts, RelayKills, RelayCrashes int

	// Rate is the rate the service was asked to write at (Config.Rate).
	Rate int

	// Interrupted is set when the run was cancelled before its end.
	Interrupted bool

	// jetStream is set when the broker was NATS JetStream, which drops
	// republished copies by their Nats-Msg-Id.
	jetStream bool
}

// Clean reports whether the run proves the promises: events were committed,
// and none was lost, reordered within its key, leaked from a rolled-back
// transaction, or unexplained; and the run was not interrupted. Duplicates
// are allowed: delivery is at least once.
func (v Verdict) Clean() bool {
	return v.Report.Clean() && v.Committed > 0 && !v.Interrupted
}

// print writes the verdict block.
func (v Verdict) print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Verdict (the ledger: what the service committed against what the consumer received)")
	rate := ""
	if v.Elapsed > 0 {
		rate = fmt.Sprintf(" in %s (%s/s)", v.Elapsed.Round(100*time.Millisecond), thousands(int(float64(v.Committed)/v.Elapsed.Seconds()+0.5)))
	}
	row := func(name, value string) { fmt.Fprintf(w, "  %-18s %s\n", name, value) }
	row("committed", thousands(v.Committed)+" events"+rate)
	if v.Elapsed > 0 && v.Rate > 0 && float64(v.Committed)/v.Elapsed.Seconds() < 0.9*float64(v.Rate) {
		row("", fmt.Sprintf("(below --rate %s: the store, or this machine, could not keep up)", thousands(v.Rate)))
	}
	row("delivered", thousands(v.Delivered))
	row("lost", thousands(v.Lost)+examples(v.LostIDs))
	dup := thousands(v.Duplicates)
	switch {
	case v.Duplicates > 0:
		dup += " (republished after a relay died; each copy carries the event's ID, for consumers to drop)"
	case v.jetStream && v.RelayKills > 0:
		dup += " (JetStream drops a republished copy whose Nats-Msg-Id it stored within its duplicate window)"
	}
	row("duplicates", dup)
	row("order violations", thousands(v.OrderViolations)+examples(v.InvertedIDs))
	if v.Leaked > 0 {
		row("leaked", thousands(v.Leaked)+" events of rolled-back transactions arrived"+examples(v.LeakedIDs))
	}
	if v.Unknown > 0 {
		row("unknown", thousands(v.Unknown)+" events arrived that no writer wrote"+examples(v.UnknownIDs))
	}
	if v.WriteErrors > 0 {
		row("write errors", fmt.Sprintf("%s transactions failed (%d rolled back, %d with unknown outcome)",
			thousands(v.WriteErrors), v.RolledBack, v.Uncertain))
	}
	row("latency", fmt.Sprintf("p50 %s  p99 %s  (commit to consumer)", short(v.P50), short(v.P99)))
	if v.RelayKills > 0 || v.RelayCrashes > 0 {
		s := fmt.Sprintf("%d (%d killed", v.RelayStarts-1, v.RelayKills)
		if v.RelayCrashes > 0 {
			s += fmt.Sprintf(", %d exited on their own", v.RelayCrashes)
		}
		row("relay restarts", s+")")
	}
	if v.Drain > 0 {
		row("drained in", short(v.Drain)+" after writing stopped")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, v.sentence())
}

// sentence is the verdict in one line.
func (v Verdict) sentence() string {
	if v.Clean() {
		s := "CLEAN: nothing lost, every user's events in commit order"
		switch {
		case v.Duplicates == 1:
			s += ", 1 duplicate"
		case v.Duplicates > 1:
			s += fmt.Sprintf(", %s duplicates", thousands(v.Duplicates))
		}
		if v.RelayKills > 0 {
			s += fmt.Sprintf(", through %d relay kills", v.RelayKills)
		}
		return s + "."
	}
	var problems []string
	if v.Interrupted {
		problems = append(problems, "interrupted")
	}
	if v.Committed == 0 {
		problems = append(problems, "nothing was committed")
	}
	if v.Lost > 0 {
		problems = append(problems, thousands(v.Lost)+" lost")
	}
	if v.OrderViolations > 0 {
		problems = append(problems, thousands(v.OrderViolations)+" out of order")
	}
	if v.Leaked > 0 {
		problems = append(problems, thousands(v.Leaked)+" leaked")
	}
	if v.Unknown > 0 {
		problems = append(problems, thousands(v.Unknown)+" unknown")
	}
	return "NOT CLEAN: " + strings.Join(problems, ", ") + "."
}

func examples(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	if len(ids) > 3 {
		ids = ids[:3]
	}
	return " (e.g. " + strings.Join(ids, ", ") + ")"
}

// thousands formats n with comma separators: 12,345.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// short formats a duration with about three significant digits: 812µs,
// 3.1ms, 42ms, 1.24s.
func short(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

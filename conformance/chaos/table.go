package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Table formats results as a Markdown table.
func Table(results []Result) string {
	var b strings.Builder
	b.WriteString("| pair | scenario | relays | faults | committed | delivered | lost | duplicates (bound) | order violations | rolled back | leaked | recovery | verdict |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.Skipped != "" && !r.Failed {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | | skipped: %s |\n", r.Pair, r.Scenario, r.Skipped)
			continue
		}
		verdict := "ok"
		if !r.OK() {
			verdict = "**FAILED**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d (%d) | %d | %d | %d | %s | %s |\n",
			r.Pair, r.Scenario, r.Relays, r.Faults, r.Committed, r.Delivered, r.Lost, r.Duplicates, r.DuplicateBound,
			r.OrderViolations, r.RolledBack, r.Leaked, r.Recovery.Round(10*time.Millisecond), verdict)
	}
	return b.String()
}

// OptionsFromEnv returns [Long] when OUTBOX_CHAOS is "long" and [Short]
// otherwise.
func OptionsFromEnv() Options {
	if os.Getenv("OUTBOX_CHAOS") == "long" {
		return Long()
	}
	return Short()
}

// Publish logs the results as a table and, when OUTBOX_CHAOS_REPORT names a
// file, appends the table rows to it (`make chaos` collects them there).
func Publish(t testing.TB, results []Result) {
	t.Helper()
	table := Table(results)
	t.Logf("\n%s", table)
	path := os.Getenv("OUTBOX_CHAOS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("chaos report: %v", err)
		return
	}
	defer f.Close()
	lines := strings.SplitAfter(table, "\n")
	for _, line := range lines[2:] { // rows only; make chaos writes the header
		if _, err := f.WriteString(line); err != nil {
			t.Errorf("chaos report: %v", err)
			return
		}
	}
}

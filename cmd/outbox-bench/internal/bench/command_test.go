package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox-bench/internal/bench"
)

// run runs the outbox-bench command in-process and returns its exit code
// and output streams.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := bench.Main(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestBenchQuickCommand runs `outbox-bench --quick` on the in-memory pair
// end to end: JSON report, charts and the document. It checks shapes, never
// times.
func TestBenchQuickCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	doc := filepath.Join(dir, "docs", "benchmarks.md")
	charts := filepath.Join(dir, "docs", "bench")
	if err := os.MkdirAll(filepath.Dir(doc), 0o755); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "--quick", "--store", "memory", "--broker", "memory",
		"--backlog", "300", "--keys", "30", "--latency-duration", "200ms", "--rates", "100",
		"--json", "--charts", charts, "--doc", doc)
	if code != 0 {
		t.Fatalf("exit code %d\nstderr:\n%s", code, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
	}
	if len(r.Pairs) != 1 || len(r.Pairs[0].Drain) != 3 || !strings.Contains(r.Command, "--quick") {
		t.Errorf("report: pairs %+v, command %q", r.Pairs, r.Command)
	}
	if !strings.Contains(stderr, "drain") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	for _, name := range []string{bench.DrainChart, bench.LatencyChart} {
		if _, err := os.Stat(filepath.Join(charts, name)); err != nil {
			t.Errorf("chart %s: %v", name, err)
		}
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "](bench/drain.svg)") || !strings.Contains(string(b), "### Drain") {
		t.Errorf("document lacks the chart link or the drain table:\n%s", b)
	}
}

// TestBenchUsageErrors checks that a bad store, broker or setting is a usage
// error (exit code 2) that says what to use.
func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "oracle://db"}, "postgres://"},
		{[]string{"--store", "memory", "--broker", "rabbitmq://mq"}, "kfake"},
		{[]string{"--store", "memory", "--broker", "memory", "--skip", "warp"}, "unknown scenario"},
		{[]string{"--store", "memory", "--broker", "memory", "--pg-notify", "sometimes"}, "every-tx"},
		{[]string{"--quik"}, "unknown flag: --quik"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != bench.ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, bench.ExitUsage, tc.want)
		}
	}
}

package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickMemory runs every scenario at smoke-test sizes on the in-memory
// store and broker, and checks that the report holds every measurement that
// applies and says why the others were skipped. It asserts nothing on time.
func TestQuickMemory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress strings.Builder
	r, err := Run(ctx, Config{Stores: []string{"memory"}, Brokers: []string{"memory"}, Quick: true,
		Backlog: 500, Keys: 50, LatencyDuration: 300 * time.Millisecond, Rates: []int{100}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("failed measurements: %v", r.Errors)
	}
	if len(r.Pairs) != 1 {
		t.Fatalf("pairs = %d, want 1", len(r.Pairs))
	}
	p := r.Pairs[0]
	if len(p.Drain) != 3 {
		t.Fatalf("drain results = %d, want one per relay count (3)", len(p.Drain))
	}
	for _, d := range p.Drain {
		if !d.PerSec.Valid() || d.PerSec.Median <= 0 {
			t.Errorf("drain with %d relays has no rate: %+v", d.Relays, d.PerSec)
		}
	}
	if len(p.Latency) != 1 || p.Latency[0].Samples == 0 || p.Latency[0].Lost != 0 {
		t.Errorf("latency = %+v, want one txoutbox measurement with samples and nothing lost", p.Latency)
	} else if bd := p.Latency[0].Breakdown; bd == nil || bd.Reads == 0 || bd.RecordsPerRead <= 0 {
		t.Errorf("latency breakdown = %+v, want the relay's batches and their size", bd)
	}
	for _, scenario := range []string{ScenarioSimple} {
		if p.Skipped[scenario] == "" {
			t.Errorf("the memory pair does not say why %s was skipped", scenario)
		}
	}
	for _, scenario := range []string{ScenarioEnqueue, ScenarioInsert, ScenarioGrowth} {
		if r.Stores[0].Skipped[scenario] == "" {
			t.Errorf("the memory store does not say why %s was skipped", scenario)
		}
	}
	if !strings.Contains(progress.String(), "drain") {
		t.Errorf("no progress shown:\n%s", progress.String())
	}

	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Drain", "Latency", "1 txoutbox relay", "4 txoutbox relays"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the tables lack %q:\n%s", want, text.String())
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatalf("the report does not encode as JSON: %v", err)
	}
}

// TestQuickSQLite runs every scenario that needs a database, including the
// simple relay and the table growth, on SQLite with the in-memory broker.
func TestQuickSQLite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, Config{Stores: []string{"sqlite"}, Brokers: []string{"memory"}, Quick: true,
		Backlog: 500, Keys: 50, Retained: 2_000, ReadRounds: 2, Relays: []int{1, 2},
		LatencyDuration: 300 * time.Millisecond, Rates: []int{100}, EnqueueDuration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("failed measurements: %v", r.Errors)
	}
	s := r.Stores[0]
	if s.RawInsert == nil || s.Enqueue == nil || s.Growth == nil || s.Backfill == nil {
		t.Fatalf("store report lacks a measurement: %+v", s)
	}
	if len(s.Enqueue.Cases) != 3 || s.Enqueue.Cases[0].Ratio != 1 {
		t.Errorf("enqueue cases = %+v, want alone (ratio 1), +1 and +10", s.Enqueue.Cases)
	}
	p := r.Pairs[0]
	if p.Simple == nil || len(p.Drain) != 2 {
		t.Fatalf("pair report lacks the simple relay or a drain: %+v", p)
	}
	relays := map[string]bool{}
	for _, l := range p.Latency {
		relays[l.Relay] = l.Samples > 0 && l.Lost == 0
		if (l.Breakdown != nil) != (l.Relay == "txoutbox") {
			t.Errorf("%s relay's latency breakdown = %+v; want one for the txoutbox relay only", l.Relay, l.Breakdown)
		}
	}
	if !relays["txoutbox"] || !relays["simple"] {
		t.Errorf("latency = %+v, want the txoutbox and the simple relay, with samples and nothing lost", p.Latency)
	}
	if len(r.Targets) == 0 {
		t.Error("no target checked")
	}

	dir := t.TempDir()
	written, err := WriteCharts(r, filepath.Join(dir, "bench"))
	if err != nil || len(written) != 2 {
		t.Fatalf("WriteCharts wrote %v, %v; want both charts", written, err)
	}
	for _, name := range written {
		b, err := os.ReadFile(filepath.Join(dir, "bench", name))
		if err != nil || !strings.HasPrefix(string(b), "<svg") || !strings.HasSuffix(string(b), "</svg>\n") {
			t.Errorf("%s is not an SVG document (%v)", name, err)
		}
	}
}

// TestUpdateDocKeepsTheRest checks that regenerating the document replaces
// its generated part only.
func TestUpdateDocKeepsTheRest(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "benchmarks.md")
	r := &Report{Settings: Settings{Backlog: 10, Rounds: 1}}
	if err := UpdateDoc(r, file, ""); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	doc := "# Benchmarks\n\nIntro written by hand.\n\n" + strings.TrimPrefix(string(b), "# Benchmarks\n\n") + "\n## Analysis\n\nAlso by hand.\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Settings.Backlog = 12345
	if err := UpdateDoc(r, file, ""); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(file)
	got := string(b)
	for _, want := range []string{"Intro written by hand.", "## Analysis\n\nAlso by hand.", "12,345"} {
		if !strings.Contains(got, want) {
			t.Errorf("regenerated document lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, docBegin) != 1 || strings.Count(got, docEnd) != 1 {
		t.Errorf("markers duplicated:\n%s", got)
	}
}

func TestConfigRejectsNonsense(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Rounds: -1},
		{Keys: 10, Backlog: 5},
		{Relays: []int{0}},
		{Skip: []string{"warp"}},
		{LatencyDuration: time.Second, LatencyWarmup: 2 * time.Second},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestKfakeAndKafkaAreTold checks that a run over kfake and a real Kafka
// names them apart wherever pairs and brokers are named: the tables, the
// machine table of the document and the profile files (by Label).
func TestKfakeAndKafkaAreTold(t *testing.T) {
	t.Parallel()
	kfake := Component{Spec: "kfake", Kind: "kafka", Server: "kfake"}
	kafka := Component{Spec: "kafka://127.0.0.1:9092", Kind: "kafka", Server: "Kafka v4.1"}
	r := &Report{
		Settings: Settings{Backlog: 10, Rounds: 1},
		Stores:   []StoreReport{{Component: Component{Spec: "postgres://db", Kind: "postgres"}}},
		Brokers:  []BrokerReport{{Component: kfake}, {Component: kafka}},
		Pairs: []PairReport{
			{Store: "postgres://db", Broker: kfake.Spec, Simple: &Measure{Runs: []float64{1}, Median: 1, Min: 1, Max: 1}},
			{Store: "postgres://db", Broker: kafka.Spec, Simple: &Measure{Runs: []float64{2}, Median: 2, Min: 2, Max: 2}},
		},
	}
	if a, b := pairName(r, r.Pairs[0]), pairName(r, r.Pairs[1]); a != "postgres × kfake" || b != "postgres × kafka" {
		t.Errorf("pair names %q and %q, want postgres × kfake and postgres × kafka", a, b)
	}
	md := r.Markdown("")
	for _, want := range []string{"| kfake | kfake", "| kafka | Kafka v4.1", "| postgres × kfake | simple relay", "| postgres × kafka | simple relay"} {
		if !strings.Contains(md, want) {
			t.Errorf("the document lacks %q:\n%s", want, md)
		}
	}
}

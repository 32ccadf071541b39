package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

func TestOverviewShowsBacklogRelaysAndLanes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.write(outbox.Message{Topic: "orders", Key: "a"}, outbox.Message{Topic: "orders", Key: "b"}, outbox.Message{Topic: "users", Key: "c"})
	dead := f.write(outbox.Message{Topic: "orders", Key: "d"})
	f.kill(dead[0].ID, "rejected")
	f.sample()

	code, page := f.get("/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	mustContain(t, "overview", page, `id="pending" data-k="pending">3<`, `id="dead" data-k="dead">1<`, "relay-1", `src="/assets/console.js"`, `id="chart-lag"`)

	code, raw := f.get("/api/overview")
	if code != http.StatusOK {
		t.Fatalf("GET /api/overview = %d", code)
	}
	var d overviewData
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	if d.Pending != 3 || d.Dead != 1 || d.Lanes != 4 || d.LagSeconds <= 0 || len(d.Relays) != 1 || d.Relays[0].Lanes != 4 {
		t.Errorf("overview = pending %d dead %d lanes %d lag %v relays %+v; want 3, 1, 4, a lag, relay-1 with 4 lanes", d.Pending, d.Dead, d.Lanes, d.LagSeconds, d.Relays)
	}
	if len(d.Lagging) == 0 || d.Lagging[0].Owner != "relay-1" || len(d.Series.Pending) != 1 {
		t.Errorf("lagging %+v, series %+v; want lanes held by relay-1 and one point", d.Lagging, d.Series)
	}
	if d.Rate != nil {
		t.Errorf("rate %v without a relay in the process; want null", *d.Rate)
	}
	// Per topic, from the store: orders has the oldest backlog (or as old
	// as users', and a dead letter) and comes first.
	if len(d.Topics) != 2 || d.Topics[0].Topic != "orders" || d.Topics[0].Pending != 2 || d.Topics[0].Dead != 1 || d.Topics[0].LagSeconds <= 0 ||
		d.Topics[1].Topic != "users" || d.Topics[1].Pending != 1 || d.Topics[1].Dead != 0 || d.Topics[1].LagSeconds <= 0 {
		t.Errorf("topics %+v; want orders with 2 pending and 1 dead letter, then users with 1 pending, each with a lag", d.Topics)
	}
	// Without a relay in the process, the relay's columns say so.
	mustContain(t, "overview", page, "<td>orders</td><td>2</td>", "<td>1</td><td>–</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>")
}

func TestOverviewCountsTheRelaysDeliveries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	obs := f.srv.Observer()
	t0 := time.Now()
	f.srv.sampler.add(sample{Time: t0})
	recs := []outbox.Record{
		{Message: outbox.Message{ID: "1", Topic: "orders", CreatedAt: t0.Add(500 * time.Millisecond)}, Lane: 1},
		{Message: outbox.Message{ID: "2", Topic: "orders"}, Lane: 2},
		{Message: outbox.Message{ID: "3", Topic: "users"}, Lane: 3},
	}
	obs.ObserveBatch(outbox.BatchEvent{Owner: "relay-1", Records: recs, PublishedAt: t0.Add(2 * time.Second), Outcomes: []outbox.Outcome{
		{Status: outbox.Delivered}, {Status: outbox.Retried}, {Status: outbox.DeadLettered},
	}})
	// The store's figures of the same moment: orders' backlog merges with
	// the relay's outcomes; billing has dead letters only.
	f.srv.sampler.add(sample{Time: t0.Add(2 * time.Second), Stats: outbox.Stats{Topics: []outbox.TopicStats{
		{Topic: "orders", Pending: 4, Dead: 2, OldestPending: t0},
		{Topic: "billing", Dead: 3},
	}}})
	d := f.srv.overviewData()
	if d.Rate == nil || *d.Rate != 0.5 {
		t.Fatalf("rate %v after one delivery in 2s; want 0.5/s", d.Rate)
	}
	want := []topicRow{
		{Topic: "orders", Pending: 4, LagSeconds: 2, Dead: 2, Delivered: 1, Rate: 0.5, PublishLagSeconds: 1.5, Retried: 1},
		{Topic: "billing", Dead: 3},
		{Topic: "users", DeadLettered: 1},
	}
	if !slices.Equal(d.Topics, want) {
		t.Errorf("topics %+v; want %+v", d.Topics, want)
	}
	_, page := f.get("/")
	mustContain(t, "overview", page, "<td>orders</td><td>4</td><td>2.0s</td><td>2</td><td>1</td><td>0.5</td><td>1.50s</td><td>1</td><td>0</td>")
}

// stats builds a sample for the warning tests.
func at(base time.Time, sec int, st outbox.Stats) sample {
	return sample{Time: base.Add(time.Duration(sec) * time.Second), Stats: st}
}

func TestOverviewWarnings(t *testing.T) {
	t.Parallel()
	base := time.Now().Add(-time.Hour)
	relay := func(owners ...string) []outbox.RelayLanes {
		var rs []outbox.RelayLanes
		for _, o := range owners {
			rs = append(rs, outbox.RelayLanes{Owner: o, Lanes: 2})
		}
		return rs
	}
	lagging := func(oldest time.Time) []outbox.LaneLag {
		return []outbox.LaneLag{{Lane: 3, Owner: "a", Pending: 5, OldestPending: oldest}}
	}
	for _, c := range []struct {
		name    string
		samples []sample
		want    []string // substrings, one per warning, in order
	}{
		{"healthy", []sample{at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a", "b")})}, nil},
		{"no relay", []sample{at(base, 0, outbox.Stats{Lanes: 4, Pending: 7})}, []string{"No live relay: 7 pending"}},
		{"unheld lanes", []sample{at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a")})}, []string{"2 of 4 lanes are held by no relay"}},
		{"relay gone", []sample{
			at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a", "b")}),
			at(base, 2, outbox.Stats{Lanes: 4, Relays: []outbox.RelayLanes{{Owner: "a", Lanes: 4}}}),
		}, []string{"Relay b is gone"}},
		{"lane not moving", []sample{
			at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base)}),
			at(base, 20, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base)}),
			at(base, 40, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base)}),
		}, []string{"Lane 3 has not moved for 40s"}},
		{"lane moving", []sample{
			at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base)}),
			at(base, 20, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base.Add(10 * time.Second))}),
			at(base, 40, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Lagging: lagging(base.Add(30 * time.Second))}),
		}, nil},
		{"lag growing", func() []sample {
			var ss []sample
			for i := range 6 {
				ss = append(ss, at(base, i*10, outbox.Stats{Lanes: 4, Relays: relay("a", "b"), Pending: 9, OldestPending: base.Add(-5 * time.Second)}))
			}
			return ss
		}(), []string{"The lag keeps growing: from 5s to 55s over the last 50s"}},
		{"unreadable", []sample{{Time: base, Err: errors.New("connection refused")}}, []string{"Cannot read the statistics: connection refused"}},
		{"slot streamed", []sample{at(base, 0, outbox.Stats{Lanes: 4, Relays: relay("a"), Log: &outbox.LogStats{Slot: "s", Holder: "a", RetainedBytes: 1 << 20}})},
			[]string{"2 of 4 lanes"}},
		{"slot left behind", []sample{at(base, 0, outbox.Stats{Lanes: 4, Log: &outbox.LogStats{Slot: "s", RetainedBytes: 3 << 30}})},
			[]string{"No relay streams from the replication slot s, which keeps 3.0 GiB of WAL"}},
		{"slot lost", []sample{at(base, 0, outbox.Stats{Lanes: 4, Log: &outbox.LogStats{Slot: "s", Holder: "a", Lost: true}})},
			[]string{"PostgreSQL removed WAL that the replication slot s still needed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSampler(nil, 2*time.Second, 10*time.Minute)
			for _, smp := range c.samples {
				s.add(smp)
			}
			ws := s.snapshot().warnings(s.stallAfter())
			if len(ws) != len(c.want) {
				t.Fatalf("warnings %+v; want %d: %q", ws, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(ws[i].Text, w) {
					t.Errorf("warning %d = %q; want it to say %q", i, ws[i].Text, w)
				}
			}
		})
	}
}

func TestSamplesKeepTheWindow(t *testing.T) {
	t.Parallel()
	s := newSampler(nil, time.Second, time.Minute)
	base := time.Now()
	for i := range 200 {
		s.add(at(base, i, outbox.Stats{}))
	}
	sn := s.snapshot()
	if n := len(sn.Samples); n != 61 {
		t.Errorf("kept %d samples of 1 s over a 1 min window; want 61", n)
	}
}

func TestAssetsAreEmbeddedAndPagesLockedDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	for _, path := range []string{"/assets/console.js", "/assets/console.css"} {
		code, b := f.get(path)
		if code != http.StatusOK || len(b) < 100 {
			t.Errorf("GET %s = %d, %d bytes; want the embedded file", path, code, len(b))
		}
	}
	rec := f.post("/dead/confirm", nil)
	if csp := rec.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q; want scripts from this origin only and no framing", csp)
	}
}

// countingStats counts the statistics reads that reach the store.
type countingStats struct {
	outbox.StatsReader
	calls atomic.Int64
}

func (c *countingStats) Stats(ctx context.Context) (outbox.Stats, error) {
	c.calls.Add(1)
	return c.StatsReader.Stats(ctx)
}

// A refresh of the overview, by any number of browsers, reads the
// sampler's memory: the store sees one Stats call per sample, none per
// page view (the cost docs/console.md states).
func TestOverviewRefreshesCostTheStoreNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	counter := &countingStats{StatsReader: f.store}
	f.srv.sampler.stats = counter
	f.sample()
	for range 50 {
		if code, _ := f.get("/"); code != http.StatusOK {
			t.Fatalf("GET / = %d", code)
		}
		if code, _ := f.get("/api/overview"); code != http.StatusOK {
			t.Fatalf("GET /api/overview = %d", code)
		}
	}
	if n := counter.calls.Load(); n != 1 {
		t.Errorf("100 page views after 1 sample made %d Stats calls; want 1 (the sample's)", n)
	}
}

// The sampler reads the statistics at every tick while someone watches,
// and every 30 s when nobody has looked for two minutes.
func TestSamplingSlowsDownWhenNobodyWatches(t *testing.T) {
	t.Parallel()
	base := time.Now()
	for _, c := range []struct {
		name               string
		lastView, lastTake time.Duration // before now; negative: never
		want               bool
	}{
		{"first sample", -1, -1, true},
		{"watched", time.Second, time.Second, true},
		{"watched a minute ago", time.Minute, 2 * time.Second, true},
		{"unwatched, sampled 10s ago", 3 * time.Minute, 10 * time.Second, false},
		{"unwatched, sampled 29s ago", 3 * time.Minute, 29 * time.Second, true},
		{"never watched, sampled 5s ago", -1, 5 * time.Second, false},
	} {
		s := newSampler(nil, 2*time.Second, 10*time.Minute)
		if c.lastView >= 0 {
			s.viewed(base.Add(-c.lastView))
		}
		if c.lastTake >= 0 {
			s.lastTake = base.Add(-c.lastTake)
		}
		if got := s.due(base); got != c.want {
			t.Errorf("%s: due = %v; want %v", c.name, got, c.want)
		}
	}
}

// logStats adds a replication slot to the statistics of an outbox.
type logStats struct {
	outbox.StatsReader
	log outbox.LogStats
}

func (l logStats) Stats(ctx context.Context) (outbox.Stats, error) {
	st, err := l.StatsReader.Stats(ctx)
	st.Log = &l.log
	return st, err
}

// The overview shows the replication slot of an outbox whose relays tail
// its log, and says nothing of one without.
func TestOverviewShowsTheSlot(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.sample()
	if _, page := f.get("/"); strings.Contains(page, "Replication slot") {
		t.Errorf("overview of an outbox without a slot shows one:\n%s", page)
	}

	lag := 2.0
	f.srv.sampler.stats = logStats{f.store, outbox.LogStats{Slot: "txoutbox_s_outbox", Holder: "relay-1", LagBytes: 2048, LagSeconds: &lag, RetainedBytes: 3 << 20}}
	f.sample()
	want := "Slot txoutbox_s_outbox: streamed by relay-1; lag 2.0 KiB (2s); WAL retained 3.0 MiB."
	_, page := f.get("/")
	mustContain(t, "overview", page, "<h2>Replication slot</h2>", want)
	_, raw := f.get("/api/overview")
	var d overviewData
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	if d.Log == nil || d.Log.Summary != want || d.Log.Holder != "relay-1" || d.Log.LagBytes != 2048 || d.Log.LagSeconds == nil || *d.Log.LagSeconds != 2 {
		t.Errorf("log %+v; want relay-1 streaming, 2048 bytes and 2s behind, summary %q", d.Log, want)
	}
}

package outboxprom_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
)

func newObserver(t testing.TB, cfg outboxprom.ObserverConfig) *outboxprom.Observer {
	t.Helper()
	obs, err := outboxprom.NewObserver(cfg)
	if err != nil {
		t.Fatalf("NewObserver: %v", err)
	}
	return obs
}

func record(topic string, createdAt time.Time) outbox.Record {
	return outbox.Record{Message: outbox.Message{Topic: topic, CreatedAt: createdAt}}
}

func TestObserverCountsEvents(t *testing.T) {
	t.Parallel()
	obs := newObserver(t, outboxprom.ObserverConfig{})
	reg := registry(t, obs)
	now := time.Now()

	obs.ObserveRead(outbox.ReadEvent{Records: 4, Duration: 3 * time.Millisecond})
	obs.ObserveRead(outbox.ReadEvent{Records: 0, Duration: time.Millisecond})
	obs.ObserveRead(outbox.ReadEvent{Duration: time.Second, Err: outbox.ErrReadTimeout})
	// Two relays of one outbox in one process: the lanes they hold add up,
	// the live relays are the outbox's.
	obs.ObserveLanes(outbox.LaneEvent{Owner: "a", Held: 128, Taken: 128, Relays: 1})
	obs.ObserveLanes(outbox.LaneEvent{Owner: "b", Held: 64, Taken: 64, Relays: 2})
	obs.ObserveLanes(outbox.LaneEvent{Owner: "a", Held: 126, Lost: 2, Released: 62, Relays: 2})
	obs.ObserveLanes(outbox.LaneEvent{Owner: "a", Released: 1, Err: errors.New("sync lanes: connection refused")})
	obs.ObserveBatch(outbox.BatchEvent{
		Records: []outbox.Record{
			record("a", now.Add(-2*time.Second)),
			record("a", now.Add(-time.Second)),
			record("b", now),
			record("b", now),
			record("c", now),
			record("e", now),
			record("e", now),
		},
		Outcomes: []outbox.Outcome{
			{Status: outbox.Delivered},
			{Status: outbox.Delivered},
			{Status: outbox.Retried, Err: errors.New("no")},
			{Status: outbox.Released},
			{Status: outbox.DeadLettered, Err: outbox.Permanent(errors.New("too big"))},
			// Its topic cannot take messages now, and then the topic is paused.
			{Status: outbox.Released, Err: fmt.Errorf("NOT_ENOUGH_REPLICAS: %w", outbox.ErrTopicUnavailable), RetryIn: 200 * time.Millisecond},
			{Status: outbox.Released, RetryIn: 150 * time.Millisecond},
		},
		PublishDuration: 20 * time.Millisecond,
		PublishedAt:     now,
	})
	// A batch dead-lettered before publishing (lost in flight too often): Publish
	// was not called, so no publish duration.
	obs.ObserveBatch(outbox.BatchEvent{
		Records:   []outbox.Record{record("d", now)},
		Outcomes:  []outbox.Outcome{{Status: outbox.DeadLettered, Err: errors.New("gave up")}},
		SettleErr: errors.New("store down"),
	})

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"txoutbox_relay_reads_total", nil, 3},
		{"txoutbox_relay_read_errors_total", nil, 1},
		{"txoutbox_relay_read_messages_total", nil, 4},
		{"txoutbox_relay_lane_rounds_total", nil, 4},
		{"txoutbox_relay_lane_errors_total", nil, 1},
		{"txoutbox_relay_lanes_taken_total", nil, 192},
		{"txoutbox_relay_lanes_lost_total", nil, 2},
		{"txoutbox_relay_lanes_released_total", nil, 63},
		{"txoutbox_relay_lanes_held", nil, 126 + 64}, // the failed round changes nothing
		{"txoutbox_relay_live_relays", nil, 2},
		{"txoutbox_relay_published_total", nil, 2},
		{"txoutbox_relay_failed_total", []string{"outcome", "retried"}, 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "released"}, 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "topic_paused"}, 2},
		{"txoutbox_relay_failed_total", []string{"outcome", "dead_lettered"}, 2},
		{"txoutbox_relay_settle_errors_total", nil, 1},
	} {
		if got := gather(t, reg, c.name, c.labels...).value; got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		want uint64
		sum  float64
	}{
		{"txoutbox_relay_read_duration_seconds", 3, 1.004},
		{"txoutbox_relay_publish_duration_seconds", 1, 0.02},
		{"txoutbox_relay_publish_lag_seconds", 2, 3},
	} {
		got := gather(t, reg, c.name)
		if got.count != c.want || !near(got.sum, c.sum) {
			t.Errorf("%s: %d samples summing to %v, want %d summing to %v", c.name, got.count, got.sum, c.want, c.sum)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// A relay that holds no lane any more (it gave them all back) stops
// counting in the lanes held.
func TestObserverForgetsRelaysHoldingNothing(t *testing.T) {
	t.Parallel()
	obs := newObserver(t, outboxprom.ObserverConfig{})
	reg := registry(t, obs)
	obs.ObserveLanes(outbox.LaneEvent{Owner: "old", Held: 256, Taken: 256, Relays: 1})
	obs.ObserveLanes(outbox.LaneEvent{Owner: "new", Held: 0, Relays: 2})
	if got := gather(t, reg, "txoutbox_relay_lanes_held").value; got != 256 {
		t.Errorf("lanes held = %v, want 256", got)
	}
	obs.ObserveLanes(outbox.LaneEvent{Owner: "old", Held: 0, Released: 256, Relays: 2})
	obs.ObserveLanes(outbox.LaneEvent{Owner: "new", Held: 256, Taken: 256, Relays: 2})
	if got := gather(t, reg, "txoutbox_relay_lanes_held").value; got != 256 {
		t.Errorf("lanes held after the handover = %v, want 256 (the new relay's only)", got)
	}
	obs.ObserveLanes(outbox.LaneEvent{Owner: "new", Held: 0, Released: 256, Relays: 1})
	if got := gather(t, reg, "txoutbox_relay_lanes_held").value; got != 0 {
		t.Errorf("lanes held = %v, want 0", got)
	}
}

func TestObserverSeriesExistBeforeEvents(t *testing.T) {
	t.Parallel()
	reg := registry(t, newObserver(t, outboxprom.ObserverConfig{}))
	for _, outcome := range []string{"retried", "dead_lettered", "released", "topic_paused"} {
		if got := gather(t, reg, "txoutbox_relay_failed_total", "outcome", outcome).value; got != 0 {
			t.Errorf("failed{%s} = %v", outcome, got)
		}
	}
	if got := gather(t, reg, "txoutbox_relay_published_total").value; got != 0 {
		t.Errorf("published = %v", got)
	}
}

func TestObserverTopicLabel(t *testing.T) {
	t.Parallel()
	// Subjects carry an order number; the label keeps their first tokens.
	group := func(topic string) string {
		if i := strings.LastIndexByte(topic, '.'); i >= 0 {
			return topic[:i]
		}
		return topic
	}
	obs := newObserver(t, outboxprom.ObserverConfig{TopicLabel: group})
	reg := registry(t, obs)
	now := time.Now()
	obs.ObserveBatch(outbox.BatchEvent{
		Records: []outbox.Record{
			record("orders.created.1", now), record("orders.created.2", now),
			record("orders.paid.1", now), record("orders.paid.2", now),
			record("orders.refunded.1", now),
		},
		Outcomes: []outbox.Outcome{
			{Status: outbox.Delivered}, {Status: outbox.Delivered},
			{Status: outbox.Delivered}, {Status: outbox.Retried, Err: errors.New("no")},
			{Status: outbox.Released, Err: outbox.ErrTopicUnavailable, RetryIn: time.Second},
		},
		PublishDuration: time.Millisecond,
		PublishedAt:     now,
	})
	if got := gather(t, reg, "txoutbox_relay_published_total", "topic", "orders.created").value; got != 2 {
		t.Errorf("published{orders.created} = %v, want 2", got)
	}
	if got := gather(t, reg, "txoutbox_relay_published_total", "topic", "orders.paid").value; got != 1 {
		t.Errorf("published{orders.paid} = %v, want 1", got)
	}
	if got := gather(t, reg, "txoutbox_relay_failed_total", "topic", "orders.paid", "outcome", "retried").value; got != 1 {
		t.Errorf("failed{orders.paid,retried} = %v, want 1", got)
	}
	if got := gather(t, reg, "txoutbox_relay_failed_total", "topic", "orders.refunded", "outcome", "topic_paused").value; got != 1 {
		t.Errorf("failed{orders.refunded,topic_paused} = %v, want 1", got)
	}
	if got := gather(t, reg, "txoutbox_relay_publish_lag_seconds", "topic", "orders.created").count; got != 2 {
		t.Errorf("lag{orders.created} has %d samples, want 2", got)
	}
	if n := testutil.CollectAndCount(obs, "txoutbox_relay_published_total"); n != 2 {
		t.Errorf("%d published series, want one per topic group (2)", n)
	}
}

// CreatedAt comes from the writer's clock: a writer ahead of the relay
// must not produce a negative lag.
func TestObserverClampsNegativeLag(t *testing.T) {
	t.Parallel()
	obs := newObserver(t, outboxprom.ObserverConfig{})
	reg := registry(t, obs)
	now := time.Now()
	obs.ObserveBatch(outbox.BatchEvent{
		Records:     []outbox.Record{record("a", now.Add(time.Minute))},
		Outcomes:    []outbox.Outcome{{Status: outbox.Delivered}},
		PublishedAt: now,
	})
	if got := gather(t, reg, "txoutbox_relay_publish_lag_seconds"); got.count != 1 || got.sum != 0 {
		t.Errorf("lag: %d samples summing to %v, want 1 summing to 0", got.count, got.sum)
	}
}

func TestObserverConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]outboxprom.ObserverConfig{
		"unsorted buckets":     {DurationBuckets: []float64{1, 0.5}},
		"repeated lag buckets": {LagBuckets: []float64{1, 1}},
		"invalid label":        {ConstLabels: prometheus.Labels{"bad-name": "x"}},
		"reserved label":       {ConstLabels: prometheus.Labels{"__name": "x"}},
		"clashing label":       {ConstLabels: prometheus.Labels{"outcome": "x"}},
		"clashing topic label": {ConstLabels: prometheus.Labels{"topic": "x"}},
	} {
		if _, err := outboxprom.NewObserver(cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: NewObserver = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// Several relays in one process: one observer each, told apart by a
// constant label, in one registry.
func TestObserversWithConstLabelsShareARegistry(t *testing.T) {
	t.Parallel()
	orders := newObserver(t, outboxprom.ObserverConfig{ConstLabels: prometheus.Labels{"outbox": "orders"}})
	billing := newObserver(t, outboxprom.ObserverConfig{ConstLabels: prometheus.Labels{"outbox": "billing"}})
	reg := registry(t, orders, billing)
	orders.ObserveRead(outbox.ReadEvent{Records: 1})
	orders.ObserveLanes(outbox.LaneEvent{Owner: "o", Held: 3, Taken: 3, Relays: 1})
	if got := gather(t, reg, "txoutbox_relay_reads_total", "outbox", "orders").value; got != 1 {
		t.Errorf("reads{orders} = %v", got)
	}
	if got := gather(t, reg, "txoutbox_relay_reads_total", "outbox", "billing").value; got != 0 {
		t.Errorf("reads{billing} = %v", got)
	}
	if got := gather(t, reg, "txoutbox_relay_lanes_held", "outbox", "orders").value; got != 3 {
		t.Errorf("lanes held{orders} = %v", got)
	}
	if got := gather(t, reg, "txoutbox_relay_lanes_held", "outbox", "billing").value; got != 0 {
		t.Errorf("lanes held{billing} = %v", got)
	}
}

func TestMetricsPassLint(t *testing.T) {
	t.Parallel()
	obs := newObserver(t, outboxprom.ObserverConfig{TopicLabel: func(s string) string { return s }})
	stats, err := outboxprom.NewStatsCollector(fixedStats{stats: outbox.Stats{
		Lanes:   256,
		Relays:  []outbox.RelayLanes{{Owner: "r", Lanes: 256}},
		Lagging: []outbox.LaneLag{{Lane: 7, Owner: "r", Pending: 3, OldestPending: time.Now()}},
	}}, outboxprom.StatsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry(t, obs, stats)
	obs.ObserveLanes(outbox.LaneEvent{Owner: "r", Held: 256, Taken: 256, Relays: 1})
	obs.ObserveBatch(outbox.BatchEvent{
		Records:  []outbox.Record{record("a", time.Now()), record("a", time.Now())},
		Outcomes: []outbox.Outcome{{Status: outbox.Delivered}, {Status: outbox.Released}},
	})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for _, f := range must(reg.Gather()) {
		if !strings.HasPrefix(f.GetName(), "txoutbox_") {
			t.Errorf("metric %s is outside the txoutbox_ namespace", f.GetName())
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

package outboxprom_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

var quiet = slog.New(slog.DiscardHandler)

func newStats(t testing.TB, sr outbox.StatsReader, cfg outboxprom.StatsConfig) *outboxprom.StatsCollector {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := outboxprom.NewStatsCollector(sr, cfg)
	if err != nil {
		t.Fatalf("NewStatsCollector: %v", err)
	}
	return c
}

// fixedStats answers Stats with stats and err, counting calls.
type fixedStats struct {
	stats outbox.Stats
	err   error
	calls *atomic.Int32
}

func (f fixedStats) Stats(context.Context) (outbox.Stats, error) {
	if f.calls != nil {
		f.calls.Add(1)
	}
	return f.stats, f.err
}

// The gauges report what the store holds: pending, leased, retrying,
// replayed, dead and the leases of each relay.
func TestStatsCollectorReportsTheBacklog(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := memory.NewStore(memory.StoreConfig{})
	tx := store.Begin()
	for _, key := range []string{"a", "b", "c", "d", "e"} {
		if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	claim := func(owner string, n int) []outbox.Record {
		recs, err := store.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: n, Lease: time.Hour})
		if err != nil || len(recs) != n {
			t.Fatalf("Claim = %d records, %v; want %d", len(recs), err, n)
		}
		return recs
	}
	a := claim("relay-a", 3)
	b := claim("relay-b", 2)
	if err := store.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "relay-a", Retries: []outbox.Retry{{ID: a[0].ID, Error: "no", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "relay-b", Letters: []outbox.Failure{{ID: b[0].ID, Error: "no"}, {ID: b[1].ID, Error: "no"}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := store.ReplayDead(ctx, outbox.SelectDead{IDs: []string{b[1].ID}}); n != 1 || err != nil {
		t.Fatalf("ReplayDead = %d, %v", n, err)
	}

	c := newStats(t, store, outboxprom.StatsConfig{ConstLabels: prometheus.Labels{"outbox": "orders"}})
	const want = `
# HELP txoutbox_dead_letters Dead-lettered messages, waiting to be replayed or purged.
# TYPE txoutbox_dead_letters gauge
txoutbox_dead_letters{outbox="orders"} 1
# HELP txoutbox_leased_messages Pending messages leased to a relay right now.
# TYPE txoutbox_leased_messages gauge
txoutbox_leased_messages{outbox="orders"} 2
# HELP txoutbox_pending_messages Messages not yet delivered and not dead, leased or not.
# TYPE txoutbox_pending_messages gauge
txoutbox_pending_messages{outbox="orders"} 4
# HELP txoutbox_relay_leased_messages Messages leased to each relay, by the relay's owner identity.
# TYPE txoutbox_relay_leased_messages gauge
txoutbox_relay_leased_messages{outbox="orders",owner="relay-a"} 2
# HELP txoutbox_replayed_messages Pending messages replayed from the dead letters and not tried since.
# TYPE txoutbox_replayed_messages gauge
txoutbox_replayed_messages{outbox="orders"} 1
# HELP txoutbox_retrying_messages Pending messages that failed at least once since they were written or replayed.
# TYPE txoutbox_retrying_messages gauge
txoutbox_retrying_messages{outbox="orders"} 1
# HELP txoutbox_stats_up 1 if the last read of the outbox statistics succeeded, 0 if it failed (the other txoutbox_ stats are then absent).
# TYPE txoutbox_stats_up gauge
txoutbox_stats_up{outbox="orders"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"txoutbox_dead_letters", "txoutbox_leased_messages", "txoutbox_pending_messages",
		"txoutbox_relay_leased_messages", "txoutbox_replayed_messages", "txoutbox_retrying_messages", "txoutbox_stats_up"); err != nil {
		t.Error(err)
	}
	reg := registry(t, c)
	if age := gather(t, reg, "txoutbox_oldest_pending_age_seconds").value; age <= 0 || age > 3600 {
		t.Errorf("oldest pending age = %vs; the oldest message was enqueued during this test", age)
	}
}

func TestStatsCollectorEmptyOutbox(t *testing.T) {
	t.Parallel()
	reg := registry(t, newStats(t, memory.NewStore(memory.StoreConfig{}), outboxprom.StatsConfig{}))
	for _, name := range []string{"txoutbox_pending_messages", "txoutbox_oldest_pending_age_seconds", "txoutbox_dead_letters"} {
		if got := gather(t, reg, name).value; got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "txoutbox_relay_leased_messages"); err != nil || n != 0 {
		t.Errorf("relay lease series = %d, %v; want none", n, err)
	}
}

// A failing store turns into stats_up 0 and no stale numbers, and the
// scrape still succeeds.
func TestStatsCollectorStoreFailure(t *testing.T) {
	t.Parallel()
	var logged strings.Builder
	c := newStats(t, fixedStats{err: fmt.Errorf("stats: %w", outbox.ErrUnavailable)}, outboxprom.StatsConfig{
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	reg := registry(t, c)
	if got := gather(t, reg, "txoutbox_stats_up").value; got != 0 {
		t.Errorf("stats_up = %v, want 0", got)
	}
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("%d series after a failure, want 2 (up and duration)", n)
	}
	if !strings.Contains(logged.String(), "backend unavailable") {
		t.Errorf("the failure was not logged: %q", logged.String())
	}
}

// blockingStats waits for its context to end, as a store does when the
// database does not answer.
type blockingStats struct{ seen chan error }

func (b blockingStats) Stats(ctx context.Context) (outbox.Stats, error) {
	<-ctx.Done()
	b.seen <- ctx.Err()
	return outbox.Stats{}, ctx.Err()
}

func TestStatsCollectorTimeout(t *testing.T) {
	t.Parallel()
	sr := blockingStats{seen: make(chan error, 1)}
	reg := registry(t, newStats(t, sr, outboxprom.StatsConfig{Timeout: 10 * time.Millisecond}))
	if got := gather(t, reg, "txoutbox_stats_up").value; got != 0 {
		t.Errorf("stats_up = %v, want 0", got)
	}
	if err := <-sr.seen; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the store saw %v, want its deadline exceeded", err)
	}
}

func TestStatsCollectorMaxAge(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		maxAge time.Duration
		calls  int32
	}{
		{0, 3},         // every scrape reads
		{time.Hour, 1}, // one read serves the hour
	} {
		var calls atomic.Int32
		coll := newStats(t, fixedStats{calls: &calls}, outboxprom.StatsConfig{MaxAge: c.maxAge})
		for range 3 {
			testutil.CollectAndCount(coll)
		}
		if got := calls.Load(); got != c.calls {
			t.Errorf("MaxAge %v: %d Stats calls for 3 scrapes, want %d", c.maxAge, got, c.calls)
		}
	}
}

func TestStatsCollectorRelays(t *testing.T) {
	t.Parallel()
	sr := fixedStats{stats: outbox.Stats{Relays: []outbox.RelayLeases{
		{Owner: "a", Leased: 3}, {Owner: "b", Leased: 1}, {Owner: "a", Leased: 2}, // a store listing an owner twice
	}}}
	reg := registry(t, newStats(t, sr, outboxprom.StatsConfig{}))
	if got := gather(t, reg, "txoutbox_relay_leased_messages", "owner", "a").value; got != 5 {
		t.Errorf("leases of a = %v, want 5", got)
	}
	if got := gather(t, reg, "txoutbox_relay_leased_messages", "owner", "b").value; got != 1 {
		t.Errorf("leases of b = %v, want 1", got)
	}

	omit := newStats(t, sr, outboxprom.StatsConfig{OmitRelays: true})
	if n := testutil.CollectAndCount(omit, "txoutbox_relay_leased_messages"); n != 0 {
		t.Errorf("OmitRelays: %d relay series", n)
	}
	registry(t, omit) // its Describe matches what it collects
}

func TestStatsConfigErrors(t *testing.T) {
	t.Parallel()
	ok := fixedStats{}
	for name, c := range map[string]struct {
		sr  outbox.StatsReader
		cfg outboxprom.StatsConfig
	}{
		"no store":         {nil, outboxprom.StatsConfig{}},
		"negative timeout": {ok, outboxprom.StatsConfig{Timeout: -time.Second}},
		"negative max age": {ok, outboxprom.StatsConfig{MaxAge: -time.Second}},
		"owner label":      {ok, outboxprom.StatsConfig{ConstLabels: prometheus.Labels{"owner": "x"}}},
		"bad label":        {ok, outboxprom.StatsConfig{ConstLabels: prometheus.Labels{"1x": "x"}}},
	} {
		if _, err := outboxprom.NewStatsCollector(c.sr, c.cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: NewStatsCollector = %v, want ErrInvalidConfig", name, err)
		}
	}
}

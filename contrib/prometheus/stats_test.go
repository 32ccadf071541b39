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

// keysOfLane returns n keys whose lane among lanes is lane.
func keysOfLane(lane, lanes, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if k := fmt.Sprintf("key-%d", i); outbox.LaneOf(k, "", lanes) == lane {
			keys = append(keys, k)
		}
	}
	return keys
}

// holdLane makes owner a live relay holding lane id of store (at epoch 0,
// a lane never held before) and returns its lease.
func holdLane(t *testing.T, ctx context.Context, store *memory.Store, owner string, id int) outbox.Lane {
	t.Helper()
	if _, err := store.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	taken, err := store.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Hour, Lanes: []outbox.Lane{{ID: id}}})
	if err != nil || len(taken) != 1 {
		t.Fatalf("TakeLanes = %v, %v; want lane %d", taken, err, id)
	}
	return taken[0]
}

// The gauges report what the store holds: pending, retrying, replayed,
// dead, the lanes, the lanes each relay holds and the lagging lanes.
func TestStatsCollectorReportsTheBacklog(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := memory.NewStore(memory.StoreConfig{Lanes: 2})
	tx := store.Begin()
	for _, key := range append(keysOfLane(0, 2, 3), keysOfLane(1, 2, 2)...) {
		if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	read := func(lane outbox.Lane, n int) []outbox.Record {
		recs, err := store.Read(ctx, outbox.ReadParams{Lanes: []int{lane.ID}, Limit: 10})
		if err != nil || len(recs) != n {
			t.Fatalf("Read of lane %d = %d records, %v; want %d", lane.ID, len(recs), err, n)
		}
		return recs
	}
	laneA := holdLane(t, ctx, store, "relay-a", 0)
	laneB := holdLane(t, ctx, store, "relay-b", 1)
	a := read(laneA, 3)
	b := read(laneB, 2)
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: []outbox.Lane{laneA},
		Retries: []outbox.Retry{{ID: a[0].ID, Error: "no", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Settle(ctx, outbox.SettleParams{Lanes: []outbox.Lane{laneB},
		Dead: []outbox.Failure{{ID: b[0].ID, Error: "no"}, {ID: b[1].ID, Error: "no"}}}); err != nil {
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
# HELP txoutbox_lane_pending_messages Pending messages of the lanes whose oldest pending message is oldest (at most 10 lanes), by lane.
# TYPE txoutbox_lane_pending_messages gauge
txoutbox_lane_pending_messages{lane="0",outbox="orders"} 3
txoutbox_lane_pending_messages{lane="1",outbox="orders"} 1
# HELP txoutbox_lanes Lanes of the outbox (fixed when its schema was created); live relays share them.
# TYPE txoutbox_lanes gauge
txoutbox_lanes{outbox="orders"} 2
# HELP txoutbox_pending_messages Messages not yet delivered and not dead.
# TYPE txoutbox_pending_messages gauge
txoutbox_pending_messages{outbox="orders"} 4
# HELP txoutbox_relay_lanes Lanes each live relay holds, by the relay's owner identity.
# TYPE txoutbox_relay_lanes gauge
txoutbox_relay_lanes{outbox="orders",owner="relay-a"} 1
txoutbox_relay_lanes{outbox="orders",owner="relay-b"} 1
# HELP txoutbox_replayed_messages Pending messages replayed from the dead letters and not tried since.
# TYPE txoutbox_replayed_messages gauge
txoutbox_replayed_messages{outbox="orders"} 1
# HELP txoutbox_retrying_messages Pending messages that failed at least once since they were written or replayed (or were in flight when their relay died).
# TYPE txoutbox_retrying_messages gauge
txoutbox_retrying_messages{outbox="orders"} 1
# HELP txoutbox_stats_up 1 if the last read of the outbox statistics succeeded, 0 if it failed (the other txoutbox_ stats are then absent).
# TYPE txoutbox_stats_up gauge
txoutbox_stats_up{outbox="orders"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"txoutbox_dead_letters", "txoutbox_lane_pending_messages", "txoutbox_lanes", "txoutbox_pending_messages",
		"txoutbox_relay_lanes", "txoutbox_replayed_messages", "txoutbox_retrying_messages", "txoutbox_stats_up"); err != nil {
		t.Error(err)
	}
	reg := registry(t, c)
	if age := gather(t, reg, "txoutbox_oldest_pending_age_seconds").value; age <= 0 || age > 3600 {
		t.Errorf("oldest pending age = %vs; the oldest message was enqueued during this test", age)
	}
	for _, lane := range []string{"0", "1"} {
		if age := gather(t, reg, "txoutbox_lane_oldest_pending_age_seconds", "lane", lane).value; age <= 0 || age > 3600 {
			t.Errorf("oldest pending age of lane %s = %vs; its messages were enqueued during this test", lane, age)
		}
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
	if got := gather(t, reg, "txoutbox_lanes").value; got != outbox.DefaultLanes {
		t.Errorf("lanes = %v, want %d", got, outbox.DefaultLanes)
	}
	for _, name := range []string{"txoutbox_relay_lanes", "txoutbox_lane_pending_messages", "txoutbox_lane_oldest_pending_age_seconds",
		"txoutbox_log_streaming", "txoutbox_log_lag_bytes", "txoutbox_log_lag_seconds", "txoutbox_log_retained_bytes", "txoutbox_log_lost"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Errorf("%s: %d series, %v; want none", name, n, err)
		}
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
	sr := fixedStats{stats: outbox.Stats{Lanes: 8, Relays: []outbox.RelayLanes{
		{Owner: "a", Lanes: 3}, {Owner: "b", Lanes: 1}, {Owner: "a", Lanes: 2}, // a store listing an owner twice
	}}}
	reg := registry(t, newStats(t, sr, outboxprom.StatsConfig{}))
	if got := gather(t, reg, "txoutbox_relay_lanes", "owner", "a").value; got != 5 {
		t.Errorf("lanes of a = %v, want 5", got)
	}
	if got := gather(t, reg, "txoutbox_relay_lanes", "owner", "b").value; got != 1 {
		t.Errorf("lanes of b = %v, want 1", got)
	}

	omit := newStats(t, sr, outboxprom.StatsConfig{OmitRelays: true})
	if n := testutil.CollectAndCount(omit, "txoutbox_relay_lanes"); n != 0 {
		t.Errorf("OmitRelays: %d relay series", n)
	}
	registry(t, omit) // its Describe matches what it collects
}

func TestStatsCollectorLagging(t *testing.T) {
	t.Parallel()
	now := time.Now()
	sr := fixedStats{stats: outbox.Stats{Lanes: 8, Pending: 7, OldestPending: now.Add(-time.Minute), Lagging: []outbox.LaneLag{
		{Lane: 5, Owner: "a", Pending: 4, OldestPending: now.Add(-time.Minute)},
		{Lane: 2, Pending: 3, OldestPending: now.Add(-time.Second)},           // nobody holds it
		{Lane: 5, Owner: "a", Pending: 9, OldestPending: now.Add(-time.Hour)}, // a store listing a lane twice
		{Lane: 6, Pending: 1, OldestPending: now.Add(time.Hour)},              // the writer's clock is ahead
	}}}
	reg := registry(t, newStats(t, sr, outboxprom.StatsConfig{}))
	for _, c := range []struct {
		lane           string
		pending        float64
		minAge, maxAge float64
	}{
		{"5", 4, 59, 3600}, // the first listing counts
		{"2", 3, 0.9, 60},
		{"6", 1, 0, 0},
	} {
		if got := gather(t, reg, "txoutbox_lane_pending_messages", "lane", c.lane).value; got != c.pending {
			t.Errorf("pending of lane %s = %v, want %v", c.lane, got, c.pending)
		}
		if age := gather(t, reg, "txoutbox_lane_oldest_pending_age_seconds", "lane", c.lane).value; age < c.minAge || age > c.maxAge {
			t.Errorf("age of lane %s = %vs, want %v to %v", c.lane, age, c.minAge, c.maxAge)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "txoutbox_lane_pending_messages"); err != nil || n != 3 {
		t.Errorf("%d lane series, %v; want 3", n, err)
	}

	omit := newStats(t, sr, outboxprom.StatsConfig{OmitLagging: true})
	for _, name := range []string{"txoutbox_lane_pending_messages", "txoutbox_lane_oldest_pending_age_seconds"} {
		if n := testutil.CollectAndCount(omit, name); n != 0 {
			t.Errorf("OmitLagging: %d series of %s", n, name)
		}
	}
	registry(t, omit)
}

// The log's gauges follow Stats.Log: all of them for a slot a relay
// streams from; no lag in seconds when the store does not know it;
// streaming 0 alone for a missing slot.
func TestStatsCollectorLog(t *testing.T) {
	t.Parallel()
	lag := 1.5
	for _, c := range []struct {
		name string
		log  outbox.LogStats
		want map[string]float64 // absent names: no series
	}{
		{"streamed", outbox.LogStats{Slot: "s", Holder: "a", LagBytes: 300, LagSeconds: &lag, RetainedBytes: 900},
			map[string]float64{"txoutbox_log_streaming": 1, "txoutbox_log_lag_bytes": 300, "txoutbox_log_lag_seconds": 1.5, "txoutbox_log_retained_bytes": 900, "txoutbox_log_lost": 0}},
		{"left behind", outbox.LogStats{Slot: "s", LagBytes: 300, RetainedBytes: 900},
			map[string]float64{"txoutbox_log_streaming": 0, "txoutbox_log_lag_bytes": 300, "txoutbox_log_retained_bytes": 900, "txoutbox_log_lost": 0}},
		{"lost", outbox.LogStats{Slot: "s", Lost: true},
			map[string]float64{"txoutbox_log_streaming": 0, "txoutbox_log_lag_bytes": 0, "txoutbox_log_retained_bytes": 0, "txoutbox_log_lost": 1}},
		{"missing", outbox.LogStats{Slot: "s", Missing: true},
			map[string]float64{"txoutbox_log_streaming": 0}},
	} {
		log := c.log
		reg := registry(t, newStats(t, fixedStats{stats: outbox.Stats{Lanes: 8, Log: &log}}, outboxprom.StatsConfig{}))
		for _, name := range []string{"txoutbox_log_streaming", "txoutbox_log_lag_bytes", "txoutbox_log_lag_seconds", "txoutbox_log_retained_bytes", "txoutbox_log_lost"} {
			want, ok := c.want[name]
			n, err := testutil.GatherAndCount(reg, name)
			switch {
			case err != nil || (ok && n != 1) || (!ok && n != 0):
				t.Errorf("%s: %s has %d series (%v), want it %v", c.name, name, n, err, map[bool]string{true: "present", false: "absent"}[ok])
			case ok:
				if got := gather(t, reg, name).value; got != want {
					t.Errorf("%s: %s = %v, want %v", c.name, name, got, want)
				}
			}
		}
	}
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
		"lane label":       {ok, outboxprom.StatsConfig{ConstLabels: prometheus.Labels{"lane": "x"}}},
		"bad label":        {ok, outboxprom.StatsConfig{ConstLabels: prometheus.Labels{"1x": "x"}}},
	} {
		if _, err := outboxprom.NewStatsCollector(c.sr, c.cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: NewStatsCollector = %v, want ErrInvalidConfig", name, err)
		}
	}
}

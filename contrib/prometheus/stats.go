package outboxprom

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	outbox "github.com/txoutbox/txoutbox/core"
)

// StatsConfig configures a [StatsCollector]. The zero value is ready to use.
type StatsConfig struct {
	// ConstLabels are added to every metric, to tell apart several
	// outboxes exported by one process. Names must match
	// [a-zA-Z_][a-zA-Z0-9_]* and must not be "owner" or "lane".
	ConstLabels prometheus.Labels

	// Timeout bounds one Stats call. Default 5s, below Prometheus's
	// default scrape timeout of 10s, so that a slow database costs the
	// stats, not the whole scrape.
	Timeout time.Duration

	// MaxAge lets a scrape reuse the result of a Stats call younger than
	// this instead of querying the store again. Zero (the default) queries
	// on every scrape, as Prometheus collectors usually do: the numbers are
	// as fresh as the scrape, and one query per scrape interval is little
	// load. Raise it when many scrapers (an HA Prometheus pair, dashboards
	// hitting the endpoint) would query a large outbox often. Scrapes that
	// arrive while a Stats call runs share its result in any case.
	MaxAge time.Duration

	// OmitRelays leaves out txoutbox_relay_lanes, the lanes each live
	// relay holds, by owner. Owners change at every relay restart, so each
	// restart starts new series; they exist only while that relay is live.
	OmitRelays bool

	// OmitLagging leaves out txoutbox_lane_pending_messages and
	// txoutbox_lane_oldest_pending_age_seconds, the backlog of the lanes
	// that lag most (at most 10, by lane). The lanes change as the backlog
	// moves, so each lane that lags once starts series of its own.
	OmitLagging bool

	// Logger receives a warning for each failed Stats call. Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultStatsTimeout is the default of [StatsConfig.Timeout].
const DefaultStatsTimeout = 5 * time.Second

// StatsCollector is a [prometheus.Collector] that reads an outbox's
// statistics ([outbox.StatsReader]) when Prometheus scrapes. When the call
// fails, it exports txoutbox_stats_up 0 and leaves the other stats out
// rather than repeat stale numbers; the scrape itself succeeds, so relay
// metrics registered beside it are still collected.
//
// Every relay process of one outbox that exports it reports the same
// outbox-wide numbers: aggregate them with max, not sum. Collect waits for
// the store, so the store's Stats must honour its context's deadline.
type StatsCollector struct {
	sr      outbox.StatsReader
	timeout time.Duration
	maxAge  time.Duration
	relays  bool
	lagging bool
	log     *slog.Logger

	up, duration, pending, retrying, replayed, dead, oldestAge, lanes *prometheus.Desc
	relayLanes, lanePending, laneAge                                  *prometheus.Desc
	logStreaming, logLagBytes, logLagSeconds, logRetained, logLost    *prometheus.Desc

	mu     sync.Mutex // held while Stats runs, so concurrent scrapes share one call
	last   outbox.Stats
	lastAt time.Time // when the last call returned; zero before the first
	took   time.Duration
	err    error
}

var _ prometheus.Collector = (*StatsCollector)(nil)

// NewStatsCollector returns a collector of sr's statistics; register it
// with a [prometheus.Registerer]. It reports a missing store or an invalid
// configuration with an error matching [outbox.ErrInvalidConfig].
func NewStatsCollector(sr outbox.StatsReader, cfg StatsConfig) (*StatsCollector, error) {
	if sr == nil {
		return nil, fmt.Errorf("%w: NewStatsCollector needs a store that is an outbox.StatsReader", outbox.ErrInvalidConfig)
	}
	if cfg.Timeout < 0 || cfg.MaxAge < 0 {
		return nil, fmt.Errorf("%w: StatsConfig.Timeout and MaxAge must not be negative", outbox.ErrInvalidConfig)
	}
	if err := checkConstLabels("StatsConfig", cfg.ConstLabels, "owner", "lane"); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultStatsTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, cfg.ConstLabels)
	}
	return &StatsCollector{
		sr:      sr,
		timeout: cfg.Timeout,
		maxAge:  cfg.MaxAge,
		relays:  !cfg.OmitRelays,
		lagging: !cfg.OmitLagging,
		log:     cfg.Logger,

		up:        desc("stats_up", "1 if the last read of the outbox statistics succeeded, 0 if it failed (the other txoutbox_ stats are then absent)."),
		duration:  desc("stats_duration_seconds", "How long the last read of the outbox statistics took."),
		pending:   desc("pending_messages", "Messages not yet delivered and not dead."),
		retrying:  desc("retrying_messages", "Pending messages that failed at least once since they were written or replayed (or were in flight when their relay died)."),
		replayed:  desc("replayed_messages", "Pending messages replayed from the dead letters and not tried since."),
		dead:      desc("dead_letters", "Dead-lettered messages, waiting to be replayed or purged."),
		oldestAge: desc("oldest_pending_age_seconds", "Age of the oldest pending message (now minus its enqueue time); 0 when nothing is pending."),
		lanes:     desc("lanes", "Lanes of the outbox (fixed when its schema was created); live relays share them."),
		relayLanes: desc("relay_lanes",
			"Lanes each live relay holds, by the relay's owner identity.", "owner"),
		lanePending: desc("lane_pending_messages",
			"Pending messages of the lanes whose oldest pending message is oldest (at most 10 lanes), by lane.", "lane"),
		laneAge: desc("lane_oldest_pending_age_seconds",
			"Age of the oldest pending message of the same lanes as txoutbox_lane_pending_messages, by lane.", "lane"),
		logStreaming: desc("log_streaming",
			"1 if a relay streams from the log (PostgreSQL: the replication slot of the tailing mode), 0 if none does and the slot retains WAL for nobody, or it is missing. Absent without a log."),
		logLagBytes: desc("log_lag_bytes", "Bytes of the database's log written past the position the relays confirmed in it (absent without a log)."),
		logLagSeconds: desc("log_lag_seconds",
			"How long ago the relay streaming from the log was sent the oldest record it has not confirmed (PostgreSQL: the walsender's flush_lag); absent when unknown."),
		logRetained: desc("log_retained_bytes", "Bytes of the database's log kept for the relays' slot (absent without a log)."),
		logLost:     desc("log_lost", "1 if the database removed log the slot still needed (PostgreSQL: max_slot_wal_keep_size): its messages are lost (absent without a log)."),
	}, nil
}

// Describe implements [prometheus.Collector].
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.duration, c.pending, c.retrying, c.replayed, c.dead, c.oldestAge, c.lanes,
		c.logStreaming, c.logLagBytes, c.logLagSeconds, c.logRetained, c.logLost} {
		ch <- d
	}
	if c.relays {
		ch <- c.relayLanes
	}
	if c.lagging {
		ch <- c.lanePending
		ch <- c.laneAge
	}
}

// Collect implements [prometheus.Collector]: it reads the statistics (or
// reuses a result, see [StatsConfig.MaxAge]) and sends them.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	st, took, err := c.read()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.duration, took.Seconds())
	if err != nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	gauge(c.pending, float64(st.Pending))
	gauge(c.retrying, float64(st.Retrying))
	gauge(c.replayed, float64(st.Replayed))
	gauge(c.dead, float64(st.Dead))
	now := time.Now()
	gauge(c.oldestAge, ageSeconds(now, st.OldestPending))
	gauge(c.lanes, float64(st.Lanes))
	if l := st.Log; l != nil {
		gauge(c.logStreaming, boolGauge(l.Holder != ""))
		if !l.Missing {
			gauge(c.logLagBytes, float64(l.LagBytes))
			gauge(c.logRetained, float64(l.RetainedBytes))
			gauge(c.logLost, boolGauge(l.Lost))
			if l.LagSeconds != nil {
				gauge(c.logLagSeconds, *l.LagSeconds)
			}
		}
	}
	if c.relays {
		// A store should list each owner once; adding up guards the
		// scrape against a duplicate, which Prometheus would reject.
		lanes := make(map[string]int, len(st.Relays))
		for _, r := range st.Relays {
			lanes[r.Owner] += r.Lanes
		}
		for owner, n := range lanes {
			gauge(c.relayLanes, float64(n), owner)
		}
	}
	if c.lagging {
		seen := make(map[int]bool, len(st.Lagging))
		for _, l := range st.Lagging {
			if seen[l.Lane] {
				continue // likewise, one series per lane
			}
			seen[l.Lane] = true
			lane := strconv.Itoa(l.Lane)
			gauge(c.lanePending, float64(l.Pending), lane)
			gauge(c.laneAge, ageSeconds(now, l.OldestPending), lane)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ageSeconds is now minus t, 0 when t is zero (nothing pending) or in the
// future (clock skew between the writer and this process).
func ageSeconds(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(0, now.Sub(t).Seconds())
}

// read returns fresh statistics, or the last ones when they are younger
// than maxAge or were read while this call waited for the lock.
func (c *StatsCollector) read() (outbox.Stats, time.Duration, error) {
	asked := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.lastAt.IsZero() && (c.lastAt.After(asked) || time.Since(c.lastAt) < c.maxAge) {
		return c.last, c.took, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	st, err := c.sr.Stats(ctx)
	c.lastAt = time.Now()
	c.took = c.lastAt.Sub(start)
	c.last, c.err = st, err
	if err != nil {
		c.log.Warn("outboxprom: could not read the outbox statistics", slog.Any("error", err))
	}
	return st, c.took, err
}

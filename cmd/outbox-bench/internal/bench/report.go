package bench

import (
	"math"
	"slices"
	"time"
)

// Report is the outcome of a run. Its JSON form (`outbox-bench --json`) has
// stable field names; rates are per second, durations in milliseconds.
type Report struct {
	// Started and Seconds tell when the run began and how long it took.
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// Command is the command line of the run, secrets hidden.
	Command string `json:"command,omitempty"`
	// Machine is where it ran.
	Machine Machine `json:"machine"`
	// Settings are the sizes and durations the run used.
	Settings Settings `json:"settings"`

	Stores  []StoreReport  `json:"stores"`
	Brokers []BrokerReport `json:"brokers"`
	Pairs   []PairReport   `json:"pairs"`
	// Targets are the goals of issue 11, checked against this run.
	Targets []TargetCheck `json:"targets"`
	// Errors are measurements that failed; the others still ran.
	Errors []string `json:"errors,omitempty"`
}

// Machine describes the machine of a run.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	// LoadBefore and LoadAfter are the 1-, 5- and 15-minute load averages
	// at the start and the end of the run (Linux), the best hint of how
	// much else the machine was doing.
	LoadBefore []float64 `json:"load_before,omitempty"`
	LoadAfter  []float64 `json:"load_after,omitempty"`
}

// Settings are what a run measured with.
type Settings struct {
	Quick           bool    `json:"quick"`
	Rounds          int     `json:"rounds"`
	Backlog         int     `json:"backlog"`
	Keys            int     `json:"keys"`
	HotKeys         int     `json:"hot_keys,omitempty"`
	PayloadBytes    int     `json:"payload_bytes"`
	Relays          []int   `json:"relays"`
	Rates           []int   `json:"rates"`
	LatencySeconds  float64 `json:"latency_seconds"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	SimplePollMs    float64 `json:"simple_poll_ms"`
	Writers         int     `json:"writers"`
	EnqueueSeconds  float64 `json:"enqueue_seconds"`
	Retained        int     `json:"retained"`
	ReadRounds      int     `json:"read_rounds"`
	RelayBatchSize  int     `json:"relay_batch_size"`
	RelayWorkers    int     `json:"relay_concurrency"`
	RelayMinPollMs  float64 `json:"relay_min_poll_ms"`
	RelayMaxPollMs  float64 `json:"relay_poll_ms"`
	SimpleBatchSize int     `json:"simple_batch_size"`
	// PGNotify is how PostgreSQL writers woke the relays in the latency
	// measurement.
	PGNotify Notify `json:"pg_notify"`
	// PGNotifyIntervalMs is pgstore's NotifyInterval of the writers.
	PGNotifyIntervalMs float64 `json:"pg_notify_interval_ms"`
}

// Measure is a figure measured Rounds times.
type Measure struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// Valid reports whether anything was measured.
func (m *Measure) Valid() bool { return m != nil && len(m.Runs) > 0 }

// add records one run.
func (m *Measure) add(v float64) {
	m.Runs = append(m.Runs, v)
	s := slices.Clone(m.Runs)
	slices.Sort(s)
	m.Min, m.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		m.Median = s[n/2]
	} else {
		m.Median = (s[n/2-1] + s[n/2]) / 2
	}
}

// Spread is (max - min) / median: how noisy the rounds were.
func (m *Measure) Spread() float64 {
	if !m.Valid() || m.Median == 0 {
		return 0
	}
	return (m.Max - m.Min) / m.Median
}

// StoreReport is what a run measured on one store alone.
type StoreReport struct {
	Component
	// RawInsert is the store's own batched insert into a plain table
	// (rows per second, 500 rows per statement and transaction).
	RawInsert *Measure `json:"raw_insert_rows_per_sec,omitempty"`
	// Backfill is the rate at which Enqueue wrote the drain backlogs (1,000
	// messages per transaction, 4 writers), messages per second.
	Backfill *Measure `json:"enqueue_backfill_per_sec,omitempty"`
	// Enqueue is the overhead of enqueueing in a business transaction.
	Enqueue *EnqueueResult `json:"enqueue,omitempty"`
	// TailEnqueue is the same on an outbox whose relay tails the log
	// (PostgreSQL's Config.Tail), that relay running.
	TailEnqueue *EnqueueResult `json:"tail_enqueue,omitempty"`
	// Growth is the read and settle cost with and without retained records.
	Growth *GrowthResult `json:"growth,omitempty"`
	// Idle is what a relay with nothing to do asks of the store.
	Idle *IdleResult `json:"idle,omitempty"`
	// Skipped names measurements that do not apply, with the reason.
	Skipped map[string]string `json:"skipped,omitempty"`
}

// EnqueueResult compares business transactions with and without outbox
// messages.
type EnqueueResult struct {
	Writers int `json:"writers"`
	// Relay tells whether a relay ran beside the writers.
	Relay bool          `json:"relay"`
	Cases []EnqueueCase `json:"cases"`
}

// IdleResult counts the store calls of one relay on an empty outbox, each
// one round trip (a statement, or statements sent together), per second.
type IdleResult struct {
	Seconds     float64 `json:"seconds"`
	CallsPerSec float64 `json:"calls_per_sec"`
	// ReadsPerSec and LanesPerSec split CallsPerSec into reads of the
	// lanes (polls) and lane leases (heartbeats, takes, releases).
	ReadsPerSec float64 `json:"reads_per_sec"`
	LanesPerSec float64 `json:"lanes_per_sec"`
}

// EnqueueCase is one kind of transaction.
type EnqueueCase struct {
	Name     string `json:"name"`
	Messages int    `json:"messages"`
	// Notify is how PostgreSQL writers woke the relay (interval,
	// every-tx, none); empty for other stores.
	Notify Notify `json:"notify,omitempty"`
	// TxPerSec is the transactions committed per second by all writers.
	TxPerSec Measure `json:"tx_per_sec"`
	// Ratio is the median time of one transaction relative to the
	// business transaction alone (its rate divided by this case's).
	Ratio float64 `json:"ratio"`
}

// GrowthResult compares read + settle on an outbox that retains no
// delivered record with one that retains Retained of them.
type GrowthResult struct {
	Retained int `json:"retained"`
	Batch    int `json:"batch"`
	// Empty and Full are the costs without and with the retained records.
	Empty ReadCost `json:"empty"`
	Full  ReadCost `json:"full"`
	// ReadRatio and SettleRatio are Full over Empty (medians).
	ReadRatio   float64 `json:"read_ratio"`
	SettleRatio float64 `json:"settle_ratio"`
}

// ReadCost is the time of one Read of Batch records over every lane and of
// the Settle that marks them delivered, in milliseconds.
type ReadCost struct {
	ReadMs   Measure `json:"read_ms"`
	SettleMs Measure `json:"settle_ms"`
}

// BrokerReport is what a run measured on one broker alone.
type BrokerReport struct {
	Component
	// Produce is the broker's own asynchronous producer (kgo Produce,
	// JetStream PublishAsync) sending the backlog, messages per second.
	Produce *Measure          `json:"produce_per_sec,omitempty"`
	Skipped map[string]string `json:"skipped,omitempty"`
}

// PairReport is what a run measured on one store × broker pair.
type PairReport struct {
	Store  string `json:"store"`
	Broker string `json:"broker"`
	// Simple is the drain by the simple relay, events per second.
	Simple *Measure `json:"simple_drain_per_sec,omitempty"`
	// Drain is the drain by txoutbox relays, one entry per relay count.
	Drain []DrainResult `json:"drain,omitempty"`
	// HotDrain is the drain of the same backlog over Settings.HotKeys keys
	// by one relay.
	HotDrain *DrainResult `json:"hot_drain,omitempty"`
	// TailDrain is the drain of the same backlog, written to the log of
	// an outbox that is tailed (PostgreSQL's Config.Tail), by one relay.
	TailDrain *DrainResult `json:"tail_drain,omitempty"`
	// Latency is commit → broker-ack latency at steady rates, for the
	// txoutbox relay and the simple relay.
	Latency []LatencyResult   `json:"latency,omitempty"`
	Skipped map[string]string `json:"skipped,omitempty"`
}

// DrainResult is the drain of the backlog by Relays txoutbox relays.
type DrainResult struct {
	Relays int `json:"relays"`
	// PerSec is events per second, from the relays' start until a consumer
	// has seen every record.
	PerSec Measure `json:"per_sec"`
	// VsSimple and VsProduce are the median over the simple relay's and
	// the broker's own producer's.
	VsSimple  float64 `json:"vs_simple,omitempty"`
	VsProduce float64 `json:"vs_produce,omitempty"`
	// VsAllKeys, for the hot-keys drain, is its median over the one-relay
	// drain of the run's keys.
	VsAllKeys float64 `json:"vs_all_keys,omitempty"`
	// Breakdowns tell, round by round, where the relays spent their time.
	Breakdowns []Breakdown `json:"breakdowns,omitempty"`
}

// LatencyResult is one latency measurement.
type LatencyResult struct {
	// Relay is "txoutbox" (polling), "tail" (txoutbox tailing the log)
	// or "simple".
	Relay string `json:"relay"`
	// Rate is the rate asked for; Achieved what the writers committed.
	Rate     int     `json:"rate"`
	Achieved float64 `json:"achieved"`
	// Samples is how many events the percentiles are over.
	Samples int `json:"samples"`
	// Lost counts committed events never acknowledged within the wait.
	Lost int     `json:"lost,omitempty"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	// LogReadP50 and LogReadP99, for the relay tailing the log, are the
	// part from commit until the relay read the event from the log.
	LogReadP50 float64 `json:"log_read_p50_ms,omitempty"`
	LogReadP99 float64 `json:"log_read_p99_ms,omitempty"`
	// VsSimpleP99 is this p99 over the simple relay's at the same rate.
	VsSimpleP99 float64 `json:"vs_simple_p99,omitempty"`
	// Breakdown tells where the txoutbox relay spent its time (nil for the
	// simple relay): the broker's share of a latency is its publish call.
	Breakdown *Breakdown `json:"breakdown,omitempty"`
}

// TargetCheck is one goal of issue 11 against this run.
type TargetCheck struct {
	Goal  string  `json:"goal"`
	Where string  `json:"where"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	Met   bool    `json:"met"`
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// The relays of a latency measurement (LatencyResult.Relay).
const (
	RelayTxoutbox = "txoutbox" // txoutbox's relay, polling the table
	RelayTail     = "tail"     // txoutbox's relay, tailing the log
	RelaySimple   = "simple"   // the simple relay
)

package bench

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config says what a run measures and on what. The zero value of every
// field selects the default named in its comment; [Config.Quick] selects
// small defaults instead, for a smoke run.
type Config struct {
	// Stores are the databases: postgres://…, mysql://… (or a
	// go-sql-driver DSN), "sqlite" (a database file in a temporary
	// directory) or "memory" (the in-memory reference store). Default
	// "sqlite".
	Stores []string
	// Brokers are the brokers: "kfake" (an in-process kfake cluster),
	// kafka://…, "nats" (an embedded NATS server with JetStream),
	// nats://…, or "memory" (the in-memory reference publisher). Default
	// "kfake".
	Brokers []string

	// Quick shrinks every default (backlog, durations, retained records)
	// so that the whole run takes seconds: it checks that everything
	// works, its numbers mean little.
	Quick bool

	// Rounds is how many times each drain, enqueue and read measurement
	// is repeated; the report gives the median and the spread. Default 3
	// (1 when Quick).
	Rounds int

	// Backlog is how many records the drain pre-fills. Default 100,000
	// (2,000 when Quick).
	Backlog int
	// Keys is how many ordering keys the messages spread over. Default
	// 1,000 (100 when Quick).
	Keys int
	// HotKeys is the key count of a second drain by one relay, the
	// backlog spread over a few hot keys: it measures how well a relay
	// pipelines records within their keys' order. Default 16; negative
	// leaves it out.
	HotKeys int
	// PayloadBytes is the size of every payload. Default 256.
	PayloadBytes int
	// Relays are the relay counts of the drain. Default 1, 2 and 4.
	Relays []int

	// Rates are the steady event rates of the latency measurement, in
	// events per second. Default 1,000 and 5,000 (200 when Quick).
	Rates []int
	// LatencyDuration is how long each latency measurement writes.
	// Default 20s (1s when Quick).
	LatencyDuration time.Duration
	// LatencyWarmup is the start of each latency measurement left out of
	// its percentiles. Default 2s (none when Quick).
	LatencyWarmup time.Duration
	// SimplePoll is how long the simple relay sleeps after a claim that
	// found nothing. Default 10ms.
	SimplePoll time.Duration

	// PGNotifyInterval is pgstore.Config.NotifyInterval of the PostgreSQL
	// writers (zero: pgstore's default).
	PGNotifyInterval time.Duration

	// Notify is how the writers of the latency measurement wake the relays
	// on PostgreSQL. Default NotifyInterval (pgstore's default).
	Notify Notify

	// Writers is how many concurrent writers the enqueue measurement
	// runs. Default 8.
	Writers int
	// EnqueueAlone leaves out the relay that otherwise runs beside the
	// enqueue measurement's writers: the writers' own cost, for comparison.
	EnqueueAlone bool
	// EnqueueDuration is how long each enqueue case runs per round.
	// Default 3s (200ms when Quick).
	EnqueueDuration time.Duration

	// IdleDuration is how long the idle measurement watches a relay on
	// an empty outbox, after its first lease round. Default 30s (1s when
	// Quick).
	IdleDuration time.Duration

	// Retained is how many delivered records the table-growth measurement
	// keeps in the outbox. Default 1,000,000 (10,000 when Quick).
	Retained int
	// ReadRounds is how many read + settle pairs each table-growth round
	// times. Default 20 (5 when Quick).
	ReadRounds int

	// Relay is the configuration of every txoutbox relay the run starts;
	// its zero fields take the core defaults, as `outbox relay` does.
	// Owner and Logger are set by the run.
	Relay outbox.RelayConfig

	// Skip names scenarios to leave out: "enqueue", "insert", "growth",
	// "idle", "produce", "drain", "simple", "latency", "tail". The tail
	// scenario is the enqueue, drain (one relay) and latency measurements
	// again on outboxes whose relay tails the database's log (PostgreSQL
	// with pgstore's Config.Tail; it needs wal_level = logical), each run
	// when its own scenario runs too.
	Skip []string

	// ProfileDir, when set, receives a CPU profile of this process for
	// each drain and latency measurement (<scenario>.pprof).
	ProfileDir string

	// Progress receives one line per step, and live counts when
	// LiveProgress is set (a terminal). Default: none.
	Progress     io.Writer
	LiveProgress bool

	// Logger receives the logs of relays and publishers. Default: none.
	Logger *slog.Logger
}

// Scenario names, as Config.Skip and the report use them.
const (
	ScenarioEnqueue = "enqueue"
	ScenarioInsert  = "insert"
	ScenarioGrowth  = "growth"
	ScenarioProduce = "produce"
	ScenarioDrain   = "drain"
	ScenarioSimple  = "simple"
	ScenarioLatency = "latency"
	ScenarioIdle    = "idle"
	ScenarioTail    = "tail"
)

var scenarios = []string{ScenarioEnqueue, ScenarioInsert, ScenarioGrowth, ScenarioProduce,
	ScenarioDrain, ScenarioSimple, ScenarioLatency, ScenarioIdle, ScenarioTail}

// runsTail reports whether the tail variant of scenario runs.
func (c Config) runsTail(scenario string) bool { return c.runs(ScenarioTail) && c.runs(scenario) }

// withDefaults fills the zero fields of c and checks the others.
func (c Config) withDefaults() (Config, error) {
	pick := func(full, quick int) int {
		if c.Quick {
			return quick
		}
		return full
	}
	pickD := func(full, quick time.Duration) time.Duration {
		if c.Quick {
			return quick
		}
		return full
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if len(c.Stores) == 0 {
		c.Stores = []string{"sqlite"}
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"kfake"}
	}
	setInt(&c.Rounds, pick(3, 1))
	setInt(&c.Backlog, pick(100_000, 2_000))
	setInt(&c.Keys, pick(1_000, 100))
	setInt(&c.HotKeys, 16)
	setInt(&c.PayloadBytes, 256)
	if len(c.Relays) == 0 {
		c.Relays = []int{1, 2, 4}
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{1_000, 5_000}
		if c.Quick {
			c.Rates = []int{200}
		}
	}
	setDur(&c.LatencyDuration, pickD(20*time.Second, time.Second))
	if c.LatencyWarmup == 0 && !c.Quick {
		c.LatencyWarmup = 2 * time.Second
	}
	setDur(&c.SimplePoll, 10*time.Millisecond)
	setInt(&c.Writers, 8)
	if c.Notify == "" {
		c.Notify = NotifyInterval
	}
	setDur(&c.EnqueueDuration, pickD(3*time.Second, 200*time.Millisecond))
	setDur(&c.IdleDuration, pickD(30*time.Second, time.Second))
	setInt(&c.Retained, pick(1_000_000, 10_000))
	setInt(&c.ReadRounds, pick(20, 5))
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}

	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: bench: %s", outbox.ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Rounds < 1:
		return bad("rounds must be at least 1")
	case c.Backlog < 1 || c.Keys < 1 || c.PayloadBytes < 1 || c.Writers < 1 || c.Retained < 0 || c.ReadRounds < 1:
		return bad("backlog, keys, payload size, writers and read rounds must be positive, retained records not negative")
	case c.Keys > c.Backlog:
		return bad("more keys (%d) than backlog records (%d)", c.Keys, c.Backlog)
	case c.LatencyDuration <= c.LatencyWarmup:
		return bad("the latency duration (%v) must be longer than its warm-up (%v)", c.LatencyDuration, c.LatencyWarmup)
	}
	switch c.Notify {
	case NotifyInterval, NotifyEveryTx, NotifyNone:
	default:
		return bad("unknown notify mode %q; use %s, %s or %s", c.Notify, NotifyInterval, NotifyEveryTx, NotifyNone)
	}
	for _, n := range c.Relays {
		if n < 1 {
			return bad("relay counts must be positive, got %d", n)
		}
	}
	for _, r := range c.Rates {
		if r < 1 {
			return bad("rates must be positive, got %d", r)
		}
	}
	for _, s := range c.Skip {
		if !slices.Contains(scenarios, s) {
			return bad("unknown scenario %q to skip; the scenarios are %v", s, scenarios)
		}
	}
	return c, nil
}

func (c Config) runs(scenario string) bool { return !slices.Contains(c.Skip, scenario) }

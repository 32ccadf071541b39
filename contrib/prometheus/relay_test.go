package outboxprom_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/txoutbox/txoutbox/conformance"
	outboxprom "github.com/txoutbox/txoutbox/contrib/prometheus"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// tally records what the relay reported, to check the metrics against.
type tally struct {
	mu              sync.Mutex
	reads, readErrs int
	unavailable     int // read errors that are the store's outage
	read            int // messages read
	laneRounds      int
	taken, held     int
	maxHeld         int
	released        int
	published       int // batches handed to the publisher
	outcomes        map[outbox.OutcomeStatus]int
}

func (t *tally) ObserveRead(e outbox.ReadEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reads++
	if e.Err != nil {
		t.readErrs++
		if errors.Is(e.Err, outbox.ErrUnavailable) {
			t.unavailable++
		}
	} else {
		t.read += e.Records
	}
}

func (t *tally) ObserveLanes(e outbox.LaneEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.laneRounds++
	t.taken += e.Taken
	t.released += e.Released
	if e.Err == nil {
		t.maxHeld = max(t.maxHeld, e.Held)
		t.held = e.Held
	}
}

func (t *tally) ObserveBatch(e outbox.BatchEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.PublishDuration > 0 {
		t.published++
	}
	for _, o := range e.Outcomes {
		t.outcomes[o.Status]++
	}
}

// both hands every event to each observer.
type both [2]outbox.Observer

func (b both) ObserveRead(e outbox.ReadEvent)   { b[0].ObserveRead(e); b[1].ObserveRead(e) }
func (b both) ObserveBatch(e outbox.BatchEvent) { b[0].ObserveBatch(e); b[1].ObserveBatch(e) }
func (b both) ObserveLanes(e outbox.LaneEvent)  { b[0].ObserveLanes(e); b[1].ObserveLanes(e) }

// flakyReads fails the first reads, as a database restarting would.
type flakyReads struct {
	*memory.Store
	failures atomic.Int32
}

func (s *flakyReads) Read(ctx context.Context, p outbox.ReadParams) ([]outbox.Record, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, fmt.Errorf("connection refused: %w", outbox.ErrUnavailable)
	}
	return s.Store.Read(ctx, p)
}

var errPoison = errors.New("broker rejects this message")

// A relay over the memory store and a broker that rejects one key: the
// metrics count exactly what the relay did.
func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const lanes = 16
	mem := memory.NewStore(memory.StoreConfig{Lanes: lanes})
	store := &flakyReads{Store: mem}
	store.failures.Store(2)
	broker := memory.NewPublisher(memory.PublisherConfig{})

	// Ten good messages, a poison message, and a message queued behind it
	// on the same key, committed before the relay starts.
	tx := mem.Begin()
	good := make([]outbox.Message, 10)
	for i := range good {
		good[i] = outbox.Message{Topic: "orders", Key: fmt.Sprintf("k%d", i%5)}
	}
	if err := mem.Enqueue(ctx, tx, good...); err != nil {
		t.Fatal(err)
	}
	poison := []outbox.Message{{Topic: "orders", Key: "poison"}, {Topic: "orders", Key: "poison"}}
	if err := mem.Enqueue(ctx, tx, poison...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// The broker rejects the poison message every time; the memory
	// publisher then answers ErrNotAttempted for the follower.
	broker.SetReject(func(m outbox.Message) error {
		if m.ID == poison[0].ID {
			return errPoison
		}
		return nil
	})

	obs, err := outboxprom.NewObserver(outboxprom.ObserverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	stats := newStats(t, mem, outboxprom.StatsConfig{})
	reg := registry(t, obs, stats)
	seen := &tally{outcomes: map[outbox.OutcomeStatus]int{}}

	const maxAttempts = 3
	cfg := conformance.TestRelayConfig(t)
	cfg.MaxAttempts = maxAttempts
	cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point
	cfg.Observer = both{obs, seen}
	stop := conformance.StartRelay(t, store, broker, cfg)

	// The follower is published only once the poison message is dead, so
	// its arrival, with the good messages, means the relay has done
	// everything.
	waitDelivered(t, ctx, broker, append(good, poison[1])...)
	stop()

	seen.mu.Lock()
	defer seen.mu.Unlock()
	// What the scenario makes certain, whatever the timing: every good
	// message and the follower published (at least once: a relay may
	// publish twice), the poison message retried until its last attempt
	// and dead-lettered, two failed reads, every lane taken by the only
	// relay.
	certain := map[outbox.OutcomeStatus]int{outbox.Retried: maxAttempts - 1, outbox.DeadLettered: 1}
	for status, n := range certain {
		if seen.outcomes[status] != n {
			t.Fatalf("the relay reported %d %v outcomes, want %d; the scenario did not go as planned", seen.outcomes[status], status, n)
		}
	}
	delivered := seen.outcomes[outbox.Delivered]
	if delivered < 11 || delivered != broker.Len() {
		t.Fatalf("the relay reported %d delivered outcomes and the broker holds %d messages, want the same number, at least 11", delivered, broker.Len())
	}
	if seen.outcomes[outbox.Released] == 0 {
		t.Fatalf("the follower was never held back behind the poison message")
	}
	if seen.taken != lanes || seen.maxHeld != lanes || seen.released != lanes || seen.held != 0 {
		t.Fatalf("the relay took %d lanes, held up to %d, gave %d back and held %d after stopping; want all %d taken, held and given back, none held",
			seen.taken, seen.maxHeld, seen.released, seen.held, lanes)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"txoutbox_relay_reads_total", nil, seen.reads},
		{"txoutbox_relay_read_errors_total", nil, seen.readErrs},
		{"txoutbox_relay_read_messages_total", nil, seen.read},
		{"txoutbox_relay_lane_rounds_total", nil, seen.laneRounds},
		{"txoutbox_relay_lane_errors_total", nil, 0},
		{"txoutbox_relay_lanes_taken_total", nil, lanes},
		{"txoutbox_relay_lanes_lost_total", nil, 0},
		{"txoutbox_relay_lanes_released_total", nil, lanes}, // given back at the stop
		{"txoutbox_relay_lanes_held", nil, 0},
		{"txoutbox_relay_live_relays", nil, 0}, // the relay left
		{"txoutbox_relay_published_total", nil, delivered},
		{"txoutbox_relay_failed_total", []string{"outcome", "retried"}, maxAttempts - 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "dead_lettered"}, 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "released"}, seen.outcomes[outbox.Released]},
		{"txoutbox_relay_settle_errors_total", nil, 0},
	} {
		if got := gather(t, reg, c.name, c.labels...).value; got != float64(c.want) {
			t.Errorf("%s%v = %v, want %d", c.name, c.labels, got, c.want)
		}
	}
	// The two failures injected, and maybe a read cut short by the stop.
	if seen.unavailable != 2 || seen.readErrs > 3 {
		t.Errorf("the relay reported %d read errors, %d of them the store's outage; want the 2 injected (and at most one more at the stop)", seen.readErrs, seen.unavailable)
	}
	// Every message was read at least once (12 messages).
	if seen.read < 12 {
		t.Errorf("%d messages read, want at least the 12 written", seen.read)
	}
	for _, c := range []struct {
		name string
		want int
	}{
		{"txoutbox_relay_read_duration_seconds", seen.reads},
		{"txoutbox_relay_publish_duration_seconds", seen.published},
		{"txoutbox_relay_publish_lag_seconds", delivered},
	} {
		if got := gather(t, reg, c.name).count; got != uint64(c.want) {
			t.Errorf("%s has %d samples, want %d", c.name, got, c.want)
		}
	}

	// The outbox is empty but for the dead letter, and the relay that
	// stopped gave its lanes back and left.
	const want = `
# HELP txoutbox_dead_letters Dead-lettered messages, waiting to be replayed or purged.
# TYPE txoutbox_dead_letters gauge
txoutbox_dead_letters 1
# HELP txoutbox_lanes Lanes of the outbox (fixed when its schema was created); live relays share them.
# TYPE txoutbox_lanes gauge
txoutbox_lanes 16
# HELP txoutbox_pending_messages Messages not yet delivered and not dead.
# TYPE txoutbox_pending_messages gauge
txoutbox_pending_messages 0
# HELP txoutbox_oldest_pending_age_seconds Age of the oldest pending message (now minus its enqueue time); 0 when nothing is pending.
# TYPE txoutbox_oldest_pending_age_seconds gauge
txoutbox_oldest_pending_age_seconds 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"txoutbox_dead_letters", "txoutbox_lanes", "txoutbox_pending_messages", "txoutbox_oldest_pending_age_seconds"); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"txoutbox_relay_lanes", "txoutbox_lane_pending_messages"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Errorf("%s: %d series, %v; want none after the relay stopped", name, n, err)
		}
	}
}

// pausedTally counts the records the relay released for their topic's
// pause, and the other releases, as the relay reported them.
type pausedTally struct {
	mu               sync.Mutex
	paused, released int
	once             sync.Once
	first            chan struct{} // closed at the first pause
}

func (t *pausedTally) ObserveRead(outbox.ReadEvent)  {}
func (t *pausedTally) ObserveLanes(outbox.LaneEvent) {}

func (t *pausedTally) ObserveBatch(e outbox.BatchEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range e.Outcomes {
		switch {
		case o.Status != outbox.Released:
		case errors.Is(o.Err, outbox.ErrTopicUnavailable) || o.RetryIn > 0:
			t.paused++
			t.once.Do(func() { close(t.first) })
		default:
			t.released++
		}
	}
}

// A relay over a broker that cannot take one topic for a while: its
// messages are counted as topic_paused, not released, and the other
// topic's messages flow meanwhile.
func TestRelayMetricsTopicPaused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	mem := memory.NewStore(memory.StoreConfig{})
	broker := memory.NewPublisher(memory.PublisherConfig{})
	var down atomic.Bool
	down.Store(true)
	broker.SetReject(func(m outbox.Message) error {
		if m.Topic == "held" && down.Load() {
			return fmt.Errorf("NOT_ENOUGH_REPLICAS: %w", outbox.ErrTopicUnavailable)
		}
		return nil
	})
	tx := mem.Begin()
	msgs := make([]outbox.Message, 6)
	for i := range msgs {
		topic := "orders"
		if i%2 == 0 {
			topic = "held"
		}
		msgs[i] = outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", i)}
	}
	if err := mem.Enqueue(ctx, tx, msgs...); err != nil { // sets their IDs
		t.Fatal(err)
	}
	var flowing, held []outbox.Message
	for _, m := range msgs {
		if m.Topic == "held" {
			held = append(held, m)
		} else {
			flowing = append(flowing, m)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	obs, err := outboxprom.NewObserver(outboxprom.ObserverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry(t, obs)
	seen := &pausedTally{first: make(chan struct{})}
	cfg := conformance.TestRelayConfig(t)
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Observer = both{obs, seen}
	stop := conformance.StartRelay(t, mem, broker, cfg)
	waitDelivered(t, ctx, broker, flowing...)
	// The held topic was refused and paused at least once.
	select {
	case <-seen.first:
	case <-ctx.Done():
		t.Fatal("the held topic was never paused")
	}
	down.Store(false)
	waitDelivered(t, ctx, broker, held...)
	stop()

	seen.mu.Lock()
	defer seen.mu.Unlock()
	for _, c := range []struct {
		outcome string
		want    int
	}{
		{"topic_paused", seen.paused},
		{"released", seen.released},
		{"retried", 0},
		{"dead_lettered", 0},
	} {
		if got := gather(t, reg, "txoutbox_relay_failed_total", "outcome", c.outcome).value; got != float64(c.want) {
			t.Errorf("failed{%s} = %v, want %d", c.outcome, got, c.want)
		}
	}
	if seen.paused == 0 {
		t.Errorf("the relay reported no release for the topic's pause")
	}
}

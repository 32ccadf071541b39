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
	mu                sync.Mutex
	claims, claimErrs int
	claimed           int
	published         int // batches handed to the publisher
	outcomes          map[outbox.OutcomeStatus]int
}

func (t *tally) ObserveClaim(e outbox.ClaimEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.claims++
	if e.Err != nil {
		t.claimErrs++
	} else {
		t.claimed += e.Claimed
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

func (b both) ObserveClaim(e outbox.ClaimEvent) { b[0].ObserveClaim(e); b[1].ObserveClaim(e) }
func (b both) ObserveBatch(e outbox.BatchEvent) { b[0].ObserveBatch(e); b[1].ObserveBatch(e) }

// flakyClaims fails the first claims, as a database restarting would.
type flakyClaims struct {
	*memory.Store
	failures atomic.Int32
}

func (s *flakyClaims) Claim(ctx context.Context, p outbox.ClaimParams) ([]outbox.Record, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, fmt.Errorf("connection refused: %w", outbox.ErrUnavailable)
	}
	return s.Store.Claim(ctx, p)
}

var errPoison = errors.New("broker rejects this message")

// A relay over the memory store and a broker that rejects one key: the
// metrics count exactly what the relay did.
func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	mem := memory.NewStore(memory.StoreConfig{})
	store := &flakyClaims{Store: mem}
	store.failures.Store(2)
	broker := memory.NewPublisher(memory.PublisherConfig{})

	// Ten good messages, a poison message, and a message queued behind it
	// on the same key, committed before the relay starts.
	tx := mem.Begin()
	for i := range 10 {
		if err := mem.Enqueue(ctx, tx, outbox.Message{Topic: "orders", Key: fmt.Sprintf("k%d", i%5)}); err != nil {
			t.Fatal(err)
		}
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

	// The follower is claimable only once the poison message is dead, so
	// its arrival means the relay has done everything.
	if err := broker.WaitFor(ctx, 11); err != nil {
		t.Fatal(err)
	}
	stop()

	seen.mu.Lock()
	defer seen.mu.Unlock()
	// What the scenario makes certain, whatever the timing: every good
	// message and the follower published once, the poison message retried
	// until its last attempt and dead-lettered, two failed claims.
	certain := map[outbox.OutcomeStatus]int{outbox.Delivered: 11, outbox.Retried: maxAttempts - 1, outbox.DeadLettered: 1}
	for status, n := range certain {
		if seen.outcomes[status] != n {
			t.Fatalf("the relay reported %d %v outcomes, want %d; the scenario did not go as planned", seen.outcomes[status], status, n)
		}
	}
	if seen.outcomes[outbox.Released] == 0 {
		t.Fatalf("the follower was never held back behind the poison message")
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"txoutbox_relay_claims_total", nil, seen.claims},
		{"txoutbox_relay_claim_errors_total", nil, 2},
		{"txoutbox_relay_claimed_total", nil, seen.claimed},
		{"txoutbox_relay_published_total", nil, 11},
		{"txoutbox_relay_failed_total", []string{"outcome", "retried"}, maxAttempts - 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "dead_lettered"}, 1},
		{"txoutbox_relay_failed_total", []string{"outcome", "released"}, seen.outcomes[outbox.Released]},
		{"txoutbox_relay_settle_errors_total", nil, 0},
	} {
		if got := gather(t, reg, c.name, c.labels...).value; got != float64(c.want) {
			t.Errorf("%s%v = %v, want %d", c.name, c.labels, got, c.want)
		}
	}
	if seen.claimErrs != 2 {
		t.Errorf("the relay reported %d claim errors, want 2", seen.claimErrs)
	}
	// Every claimed record has exactly one outcome.
	total := 0
	for _, n := range seen.outcomes {
		total += n
	}
	if seen.claimed != total {
		t.Errorf("%d records claimed but %d outcomes", seen.claimed, total)
	}
	for _, c := range []struct {
		name string
		want int
	}{
		{"txoutbox_relay_claim_duration_seconds", seen.claims},
		{"txoutbox_relay_publish_duration_seconds", seen.published},
		{"txoutbox_relay_publish_lag_seconds", 11},
	} {
		if got := gather(t, reg, c.name).count; got != uint64(c.want) {
			t.Errorf("%s has %d samples, want %d", c.name, got, c.want)
		}
	}

	// The outbox is empty but for the dead letter, and nothing is leased.
	const want = `
# HELP txoutbox_dead_letters Dead-lettered messages, waiting to be replayed or purged.
# TYPE txoutbox_dead_letters gauge
txoutbox_dead_letters 1
# HELP txoutbox_leased_messages Pending messages leased to a relay right now.
# TYPE txoutbox_leased_messages gauge
txoutbox_leased_messages 0
# HELP txoutbox_pending_messages Messages not yet delivered and not dead, leased or not.
# TYPE txoutbox_pending_messages gauge
txoutbox_pending_messages 0
# HELP txoutbox_oldest_pending_age_seconds Age of the oldest pending message (now minus its enqueue time); 0 when nothing is pending.
# TYPE txoutbox_oldest_pending_age_seconds gauge
txoutbox_oldest_pending_age_seconds 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"txoutbox_dead_letters", "txoutbox_leased_messages", "txoutbox_pending_messages", "txoutbox_oldest_pending_age_seconds"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "txoutbox_relay_leased_messages"); err != nil || n != 0 {
		t.Errorf("relay lease series = %d, %v; want none after the relay stopped", n, err)
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

func (t *pausedTally) ObserveClaim(outbox.ClaimEvent) {}

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
	for i := range 6 {
		topic := "orders"
		if i%2 == 0 {
			topic = "held"
		}
		if err := mem.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", i)}); err != nil {
			t.Fatal(err)
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
	if err := broker.WaitFor(ctx, 3); err != nil { // the other topic's three
		t.Fatal(err)
	}
	// The held topic was refused and paused at least once.
	select {
	case <-seen.first:
	case <-ctx.Done():
		t.Fatal("the held topic was never paused")
	}
	down.Store(false)
	if err := broker.WaitFor(ctx, 6); err != nil {
		t.Fatal(err)
	}
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

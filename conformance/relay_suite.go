package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// RunRelaySuite runs relays end to end between a store and a broker and
// checks the outcome with a [Ledger]: concurrent writers (some rolling
// back) and several relays lose nothing, keep per-key order and never
// deliver a rolled-back message; a transaction held open is delivered after
// it commits; a poison message is dead-lettered while other keys flow; a
// stopped relay gives its lanes back and a new one resumes; a deep backlog
// of a few keys drains with several relays whose batches outnumber the keys;
// lanes change hands while writers write, as relays join, leave, crash and
// wake up from a pause past their lease, losing nothing and keeping the
// order of first deliveries.
func RunRelaySuite(t *testing.T, h RelayHarness) {
	if h.Store.New == nil || h.Broker.New == nil {
		t.Fatal("conformance: RelayHarness needs Store.New and Broker.New")
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h RelayHarness)
	}{
		{"WritersAndRelaysLoseNothing", relayLosesNothing},
		{"LongTransactionIsDelivered", relayLongTransaction},
		{"PoisonIsDeadLetteredOthersFlow", relayPoison},
		{"StopReleasesAndRestartResumes", relayRestart},
		{"DeepBacklogOfFewKeys", relayDeepBacklog},
		{"LanesChangeHandsUnderLoad", relayHandover},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h)
		})
	}
}

// TestRelayConfig is a relay configuration for tests: small batches and
// short waits, so that tests exercise many rounds quickly.
func TestRelayConfig(t testing.TB) outbox.RelayConfig {
	return outbox.RelayConfig{
		BatchSize:       25,
		Concurrency:     2,
		MinPollInterval: 2 * time.Millisecond,
		PollInterval:    50 * time.Millisecond,
		Lease:           4 * time.Second,
		PublishTimeout:  10 * time.Second,
		MinRetryDelay:   10 * time.Millisecond,
		MaxRetryDelay:   100 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// StartRelay runs a relay until the returned stop function is called (or t
// ends); stop waits for Run to return and fails t if it returned an error.
func StartRelay(t testing.TB, store outbox.Store, pub outbox.Publisher, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	r, err := outbox.NewRelay(store, pub, cfg)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay %s: Run: %v", r.Owner(), err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// ConsumeInto feeds everything arriving on topics into ledger until t ends.
func ConsumeInto(t testing.TB, ctx context.Context, b Broker, ledger *Ledger, topics ...string) {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Consume(cctx, topics, ledger.Receive) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	})
}

func relayLosesNothing(t *testing.T, h RelayHarness) {
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{})
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)

	const relays, writers, keysPerWriter = 3, 4, 8
	for i := range relays {
		cfg := TestRelayConfig(t)
		cfg.Owner = fmt.Sprintf("relay-%d", i)
		StartRelay(t, ob.Store, b.Publisher, cfg)
	}
	rollbacks := h.Store.WithoutTransactions == ""
	perWriter := h.Store.scale(500)
	var wg sync.WaitGroup
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for written := 0; written < perWriter; {
				// Each writer owns its keys and writes them in order, so the
				// commit order of a key is the order written.
				key := fmt.Sprintf("w%d-k%d", w, rng.IntN(keysPerWriter))
				n := 1 + rng.IntN(3)
				msgs := newMessages(topic, key, n)
				rollback := rollbacks && rng.IntN(10) == 0
				if err := writeOrRollback(ctx, ob, msgs, rollback); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if rollback {
					ledger.RolledBack(msgs...)
				} else {
					ledger.Committed(msgs...)
					written += n
				}
			}
		})
	}
	wg.Wait()
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	rep := ledger.Report()
	t.Logf("%d writers, %d relays: %s", writers, relays, rep)
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
}

// writeOrRollback enqueues msgs and commits, or rolls back after enqueueing.
func writeOrRollback(ctx context.Context, ob Outbox, msgs []outbox.Message, rollback bool) error {
	if !rollback {
		return tryWrite(ctx, ob, msgs...)
	}
	tx, err := ob.Begin(ctx)
	if err != nil {
		return err
	}
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Rollback(ctx)
}

func relayLongTransaction(t *testing.T, h RelayHarness) {
	requireConcurrentWriters(t, h.Store)
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{})
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)
	StartRelay(t, ob.Store, b.Publisher, TestRelayConfig(t))

	long, err := ob.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = long.Rollback(ctx) }()
	held := newMessages(topic, "held", 2)
	if err := long.Enqueue(ctx, held...); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ledger.Committed(write(t, ctx, ob, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", i%4)})...)
	}
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Keep the transaction open for a while as the relay keeps reading
	// past its lower sequence numbers.
	hold := h.holdOpen()
	for deadline := time.Now().Add(hold); time.Now().Before(deadline); {
		ledger.Committed(write(t, ctx, ob, outbox.Message{Topic: topic, Key: "during"})...)
		if err := ledger.WaitAll(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(hold / 10)
	}
	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ledger.Committed(held...)
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("the transaction held open for %v was not delivered after it committed: %v", hold, err)
	}
	if rep := ledger.Report(); !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
}

func relayPoison(t *testing.T, h RelayHarness) {
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{})
	dls := needCapability[outbox.DeadLetterStore](t, ob.Store, "DeadLetterStore")
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)

	pub := &rejectKey{Publisher: b.Publisher, key: "poison"}
	pub.broken.Store(true)
	cfg := TestRelayConfig(t)
	cfg.MaxAttempts = 3
	cfg.Logger = slog.New(slog.DiscardHandler) // the failures are the point
	StartRelay(t, ob.Store, pub, cfg)

	poison := write(t, ctx, ob, outbox.Message{Topic: topic, Key: "poison", Payload: []byte("bad")})
	for i := range 30 {
		ledger.Committed(write(t, ctx, ob, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", i%5)})...)
	}
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("other keys did not flow past the poison message: %v", err)
	}
	var dead []outbox.DeadLetter
	eventually(t, ctx, "the poison message to be dead-lettered", func() bool {
		var err error
		dead, err = dls.ListDead(ctx, outbox.ListDeadParams{})
		if err != nil {
			t.Fatal(err)
		}
		return len(dead) > 0
	})
	if len(dead) != 1 || dead[0].ID != poison[0].ID || !strings.Contains(dead[0].LastError, errPoison.Error()) {
		t.Fatalf("dead letters = %+v; want %s with the broker's error", dead, poison[0].ID)
	}
	if dead[0].Attempts != cfg.MaxAttempts {
		t.Fatalf("the poison message was dead-lettered after %d attempts, want MaxAttempts (%d)", dead[0].Attempts, cfg.MaxAttempts)
	}
	pub.broken.Store(false) // the broker is fixed; replay
	if n, err := dls.ReplayDead(ctx, outbox.SelectDead{IDs: []string{poison[0].ID}}); err != nil || n != 1 {
		t.Fatalf("ReplayDead = %d, %v", n, err)
	}
	ledger.Committed(poison...)
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("the replayed message was not delivered: %v", err)
	}
	if rep := ledger.Report(); rep.Lost != 0 || rep.Leaked != 0 {
		t.Fatalf("ledger: %s", rep)
	}
}

var errPoison = errors.New("broker rejects this message")

// rejectKey fails every message of one key while broken is set, holding back
// the key's later messages as a publisher must.
type rejectKey struct {
	outbox.Publisher
	key    string
	broken atomic.Bool
}

func (p *rejectKey) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if !p.broken.Load() {
		return p.Publisher.Publish(ctx, msgs)
	}
	results := make([]error, len(msgs))
	var pass []outbox.Message
	var index []int
	failed := false
	for i, m := range msgs {
		switch {
		case m.Key == p.key && failed:
			results[i] = outbox.ErrNotAttempted
		case m.Key == p.key:
			results[i], failed = errPoison, true
		default:
			pass = append(pass, m)
			index = append(index, i)
		}
	}
	for j, err := range p.Publisher.Publish(ctx, pass) {
		results[index[j]] = err
	}
	return results
}

func relayRestart(t *testing.T, h RelayHarness) {
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{})
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)

	n := h.Store.scale(600)
	for i := 0; i < n; i += 20 {
		var msgs []outbox.Message
		for j := range 20 {
			msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", (i+j)%10)})
		}
		ledger.Committed(write(t, ctx, ob, msgs...)...)
	}
	cfg := TestRelayConfig(t)
	cfg.Owner = "first"
	cfg.BatchSize = 5
	stop := StartRelay(t, ob.Store, b.Publisher, cfg)
	eventually(t, ctx, "the first relay to make progress", func() bool { return ledger.Report().Delivered >= n/10 })
	stop()
	if sr, ok := ob.Store.(outbox.StatsReader); ok {
		st, err := sr.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, rl := range st.Relays {
			if rl.Owner == "first" {
				t.Fatalf("the stopped relay is still a live relay holding %d lanes; a graceful stop must give them back", rl.Lanes)
			}
		}
	}
	cfg.Owner = "second"
	StartRelay(t, ob.Store, b.Publisher, cfg)
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	if rep := ledger.Report(); !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
}

// relayDeepBacklog drains a backlog where every key has many records and a
// batch could hold every key: a read must find the next record of each key
// as soon as its predecessor is delivered, however deep the backlog behind.
func relayDeepBacklog(t *testing.T, h RelayHarness) {
	ctx := testContext(t)
	ob := h.Store.New(t, OutboxOptions{})
	b := h.Broker.New(t)
	topic := b.Topic(t)
	ledger := NewLedger()
	ConsumeInto(t, ctx, b, ledger, topic)

	const keys = 8
	perKey := h.Store.scale(150)
	for i := 0; i < perKey; i += 10 {
		var msgs []outbox.Message
		for k := range keys {
			for j := range 10 {
				msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprintf("k%d", k), Payload: fmt.Appendf(nil, "%d", i+j)})
			}
		}
		ledger.Committed(write(t, ctx, ob, msgs...)...)
	}
	for i := range 2 {
		cfg := TestRelayConfig(t)
		cfg.Owner = fmt.Sprintf("deep-%d", i)
		cfg.BatchSize = 4 * keys
		StartRelay(t, ob.Store, b.Publisher, cfg)
	}
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	if rep := ledger.Report(); !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
}

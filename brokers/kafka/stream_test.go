package kafkapub_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

// deliveryFixture is an in-memory outbox whose committed messages a ledger
// follows on the broker, for the tests against real clusters.
type deliveryFixture struct {
	store  *memory.Store
	ob     conformance.Outbox
	ledger *conformance.Ledger
}

// newDeliveryFixture returns an empty outbox and a ledger that a consumer
// of topics on brokers feeds until t ends.
func newDeliveryFixture(t *testing.T, ctx context.Context, brokers []string, topics ...string) deliveryFixture {
	t.Helper()
	store := memory.NewStore(memory.StoreConfig{})
	fx := deliveryFixture{store: store, ob: conformance.NewMemoryOutbox(store), ledger: conformance.NewLedger()}
	conformance.ConsumeInto(t, ctx, conformance.Broker{Consume: consumer(brokers)}, fx.ledger, topics...)
	return fx
}

// delivered returns how many committed messages reached the broker.
func (fx deliveryFixture) delivered() int { return fx.ledger.Report().Delivered }

// checkDelivered waits, as long as ctx allows, until every committed
// message reached the broker, then checks that the ledger is clean (nothing
// lost, per-key order kept among first deliveries, duplicates only of
// committed IDs) and that the store holds no dead letter.
func (fx deliveryFixture) checkDelivered(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := fx.ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; ledger: %s", err, fx.ledger.Report())
	}
	rep := fx.ledger.Report()
	t.Logf("ledger: %s", rep)
	if !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
	checkNoDeadLetters(t, ctx, fx.store)
}

// checkNoDeadLetters fails t if the store holds a dead letter: an outage of
// the broker must cost no message an attempt that could kill it.
func checkNoDeadLetters(t *testing.T, ctx context.Context, s *memory.Store) {
	t.Helper()
	dead, err := s.ListDead(ctx, outbox.ListDeadParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dead {
		t.Errorf("dead letter %s after %d attempts: %s", d.ID, d.Attempts, d.LastError)
	}
}

// streamWriters commit a steady stream of messages to one topic until
// stopped: each writer has keys of its own (so that the order in which it
// records its commits in the ledger is their commit order) and commits a
// transaction of two messages every streamTick.
type streamWriters struct {
	written atomic.Int64
	stopped chan struct{}
	wg      sync.WaitGroup
}

// The shape of the stream: 4 writers × 2 messages / 20ms ≈ 400 messages a
// second over 64 keys, enough to keep batches of the relay in flight at
// any time, little enough that the backlog of an outage drains quickly on
// a small machine.
const (
	streamWriterCount   = 4
	streamKeysPerWriter = 16
	streamTick          = 20 * time.Millisecond
)

// startWriters starts the writers of a stream to topic; tag marks the
// payloads of this run of writers. Runs that follow each other write the
// same keys, so that per-key order is checked across them.
func (fx deliveryFixture) startWriters(t *testing.T, ctx context.Context, topic, tag string) *streamWriters {
	t.Helper()
	w := &streamWriters{stopped: make(chan struct{})}
	for wr := range streamWriterCount {
		w.wg.Go(func() {
			tick := time.NewTicker(streamTick)
			defer tick.Stop()
			for i := 0; ; i += 2 {
				select {
				case <-w.stopped:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				msgs := []outbox.Message{
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", wr, i%streamKeysPerWriter), Payload: fmt.Appendf(nil, "%s-%d-%d", tag, wr, i)},
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", wr, (i+1)%streamKeysPerWriter), Payload: fmt.Appendf(nil, "%s-%d-%d", tag, wr, i+1)},
				}
				tx, err := fx.ob.Begin(ctx)
				if err == nil {
					err = tx.Enqueue(ctx, msgs...)
				}
				if err == nil {
					err = tx.Commit(ctx)
				}
				if err != nil {
					t.Errorf("writer %d: %v", wr, err)
					return
				}
				fx.ledger.Committed(msgs...)
				w.written.Add(int64(len(msgs)))
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

// waitWritten waits until the writers committed n messages in all.
func (w *streamWriters) waitWritten(t *testing.T, ctx context.Context, n int64) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("%d messages written", n), func() bool { return w.written.Load() >= n })
}

// stop stops the writers and waits until they returned. Idempotent.
func (w *streamWriters) stop() {
	select {
	case <-w.stopped:
	default:
		close(w.stopped)
	}
	w.wg.Wait()
}

// commit writes msgs in one transaction of ob and returns them with their
// IDs.
func commit(t *testing.T, ctx context.Context, ob conformance.Outbox, msgs ...outbox.Message) []outbox.Message {
	t.Helper()
	tx, err := ob.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return msgs
}

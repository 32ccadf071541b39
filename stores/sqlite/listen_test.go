package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// A wake-up comes after the commit is visible: a read made as soon as it
// arrives finds the new record. (SQLite's commit hook runs before the
// commit is visible; the wrapper of Open's connections passes it on after.)
func TestListenWakesAfterTheCommitIsVisible(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db := openDB(t, path)
	store := newStore(t, db, sqlitestore.Config{})
	lanes := takeAll(t, ctx, store, "a", hour)
	ch, err := store.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Writers on another handle of the same file wake it too.
	other := openDB(t, path)
	for i := range 10 {
		writer := db
		if i%2 == 1 {
			writer = other
		}
		// A large commit takes a while to write, which gives a wake-up
		// sent before the commit is visible time to be seen too early.
		msgs := make([]outbox.Message, 500)
		for j := range msgs {
			msgs[j] = outbox.Message{Topic: "t", Key: "k", Payload: make([]byte, 1024)}
		}
		committed := make(chan struct{})
		go func() {
			defer close(committed)
			if err := tryEnqueue(ctx, writer, store, msgs...); err != nil {
				t.Error(err)
			}
		}()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no wake-up after commit %d", i)
		}
		recs, err := store.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: 1})
		<-committed
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].ID != msgs[0].ID {
			t.Fatalf("right after wake-up %d read %v, want %s", i, ids(recs), msgs[0].ID)
		}
		all := make([]string, len(msgs))
		for j, m := range msgs {
			all[j] = m.ID
		}
		if err := store.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: all}); err != nil {
			t.Fatal(err)
		}
	}
}

// A relay that never polls (its poll interval is an hour) still delivers
// every message at once: the wake-ups drive it.
func TestRelayRunsOnWakeUps(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	broker := conformance.MemoryBroker().New(t)
	topic := broker.Topic(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, broker, ledger, topic)
	cfg := conformance.TestRelayConfig(t)
	cfg.PollInterval, cfg.MinPollInterval = time.Hour, time.Hour
	conformance.StartRelay(t, store, broker.Publisher, cfg)
	for i := range 10 {
		m := enqueueOne(t, ctx, db, store, outbox.Message{Topic: topic, Key: "k"})
		ledger.Committed(m)
		if err := ledger.WaitAll(ctx); err != nil {
			t.Fatalf("message %d was not delivered without polling: %v", i, err)
		}
	}
}

// enqueueOne commits msg in a transaction of its own.
func enqueueOne(t *testing.T, ctx context.Context, db *sql.DB, store *sqlitestore.Store, msg outbox.Message) outbox.Message {
	t.Helper()
	msgs := []outbox.Message{msg}
	enqueue(t, ctx, db, store, msgs...)
	return msgs[0]
}

// enqueue commits msgs in a transaction of their own.
func enqueue(t *testing.T, ctx context.Context, db *sql.DB, store *sqlitestore.Store, msgs ...outbox.Message) {
	t.Helper()
	if err := tryEnqueue(ctx, db, store, msgs...); err != nil {
		t.Fatal(err)
	}
}

func tryEnqueue(ctx context.Context, db *sql.DB, store *sqlitestore.Store, msgs ...outbox.Message) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := store.Enqueue(ctx, tx, msgs...); err != nil {
		return err
	}
	return tx.Commit()
}

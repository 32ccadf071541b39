package sqlitestore_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// Two relays, each with its own *sql.DB and Store on one file, and writers
// on a third: what two services sharing a file in one process look like.
// Nothing is lost and per-key order holds.
func TestRelaysOnSeparateHandlesOfOneFile(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	writerDB := openDB(t, path)
	writers := newStore(t, writerDB, sqlitestore.Config{})

	broker := conformance.MemoryBroker().New(t)
	topic := broker.Topic(t)
	ledger := conformance.NewLedger()
	conformance.ConsumeInto(t, ctx, broker, ledger, topic)
	for i := range 2 {
		store := newStore(t, openDB(t, path), sqlitestore.Config{})
		cfg := conformance.TestRelayConfig(t)
		cfg.Owner = fmt.Sprint("relay-", i)
		conformance.StartRelay(t, store, broker.Publisher, cfg)
	}

	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 150 {
				msgs := []outbox.Message{
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", w, i%5)},
					{Topic: topic, Key: fmt.Sprintf("w%d-k%d", w, (i+1)%5)},
				}
				tx, err := writerDB.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if err := writers.Enqueue(ctx, tx, msgs...); err != nil {
					_ = tx.Rollback()
					t.Error(err)
					return
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				ledger.Committed(msgs...)
			}
		})
	}
	wg.Wait()
	if err := ledger.WaitAll(ctx); err != nil {
		t.Fatalf("%v; %s", err, ledger.Report())
	}
	if rep := ledger.Report(); !rep.Clean() {
		t.Fatalf("ledger: %s", rep)
	}
}

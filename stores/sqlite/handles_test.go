package sqlitestore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

// Two Store values on two handles of one file claim concurrently: their
// claims are disjoint and each key comes out in write order.
func TestStoresOnSeparateHandlesClaimDisjointInOrder(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	a := newStore(t, openDB(t, path), sqlitestore.Config{})
	b := newStore(t, openDB(t, path), sqlitestore.Config{})

	const keys, perKey = 5, 60
	position := make(map[string]int)
	var all []outbox.Message
	for i := range perKey {
		for k := range keys {
			all = append(all, outbox.Message{Topic: "t", Key: fmt.Sprint("k", k), Payload: []byte(fmt.Sprint(i))})
		}
	}
	db := openDB(t, path)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Enqueue(ctx, tx, all...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i, m := range all {
		position[m.ID] = i / keys
	}

	var mu sync.Mutex
	next := make(map[string]int)
	delivered := 0
	var wg sync.WaitGroup
	for c, store := range []*sqlitestore.Store{a, b, a, b} {
		owner := fmt.Sprint("claimer-", c)
		wg.Go(func() {
			for ctx.Err() == nil {
				recs, err := store.Claim(ctx, outbox.ClaimParams{Owner: owner, Limit: 1 + c, Lease: hour})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, r := range recs {
					if position[r.ID] != next[r.Key] {
						t.Errorf("%s claimed record %d of %s while record %d was its oldest undelivered one", owner, position[r.ID], r.Key, next[r.Key])
					}
					next[r.Key]++
				}
				delivered += len(recs)
				finished := delivered == len(all)
				mu.Unlock()
				if t.Failed() {
					return
				}
				if len(recs) > 0 {
					if err := store.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: owner, IDs: ids(recs)}); err != nil {
						t.Error(err)
						return
					}
				}
				if finished {
					return
				}
				if len(recs) == 0 {
					waitBriefly(ctx) // the rest is leased to the others
				}
			}
		})
	}
	wg.Wait()
	if !t.Failed() && delivered != len(all) {
		t.Fatalf("delivered %d of %d", delivered, len(all))
	}
}

// waitBriefly keeps a claim loop from spinning while others hold the work.
func waitBriefly(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Millisecond):
	}
}

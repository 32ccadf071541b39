package sqlitestore_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// What SQLite does instead of late commits (the suite's
// LateCommitLeavesNoGap and LongTransactionIsDelivered, skipped here): a
// write transaction held open makes every other writer wait, so records
// commit in Seq order; an idle relay is not blocked meanwhile, and nothing
// of the open transaction is visible before it commits.
func TestHeldWriteTransaction(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	lanes := takeAll(t, ctx, store, "relay", hour)

	held, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback() }()
	first := []outbox.Message{{Topic: "t", Key: "k"}}
	if err := store.Enqueue(ctx, held, first...); err != nil {
		t.Fatal(err)
	}

	var committing atomic.Bool
	second := []outbox.Message{{Topic: "t", Key: "k"}}
	done := make(chan error, 1)
	go func() {
		tx, err := db.BeginTx(ctx, nil) // waits for the held transaction
		if err != nil {
			done <- err
			return
		}
		if !committing.Load() {
			t.Error("a second write transaction began while the first was open")
		}
		if err := store.Enqueue(ctx, tx, second...); err != nil {
			_ = tx.Rollback()
			done <- err
			return
		}
		done <- tx.Commit()
	}()

	// A relay polling meanwhile reads without the write lock: it is not
	// held up, and sees nothing uncommitted. (It took its lanes before:
	// taking them is a write, which would wait.)
	for range 3 {
		if recs := readLanes(t, ctx, store, lanes, 10); len(recs) != 0 {
			t.Fatalf("read %d records of an open transaction", len(recs))
		}
	}

	committing.Store(true)
	if err := held.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []outbox.Record
	for {
		recs := readLanes(t, ctx, store, lanes, 1)
		if len(recs) == 0 {
			break
		}
		got = append(got, recs...)
		deliver(t, ctx, store, lanes, recs)
	}
	if len(got) != 2 || got[0].ID != first[0].ID || got[1].ID != second[0].ID || got[0].Seq >= got[1].Seq {
		t.Fatalf("delivered %+v; want the held transaction's record, then the waiting one's, in Seq order", got)
	}
}

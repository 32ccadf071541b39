package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/txoutbox/txoutbox/conformance"
	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// singleWriterReason is why the suite's tests that hold a write transaction
// open while another writer must go ahead do not apply: SQLite has one
// writer at a time, so commit order is Seq order and late-commit gaps
// cannot happen. TestHeldWriteTransaction covers what SQLite does instead.
const singleWriterReason = "SQLite has one writer: a write transaction held open blocks every other writer until it ends (see TestHeldWriteTransaction)"

func harness() conformance.StoreHarness {
	return conformance.StoreHarness{New: newOutbox, SingleWriter: singleWriterReason}
}

func newOutbox(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{Limits: opts.Limits, Lanes: opts.Lanes})
	return outboxOf(db, store)
}

// outboxOf pairs a store with writers on db.
func outboxOf(db *sql.DB, store *sqlitestore.Store) conformance.Outbox {
	return conformance.Outbox{
		Store: store,
		Begin: func(ctx context.Context) (conformance.WriteTx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return &writeTx{store: store, tx: tx}, nil
		},
	}
}

type writeTx struct {
	store *sqlitestore.Store
	tx    *sql.Tx
}

func (w *writeTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.store.Enqueue(ctx, w.tx, msgs...)
}

func (w *writeTx) Commit(context.Context) error { return w.tx.Commit() }

func (w *writeTx) Rollback(context.Context) error {
	if err := w.tx.Rollback(); err != nil && err != sql.ErrTxDone {
		return err
	}
	return nil
}

func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newStore(t testing.TB, db *sql.DB, cfg sqlitestore.Config) *sqlitestore.Store {
	t.Helper()
	store, err := sqlitestore.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	conformance.RunStoreSuite(t, harness())
}

func TestRelaySuite(t *testing.T) {
	t.Parallel()
	conformance.RunRelaySuite(t, conformance.RelayHarness{Store: harness(), Broker: conformance.MemoryBroker()})
}

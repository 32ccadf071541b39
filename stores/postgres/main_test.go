package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

func TestMain(m *testing.M) { os.Exit(servers.MainFunc(m, prepareExamples)) }

// testStore returns a migrated store in a schema of t's own, and its pool.
// The pool's connections have an empty search_path, so a statement that
// forgets to qualify a name fails.
func testStore(t testing.TB, cfg Config) (*Store, *pgxpool.Pool) {
	t.Helper()
	_, schema := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	cfg.Schema = schema
	s, err := New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s, pool
}

// harness builds outboxes for the conformance suites.
func harness() conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		s, pool := testStore(t, Config{Limits: opts.Limits, Lanes: opts.Lanes})
		return outboxOf(s, pool)
	}}
}

func outboxOf(s *Store, pool *pgxpool.Pool) conformance.Outbox {
	return conformance.Outbox{
		Store: s,
		Begin: func(ctx context.Context) (conformance.WriteTx, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			return &writeTx{s: s, tx: tx}, nil
		},
	}
}

// sqlHarness builds outboxes whose writers are on database/sql (pgx's
// stdlib driver) and enqueue with EnqueueSQL; the relay side is the same.
func sqlHarness() conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		s, _ := testStore(t, Config{Limits: opts.Limits, Lanes: opts.Lanes})
		return sqlOutboxOf(t, s)
	}}
}

// sqlOutboxOf is s with writers on database/sql over s's pool.
func sqlOutboxOf(t testing.TB, s *Store) conformance.Outbox {
	db := sqlDB(t, s.pool)
	return conformance.Outbox{
		Store: s,
		Begin: func(ctx context.Context) (conformance.WriteTx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return &sqlWriteTx{s: s, tx: tx}, nil
		},
	}
}

// sqlWriteTx is an application transaction on database/sql.
type sqlWriteTx struct {
	s  *Store
	tx *sql.Tx
}

func (w *sqlWriteTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.s.EnqueueSQL(ctx, w.tx, msgs...)
}

func (w *sqlWriteTx) Commit(context.Context) error { return w.tx.Commit() }

func (w *sqlWriteTx) Rollback(context.Context) error {
	if err := w.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// writeTx is an application transaction as the suites see it.
type writeTx struct {
	s  *Store
	tx pgx.Tx
}

func (w *writeTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.s.Enqueue(ctx, w.tx, msgs...)
}

func (w *writeTx) Commit(ctx context.Context) error { return w.tx.Commit(ctx) }

func (w *writeTx) Rollback(ctx context.Context) error {
	if err := w.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}

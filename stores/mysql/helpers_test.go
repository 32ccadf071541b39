package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/txoutbox/conformance"
	"github.com/txoutbox/txoutbox/conformance/servers/mysqlserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// testDSN returns a DSN for a database of t's own. By default it is the
// least convenient setting for the store: no parseTime, server-side
// prepared statements, and a session time zone that is not UTC; tweak
// changes it further.
func testDSN(t testing.TB, tweak func(*mysql.Config)) string {
	t.Helper()
	dsn, _ := mysqlserver.Database(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = false
	cfg.InterpolateParams = false
	cfg.Params = map[string]string{"time_zone": "'-07:00'"}
	if tweak != nil {
		tweak(cfg)
	}
	return cfg.FormatDSN()
}

// openDB opens dsn with a bounded pool, closed when t ends.
func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// newStore returns a migrated store on db.
func newStore(t testing.TB, db *sql.DB, cfg Config) *Store {
	t.Helper()
	s, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// storeHarness builds outboxes for the conformance suites, each in a
// database of its own.
func storeHarness() conformance.StoreHarness {
	return conformance.StoreHarness{New: func(t *testing.T, opts conformance.OutboxOptions) conformance.Outbox {
		db := openDB(t, testDSN(t, nil))
		s := newStore(t, db, Config{Limits: opts.Limits, Lanes: opts.Lanes})
		return testOutbox(s, db)
	}}
}

// holdAll makes owner the holder of every free lane of s, for an hour, and
// returns the lanes it took.
func holdAll(t testing.TB, ctx context.Context, s *Store, owner string) []outbox.Lane {
	t.Helper()
	view, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: owner, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var want []outbox.Lane
	for _, l := range view.Lanes {
		want = append(want, l.Lane)
	}
	taken, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: owner, Lease: time.Hour, Lanes: want})
	if err != nil {
		t.Fatal(err)
	}
	return taken
}

// laneIDs returns the IDs of lanes.
func laneIDs(lanes []outbox.Lane) []int {
	ids := make([]int, len(lanes))
	for i, l := range lanes {
		ids[i] = l.ID
	}
	return ids
}

// readOK reads up to limit pending records of lanes, from the first.
func readOK(t testing.TB, ctx context.Context, s *Store, lanes []outbox.Lane, limit int) []outbox.Record {
	t.Helper()
	recs, err := s.Read(ctx, outbox.ReadParams{Lanes: laneIDs(lanes), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// deliver settles recs as delivered by the holder of lanes.
func deliver(t testing.TB, ctx context.Context, s *Store, lanes []outbox.Lane, recs []outbox.Record) {
	t.Helper()
	if err := s.Settle(ctx, outbox.SettleParams{Lanes: lanes, Delivered: recordIDs(recs)}); err != nil {
		t.Fatal(err)
	}
}

// testOutbox pairs a store with transactions of db.
func testOutbox(s *Store, db *sql.DB) conformance.Outbox {
	return conformance.Outbox{
		Store: s,
		Begin: func(ctx context.Context) (conformance.WriteTx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return &writeTx{s: s, tx: tx}, nil
		},
	}
}

type writeTx struct {
	s  *Store
	tx *sql.Tx
}

func (w *writeTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return w.s.Enqueue(ctx, w.tx, msgs...)
}

func (w *writeTx) Commit(context.Context) error { return w.tx.Commit() }

func (w *writeTx) Rollback(context.Context) error {
	if err := w.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

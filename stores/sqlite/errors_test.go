package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	cases := []struct {
		name string
		db   *sql.DB
		cfg  sqlitestore.Config
	}{
		{"nil db", nil, sqlitestore.Config{}},
		{"table starts with a digit", db, sqlitestore.Config{Table: "1outbox"}},
		{"table with a dash", db, sqlitestore.Config{Table: "out-box"}},
		{"table with a quote", db, sqlitestore.Config{Table: `out"box`}},
		{"schema-qualified table", db, sqlitestore.Config{Table: "main.outbox"}},
		{"reserved prefix", db, sqlitestore.Config{Table: "sqlite_outbox"}},
		{"table too long", db, sqlitestore.Config{Table: strings.Repeat("t", 64)}},
		{"negative lock timeout", db, sqlitestore.Config{LockTimeout: -time.Second}},
		{"negative payload limit", db, sqlitestore.Config{Limits: outbox.Limits{MaxPayloadBytes: -1}}},
		{"negative lane count", db, sqlitestore.Config{Lanes: -1}},
		{"too many lanes", db, sqlitestore.Config{Lanes: outbox.MaxLanes + 1}},
	}
	for _, c := range cases {
		if _, err := sqlitestore.New(c.db, c.cfg); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: New returned %v, want ErrInvalidConfig", c.name, err)
		}
	}
	if _, err := sqlitestore.New(db, sqlitestore.Config{Table: "Order_events_2"}); err != nil {
		t.Errorf("a valid table name was refused: %v", err)
	}
}

// A keyword works as a table name, and two outboxes in one file are
// independent.
func TestTwoTablesInOneFile(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	orders := newStore(t, db, sqlitestore.Config{Table: "order"})
	users := newStore(t, db, sqlitestore.Config{Table: "users_outbox"})
	o := enqueueOne(t, ctx, db, orders, outbox.Message{Topic: "orders", Key: "1"})
	u := enqueueOne(t, ctx, db, users, outbox.Message{Topic: "users", Key: "1"})
	for _, c := range []struct {
		store *sqlitestore.Store
		want  string
	}{{orders, o.ID}, {users, u.ID}} {
		recs := readLanes(t, ctx, c.store, takeAll(t, ctx, c.store, "a", hour), 10)
		if len(recs) != 1 || recs[0].ID != c.want {
			t.Fatalf("table %s: read %v, want only %s", c.store.Table(), ids(recs), c.want)
		}
	}
}

func TestSchemaMissing(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store, err := sqlitestore.New(db, sqlitestore.Config{}) // not migrated
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	enqueueErr := store.Enqueue(ctx, tx, outbox.Message{Topic: "t"})
	if err := tx.Rollback(); err != nil { // the writes below would wait for it
		t.Fatal(err)
	}
	checks := map[string]error{
		"Enqueue":   enqueueErr,
		"SyncLanes": second(store.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: hour})),
		"TakeLanes": second(store.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: hour, Lanes: []outbox.Lane{{ID: 0}}})),
		"Read":      second(store.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})),
		"Settle":    store.Settle(ctx, outbox.SettleParams{Lanes: []outbox.Lane{{ID: 0}}, Delivered: []string{outbox.NewID()}}),
		"Stats":     second(store.Stats(ctx)),
		"ListDead":  second(store.ListDead(ctx, outbox.ListDeadParams{})),
		"Cleanup":   second(store.Cleanup(ctx, outbox.CleanupParams{OlderThan: hour, Limit: 10})),
	}
	for what, err := range checks {
		if !errors.Is(err, outbox.ErrSchemaMissing) {
			t.Errorf("%s before Migrate returned %v, want ErrSchemaMissing", what, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestEnqueueNeedsATransaction(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	var nilTx *sql.Tx
	for what, tx := range map[string]sqlitestore.Execer{"*sql.DB": db, "nil": nil, "nil *sql.Tx": nilTx} {
		if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrNoTransaction) {
			t.Errorf("Enqueue with %s returned %v, want ErrNoTransaction", what, err)
		}
	}
	// A *sql.Conn in a transaction the caller began is a transaction.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if err := store.Enqueue(ctx, conn, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if st, err := store.Stats(ctx); err != nil || st.Pending != 1 {
		t.Fatalf("Stats = %+v, %v; want 1 pending", st, err)
	}
}

// Enqueue runs its INSERT as the store's prepared statement in a
// transaction of the store's *sql.DB, and as a plain statement in one of
// another *sql.DB on the same file; both write, and repeatedly (the
// prepared statement is reused).
func TestEnqueueInTransactionsOfAnyHandle(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	db, other := openDB(t, path), openDB(t, path)
	store := newStore(t, db, sqlitestore.Config{})
	for round := range 3 {
		for name, h := range map[string]*sql.DB{"the store's *sql.DB": db, "another *sql.DB": other} {
			tx, err := h.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t"}, outbox.Message{Topic: "t"}); err != nil {
				_ = tx.Rollback()
				t.Fatalf("round %d, a transaction of %s: %v", round, name, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st, err := store.Stats(ctx); err != nil || st.Pending != 12 {
		t.Fatalf("Stats = %+v, %v; want the 12 records of 6 transactions pending", st, err)
	}
}

func TestEnqueueRejectsRepeatedIDWithoutWriting(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	id := outbox.NewID()
	if err := store.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: "t"}, outbox.Message{ID: strings.ToUpper(id), Topic: "t"}); err == nil {
		t.Fatal("Enqueue accepted one ID twice in one call")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if st, err := store.Stats(ctx); err != nil || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing written", st, err)
	}
}

// A write lock held past the store's LockTimeout, by this process or by a
// connection the store cannot see (another process), is ErrUnavailable.
func TestLockHeldTooLongIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	// A short busy timeout, so that SQLite's own wait ends quickly too.
	db, err := sqlitestore.OpenDSN(strings.Replace(sqlitestore.DSN(path), "_busy_timeout=5000", "_busy_timeout=50", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store := newStore(t, db, sqlitestore.Config{LockTimeout: 200 * time.Millisecond})
	enqueueOne(t, ctx, db, store, outbox.Message{Topic: "t", Key: "k"})
	allLanes := make([]int, outbox.DefaultLanes)
	for i := range allLanes {
		allLanes[i] = i
	}

	// The store's own write waits in this process's queue.
	held, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: hour})
	if !errors.Is(err, outbox.ErrUnavailable) || !errors.Is(err, sqlitestore.ErrBusy) {
		t.Errorf("SyncLanes while this process holds the write lock returned %v, want ErrBusy and ErrUnavailable", err)
	}
	// Read takes no lock: it is not held up.
	if recs, err := store.Read(ctx, outbox.ReadParams{Lanes: allLanes, Limit: 10}); err != nil || len(recs) != 1 {
		t.Errorf("Read while this process holds the write lock = %d records, %v; want 1", len(recs), err)
	}
	if err := held.Rollback(); err != nil {
		t.Fatal(err)
	}

	// A connection outside the queue, as another process's would be: SQLite
	// reports SQLITE_BUSY.
	foreign, err := sql.Open("sqlite", path+"?_busy_timeout=50")
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	conn, err := foreign.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	_, err = store.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: hour})
	if !errors.Is(err, outbox.ErrUnavailable) || !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Errorf("SyncLanes while another connection holds the write lock returned %v, want ErrUnavailable from SQLITE_BUSY", err)
	}
	// Enqueue in a transaction of the application fails the same way.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // deferred: takes no lock at BEGIN
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := store.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Enqueue while another connection holds the write lock returned %v, want ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if lanes := takeAll(t, ctx, store, "a", hour); len(lanes) != outbox.DefaultLanes {
		t.Fatalf("after the lock was released TakeLanes took %d lanes, want %d", len(lanes), outbox.DefaultLanes)
	}
}

func TestMigrateRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	store := newStore(t, db, sqlitestore.Config{})
	if _, err := db.ExecContext(ctx, `INSERT INTO outbox_migrations (version, name, applied_at) VALUES (?, 'future', 0)`,
		sqlitestore.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); !errors.Is(err, outbox.ErrUnsupported) {
		t.Fatalf("Migrate over a newer schema returned %v, want ErrUnsupported", err)
	}
}

func TestMigrateRecordsVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "outbox.db"))
	newStore(t, db, sqlitestore.Config{})
	var n, max int
	if err := db.QueryRowContext(ctx, `SELECT count(*), max(version) FROM outbox_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != sqlitestore.SchemaVersion() || max != sqlitestore.SchemaVersion() {
		t.Fatalf("outbox_migrations has %d rows up to version %d, want %d", n, max, sqlitestore.SchemaVersion())
	}
}

// TestOpenRefusalsAreTranslated: a database file in a directory that does
// not exist is ErrDatabaseMissing, and a file SQLite may only read is
// ErrAccessDenied; neither is ErrUnavailable, which would be retried.
func TestOpenRefusalsAreTranslated(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "outbox.db")
	_, err := sqlitestore.Open(missing)
	if !errors.Is(err, outbox.ErrDatabaseMissing) || errors.Is(err, outbox.ErrUnavailable) || !strings.Contains(err.Error(), filepath.Dir(missing)) {
		t.Errorf("Open(%s) = %v; want ErrDatabaseMissing naming the directory, and not ErrUnavailable", missing, err)
	}

	path := filepath.Join(t.TempDir(), "outbox.db")
	rw := openDB(t, path)
	enqueueOne(t, ctx, rw, newStore(t, rw, sqlitestore.Config{}), outbox.Message{Topic: "t", Key: "k"})
	ro, err := sqlitestore.OpenDSN(sqlitestore.DSN(path) + "&mode=ro")
	if err != nil {
		t.Fatalf("opening the file read-only: %v", err)
	}
	t.Cleanup(func() { _ = ro.Close() })
	readOnly, err := sqlitestore.New(ro, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readOnly.Stats(ctx); err != nil {
		t.Fatalf("Stats of a read-only file: %v", err)
	}
	_, syncErr := readOnly.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: hour}) // a relay to record
	other, err := sqlitestore.New(ro, sqlitestore.Config{Table: "other"})             // a table to create
	if err != nil {
		t.Fatal(err)
	}
	for op, err := range map[string]error{"Migrate": other.Migrate(ctx), "SyncLanes": syncErr, "Enqueue": tryEnqueue(ctx, ro, readOnly, outbox.Message{Topic: "t"})} {
		if !errors.Is(err, outbox.ErrAccessDenied) || errors.Is(err, outbox.ErrUnavailable) {
			t.Errorf("%s on a read-only file = %v; want ErrAccessDenied, not ErrUnavailable", op, err)
		}
	}
}

package pgstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/conformance/servers"
	"github.com/txoutbox/txoutbox/conformance/servers/pgserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// count returns how many records the table holds, delivered or not.
func count(t *testing.T, ctx context.Context, pool *pgxpool.Pool, s *Store) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+s.Table()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// enqueueCommitted enqueues msgs in a transaction of their own, committed
// at once: for tests that only need records in the table.
func enqueueCommitted(ctx context.Context, pool *pgxpool.Pool, s *Store, msgs ...outbox.Message) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.Enqueue(ctx, tx, msgs...) })
}

// sqlDB returns a database/sql handle on pool's connections (pgx's stdlib
// driver), so that they keep the test pool's empty search_path.
func sqlDB(t testing.TB, pool *pgxpool.Pool) *sql.DB {
	t.Helper()
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// appTx is a caller's transaction as these tests drive it: a pgx.Tx with
// Enqueue, or a *sql.Tx with EnqueueSQL.
type appTx struct {
	enqueue  func(ctx context.Context, msgs ...outbox.Message) error
	count    func(ctx context.Context, table string) (int, error) // records seen inside the transaction
	commit   func(ctx context.Context) error
	rollback func(ctx context.Context) error
}

// beginners are the ways a caller can hold a transaction, each with the
// Enqueue that takes it.
func beginners(t *testing.T, s *Store, pool *pgxpool.Pool) map[string]func(ctx context.Context) (appTx, error) {
	db := sqlDB(t, pool)
	fromPgx := func(tx pgx.Tx) appTx {
		return appTx{
			enqueue: func(ctx context.Context, msgs ...outbox.Message) error { return s.Enqueue(ctx, tx, msgs...) },
			count: func(ctx context.Context, table string) (n int, err error) {
				return n, tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
			},
			commit:   tx.Commit,
			rollback: tx.Rollback,
		}
	}
	return map[string]func(ctx context.Context) (appTx, error){
		"pgx.Tx of a pool": func(ctx context.Context) (appTx, error) {
			tx, err := pool.Begin(ctx)
			return fromPgx(tx), err
		},
		"pgx.Tx of a *pgx.Conn": func(ctx context.Context) (appTx, error) {
			pc, err := pool.Acquire(ctx)
			if err != nil {
				return appTx{}, err
			}
			tx, err := pc.Conn().Begin(ctx)
			if err != nil {
				pc.Release()
				return appTx{}, err
			}
			a := fromPgx(tx)
			end := func(f func(context.Context) error) func(context.Context) error {
				return func(ctx context.Context) error { defer pc.Release(); return f(ctx) }
			}
			a.commit, a.rollback = end(tx.Commit), end(tx.Rollback)
			return a, nil
		},
		"pgx.Tx nested in a pgx.Tx (a savepoint)": func(ctx context.Context) (appTx, error) {
			outer, err := pool.Begin(ctx)
			if err != nil {
				return appTx{}, err
			}
			tx, err := outer.Begin(ctx)
			if err != nil {
				_ = outer.Rollback(ctx)
				return appTx{}, err
			}
			a := fromPgx(tx)
			a.commit = func(ctx context.Context) error {
				if err := tx.Commit(ctx); err != nil {
					_ = outer.Rollback(ctx)
					return err
				}
				return outer.Commit(ctx)
			}
			a.rollback = func(ctx context.Context) error {
				if err := tx.Rollback(ctx); err != nil {
					_ = outer.Rollback(ctx)
					return err
				}
				return outer.Rollback(ctx)
			}
			return a, nil
		},
		"*sql.Tx (pgx stdlib)": func(ctx context.Context) (appTx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return appTx{}, err
			}
			return appTx{
				enqueue: func(ctx context.Context, msgs ...outbox.Message) error { return s.EnqueueSQL(ctx, tx, msgs...) },
				count: func(ctx context.Context, table string) (n int, err error) {
					return n, tx.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
				},
				commit:   func(context.Context) error { return tx.Commit() },
				rollback: func(context.Context) error { return tx.Rollback() },
			}, nil
		},
	}
}

// Enqueue and EnqueueSQL write in the caller's transaction and leave
// committing to it: while it is open nobody else sees the messages, a
// rollback leaves nothing, a commit leaves them all. Through every kind of
// transaction a caller may hold.
func TestEnqueueNeverCommits(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	want := 0
	for name, begin := range beginners(t, s, pool) {
		for _, commit := range []bool{false, true} {
			tx, err := begin(ctx)
			if err != nil {
				t.Fatalf("%s: begin: %v", name, err)
			}
			if err := tx.enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}, outbox.Message{Topic: "t"}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := tx.enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if n := count(t, ctx, pool, s); n != want {
				t.Fatalf("%s: %d records visible outside the open transaction, want %d; Enqueue must not commit", name, n, want)
			}
			if inTx, err := tx.count(ctx, s.Table()); err != nil || inTx != want+3 {
				t.Fatalf("%s: the transaction sees %d records (%v), want %d", name, inTx, err, want+3)
			}
			end := tx.rollback
			if commit {
				end, want = tx.commit, want+3
			}
			if err := end(ctx); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if n := count(t, ctx, pool, s); n != want {
				t.Fatalf("%s: %d records after the caller's commit=%v, want %d", name, n, commit, want)
			}
		}
	}
}

// Only a transaction is accepted. A pool, a connection or a *sql.DB, whose
// statements would commit on their own, apart from the business change, do
// not compile; a nil transaction, or one already ended, is refused with
// ErrNoTransaction and a text that says what to pass.
func TestEnqueueRefusesWhatIsNotATransaction(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	db := sqlDB(t, pool)

	// What the signatures refuse at compile time.
	store := reflect.TypeFor[*Store]()
	for method, refused := range map[string][]reflect.Type{
		"Enqueue":    {reflect.TypeFor[*pgxpool.Pool](), reflect.TypeFor[*pgxpool.Conn](), reflect.TypeFor[*pgx.Conn](), reflect.TypeFor[*sql.Tx]()},
		"EnqueueSQL": {reflect.TypeFor[*sql.DB](), reflect.TypeFor[*sql.Conn](), reflect.TypeFor[pgx.Tx]()},
	} {
		m, ok := store.MethodByName(method)
		if !ok {
			t.Fatalf("no method %s", method)
		}
		param := m.Type.In(2) // after the receiver and ctx
		for _, r := range refused {
			if r.AssignableTo(param) {
				t.Errorf("%s accepts a %v, which is not a transaction", method, r)
			}
		}
	}

	// What is refused when it runs.
	committedPgx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := committedPgx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	committedSQL, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := committedSQL.Commit(); err != nil {
		t.Fatal(err)
	}
	msg := outbox.Message{Topic: "t"}
	for _, c := range []struct {
		name, says string
		err        error
	}{
		{"nil pgx.Tx", "needs the pgx.Tx of the business change", s.Enqueue(ctx, nil, msg)},
		{"nil *sql.Tx", "needs the *sql.Tx of the business change", s.EnqueueSQL(ctx, nil, msg)},
		{"committed pgx.Tx", "enqueue before Commit", s.Enqueue(ctx, committedPgx, msg)},
		{"committed *sql.Tx", "enqueue before Commit", s.EnqueueSQL(ctx, committedSQL, msg)},
	} {
		if !errors.Is(c.err, outbox.ErrNoTransaction) || !strings.Contains(fmt.Sprint(c.err), c.says) {
			t.Errorf("Enqueue with a %s = %v; want ErrNoTransaction saying %q", c.name, c.err, c.says)
		}
	}
	if n := count(t, ctx, pool, s); n != 0 {
		t.Fatalf("%d records written by refused calls", n)
	}
}

// Both paths send one statement whose array arguments differ in form (Go
// slices for pgx, array literals for database/sql): what they write must
// read back the same, to the byte, whatever a message carries.
func TestEnqueueSQLWritesWhatEnqueueWrites(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	db := sqlDB(t, pool)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	created := time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("", -(3*3600+30*60)))
	messages := func() []outbox.Message {
		return []outbox.Message{
			{Topic: "t", Key: `"quoted", {braced}, back\slash\`, Payload: all, CreatedAt: created,
				Headers: map[string]string{"quote": `say "hi"`, "back": `a\b`, "brace": "{x,y}", "empty": "", "utf8": "é ü 日本"}},
			{Topic: "t", Key: "NULL", Payload: nil},
			{Topic: "t", Key: "", Payload: []byte(`\x00`)},
			{Topic: "t.b", Key: " spaced out ", Payload: []byte{}, Headers: map[string]string{"k": "v"}},
		}
	}
	for _, n := range []int{1, 4} { // one message: scalar arguments; several: arrays
		viaPgx, viaSQL := messages()[:n], messages()[:n]
		if err := enqueueCommitted(ctx, pool, s, viaPgx...); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnqueueSQL(ctx, tx, viaSQL...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		recs := readAll(t, ctx, s, 100)
		byID := make(map[string]outbox.Message, len(recs))
		for _, r := range recs {
			byID[r.ID] = r.Message
		}
		for i := range n {
			for path, sent := range map[string]outbox.Message{"pgx": viaPgx[i], "database/sql": viaSQL[i]} {
				m, want := byID[sent.ID], messages()[i]
				want.ID, want.CreatedAt = sent.ID, sent.CreatedAt.Truncate(time.Microsecond) // PostgreSQL's precision
				if m.ID != want.ID || m.Key != want.Key || m.Topic != want.Topic || !bytes.Equal(m.Payload, want.Payload) ||
					!maps.Equal(m.Headers, want.Headers) || !m.CreatedAt.Equal(want.CreatedAt) {
					t.Errorf("message %d of %d through %s reads back as\n%+v\nwant\n%+v", i, n, path, m, want)
				}
			}
		}
		deliver(t, ctx, s, pool, ids(recs)...)
	}

	// Within one key, slice order is delivery order.
	ordered := make([]outbox.Message, 5)
	for i := range ordered {
		ordered[i] = outbox.Message{Topic: "t", Key: "order", Payload: []byte{byte(i)}}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueSQL(ctx, tx, ordered...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, ctx, s, 100)
	for i, r := range recs {
		if len(recs) != 5 || r.Payload[0] != byte(i) {
			t.Fatalf("read %d records, record %d has payload %v; want 5 in slice order", len(recs), i, r.Payload)
		}
	}
}

func ids(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// An oversized message is refused before anything is sent: the caller's
// transaction stays usable and commits its business write without it.
func TestEnqueueOversizedFailsBeforeCommit(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{Limits: outbox.Limits{MaxPayloadBytes: 1024}})
	users := usersTable(t, ctx, pool, s)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE "+users+" SET name = 'Grace' WHERE user_id = 'u1'"); err != nil {
		t.Fatal(err)
	}
	err = s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "u1"}, outbox.Message{Topic: "t", Key: "u1", Payload: make([]byte, 1025)})
	var ve *outbox.ValidationError
	if !errors.Is(err, outbox.ErrPayloadTooLarge) || !errors.As(err, &ve) || ve.Index != 1 {
		t.Fatalf("Enqueue of a 1025-byte payload with a 1024-byte limit = %v; want ErrPayloadTooLarge for message 1", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the transaction was spoiled by a rejected Enqueue: %v", err)
	}
	if n := count(t, ctx, pool, s); n != 0 {
		t.Fatalf("%d records written by a rejected Enqueue", n)
	}
	var name string
	if err := pool.QueryRow(ctx, "SELECT name FROM "+users+" WHERE user_id = 'u1'").Scan(&name); err != nil || name != "Grace" {
		t.Fatalf("business write = %q, %v; want it committed", name, err)
	}
}

// usersTable creates an application table next to the outbox, with one user.
func usersTable(t *testing.T, ctx context.Context, pool *pgxpool.Pool, s *Store) string {
	t.Helper()
	users := pgx.Identifier{s.Config().Schema, "users"}.Sanitize()
	_, err := pool.Exec(ctx, `CREATE TABLE `+users+` (user_id text PRIMARY KEY, name text NOT NULL, updated_on timestamptz NOT NULL DEFAULT now());
INSERT INTO `+users+` (user_id, name) VALUES ('u1', 'Ada')`)
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// Enqueue never creates tables (DDL has no place in the caller's
// transaction): without Migrate it fails with ErrSchemaMissing and the table
// still does not exist. Through both paths.
func TestEnqueueWithoutMigrateCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, schema := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	s, err := New(pool, Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	for name, begin := range beginners(t, s, pool) {
		tx, err := begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = tx.enqueue(ctx, outbox.Message{Topic: "t"})
		if !errors.Is(err, outbox.ErrSchemaMissing) {
			t.Errorf("%s: Enqueue before Migrate = %v; want ErrSchemaMissing", name, err)
		}
		_ = tx.rollback(ctx)
	}
	var table *string
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", s.Table()).Scan(&table); err != nil || table != nil {
		t.Fatalf("to_regclass(%s) = %v, %v; Enqueue must not create the table", s.Table(), table, err)
	}
}

// Every operation on a table that does not exist says to run Migrate, in a
// missing schema or a missing table of an existing schema.
func TestSchemaMissingIsTranslated(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, schema := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	db := sqlDB(t, pool)
	for _, cfg := range []Config{{Schema: schema}, {Schema: schema + "_nowhere"}} {
		s, err := New(pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		id := outbox.NewID()
		lane0 := []outbox.Lane{{ID: 0}}
		ops := map[string]func() error{
			"Enqueue": func() error { return enqueueCommitted(ctx, pool, s, outbox.Message{Topic: "t"}) },
			"EnqueueSQL": func() error {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				return s.EnqueueSQL(ctx, tx, outbox.Message{Topic: "t"})
			},
			"SyncLanes": func() error {
				_, err := s.SyncLanes(ctx, outbox.SyncParams{Owner: "a", Lease: time.Minute})
				return err
			},
			"TakeLanes": func() error {
				_, err := s.TakeLanes(ctx, outbox.TakeParams{Owner: "a", Lease: time.Minute, Lanes: lane0, Charge: 1})
				return err
			},
			"ReleaseLanes": func() error {
				return s.ReleaseLanes(ctx, outbox.ReleaseLanesParams{Owner: "a", Lanes: lane0, Leave: true})
			},
			"Read": func() error {
				_, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1, StrictOrder: true})
				return err
			},
			"Settle(delivered)": func() error {
				return s.Settle(ctx, outbox.SettleParams{Lanes: lane0, Delivered: []string{id}})
			},
			"Settle(failed)": func() error {
				return s.Settle(ctx, outbox.SettleParams{Lanes: lane0, Retries: []outbox.Retry{{ID: id}}, Dead: []outbox.Failure{{ID: id}}})
			},
			"Cleanup": func() error { _, err := s.Cleanup(ctx, outbox.CleanupParams{Limit: 1}); return err },
			"Stats":   func() error { _, err := s.Stats(ctx); return err },
			"ListDead": func() error {
				_, err := s.ListDead(ctx, outbox.ListDeadParams{})
				return err
			},
			"ReplayDead": func() error { _, err := s.ReplayDead(ctx, outbox.SelectDead{All: true}); return err },
			"PurgeDead":  func() error { _, err := s.PurgeDead(ctx, outbox.SelectDead{All: true}); return err },
		}
		for name, op := range ops {
			if err := op(); !errors.Is(err, outbox.ErrSchemaMissing) {
				t.Errorf("%s on %s = %v; want ErrSchemaMissing", name, s.Table(), err)
			}
		}
		if v, err := s.SchemaVersion(ctx); v != 0 || err != nil {
			t.Errorf("SchemaVersion of %s = %d, %v; want 0, nil", s.Table(), v, err)
		}
	}
}

// A server that cannot be reached is ErrUnavailable, which the relay treats
// as an outage to wait out.
func TestUnreachableServerIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	port, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/nowhere?sslmode=disable&connect_timeout=5", port))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := New(pool, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Read against a closed port = %v; want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Ping against a closed port = %v; want ErrUnavailable", err)
	}
	if _, err := s.Listen(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Listen against a closed port = %v; want ErrUnavailable", err)
	}
}

// listenOn takes a connection of pool for the test and listens on channel
// with it.
func listenOn(ctx context.Context, t *testing.T, pool *pgxpool.Pool, channel string) *pgx.Conn {
	t.Helper()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listener := pc.Hijack()
	t.Cleanup(func() { listener.Close(context.Background()) })
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return listener
}

// The notification is sent by the commit, not by Enqueue: PostgreSQL
// delivers notifications in commit order, so a marker notified (and
// committed) after Enqueue but before the writer's commit arrives first.
func TestNotifyOnlyOnCommit(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{NotifyInterval: -1}) // every Enqueue notifies in its transaction
	listener := listenOn(ctx, t, pool, s.Channel())
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", s.Channel()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"marker", ""} {
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Channel != s.Channel() || n.Payload != want {
			t.Fatalf("notification %q on %q; want %q on %q (Enqueue's comes with its commit, after the marker)", n.Payload, n.Channel, want, s.Channel())
		}
	}

	// DisableNotify: no notification at all; the marker comes alone.
	quiet, err := New(pool, Config{Schema: s.Config().Schema, DisableNotify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := enqueueCommitted(ctx, pool, quiet, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", s.Channel()); err != nil {
		t.Fatal(err)
	}
	if n, err := listener.WaitForNotification(ctx); err != nil || n.Payload != "marker" {
		t.Fatalf("with DisableNotify, got notification %+v, %v; want only the marker", n, err)
	}

	// EnqueueSQL sends the same statement, notification included.
	sqlTx, err := sqlDB(t, pool).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlTx.Rollback()
	if err := s.EnqueueSQL(ctx, sqlTx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", s.Channel()); err != nil {
		t.Fatal(err)
	}
	if err := sqlTx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"marker", ""} {
		n, err := listener.WaitForNotification(ctx)
		if err != nil || n.Payload != want {
			t.Fatalf("EnqueueSQL: notification %+v, %v; want %q (EnqueueSQL's comes with its commit, after the marker)", n, err, want)
		}
	}
}

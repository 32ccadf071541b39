package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// Enqueue writes in the caller's transaction and leaves committing to it:
// while it is open nobody sees the messages, and a rollback leaves nothing.
func TestEnqueueNeverCommits(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "k"}, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, pool, s); n != 0 {
		t.Fatalf("%d records visible outside the open transaction; Enqueue must not commit", n)
	}
	var inTx int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+s.Table()).Scan(&inTx); err != nil || inTx != 2 {
		t.Fatalf("the transaction sees %d records (%v), want its 2", inTx, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, pool, s); n != 0 {
		t.Fatalf("%d records after rollback", n)
	}
}

// Enqueue takes whatever can send a batch. Connections in a transaction are
// transactional; a pool is not (documented): its write commits at once.
func TestEnqueueThroughEveryDBTX(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()

	// Each begins a transaction, returns what to hand Enqueue, and how to
	// roll back.
	cases := []struct {
		name  string
		begin func() (DBTX, func() error, error)
	}{
		{"*pgx.Conn after BEGIN", func() (DBTX, func() error, error) {
			_, err := pc.Exec(ctx, "BEGIN")
			return pc.Conn(), func() error { _, err := pc.Exec(ctx, "ROLLBACK"); return err }, err
		}},
		{"*pgxpool.Conn after BEGIN", func() (DBTX, func() error, error) {
			_, err := pc.Exec(ctx, "BEGIN")
			return pc, func() error { _, err := pc.Exec(ctx, "ROLLBACK"); return err }, err
		}},
		{"pgx.Tx of a *pgx.Conn", func() (DBTX, func() error, error) {
			tx, err := pc.Conn().Begin(ctx)
			if err != nil {
				return nil, nil, err
			}
			return tx, func() error { return tx.Rollback(ctx) }, nil
		}},
		{"pgx.Tx of a pool", func() (DBTX, func() error, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, nil, err
			}
			return tx, func() error { return tx.Rollback(ctx) }, nil
		}},
	}
	for _, c := range cases {
		db, rollback, err := c.begin()
		if err != nil {
			t.Fatalf("%s: begin: %v", c.name, err)
		}
		if err := s.Enqueue(ctx, db, outbox.Message{Topic: "t", Key: c.name}); err != nil {
			t.Fatalf("%s: Enqueue: %v", c.name, err)
		}
		if err := rollback(); err != nil {
			t.Fatalf("%s: rollback: %v", c.name, err)
		}
		if n := count(t, ctx, pool, s); n != 0 {
			t.Fatalf("%s: %d records after the caller rolled back", c.name, n)
		}
	}

	if err := s.Enqueue(ctx, pool, outbox.Message{Topic: "t", Key: "pool"}, outbox.Message{Topic: "t", Key: "pool"}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ctx, pool, s); n != 2 {
		t.Fatalf("%d records after Enqueue through the pool, want 2 committed at once", n)
	}
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
// still does not exist.
func TestEnqueueWithoutMigrateCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, schema := pgserver.Schema(t)
	pool := pgserver.Pool(t)
	s, err := New(pool, Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	err = s.Enqueue(ctx, tx, outbox.Message{Topic: "t"})
	if !errors.Is(err, outbox.ErrSchemaMissing) {
		t.Fatalf("Enqueue before Migrate = %v; want ErrSchemaMissing", err)
	}
	_ = tx.Rollback(ctx)
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
	for _, cfg := range []Config{{Schema: schema}, {Schema: schema + "_nowhere"}} {
		s, err := New(pool, cfg)
		if err != nil {
			t.Fatal(err)
		}
		id := outbox.NewID()
		ops := map[string]func() error{
			"Enqueue": func() error { return s.Enqueue(ctx, pool, outbox.Message{Topic: "t"}) },
			"Claim": func() error {
				_, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Minute})
				return err
			},
			"MarkDelivered": func() error { return s.MarkDelivered(ctx, outbox.MarkDeliveredParams{Owner: "a", IDs: []string{id}}) },
			"ScheduleRetry": func() error {
				return s.ScheduleRetry(ctx, outbox.ScheduleRetryParams{Owner: "a", Retries: []outbox.Retry{{ID: id}}})
			},
			"DeadLetter": func() error {
				return s.DeadLetter(ctx, outbox.DeadLetterParams{Owner: "a", Letters: []outbox.Failure{{ID: id}}})
			},
			"Release": func() error { return s.Release(ctx, outbox.ReleaseParams{Owner: "a", IDs: []string{id}}) },
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
	if _, err := s.Claim(ctx, outbox.ClaimParams{Owner: "a", Limit: 1, Lease: time.Minute}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Claim against a closed port = %v; want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Ping against a closed port = %v; want ErrUnavailable", err)
	}
	if _, err := s.Listen(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("Listen against a closed port = %v; want ErrUnavailable", err)
	}
}

// The notification is sent by the commit, not by Enqueue: PostgreSQL
// delivers notifications in commit order, so a marker notified (and
// committed) after Enqueue but before the writer's commit arrives first.
func TestNotifyOnlyOnCommit(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s, pool := testStore(t, Config{})
	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listener := pc.Hijack()
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{s.Channel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
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
	if err := quiet.Enqueue(ctx, pool, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", s.Channel()); err != nil {
		t.Fatal(err)
	}
	if n, err := listener.WaitForNotification(ctx); err != nil || n.Payload != "marker" {
		t.Fatalf("with DisableNotify, got notification %+v, %v; want only the marker", n, err)
	}
}

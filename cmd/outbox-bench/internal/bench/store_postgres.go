package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
	pgstore "github.com/txoutbox/txoutbox/stores/postgres"
)

var redact = backend.Redact

// pgStore is a PostgreSQL database. Each outbox lives in a schema of its
// own, dropped with everything in it.
type pgStore struct {
	url    string
	admin  *pgxpool.Pool
	notify time.Duration // pgstore.Config.NotifyInterval; zero: its default
}

func openPostgres(ctx context.Context, url string, notifyInterval time.Duration) (*pgStore, error) {
	admin, err := newPGPool(ctx, url, 2)
	if err != nil {
		return nil, err
	}
	if err := admin.Ping(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("PostgreSQL at %s does not answer: %w", redact(url), err)
	}
	return &pgStore{url: url, admin: admin, notify: notifyInterval}, nil
}

// newPGPool returns a pool of at most conns connections to url.
func newPGPool(ctx context.Context, url string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url) // its errors hide the password
	if err != nil {
		return nil, fmt.Errorf("%w: store %s: %v", outbox.ErrInvalidConfig, redact(url), err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "outbox-bench"
	}
	cfg.MaxConns = int32(conns)
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (s *pgStore) info(ctx context.Context) Component {
	c := Component{Spec: redact(s.url), Kind: "postgres", Client: "pgx " + moduleVersion("github.com/jackc/pgx/v5")}
	var version, syncCommit, fsync, sharedBuffers string
	err := s.admin.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('fsync'), current_setting('shared_buffers')`).Scan(&version, &syncCommit, &fsync, &sharedBuffers)
	if err != nil {
		c.Server = "PostgreSQL (version unknown: " + err.Error() + ")"
		return c
	}
	version, _, _ = strings.Cut(version, " ")
	c.Server = "PostgreSQL " + version
	c.Notes = fmt.Sprintf("synchronous_commit=%s, fsync=%s, shared_buffers=%s", syncCommit, fsync, sharedBuffers)
	return c
}

func (s *pgStore) close() error {
	s.admin.Close()
	return nil
}

func (s *pgStore) rawTable(ctx context.Context) (rawTable, error) {
	schema := "outbox_bench_insert_" + runID()
	t := &pgRaw{s: s, schema: pgx.Identifier{schema}.Sanitize(), table: pgx.Identifier{schema, "raw"}.Sanitize()}
	if _, err := s.admin.Exec(ctx, "CREATE SCHEMA "+t.schema+"; CREATE TABLE "+t.table+
		" (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id uuid NOT NULL UNIQUE, key text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL)"); err != nil {
		return nil, err
	}
	var err error
	if t.pool, err = newPGPool(ctx, s.url, 8); err != nil {
		_ = t.drop(ctx)
		return nil, err
	}
	return t, nil
}

// pgRaw is a plain table with the outbox's shape, written with the same
// unnest of arrays that pgstore's Enqueue of several messages uses.
type pgRaw struct {
	s             *pgStore
	schema, table string
	pool          *pgxpool.Pool
}

func (t *pgRaw) insert(ctx context.Context, msgs []outbox.Message) error {
	ids, keys, payloads, times := make([]string, len(msgs)), make([]string, len(msgs)), make([][]byte, len(msgs)), make([]time.Time, len(msgs))
	now := time.Now()
	for i, m := range msgs {
		ids[i], keys[i], payloads[i], times[i] = m.ID, m.Key, m.Payload, now
	}
	_, err := t.pool.Exec(ctx, "INSERT INTO "+t.table+" (id, key, payload, created_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::timestamptz[])",
		ids, keys, payloads, times)
	return err
}

func (t *pgRaw) drop(ctx context.Context) error {
	if t.pool != nil {
		t.pool.Close()
	}
	_, err := t.s.admin.Exec(ctx, "DROP SCHEMA "+t.schema+" CASCADE")
	return err
}

func (s *pgStore) newOutbox(ctx context.Context, tag string, writers int) (outboxTarget, error) {
	return s.open(ctx, tag, writers, false)
}

// newTailOutbox implements tailTarget: an outbox with pgstore's Config.Tail,
// its replication slot created by Migrate and dropped with the outbox.
func (s *pgStore) newTailOutbox(ctx context.Context, tag string, writers int) (outboxTarget, error) {
	o, err := s.open(ctx, tag, writers, true)
	if errors.Is(err, outbox.ErrUnsupported) {
		return nil, unsupported("%v", err)
	}
	return o, err
}

func (s *pgStore) open(ctx context.Context, tag string, writers int, tail bool) (outboxTarget, error) {
	schema := "outbox_bench_" + tag
	pool, err := newPGPool(ctx, s.url, writers+2)
	if err != nil {
		return nil, err
	}
	o := &pgOutbox{s: s, schema: schema, pool: pool, tail: tail}
	fail := func(err error) (outboxTarget, error) {
		_ = o.drop(context.WithoutCancel(ctx))
		return nil, err
	}
	if tail {
		// Every write goes to the WAL: no NOTIFY, so one store serves
		// every case.
		if o.store, err = pgstore.New(pool, pgstore.Config{Schema: schema, Tail: true}); err != nil {
			return fail(err)
		}
		o.every, o.quiet = o.store, o.store
	} else {
		if o.store, err = pgstore.New(pool, pgstore.Config{Schema: schema, NotifyInterval: s.notify}); err != nil {
			return fail(err)
		}
		if o.every, err = pgstore.New(pool, pgstore.Config{Schema: schema, NotifyInterval: -1}); err != nil {
			return fail(err)
		}
		if o.quiet, err = pgstore.New(pool, pgstore.Config{Schema: schema, DisableNotify: true}); err != nil {
			return fail(err)
		}
	}
	if err := o.store.Migrate(ctx); err != nil {
		return fail(err)
	}
	o.users = pgx.Identifier{schema, "users"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+o.users+
		" (user_id bigint PRIMARY KEY, name text NOT NULL, balance_cents bigint NOT NULL, updated_at timestamptz NOT NULL)"); err != nil {
		return fail(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO "+o.users+" SELECT g, 'user-' || g, 0, now() FROM generate_series(1, $1::integer) AS g", businessUsers); err != nil {
		return fail(err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+o.users); err != nil {
		return fail(err)
	}
	return o, nil
}

// pgOutbox is an outbox in the schema outbox_bench_<tag>.
type pgOutbox struct {
	s      *pgStore
	schema string
	pool   *pgxpool.Pool
	store  *pgstore.Store // pgstore's defaults
	every  *pgstore.Store // the same outbox, a NOTIFY in every transaction
	quiet  *pgstore.Store // the same outbox with DisableNotify
	users  string         // the business table
	// tail: the outbox has Config.Tail (store, every and quiet are one
	// store), and a replication slot to drop with it.
	tail bool
}

func (o *pgOutbox) relayStore(ctx context.Context) (outbox.Store, func(), error) {
	pool, err := newPGPool(ctx, o.s.url, 4) // pgxpool's default on 2 cores
	if err != nil {
		return nil, nil, err
	}
	st, err := pgstore.New(pool, pgstore.Config{Schema: o.schema, Tail: o.tail})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return st, pool.Close, nil
}

func (o *pgOutbox) business(ctx context.Context, msgs []outbox.Message, notify Notify) error {
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, "UPDATE "+o.users+" SET balance_cents = balance_cents + 1, updated_at = now() WHERE user_id = $1",
		1+rand.IntN(businessUsers)); err != nil {
		return err
	}
	if len(msgs) > 0 {
		st := o.store
		switch notify {
		case NotifyEveryTx:
			st = o.every
		case NotifyNone:
			st = o.quiet
		}
		if err := st.Enqueue(ctx, tx, msgs...); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (o *pgOutbox) enqueue(ctx context.Context, msgs []outbox.Message) error {
	return pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error { return o.quiet.Enqueue(ctx, tx, msgs...) })
}

func (o *pgOutbox) retain(ctx context.Context, n, keys int) error {
	if n == 0 {
		return nil
	}
	_, err := o.pool.Exec(ctx, "INSERT INTO "+o.store.Table()+
		` (id, lane, topic, key, payload, created_at, attempts, delivered_at)
		SELECT gen_random_uuid(), ($4::integer[])[g % $2 + 1], 'bench.retained', 'key-' || lpad((g % $2)::text, 6, '0'), $3::bytea,
			now() - interval '30 minutes', 1, now() - interval '29 minutes'
		FROM generate_series(1, $1::integer) AS g`, n, keys, make([]byte, 256), keyLanes(keys))
	return err
}

func (o *pgOutbox) settle(ctx context.Context) error {
	_, err := o.pool.Exec(ctx, "VACUUM ANALYZE "+o.store.Table())
	return err
}

func (o *pgOutbox) simple() (simpleOutbox, error) {
	if o.tail {
		return nil, unsupported("a tailed outbox has no rows for the simple relay to claim")
	}
	return pgSimple{o}, nil
}

// dropTailTimeout bounds the wait of DropTail for a relay's walsender to
// end.
const dropTailTimeout = 30 * time.Second

func (o *pgOutbox) drop(ctx context.Context) error {
	var tailErr error
	if o.tail && o.store != nil {
		// The slot retains WAL until dropped: drop it before anything else
		// (the relays have stopped by now).
		tctx, cancel := context.WithTimeout(ctx, dropTailTimeout)
		tailErr = o.store.DropTail(tctx)
		cancel()
		if tailErr != nil {
			tailErr = fmt.Errorf("dropping the replication slot %s: %w", o.store.Slot(), tailErr)
		}
	}
	_, err := o.s.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{o.schema}.Sanitize()+" CASCADE")
	o.pool.Close()
	return errors.Join(tailErr, err)
}

// pgSimple is the simple relay on a pgstore table.
type pgSimple struct{ o *pgOutbox }

func (p pgSimple) claim(ctx context.Context, limit int) (simpleBatch, error) {
	tx, err := p.o.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, "SELECT seq, id::text, topic, key, payload, created_at FROM "+p.o.store.Table()+
		" WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	b := &pgSimpleBatch{o: p.o, tx: tx}
	for rows.Next() {
		var seq int64
		var m outbox.Message
		if err := rows.Scan(&seq, &m.ID, &m.Topic, &m.Key, &m.Payload, &m.CreatedAt); err != nil {
			rows.Close()
			_ = tx.Rollback(ctx)
			return nil, err
		}
		b.seqs, b.msgs = append(b.seqs, seq), append(b.msgs, m)
	}
	if err := rows.Err(); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return b, nil
}

type pgSimpleBatch struct {
	o    *pgOutbox
	tx   pgx.Tx
	seqs []int64
	msgs []outbox.Message
}

func (b *pgSimpleBatch) messages() []outbox.Message { return b.msgs }

func (b *pgSimpleBatch) markDelivered(ctx context.Context) error {
	if len(b.msgs) > 0 {
		// By primary key (id), as a simple relay on this table would.
		ids := make([]string, len(b.msgs))
		for i, m := range b.msgs {
			ids[i] = m.ID
		}
		if _, err := b.tx.Exec(ctx, "UPDATE "+b.o.store.Table()+" SET delivered_at = now() WHERE id = ANY($1::uuid[])", ids); err != nil {
			_ = b.tx.Rollback(ctx)
			return err
		}
	}
	return b.tx.Commit(ctx)
}

func (b *pgSimpleBatch) rollback() { _ = b.tx.Rollback(context.Background()) }

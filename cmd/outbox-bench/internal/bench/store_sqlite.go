package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// liteStore is SQLite: each outbox is a database file of its own in a
// temporary directory, opened with sqlitestore's settings (WAL,
// synchronous=FULL, an fsync per commit).
type liteStore struct{ dir string }

func newSQLiteStore(dir string) (*liteStore, error) {
	d, err := os.MkdirTemp(dir, "sqlite-")
	if err != nil {
		return nil, err
	}
	return &liteStore{dir: d}, nil
}

func (s *liteStore) info(ctx context.Context) Component {
	c := Component{Spec: "sqlite", Kind: "sqlite", Client: "modernc.org/sqlite " + moduleVersion("modernc.org/sqlite"),
		Notes: "a file in " + os.TempDir() + ", WAL, synchronous=FULL (sqlitestore.DSN)"}
	db, err := sqlitestore.Open(filepath.Join(s.dir, "version.db"))
	if err != nil {
		c.Server = "SQLite (version unknown: " + err.Error() + ")"
		return c
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&v); err != nil {
		v = "(version unknown)"
	}
	c.Server = "SQLite " + v + " (in-process)"
	return c
}

func (s *liteStore) close() error { return os.RemoveAll(s.dir) }

func (s *liteStore) rawTable(ctx context.Context) (rawTable, error) {
	t := &liteRaw{path: filepath.Join(s.dir, "insert-"+runID()+".db")}
	var err error
	if t.db, err = sqlitestore.Open(t.path); err != nil {
		return nil, err
	}
	if _, err := t.db.ExecContext(ctx, "CREATE TABLE raw (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, key TEXT NOT NULL, payload BLOB NOT NULL, created_at INTEGER NOT NULL) STRICT"); err != nil {
		_ = t.drop(ctx)
		return nil, err
	}
	return t, nil
}

// liteRaw is a plain table with the outbox's shape in a file of its own,
// written with one multi-row INSERT as sqlitestore's Enqueue does.
type liteRaw struct {
	path string
	db   *sql.DB
}

func (t *liteRaw) insert(ctx context.Context, msgs []outbox.Message) error {
	var q strings.Builder
	q.WriteString("INSERT INTO raw (id, key, payload, created_at) VALUES ")
	args := make([]any, 0, 4*len(msgs))
	now := time.Now().UnixMicro()
	for i, m := range msgs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?)")
		args = append(args, m.ID, m.Key, m.Payload, now)
	}
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return err
	}
	return tx.Commit()
}

func (t *liteRaw) drop(context.Context) error {
	err := t.db.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(t.path + suffix)
	}
	return err
}

func (s *liteStore) newOutbox(ctx context.Context, tag string, _ int) (outboxTarget, error) {
	o := &liteOutbox{path: filepath.Join(s.dir, tag+".db")}
	var err error
	if o.db, err = sqlitestore.Open(o.path); err != nil {
		return nil, err
	}
	fail := func(err error) (outboxTarget, error) {
		_ = o.drop(context.WithoutCancel(ctx))
		return nil, err
	}
	if o.store, err = sqlitestore.New(o.db, sqlitestore.Config{}); err != nil {
		return fail(err)
	}
	if err := o.store.Migrate(ctx); err != nil {
		return fail(err)
	}
	if _, err := o.db.ExecContext(ctx, "CREATE TABLE users (user_id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance_cents INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT"); err != nil {
		return fail(err)
	}
	if _, err := o.db.ExecContext(ctx, "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) INSERT INTO users SELECT n, 'user-' || n, 0, ? FROM g",
		businessUsers, time.Now().UnixMicro()); err != nil {
		return fail(err)
	}
	return o, nil
}

// liteOutbox is the outbox table of one database file.
type liteOutbox struct {
	path  string
	db    *sql.DB
	store *sqlitestore.Store
}

func (o *liteOutbox) relayStore(context.Context) (outbox.Store, func(), error) {
	db, err := sqlitestore.Open(o.path)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlitestore.New(db, sqlitestore.Config{})
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return st, func() { _ = st.Close(); _ = db.Close() }, nil
}

func (o *liteOutbox) business(ctx context.Context, msgs []outbox.Message, _ Notify) error {
	return inTx(ctx, o.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE users SET balance_cents = balance_cents + 1, updated_at = ? WHERE user_id = ?",
			time.Now().UnixMicro(), 1+rand.IntN(businessUsers)); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		return o.store.Enqueue(ctx, tx, msgs...)
	})
}

func (o *liteOutbox) enqueue(ctx context.Context, msgs []outbox.Message) error {
	return inTx(ctx, o.db, func(tx *sql.Tx) error { return o.store.Enqueue(ctx, tx, msgs...) })
}

func (o *liteOutbox) retain(ctx context.Context, n, keys int) error {
	if n == 0 {
		return nil
	}
	now := time.Now().UnixMicro()
	lanes, err := json.Marshal(keyLanes(keys))
	if err != nil {
		return err
	}
	_, err = o.db.ExecContext(ctx, `WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?1)
		INSERT INTO outbox (id, lane, topic, key, payload, created_at, attempts, delivered_at)
		SELECT printf('00000000-0000-7000-8000-%012x', i), json_extract(?2, '$[' || (i % ?3) || ']'), 'bench.retained',
			printf('key-%06d', i % ?3), zeroblob(256), ?4, 1, ?5
		FROM g`, n, string(lanes), keys, now-30*60*1_000_000, now-29*60*1_000_000)
	return err
}

func (o *liteOutbox) settle(ctx context.Context) error {
	_, err := o.db.ExecContext(ctx, "ANALYZE")
	return err
}

func (o *liteOutbox) simple() (simpleOutbox, error) { return liteSimple{o}, nil }

func (o *liteOutbox) drop(context.Context) error {
	if o.store != nil {
		_ = o.store.Close()
	}
	err := o.db.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(o.path + suffix)
	}
	return err
}

// liteSimple is the simple relay on a sqlitestore table. SQLite has one
// writer at a time, so the transaction takes the write lock at BEGIN
// (_txlock=immediate) and needs no row locks.
type liteSimple struct{ o *liteOutbox }

func (p liteSimple) claim(ctx context.Context, limit int) (simpleBatch, error) {
	tx, err := p.o.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT seq, id, topic, key, payload FROM outbox"+
		" WHERE delivered_at IS NULL AND dead_at IS NULL ORDER BY seq LIMIT ?", limit)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	defer rows.Close()
	b := &liteSimpleBatch{tx: tx}
	for rows.Next() {
		var seq int64
		var m outbox.Message
		if err := rows.Scan(&seq, &m.ID, &m.Topic, &m.Key, &m.Payload); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		b.seqs, b.msgs = append(b.seqs, seq), append(b.msgs, m)
	}
	if err := rows.Err(); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return b, nil
}

type liteSimpleBatch struct {
	tx   *sql.Tx
	seqs []int64
	msgs []outbox.Message
}

func (b *liteSimpleBatch) messages() []outbox.Message { return b.msgs }

func (b *liteSimpleBatch) markDelivered(ctx context.Context) error {
	if len(b.seqs) > 0 {
		args := make([]any, 0, len(b.seqs)+1)
		args = append(args, time.Now().UnixMicro())
		for _, s := range b.seqs {
			args = append(args, s)
		}
		marks := strings.Repeat(",?", len(b.seqs))[1:]
		if _, err := b.tx.ExecContext(ctx, "UPDATE outbox SET delivered_at = ? WHERE seq IN ("+marks+")", args...); err != nil {
			_ = b.tx.Rollback()
			return err
		}
	}
	return b.tx.Commit()
}

func (b *liteSimpleBatch) rollback() { _ = b.tx.Rollback() }

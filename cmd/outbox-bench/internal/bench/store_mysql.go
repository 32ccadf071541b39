package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"

	outbox "github.com/txoutbox/txoutbox/core"
	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
)

// myStore is a MySQL or MariaDB database. Each outbox is a set of tables
// named outbox_bench_<tag>*, dropped at its end.
type myStore struct {
	spec  string
	cfg   *mysql.Config
	admin *sql.DB
}

func openMySQL(ctx context.Context, spec string) (*myStore, error) {
	cfg, err := backend.MySQLConfig(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: store %s: %v", outbox.ErrInvalidConfig, redact(spec), err)
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("%w: store %s: no database; name it as the URL's path", outbox.ErrInvalidConfig, redact(spec))
	}
	if !strings.Contains(spec, "interpolateParams") {
		cfg.InterpolateParams = true // as `outbox relay` does: one round trip per statement
	}
	s := &myStore{spec: spec, cfg: cfg}
	if s.admin, err = s.open(2); err != nil {
		return nil, err
	}
	if err := s.admin.PingContext(ctx); err != nil {
		_ = s.admin.Close()
		return nil, fmt.Errorf("MySQL or MariaDB at %s does not answer: %w", cfg.Addr, err)
	}
	return s, nil
}

// open returns a handle of at most conns connections.
func (s *myStore) open(conns int) (*sql.DB, error) {
	connector, err := mysql.NewConnector(s.cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: store %s: %v", outbox.ErrInvalidConfig, redact(s.spec), err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

func (s *myStore) info(ctx context.Context) Component {
	c := Component{Spec: "mysql " + s.cfg.Addr + "/" + s.cfg.DBName, Kind: "mysql",
		Client: "go-sql-driver/mysql " + moduleVersion("github.com/go-sql-driver/mysql")}
	var version, flush, syncBinlog, pool string
	err := s.admin.QueryRowContext(ctx, `SELECT VERSION(), @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@innodb_buffer_pool_size`).
		Scan(&version, &flush, &syncBinlog, &pool)
	if err != nil {
		c.Server = "MySQL or MariaDB (version unknown: " + err.Error() + ")"
		return c
	}
	name := "MySQL "
	if strings.Contains(strings.ToLower(version), "mariadb") {
		name = "MariaDB "
	}
	v, _, _ := strings.Cut(version, "-")
	c.Server = name + v
	c.Notes = fmt.Sprintf("innodb_flush_log_at_trx_commit=%s, sync_binlog=%s, innodb_buffer_pool_size=%s", flush, syncBinlog, pool)
	return c
}

func (s *myStore) close() error { return s.admin.Close() }

func quoteMy(name string) string { return "`" + name + "`" }

func (s *myStore) rawTable(ctx context.Context) (rawTable, error) {
	t := &myRaw{s: s, table: quoteMy("outbox_bench_insert_" + runID())}
	if _, err := s.admin.ExecContext(ctx, "CREATE TABLE "+t.table+
		" (seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, id CHAR(36) CHARACTER SET ascii NOT NULL UNIQUE,"+
		" msg_key VARBINARY(255) NOT NULL, payload LONGBLOB NOT NULL, created_at DATETIME(6) NOT NULL) ENGINE=InnoDB"); err != nil {
		return nil, err
	}
	var err error
	if t.db, err = s.open(8); err != nil {
		_ = t.drop(ctx)
		return nil, err
	}
	return t, nil
}

// myRaw is a plain table with the outbox's shape, written with one
// multi-row INSERT as mysqlstore's Enqueue does.
type myRaw struct {
	s     *myStore
	table string
	db    *sql.DB
}

func (t *myRaw) insert(ctx context.Context, msgs []outbox.Message) error {
	var q strings.Builder
	q.WriteString("INSERT INTO " + t.table + " (id, msg_key, payload, created_at) VALUES ")
	args := make([]any, 0, 4*len(msgs))
	now := time.Now().UTC()
	for i, m := range msgs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?)")
		args = append(args, m.ID, m.Key, m.Payload, now)
	}
	_, err := t.db.ExecContext(ctx, q.String(), args...)
	return err
}

func (t *myRaw) drop(ctx context.Context) error {
	if t.db != nil {
		_ = t.db.Close()
	}
	_, err := t.s.admin.ExecContext(ctx, "DROP TABLE "+t.table)
	return err
}

func (s *myStore) newOutbox(ctx context.Context, tag string, writers int) (outboxTarget, error) {
	db, err := s.open(writers + 2)
	if err != nil {
		return nil, err
	}
	o := &myOutbox{s: s, db: db, table: "outbox_bench_" + tag}
	o.users = quoteMy(o.table + "_users")
	fail := func(err error) (outboxTarget, error) {
		_ = o.drop(context.WithoutCancel(ctx))
		return nil, err
	}
	if o.store, err = mysqlstore.New(db, mysqlstore.Config{Table: o.table}); err != nil {
		return fail(err)
	}
	if err := o.store.Migrate(ctx); err != nil {
		return fail(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+o.users+
		" (user_id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL, balance_cents BIGINT NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB"); err != nil {
		return fail(err)
	}
	// Rows of 1,000 per statement: a recursive CTE would stop at the
	// server's recursion limit (1,000 on MariaDB and on MySQL).
	for first := 1; first <= businessUsers; first += 1_000 {
		var q strings.Builder
		args := make([]any, 0, 1_000)
		q.WriteString("INSERT INTO " + o.users + " (user_id, name, balance_cents, updated_at) VALUES ")
		for id := first; id < first+1_000 && id <= businessUsers; id++ {
			if id > first {
				q.WriteByte(',')
			}
			q.WriteString("(?, CONCAT('user-', user_id), 0, UTC_TIMESTAMP(6))")
			args = append(args, id)
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return fail(err)
		}
	}
	return o, nil
}

// myOutbox is the outbox outbox_bench_<tag>.
type myOutbox struct {
	s     *myStore
	db    *sql.DB
	table string
	users string // the business table
	store *mysqlstore.Store
}

func (o *myOutbox) relayStore(context.Context) (outbox.Store, func(), error) {
	db, err := o.s.open(4)
	if err != nil {
		return nil, nil, err
	}
	st, err := mysqlstore.New(db, mysqlstore.Config{Table: o.table})
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return st, func() { _ = db.Close() }, nil
}

func (o *myOutbox) business(ctx context.Context, msgs []outbox.Message, _ Notify) error {
	return inTx(ctx, o.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE "+o.users+" SET balance_cents = balance_cents + 1, updated_at = UTC_TIMESTAMP(6) WHERE user_id = ?",
			1+rand.IntN(businessUsers)); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		return o.store.Enqueue(ctx, tx, msgs...)
	})
}

func (o *myOutbox) enqueue(ctx context.Context, msgs []outbox.Message) error {
	return inTx(ctx, o.db, func(tx *sql.Tx) error { return o.store.Enqueue(ctx, tx, msgs...) })
}

func (o *myOutbox) retain(ctx context.Context, n, keys int) error {
	if n == 0 {
		return nil
	}
	digits := quoteMy(o.table + "_digits")
	if _, err := o.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+digits+" (d INT NOT NULL PRIMARY KEY)"); err != nil {
		return err
	}
	if _, err := o.db.ExecContext(ctx, "INSERT IGNORE INTO "+digits+" VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"); err != nil {
		return err
	}
	// i runs over 0..10^p-1 through p copies of the digits; the rows with
	// i < n are inserted, in chunks so that no transaction grows huge.
	var from, terms []string
	for p, scale := 0, 1; scale < n; p, scale = p+1, scale*10 {
		from = append(from, fmt.Sprintf("%s d%d", digits, p))
		terms = append(terms, fmt.Sprintf("d%d.d*%d", p, scale))
	}
	if len(from) == 0 {
		from, terms = []string{digits + " d0"}, []string{"d0.d"}
	}
	i := strings.Join(terms, " + ")
	lanes, err := json.Marshal(keyLanes(keys))
	if err != nil {
		return err
	}
	k := fmt.Sprintf("((%s) %% %d)", i, keys)
	const chunk = 100_000
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		q := "INSERT INTO " + quoteMy(o.table) +
			" (id, lane, topic, msg_key, payload, created_at, attempts, delivered_at)" +
			" SELECT UUID(), CAST(JSON_EXTRACT(?, CONCAT('$[', " + k + ", ']')) AS SIGNED), 'bench.retained'," +
			" CONCAT('key-', LPAD(" + k + ", 6, '0')), REPEAT('x', 256)," +
			" UTC_TIMESTAMP(6) - INTERVAL 30 MINUTE, 1, UTC_TIMESTAMP(6) - INTERVAL 29 MINUTE" +
			" FROM " + strings.Join(from, " CROSS JOIN ") +
			fmt.Sprintf(" WHERE (%s) >= %d AND (%s) < %d", i, lo, i, hi)
		if _, err := o.db.ExecContext(ctx, q, string(lanes)); err != nil {
			return err
		}
	}
	return nil
}

func (o *myOutbox) settle(ctx context.Context) error {
	_, err := o.db.ExecContext(ctx, "ANALYZE TABLE "+quoteMy(o.table))
	return err
}

func (o *myOutbox) simple() (simpleOutbox, error) { return mySimple{o}, nil }

func (o *myOutbox) drop(ctx context.Context) error {
	names := []string{o.table, o.table + "_lanes", o.table + "_relays", o.table + "_migrations", o.table + "_users", o.table + "_digits"}
	for i, n := range names {
		names[i] = quoteMy(n)
	}
	_, err := o.s.admin.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(names, ", "))
	_ = o.db.Close()
	return err
}

// mySimple is the simple relay on a mysqlstore table: state, which the
// server derives from delivered_at and dead_at, is 0 while pending (see
// the store's migration).
type mySimple struct{ o *myOutbox }

func (p mySimple) claim(ctx context.Context, limit int) (simpleBatch, error) {
	tx, err := p.o.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT seq, id, topic, msg_key, payload, created_at FROM "+quoteMy(p.o.table)+
		" WHERE state = 0 ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED", limit)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	defer rows.Close()
	b := &mySimpleBatch{o: p.o, tx: tx}
	for rows.Next() {
		var seq int64
		var m outbox.Message
		var created []byte
		if err := rows.Scan(&seq, &m.ID, &m.Topic, &m.Key, &m.Payload, &created); err != nil {
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

type mySimpleBatch struct {
	o    *myOutbox
	tx   *sql.Tx
	seqs []int64
	msgs []outbox.Message
}

func (b *mySimpleBatch) messages() []outbox.Message { return b.msgs }

func (b *mySimpleBatch) markDelivered(ctx context.Context) error {
	if len(b.seqs) > 0 {
		marks := strings.Repeat(",?", len(b.seqs))[1:]
		args := make([]any, len(b.seqs))
		for i, s := range b.seqs {
			args[i] = s
		}
		// FORCE INDEX (PRIMARY), as mysqlstore does: MariaDB otherwise may
		// scan the (state, …) index it is changing and lock every row it
		// passes, while writers insert.
		if _, err := b.tx.ExecContext(ctx, "UPDATE "+quoteMy(b.o.table)+" FORCE INDEX (PRIMARY)"+
			" SET delivered_at = UTC_TIMESTAMP(6) WHERE seq IN ("+marks+")", args...); err != nil {
			_ = b.tx.Rollback()
			return err
		}
	}
	return b.tx.Commit()
}

func (b *mySimpleBatch) rollback() { _ = b.tx.Rollback() }

package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Config configures a [Store]. The zero value of every field selects the
// default named in its comment.
type Config struct {
	// Table is the outbox table. Default "outbox". It takes 1 to 63
	// letters, digits or underscores, not starting with a digit or
	// "sqlite_". The store also creates "<Table>_lanes",
	// "<Table>_relays", "<Table>_migrations" and indexes named
	// "<Table>_<purpose>".
	Table string

	// Lanes is the lane count that Migrate creates: relays divide the
	// outbox by lanes, each record belonging to the lane of its key
	// ([outbox.LaneOf]). Default [outbox.DefaultLanes]; at most
	// [outbox.MaxLanes]. It bounds how many relays can share the work, and
	// is fixed by the first Migrate of the table: later Migrates, and
	// stores configured with another count, keep the table's.
	Lanes int

	// Limits bound what Enqueue accepts.
	Limits outbox.Limits

	// LockTimeout is how long the store's own writes (lane leases,
	// outcomes, cleanup, dead-letter changes, migrations) wait for the write lock,
	// first in this process's queue for the file, then in SQLite, before
	// failing with an error matching [outbox.ErrUnavailable]. Default 30s.
	// The wait also ends with the context. It does not apply to Enqueue,
	// which writes in the caller's transaction: there the connection's
	// busy timeout rules (see [Open]).
	LockTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultTable       = "outbox"
	DefaultLockTimeout = 30 * time.Second
)

// Store is an outbox in an SQLite database. It implements [outbox.Store]
// and the capabilities [outbox.Listener], [outbox.Cleaner],
// [outbox.StatsReader], [outbox.DeadLetterStore], [outbox.Migrator] and
// [outbox.Pinger]. Safe for concurrent use; any number of Store values, in
// any number of processes, may share one database file.
type Store struct {
	db          *sql.DB
	table       string
	lanes       int // what Migrate creates
	limits      outbox.Limits
	lockTimeout time.Duration
	q           queries
	now         func() time.Time

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt

	laneMu    sync.Mutex
	laneCount int // the table's lane count, once read

	hubMu    sync.Mutex // guards fileHub and hubKnown
	fileHub  *fileHub   // nil for a database without a file
	hubKnown bool
}

var (
	_ outbox.Store             = (*Store)(nil)
	_ outbox.Listener          = (*Store)(nil)
	_ outbox.Cleaner           = (*Store)(nil)
	_ outbox.StatsReader       = (*Store)(nil)
	_ outbox.DeadLetterStore   = (*Store)(nil)
	_ outbox.DeadLetterBacklog = (*Store)(nil)
	_ outbox.Migrator          = (*Store)(nil)
	_ outbox.Pinger            = (*Store)(nil)
)

// New returns a store on db, a database of the modernc.org/sqlite driver,
// preferably opened with [Open]; the store recognizes that driver's errors
// (SQLITE_BUSY and the like). It does no I/O: run [Store.Migrate] (or
// `outbox migrate`) before use. A configuration error matches
// [outbox.ErrInvalidConfig].
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: sqlitestore.New needs a *sql.DB (see sqlitestore.Open)", outbox.ErrInvalidConfig)
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if err := checkTable(cfg.Table); err != nil {
		return nil, fmt.Errorf("%w: sqlitestore: %v", outbox.ErrInvalidConfig, err)
	}
	if cfg.LockTimeout < 0 {
		return nil, fmt.Errorf("%w: sqlitestore: Config.LockTimeout is %v; it must be positive (or zero for %v)",
			outbox.ErrInvalidConfig, cfg.LockTimeout, DefaultLockTimeout)
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Lanes == 0 {
		cfg.Lanes = outbox.DefaultLanes
	}
	if cfg.Lanes < 1 || cfg.Lanes > outbox.MaxLanes {
		return nil, fmt.Errorf("%w: sqlitestore: Config.Lanes is %d; it must be 1 to %d (or zero for %d)",
			outbox.ErrInvalidConfig, cfg.Lanes, outbox.MaxLanes, outbox.DefaultLanes)
	}
	if cfg.Limits.MaxPayloadBytes < 0 {
		return nil, fmt.Errorf("%w: sqlitestore: Config.Limits.MaxPayloadBytes is %d; it must be positive (or zero for the default)",
			outbox.ErrInvalidConfig, cfg.Limits.MaxPayloadBytes)
	}
	return &Store{
		db:          db,
		table:       cfg.Table,
		lanes:       cfg.Lanes,
		limits:      cfg.Limits,
		lockTimeout: cfg.LockTimeout,
		q:           newQueries(cfg.Table),
		now:         time.Now,
	}, nil
}

// Table returns the name of the outbox table.
func (s *Store) Table() string { return s.table }

// Execer is the transaction Enqueue writes in: a *sql.Tx, or a *sql.Conn on
// which the caller began a transaction.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// insert runs one INSERT of Enqueue in tx. In a *sql.Tx of the store's own
// *sql.DB, an INSERT of up to preparedRows rows runs as the store's prepared
// statement, which database/sql keeps prepared on each connection: parsing
// the statement was a fifth of the CPU time of a transaction that enqueues
// one message (BenchmarkEnqueue's profile). Any other transaction (a
// *sql.Conn, another *sql.DB on the same file) runs it as a plain Exec.
func (s *Store) insert(ctx context.Context, tx Execer, query string, args []any) error {
	if t, ok := tx.(*sql.Tx); ok && len(args) <= preparedRows*7 {
		st, err := s.stmt(ctx, query)
		if err != nil {
			return err
		}
		_, err = t.StmtContext(ctx, st).ExecContext(ctx, args...)
		if err == nil || err.Error() != errOtherDB {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, query, args...)
	return err
}

// preparedRows is the largest INSERT that Enqueue keeps prepared: one
// statement per row count up to it.
const preparedRows = 16

// errOtherDB is database/sql's error for a statement of one *sql.DB used in
// a transaction of another (it has no exported value).
const errOtherDB = "sql: Tx.Stmt: statement from different database used"

// rowsPerInsert bounds the rows of one INSERT statement: 7 parameters a row
// stay far below SQLite's limit of 32766 parameters a statement.
const rowsPerInsert = 1000

// Enqueue writes msgs to the outbox in tx, the caller's transaction: they
// exist if and only if tx commits. It fills empty IDs and CreatedAt in msgs
// in place (see [outbox.Prepare]) and rejects an invalid message before
// writing anything, with an error matching [outbox.ErrInvalidMessage].
// It writes with one multi-row INSERT (one per 1000 messages), never
// commits, and never creates tables. Each record gets the lane of its key
// ([outbox.LaneOf]) among the table's lanes, whose count the store reads
// once and keeps: [Store.Migrate] learns it, otherwise the first Enqueue
// reads it through the store's own *sql.DB. (With a pool of one
// connection, db.SetMaxOpenConns(1), that read would wait for the
// connection tx holds: run Migrate on the Store first, or leave the pool
// unbounded as [Open] does.)
//
// tx must be a transaction: a *sql.DB is refused with
// [outbox.ErrNoTransaction], since its statements would commit on their own.
// After an error, roll tx back. An error matches [outbox.ErrSchemaMissing]
// when the outbox table does not exist, and [outbox.ErrUnavailable] when
// the write lock could not be had within the connection's busy_timeout.
// An error matching [outbox.ErrSchemaMissing] also comes when the lanes
// table is missing or empty: run [Store.Migrate] (or `outbox migrate`).
//
// Writers in the same process as the relay wake it at once when the
// database was opened with [Open]; see [Store.Listen].
func (s *Store) Enqueue(ctx context.Context, tx Execer, msgs ...outbox.Message) error {
	switch t := tx.(type) {
	case nil:
		return fmt.Errorf("sqlitestore: Enqueue needs the caller's *sql.Tx: %w", outbox.ErrNoTransaction)
	case *sql.Tx:
		if t == nil {
			return fmt.Errorf("sqlitestore: Enqueue needs the caller's *sql.Tx, got a nil one: %w", outbox.ErrNoTransaction)
		}
	case *sql.Conn:
		if t == nil {
			return fmt.Errorf("sqlitestore: Enqueue needs the caller's transaction, got a nil *sql.Conn: %w", outbox.ErrNoTransaction)
		}
	case *sql.DB:
		return fmt.Errorf("sqlitestore: Enqueue got a *sql.DB, whose statements commit on their own; pass the *sql.Tx of the business change: %w",
			outbox.ErrNoTransaction)
	}
	if err := outbox.Prepare(msgs, s.limits); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	lanes, err := s.laneTotal(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]struct{}, len(msgs))
	for _, m := range msgs {
		if _, dup := seen[m.ID]; dup {
			return fmt.Errorf("sqlitestore: Enqueue: message ID %s appears twice in one call", m.ID)
		}
		seen[m.ID] = struct{}{}
	}
	for start := 0; start < len(msgs); start += rowsPerInsert {
		chunk := msgs[start:min(start+rowsPerInsert, len(msgs))]
		var b strings.Builder
		b.Grow(len(s.q.insertPrefix) + len(chunk)*(len(s.q.insertRow)+2))
		b.WriteString(s.q.insertPrefix)
		args := make([]any, 0, 7*len(chunk))
		for i, m := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(s.q.insertRow)
			headers, err := encodeHeaders(m.Headers)
			if err != nil {
				return err
			}
			payload := m.Payload
			if payload == nil {
				payload = []byte{} // nil binds as NULL
			}
			args = append(args, m.ID, m.Topic, m.Key, outbox.LaneOf(m.Key, m.ID, lanes), payload, headers, m.CreatedAt.UnixMicro())
		}
		if err := s.insert(ctx, tx, b.String(), args); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("sqlitestore: Enqueue: a message ID is already in the outbox: %w", err)
			}
			return translate("Enqueue", err)
		}
	}
	return nil
}

// laneTotal returns the lane count of the table, read once through the
// store's *sql.DB (never the caller's transaction) and kept. A failure is
// not kept: the next call reads again.
func (s *Store) laneTotal(ctx context.Context) (int, error) {
	s.laneMu.Lock()
	defer s.laneMu.Unlock()
	if s.laneCount > 0 {
		return s.laneCount, nil
	}
	var n int
	if err := s.db.QueryRowContext(ctx, s.q.laneCount).Scan(&n); err != nil {
		err = translate("reading the lane count", err)
		if errors.Is(err, outbox.ErrSchemaMissing) {
			return 0, fmt.Errorf("sqlitestore: the lanes table %s_lanes does not exist: run Store.Migrate or `outbox migrate` first: %w",
				s.table, err)
		}
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("sqlitestore: the lanes table %s_lanes is empty: run Store.Migrate or `outbox migrate`, which fills it: %w",
			s.table, outbox.ErrSchemaMissing)
	}
	s.laneCount = n
	return n, nil
}

// encodeHeaders stores headers as a JSON object, or NULL when there are none.
func encodeHeaders(h map[string]string) (any, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: encoding headers: %w", err)
	}
	return string(b), nil
}

func decodeHeaders(s sql.NullString) (map[string]string, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(s.String), &h); err != nil {
		return nil, fmt.Errorf("sqlitestore: decoding headers %q: %w", s.String, err)
	}
	return h, nil
}

// micros converts a stored time to a time.Time in UTC.
func micros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// toJSON encodes a list bound as one parameter and read with json_each, so
// that one prepared statement serves any number of records.
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: encoding parameters: %w", err)
	}
	return string(b), nil
}

// Ping implements [outbox.Pinger]: it checks that the database file can be
// read.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n)
	return translate("Ping", err)
}

package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Execer is what Enqueue writes through: a *sql.Tx, or a *sql.Conn in a
// transaction the caller started. Enqueue refuses a *sql.DB, whose
// statements commit on their own.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Bounds of one INSERT statement: rows, and bytes of payload and headers
// (a single larger message goes alone). Together they keep a statement
// under max_allowed_packet and its placeholders under the 65,535 a
// prepared statement may have.
const (
	insertRows   = 1000
	insertBudget = 1 << 20
)

// Enqueue writes msgs to the outbox within tx, with one multi-row INSERT
// (one per 1,000 messages or 1 MiB of payload). The messages exist if and
// only if the caller's transaction commits; Enqueue never commits, never
// rolls back and never creates tables.
//
// Each record goes to the lane [outbox.LaneOf] gives for its key among the
// outbox's lanes. The lane count is read once per Store, through the
// store's own *sql.DB (never tx), and kept: [Store.Migrate] reads it too,
// so a store that migrated never asks again. A missing lanes table is
// reported with an error matching [outbox.ErrSchemaMissing].
//
// It first calls [outbox.Prepare], which fills in missing IDs and CreatedAt
// in msgs, so the caller can read the assigned IDs afterwards, and rejects
// an invalid message with an error matching [outbox.ErrInvalidMessage]
// before writing anything. A message whose ID is already in the outbox
// fails the statement (MySQL error 1062). After an error, roll the
// transaction back. A nil tx or a *sql.DB is refused with
// [outbox.ErrNoTransaction].
func (s *Store) Enqueue(ctx context.Context, tx Execer, msgs ...outbox.Message) error {
	if tx == nil {
		return fmt.Errorf("mysqlstore: Enqueue needs the caller's *sql.Tx: %w", outbox.ErrNoTransaction)
	}
	if _, ok := tx.(*sql.DB); ok {
		return fmt.Errorf("mysqlstore: Enqueue was given a *sql.DB, whose statements commit on their own; pass the *sql.Tx of the business change: %w", outbox.ErrNoTransaction)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := outbox.Prepare(msgs, s.cfg.Limits); err != nil {
		return err
	}
	lanes, err := s.laneTotal(ctx)
	if err != nil {
		return err
	}
	for start := 0; start < len(msgs); {
		query, args, n := s.insert(msgs[start:], lanes)
		if err := s.execInsert(ctx, tx, query, args, n); err != nil {
			if code, ok := serverError(err); ok && code == erDupEntry {
				return fmt.Errorf("mysqlstore: enqueue: a message with one of these IDs is already in the outbox: %w", err)
			}
			return translate("enqueue", err)
		}
		start += n
	}
	return nil
}

// insert builds an INSERT of the first messages of msgs that fit in one
// statement, each in its lane among lanes, and says how many it took.
func (s *Store) insert(msgs []outbox.Message, lanes int) (query string, args []any, n int) {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(s.table)
	b.WriteString(" (id, created_at, topic, msg_key, lane, payload, headers) VALUES ")
	bytes := 0
	for n < len(msgs) && n < insertRows {
		m := msgs[n]
		var headers any // NULL without headers
		size := len(m.Payload)
		if len(m.Headers) > 0 {
			h, _ := json.Marshal(m.Headers) // a map[string]string always marshals
			headers = string(h)
			size += len(h)
		}
		if n > 0 && bytes+size > insertBudget {
			break
		}
		bytes += size
		payload := m.Payload
		if payload == nil {
			payload = []byte{} // NULL is not a payload
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?)")
		args = append(args, m.ID, m.CreatedAt.UTC().Format(datetimeLayout), m.Topic, m.Key, outbox.LaneOf(m.Key, m.ID, lanes), payload, headers)
		n++
	}
	return b.String(), args, n
}

// execInsert runs one INSERT of Enqueue in tx. In a *sql.Tx of the store's
// own *sql.DB, an INSERT of up to preparedRows rows runs as a server-side
// prepared statement of the store, which database/sql keeps prepared on
// each connection: one round trip and no parsing of the statement, where a
// plain Exec is parsed at every call (and, without interpolateParams, is
// prepared and closed around every call). Any other transaction runs it as
// a plain Exec.
func (s *Store) execInsert(ctx context.Context, tx Execer, query string, args []any, rows int) error {
	if t, ok := tx.(*sql.Tx); ok && rows <= preparedRows {
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
// statement per row count up to it, so at most that many prepared
// statements per connection of the store's *sql.DB.
const preparedRows = 16

// errOtherDB is database/sql's error for a statement of one *sql.DB used in
// a transaction of another (it has no exported value).
const errOtherDB = "sql: Tx.Stmt: statement from different database used"

// stmt returns the prepared statement for query on the store's *sql.DB,
// preparing it on first use. The statements are shared by every Store on
// one *sql.DB, so that a program that makes a Store per request does not
// prepare more of them per connection (MySQL refuses to keep more than
// max_prepared_stmt_count, 16,382 by default, server-wide).
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	k := stmtKey{s.db, query}
	if st, ok := preparedInserts.Load(k); ok {
		return st.(*sql.Stmt), nil
	}
	preparing.Lock()
	defer preparing.Unlock()
	if st, ok := preparedInserts.Load(k); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	preparedInserts.Store(k, st)
	return st, nil
}

type stmtKey struct {
	db    *sql.DB
	query string
}

var (
	preparedInserts sync.Map   // stmtKey → *sql.Stmt
	preparing       sync.Mutex // one PrepareContext at a time, so each statement is prepared once
)

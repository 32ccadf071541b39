package pgstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Enqueue writes msgs to the outbox within tx, the caller's pgx transaction
// (from pool.Begin, conn.Begin or pgx.BeginFunc), in one statement (pgx
// prepares it once per connection, on first use), and wakes listening
// relays: with a notification that PostgreSQL delivers only if the
// transaction commits, or, when another Enqueue of this Store notified
// less than Config.NotifyInterval ago, with one notification sent when that
// interval ends (unless Config.DisableNotify). It never commits, never
// begins a transaction and never creates tables: the messages exist if and
// only if the caller's transaction commits.
//
// tx is a pgx.Tx rather than anything that can run a statement, so that a
// *pgxpool.Pool or a *pgx.Conn, whose statements would commit on their own,
// apart from the business change, does not compile. A nil tx, or one
// already committed or rolled back, returns an error matching
// [outbox.ErrNoTransaction]. Code on database/sql calls [Store.EnqueueSQL].
//
// It first validates and completes msgs in place ([outbox.Prepare]): empty
// IDs get a UUIDv7 and a zero CreatedAt becomes now, so the caller can read
// them afterwards. An invalid message (see [outbox.Limits]) returns an
// error matching [outbox.ErrInvalidMessage] before anything is sent, so the
// transaction stays usable. Errors from the database, such as a duplicate
// ID or a missing table ([outbox.ErrSchemaMissing]), leave the transaction
// aborted, as any failed statement does in PostgreSQL; roll it back.
//
// Messages of one key are delivered in the order they are written: within
// one call, in slice order; across transactions, in commit order when the
// writers serialize on the key (for example by updating the same row).
func (s *Store) Enqueue(ctx context.Context, tx pgx.Tx, msgs ...outbox.Message) error {
	if tx == nil {
		return fmt.Errorf("pgstore: Enqueue needs the pgx.Tx of the business change (pool.Begin, pgx.BeginFunc), got nil: %w", outbox.ErrNoTransaction)
	}
	ask := func(q string, args ...any) (ok bool, err error) {
		err = tx.QueryRow(ctx, q, args...).Scan(&ok)
		return ok, err
	}
	query, args, err := s.enqueueStatement(ctx, msgs, false, ask)
	if query == "" || err != nil {
		return err
	}
	_, err = tx.Exec(ctx, query, args...)
	if errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("pgstore: Enqueue: the pgx.Tx was already committed or rolled back; enqueue before Commit: %w: %w", outbox.ErrNoTransaction, err)
	}
	return s.enqueueError(err)
}

// EnqueueSQL is [Store.Enqueue] for code on database/sql: tx is the
// *sql.Tx of the business change, on a PostgreSQL database opened through
// pgx's stdlib driver (sql.Open("pgx", url)) or lib/pq, and so also the
// transaction of an ORM or query builder on database/sql (GORM, sqlx, bun,
// sqlc in its database/sql mode, ent). It sends the same statement, with
// the same promises: one statement, nothing visible before tx commits,
// nothing at all if it rolls back, no commit, no DDL.
//
// tx is a *sql.Tx rather than anything with ExecContext, so that a *sql.DB
// (whose statements commit on their own) does not compile, and neither does
// a *sql.Conn, which cannot tell whether the caller began a transaction on
// it: begin one with conn.BeginTx and pass that. A library that wraps the
// transaction in a type of its own keeps the *sql.Tx inside (sqlx: tx.Tx;
// bun: tx.Tx; GORM: tx.Statement.ConnPool.(*sql.Tx)). A nil tx, or one
// already committed or rolled back, returns an error matching
// [outbox.ErrNoTransaction].
//
// Its arguments are those every PostgreSQL driver for database/sql
// accepts (strings, []byte, time.Time; arrays as PostgreSQL array
// literals), so it depends on no driver. Errors match the same sentinels
// as Enqueue's for a driver whose errors carry the SQLSTATE (a
// SQLState() method: pgx's *pgconn.PgError, lib/pq's *pq.Error).
func (s *Store) EnqueueSQL(ctx context.Context, tx *sql.Tx, msgs ...outbox.Message) error {
	if tx == nil {
		return fmt.Errorf("pgstore: EnqueueSQL needs the *sql.Tx of the business change (db.BeginTx), got nil: %w", outbox.ErrNoTransaction)
	}
	ask := func(q string, args ...any) (ok bool, err error) {
		err = tx.QueryRowContext(ctx, q, args...).Scan(&ok)
		return ok, err
	}
	query, args, err := s.enqueueStatement(ctx, msgs, true, ask)
	if query == "" || err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, query, args...)
	if errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("pgstore: EnqueueSQL: the *sql.Tx was already committed or rolled back; enqueue before Commit: %w: %w", outbox.ErrNoTransaction, err)
	}
	return s.enqueueError(err)
}

// enqueueError translates the error of an enqueue statement.
func (s *Store) enqueueError(err error) error {
	if err == nil {
		return nil
	}
	if isUniqueViolation(err) {
		return fmt.Errorf("pgstore: enqueue: a message with one of these IDs is already in the outbox: %w", err)
	}
	return translate("enqueue", err)
}

// arrayArgs turns the columns of several messages into the arguments of the
// multi-message insert ($1 to $6: uuid[], text[], text[], bytea[], text[],
// timestamptz[]; then $7, the channel, and $8: integer[]). Enqueue passes
// Go slices, which pgx sends as binary arrays; EnqueueSQL passes array
// literals, which every driver sends as text and PostgreSQL casts.
type arrayArgs func(ids, topics, keys []string, payloads [][]byte, headers []string, created []time.Time, channel string, lanes []int32) []any

func pgxArrays(ids, topics, keys []string, payloads [][]byte, headers []string, created []time.Time, channel string, lanes []int32) []any {
	return []any{ids, topics, keys, payloads, headers, created, channel, lanes}
}

func literalArrays(ids, topics, keys []string, payloads [][]byte, headers []string, created []time.Time, channel string, lanes []int32) []any {
	return []any{textArray(ids), textArray(topics), textArray(keys), byteaArray(payloads), textArray(headers), timeArray(created), channel, intArray(lanes)}
}

// enqueueStatement validates msgs and returns the statement that writes
// them and notifies, with its arguments: a plain VALUES row for one
// message, arrays unnested in one statement for several. An empty query
// means there is nothing to write. The lane of each message is computed
// here, with the lane count that the store reads once (through its pool,
// on first use) and caches.
func (s *Store) enqueueStatement(ctx context.Context, msgs []outbox.Message, literal bool, ask func(string, ...any) (bool, error)) (query string, args []any, err error) {
	arrays := arrayArgs(pgxArrays)
	if literal {
		arrays = literalArrays
	}
	if err := outbox.Prepare(msgs, s.cfg.Limits); err != nil {
		return "", nil, err
	}
	if len(msgs) == 0 {
		return "", nil, nil
	}
	if s.cfg.Tail {
		if err := s.checkSlot(ask); err != nil {
			return "", nil, err
		}
		return s.tailStatement(msgs)
	}
	lanes, err := s.laneTotal(ctx)
	if err != nil {
		return "", nil, err
	}
	channel := s.names.channel
	if s.cfg.DisableNotify || !s.notify.inTx() {
		channel = "" // the statement skips pg_notify
	}
	headers := encodeHeaders
	payload := func(m *outbox.Message) []byte {
		if m.Payload == nil {
			return []byte{} // NULL would break NOT NULL; nil and empty are the same message
		}
		return m.Payload
	}

	if len(msgs) == 1 {
		m := &msgs[0]
		h, err := headers(m)
		if err != nil {
			return "", nil, err
		}
		lane := int32(outbox.LaneOf(m.Key, m.ID, lanes))
		return s.sql.insertOne, []any{m.ID, m.Topic, m.Key, payload(m), h, m.CreatedAt, channel, lane}, nil
	}
	var (
		ids      = make([]string, len(msgs))
		topics   = make([]string, len(msgs))
		keys     = make([]string, len(msgs))
		payloads = make([][]byte, len(msgs))
		hdrs     = make([]string, len(msgs))
		created  = make([]time.Time, len(msgs))
		laneOf   = make([]int32, len(msgs))
	)
	for i := range msgs {
		m := &msgs[i]
		h, err := headers(m)
		if err != nil {
			return "", nil, err
		}
		ids[i], topics[i], keys[i], payloads[i], hdrs[i], created[i] = m.ID, m.Topic, m.Key, payload(m), h, m.CreatedAt
		laneOf[i] = int32(outbox.LaneOf(m.Key, m.ID, lanes))
	}
	return s.sql.insertMany, arrays(ids, topics, keys, payloads, hdrs, created, channel, laneOf), nil
}

// encodeHeaders returns the JSON of m's headers, or "" when it has none.
func encodeHeaders(m *outbox.Message) (string, error) {
	if len(m.Headers) == 0 {
		return "", nil
	}
	j, err := json.Marshal(m.Headers)
	if err != nil {
		return "", fmt.Errorf("pgstore: encoding the headers of message %s: %w", m.ID, err)
	}
	return string(j), nil
}

// textArray is the PostgreSQL literal of a one-dimensional array of
// strings: every element quoted, backslashes and quotes escaped.
func textArray(elems []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(e); j++ {
			if e[j] == '"' || e[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(e[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// intArray is the literal of an integer[].
func intArray(elems []int32) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(e)))
	}
	b.WriteByte('}')
	return b.String()
}

// byteaArray is the literal of a bytea[]: each element in bytea's hex
// format (\x...), its backslash escaped for the array.
func byteaArray(elems [][]byte) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"\\x`)
		b.WriteString(hex.EncodeToString(e))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// timestampLayout writes a time as timestamptz reads it, to the
// microsecond, PostgreSQL's precision.
const timestampLayout = "2006-01-02 15:04:05.999999-07:00"

// timeArray is the literal of a timestamptz[]. Times are truncated to the
// microsecond, as pgx does, rather than rounded by the server.
func timeArray(elems []time.Time) string {
	s := make([]string, len(elems))
	for i, t := range elems {
		s[i] = t.UTC().Truncate(time.Microsecond).Format(timestampLayout)
	}
	return textArray(s)
}

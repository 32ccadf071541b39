package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	outbox "github.com/txoutbox/txoutbox/core"
)

// The log-tailing mode (Config.Tail). Enqueue writes each message to the
// WAL as a transactional logical decoding message
// (pg_logical_emit_message(true, prefix, content)): no row, no index, no
// NOTIFY; PostgreSQL decodes it if and only if the transaction commits, in
// commit order. One relay at a time streams them from a logical
// replication slot (pgoutput with messages on, over a publication of no
// table), and confirms the slot's position only past what the broker
// acknowledged or what it parked in the table. The slot is the lock: it
// admits one walsender at a time, so the relay that started streaming from
// it holds it until its connection ends, and PostgreSQL ends the connection
// of a holder that stays silent for wal_sender_timeout, which the relay
// sets to its lease.

// tailFormat is the first byte of a message's content: the version of the
// encoding below.
const tailFormat = 1

// tailPack is the first byte of a content that packs several messages (one
// Enqueue call): their count, then each message's length and encoding.
const tailPack = 2

// slotRecheck is how long Enqueue trusts that the slot it found exists.
const slotRecheck = 10 * time.Second

// tailNames are the names of what the tailing mode uses in the database.
type tailNames struct {
	slot, publication string // lowercase identifiers, no quoting needed
	prefix            string // of the logical messages
	parkLock          int64  // advisory lock: Park shares it, ParkedKeys takes it
	position          string // "schema"."<table>_tail": the position saved by the holder
}

func newTailNames(schema, table string) tailNames {
	base := strings.ToLower("txoutbox_" + schema + "_" + table)
	if base != "txoutbox_"+schema+"_"+table || len(base) > 63 {
		// Lowercased names of different tables could meet, and slot names
		// are at most 63 bytes: keep a hash of the exact names.
		h := fnv.New64a()
		h.Write([]byte(schema + "." + table))
		base = fmt.Sprintf("%s_%016x", base[:min(len(base), 46)], h.Sum64())
	}
	return tailNames{slot: base, publication: base, prefix: "txoutbox:" + schema + "." + table,
		parkLock: lockKey("txoutbox park " + schema + "." + table),
		position: pgx.Identifier{schema, table + "_tail"}.Sanitize()}
}

// Slot returns the name of the logical replication slot that relays read
// when Config.Tail is set: "txoutbox_<schema>_<table>" (lowercase; with a
// hash of the names when they have capitals or are long).
func (s *Store) Slot() string { return s.tail.slot }

// encodeTail encodes a prepared message as the content of its logical
// message: the format byte, the ID's 16 bytes, CreatedAt in microseconds
// since 1970, then topic, key and each header name and value, each as a
// length (uvarint) and its bytes, and the payload to the end.
func encodeTail(m *outbox.Message) ([]byte, error) {
	var id pgtype.UUID
	if err := id.Scan(m.ID); err != nil {
		return nil, fmt.Errorf("pgstore: message ID %q is not a UUID", m.ID)
	}
	n := 1 + 16 + 8 + 3*binary.MaxVarintLen32 + len(m.Topic) + len(m.Key) + len(m.Payload)
	for k, v := range m.Headers {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, tailFormat)
	b = append(b, id.Bytes[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.CreatedAt.UnixMicro()))
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(m.Topic)
	str(m.Key)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for k, v := range m.Headers {
		str(k)
		str(v)
	}
	return append(b, m.Payload...), nil
}

// decodeTail is the inverse of encodeTail.
func decodeTail(b []byte) (outbox.Message, error) {
	var m outbox.Message
	bad := func(what string) (outbox.Message, error) {
		return m, fmt.Errorf("pgstore: a logical message of the outbox has a bad %s", what)
	}
	if len(b) < 25 || b[0] != tailFormat {
		return bad("header (not written by this version of pgstore?)")
	}
	m.ID = pgtype.UUID{Bytes: [16]byte(b[1:17]), Valid: true}.String()
	m.CreatedAt = time.UnixMicro(int64(binary.BigEndian.Uint64(b[17:25]))).UTC()
	b = b[25:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if m.Topic, ok = str(); !ok {
		return bad("topic")
	}
	if m.Key, ok = str(); !ok {
		return bad("key")
	}
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(len(b)) {
		return bad("header count")
	}
	b = b[k:]
	if count > 0 {
		m.Headers = make(map[string]string, count)
		for range count {
			name, ok1 := str()
			value, ok2 := str()
			if !ok1 || !ok2 {
				return bad("header")
			}
			m.Headers[name] = value
		}
	}
	m.Payload = append(make([]byte, 0, len(b)), b...) // b is the connection's buffer, reused
	return m, nil
}

// tailStatement returns the statement that writes msgs to the WAL, with its
// arguments: one call of pg_logical_emit_message, whose content is the
// message, or a pack of the messages in slice order.
func (s *Store) tailStatement(msgs []outbox.Message) (string, []any, error) {
	var content []byte
	if len(msgs) == 1 {
		c, err := encodeTail(&msgs[0])
		if err != nil {
			return "", nil, err
		}
		content = c
	} else {
		// Several messages travel as one logical message (a pack): the
		// walsender decodes and sends one record instead of one per
		// message, which is most of its cost.
		content = append(content, tailPack)
		content = binary.AppendUvarint(content, uint64(len(msgs)))
		for i := range msgs {
			c, err := encodeTail(&msgs[i])
			if err != nil {
				return "", nil, err
			}
			content = binary.AppendUvarint(content, uint64(len(c)))
			content = append(content, c...)
		}
	}
	return `SELECT pg_logical_emit_message(true, $1::text, $2::bytea)`, []any{s.tail.prefix, content}, nil
}

// decodeContent returns the messages of one logical message's content: a
// message, or a pack of them.
func decodeContent(b []byte) ([]outbox.Message, error) {
	if len(b) == 0 || b[0] != tailPack {
		m, err := decodeTail(b)
		if err != nil {
			return nil, err
		}
		return []outbox.Message{m}, nil
	}
	bad := errors.New("pgstore: a logical message of the outbox has a bad pack")
	b = b[1:]
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(len(b)) {
		return nil, bad
	}
	b = b[k:]
	msgs := make([]outbox.Message, 0, count)
	for range count {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, bad
		}
		m, err := decodeTail(b[k : k+int(n)])
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, bad
	}
	return msgs, nil
}

// checkSlot makes sure that the slot exists before the first message is
// written to the WAL, and again every slotRecheck: a message written while
// no slot exists is never decoded, so it would be lost. A slot dropped
// under running writers (by hand, or lost in a failover to a standby,
// which PostgreSQL 15 and 16 do not copy slots to) thus loses at most the
// messages of slotRecheck before Enqueue fails with ErrSchemaMissing.
// It asks through the caller's transaction (ask), not the pool: a writer
// holding the last connection of a small pool would wait for itself.
func (s *Store) checkSlot(ask func(query string, args ...any) (bool, error)) error {
	if time.Since(time.Unix(0, s.slotSeen.Load())) < slotRecheck {
		return nil
	}
	ok, err := ask(`SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()
	AND wal_status IS DISTINCT FROM 'lost')`, s.tail.slot)
	if err != nil {
		return translate("enqueue: looking up the replication slot", err)
	}
	if !ok {
		return fmt.Errorf("pgstore: enqueue: %w: the replication slot %q that Config.Tail needs does not exist (or PostgreSQL invalidated it: max_slot_wal_keep_size), so messages written now would be lost; create it with `outbox migrate --tail` (or Store.Migrate with Config.Tail set)",
			outbox.ErrSchemaMissing, s.tail.slot)
	}
	s.slotSeen.Store(time.Now().UnixNano())
	return nil
}

// migrateTail creates what the tailing mode needs: it checks wal_level,
// then creates the publication (of no table: the relay reads messages
// only) and the slot, unless they exist.
func (s *Store) migrateTail(ctx context.Context) error {
	var level string
	if err := s.pool.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return translate("migrate: reading wal_level", err)
	}
	if level != "logical" {
		return fmt.Errorf("pgstore: migrate: %w: Config.Tail needs wal_level = logical, and the server has %s: set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL",
			outbox.ErrUnsupported, level)
	}
	// The position the holder saves (see stream.save), in the schema of
	// the table, so that it is dropped with it.
	_, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.tail.position+` (
	slot     text        PRIMARY KEY,
	position pg_lsn      NOT NULL,
	saved_at timestamptz NOT NULL DEFAULT now()
)`)
	if err != nil {
		return translate("migrate: creating "+s.tail.position, err)
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.tail.publication).Scan(&exists); err != nil {
		return translate("migrate: looking up the publication", err)
	}
	if !exists {
		_, err := s.pool.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{s.tail.publication}.Sanitize())
		if err != nil && !isDuplicateObject(err) {
			return tailPrivilege(translate("migrate: creating the publication "+s.tail.publication, err))
		}
	}
	// Slots are the cluster's, and the name comes from the schema and
	// table only: the same outbox in another database names the same slot,
	// which is not this database's to use (or to drop).
	var slotDB *string
	var thisDB string
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT database FROM pg_replication_slots WHERE slot_name = $1), current_database()`, s.tail.slot).Scan(&slotDB, &thisDB); err != nil {
		return translate("migrate: looking up the replication slot", err)
	}
	if slotDB != nil && *slotDB != thisDB {
		return fmt.Errorf("pgstore: migrate: %w: the replication slot %q that Config.Tail needs belongs to database %q (slots are the cluster's, named after the schema and table only): give this database's outbox another schema or table name",
			outbox.ErrInvalidConfig, s.tail.slot, *slotDB)
	}
	if slotDB == nil {
		_, err := s.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s.tail.slot)
		if err != nil && !isDuplicateObject(err) {
			return tailPrivilege(translate("migrate: creating the replication slot "+s.tail.slot, err))
		}
	}
	return nil
}

// tailPrivilege adds to a refused creation what the role needs.
func tailPrivilege(err error) error {
	if errors.Is(err, outbox.ErrAccessDenied) {
		return fmt.Errorf("%w (Config.Tail: the role needs the REPLICATION attribute, ALTER ROLE ... REPLICATION, and CREATE on the database)", err)
	}
	return err
}

// DropTail drops the replication slot and the publication of the tailing
// mode: the WAL they retain is freed, and messages still in the slot are
// lost. Use it to leave the tailing mode for good (after the relays
// delivered everything) or to clean up a test. While a relay streams from
// the slot it waits, until ctx ends, for the relay to stop.
func (s *Store) DropTail(ctx context.Context) error {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := s.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, s.tail.slot)
		if err == nil {
			break
		}
		if !isSlotInUse(err) || ctx.Err() != nil {
			return translate("dropping the replication slot "+s.tail.slot+" (stop the relays first)", err)
		}
		// A relay that just stopped: its walsender is on its way out.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	_, err := s.pool.Exec(ctx, `DROP PUBLICATION IF EXISTS `+pgx.Identifier{s.tail.publication}.Sanitize())
	if err != nil {
		return translate("dropping the publication "+s.tail.publication, err)
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM `+s.tail.position+` WHERE slot = $1`, s.tail.slot)
	if code, ok := sqlState(err); ok && (code == codeUndefinedTable || code == codeInvalidSchema) {
		err = nil // never migrated with Config.Tail
	}
	return translate("forgetting the position of "+s.tail.slot, err)
}

func isDuplicateObject(err error) bool {
	code, ok := sqlState(err)
	return ok && (code == "42710" || code == "23505")
}

// isSlotInUse tells the error of START_REPLICATION on a slot another
// walsender holds.
func isSlotInUse(err error) bool {
	code, ok := sqlState(err)
	return ok && code == "55006"
}

// TailLog implements [outbox.LogTailer]: it waits until the slot is free,
// starts streaming from it and returns the stream. Without Config.Tail it
// returns an error matching [outbox.ErrUnsupported].
func (s *Store) TailLog(ctx context.Context, p outbox.TailParams) (outbox.LogStream, error) {
	if !s.cfg.Tail {
		// A slot of this table means writers that tail: a relay that
		// polls would leave their messages in it, unread. Say so, and
		// keep saying it (the relay retries with backoff), rather than
		// poll an empty table in silence.
		var exists bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database())`, s.tail.slot).Scan(&exists)
		if err == nil && exists {
			return nil, fmt.Errorf("pgstore: %w: the replication slot %q exists, so writers with Config.Tail write their messages there, and this relay, without Config.Tail, does not read them: set Config.Tail on the relay (outbox relay --tail), or drop the slot once nothing is left in it (outbox migrate --drop-tail)",
				outbox.ErrInvalidConfig, s.tail.slot)
		}
		return nil, fmt.Errorf("pgstore: %w: Config.Tail is off", outbox.ErrUnsupported)
	}
	standby := min(time.Second, max(p.Lease/4, 50*time.Millisecond))
	for {
		// A standby asks whether the slot is taken (one query through the
		// pool) before it connects for replication: a connection costs the
		// server a process.
		var active bool
		err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()), false)`, s.tail.slot).Scan(&active)
		if err != nil {
			return nil, translate("tail: looking up the replication slot", err)
		}
		if !active {
			st, err := s.openStream(ctx, p)
			if err == nil {
				return st, nil
			}
			if !isSlotInUse(err) {
				return nil, err
			}
		}
		t := time.NewTimer(standby)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// openStream connects for replication and starts streaming from the slot.
func (s *Store) openStream(ctx context.Context, p outbox.TailParams) (*stream, error) {
	cfg := s.pool.Config().ConnConfig.Config.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	if p.Lease > 0 {
		cfg.RuntimeParams["wal_sender_timeout"] = strconv.FormatInt(max(p.Lease.Milliseconds(), 1000), 10)
	}
	if p.Owner != "" {
		cfg.RuntimeParams["application_name"] = truncate(p.Owner, 63)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, translate("tail: connecting for replication", err)
	}
	fail := func(op string, err error) (*stream, error) {
		conn.Close(context.Background())
		if isSlotInUse(err) {
			return nil, err
		}
		err = translate(op, err)
		if errors.Is(err, outbox.ErrAccessDenied) {
			err = fmt.Errorf("%w (Config.Tail: the relay's role needs the REPLICATION attribute, ALTER ROLE ... REPLICATION; pg_hba.conf matches its connection like any other to the database)", err)
		}
		if code, ok := sqlState(err); ok && code == "42704" {
			err = fmt.Errorf("pgstore: tail: %w: the replication slot %q does not exist; create it with `outbox migrate --tail`: %w", outbox.ErrSchemaMissing, s.tail.slot, err)
		}
		return nil, err
	}
	rows, err := conn.Exec(ctx, `SELECT pg_backend_pid()`).ReadAll()
	if err != nil {
		return fail("tail: reading the walsender's pid", err)
	}
	if len(rows) != 1 || len(rows[0].Rows) != 1 {
		return fail("tail: reading the walsender's pid", errors.New("no row"))
	}
	pid, err := strconv.Atoi(string(rows[0].Rows[0][0]))
	if err != nil {
		return fail("tail: reading the walsender's pid", err)
	}
	start, err := s.startPosition(ctx)
	if err != nil {
		return fail("tail: reading the slot's position", err)
	}
	err = pglogrepl.StartReplication(ctx, conn, s.tail.slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names '" + s.tail.publication + "'",
			"messages 'true'",
		},
	})
	if err != nil {
		return fail("tail: starting replication from slot "+s.tail.slot, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	st := &stream{
		s:      s,
		conn:   conn,
		pid:    pid,
		ready:  make(chan struct{}, 1),
		space:  make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
		lease:  p.Lease,
		start:  start,
		saved:  make(chan struct{}),
	}
	st.acked.Store(uint64(start))
	st.pushed = uint64(start)
	st.Renew()
	go st.receive(sctx)
	go st.save(sctx)
	return st, nil
}

// startPosition is where a new holder starts: the later of the slot's
// confirmed position and the position the holders saved. Before
// PostgreSQL 17 the slot's position is written to disk only at a
// checkpoint when the slot changed otherwise, so a restart of PostgreSQL,
// even a fast one, takes it back to what was saved then, minutes earlier:
// everything the relays confirmed since would be published again. The
// holder's own saves (stream.save) bound that to saveInterval. Starting
// later than the slot's position makes PostgreSQL skip the transactions
// that committed before it, exactly as it does for its own position.
func (s *Store) startPosition(ctx context.Context) (pglogrepl.LSN, error) {
	var confirmed, saved pglogrepl.LSN
	err := s.pool.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn, '0/0'::pg_lsn) FROM pg_replication_slots
WHERE slot_name = $1 AND database = current_database()`, s.tail.slot).Scan(&confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // START_REPLICATION says the slot is missing
	}
	if err != nil {
		return 0, err
	}
	err = s.pool.QueryRow(ctx, `SELECT position FROM `+s.tail.position+` WHERE slot = $1`, s.tail.slot).Scan(&saved)
	if code, ok := sqlState(err); errors.Is(err, pgx.ErrNoRows) || ok && code == codeUndefinedTable {
		err = nil
	}
	return max(confirmed, saved), err
}

// How often the holder saves the position it reported: while records flow,
// and, when the position moves only past other transactions, less often.
const (
	saveInterval     = 100 * time.Millisecond
	idleSaveInterval = 10 * time.Second
)

// save writes the position the stream reported to the position table, at
// most every saveInterval while the relay acknowledges records and every
// idleSaveInterval otherwise, and once more when the stream ends (within a
// second). The position only moves forward (GREATEST), so a former holder
// saving late changes nothing: what it reported, it had delivered.
func (st *stream) save(ctx context.Context) {
	defer close(st.saved)
	var lastSaved, lastAcked uint64
	var lastIdle time.Time
	write := func(ctx context.Context, pos uint64) {
		_, err := st.s.pool.Exec(ctx, `INSERT INTO `+st.s.tail.position+` (slot, position) VALUES ($1, $2::pg_lsn)
ON CONFLICT (slot) DO UPDATE SET position = GREATEST(`+st.s.tail.position+`.position, excluded.position), saved_at = now()`,
			st.s.tail.slot, pglogrepl.LSN(pos).String())
		if err == nil {
			lastSaved = pos
		}
	}
	t := time.NewTicker(saveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-st.done // the receiver's last report
			if pos := st.reported.Load(); pos > lastSaved {
				fctx, cancel := context.WithTimeout(context.Background(), time.Second)
				write(fctx, pos)
				cancel()
			}
			return
		case <-t.C:
		}
		pos, acked := st.reported.Load(), st.acked.Load()
		if pos <= lastSaved {
			continue
		}
		if acked == lastAcked && time.Since(lastIdle) < idleSaveInterval {
			continue // only other transactions went by
		}
		write(ctx, pos)
		lastAcked, lastIdle = acked, time.Now()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// stream is a relay's hold on the slot: a goroutine receives the
// replication stream into buf, and the relay takes records from it with
// Next and acknowledges them with Ack.
type stream struct {
	s      *Store
	conn   *pgconn.PgConn // used by the receive goroutine only
	pid    int            // of the walsender: Park is fenced by it
	cancel context.CancelFunc
	done   chan struct{}

	ready chan struct{} // records arrived, or the stream ended
	space chan struct{} // Next made room in buf

	mu     sync.Mutex
	buf    []outbox.LogRecord
	err    error  // why the receive loop ended
	pushed uint64 // checkpoint of the last record put in buf

	acked atomic.Uint64 // set by Ack

	lease   time.Duration
	renewed atomic.Int64 // unix nanoseconds of the last Renew

	start    pglogrepl.LSN // where the stream started: nothing below is reported
	reported atomic.Uint64 // the last position reported to the server
	waiting  atomic.Bool   // the receiver waits for the server's next message
	saved    chan struct{} // closed when save has returned
}

// Buffering: the receiver stops reading the socket past maxBuffered
// records (PostgreSQL then waits). It reports its position as soon as the
// relay acknowledged more (Ack wakes it), at least every statusInterval,
// and at once when the server asks.
const (
	maxBuffered    = 20_000
	statusInterval = time.Second
	// wakeInterval bounds how long the receiver waits for a message before
	// it checks the relay's renewals and reports its position if due.
	wakeInterval = 250 * time.Millisecond
	// ackInterval spaces the reports of a moving position: each costs the
	// walsender a message to process, and one per batch of one record,
	// at thousands of transactions a second, made the writers' own
	// transactions measurably dearer (the enqueue overhead). A relay
	// killed leaves at most this much of acknowledged records unreported.
	ackInterval = 10 * time.Millisecond
)

func (st *stream) receive(ctx context.Context) {
	defer close(st.done)
	var (
		tx         []outbox.LogRecord
		inTx       bool
		serverEnd  pglogrepl.LSN // what the walsender has decoded and sent
		sentFlush  = st.start    // never report below where the stream started
		lastStatus time.Time
		prefix     = st.s.tail.prefix
	)
	end := func(err error) {
		st.mu.Lock()
		if st.err == nil {
			st.err = err
		}
		st.mu.Unlock()
		signal(st.ready)
	}
	// flush is the position to confirm: what the relay acknowledged, or,
	// when it has nothing of ours outstanding and no transaction is being
	// received, everything the walsender has sent (transactions without
	// messages of this outbox, other databases' WAL).
	flush := func() pglogrepl.LSN {
		pos := pglogrepl.LSN(st.acked.Load())
		st.mu.Lock()
		idle := len(st.buf) == 0 && uint64(pos) == st.pushed && !inTx
		st.mu.Unlock()
		if idle && serverEnd > pos {
			pos = serverEnd
		}
		return max(pos, sentFlush)
	}
	// While its buffer is full the receiver does not read the walsender's
	// requests for a reply: only these reports keep it from ending the
	// connection after wal_sender_timeout (the lease, at least 1 s), so
	// they come at a quarter of it at least.
	every := statusInterval
	if st.lease > 0 {
		every = min(every, max(st.lease, time.Second)/4)
	}
	var lastAcked uint64 // st.acked when status last looked at it, or reported it
	status := func(force bool) error {
		acked := st.acked.Load()
		pos := flush()
		if !force {
			if pos == sentFlush && time.Since(lastStatus) < every {
				lastAcked = acked
				return nil
			}
			if pos != sentFlush && time.Since(lastStatus) < ackInterval {
				return nil // pending: the loop wakes up when ackInterval is over
			}
		}
		err := pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: pos})
		if err != nil {
			return err
		}
		sentFlush, lastStatus, lastAcked = pos, time.Now(), acked
		st.reported.Store(uint64(pos))
		return nil
	}
	// A relay that gives the log up (Close) reports what it acknowledged
	// since the last report, which may be up to statusInterval old: else
	// the next holder publishes it again, a duplicate without a crash.
	defer func() {
		if ctx.Err() != nil && flush() != sentFlush {
			_ = status(true)
		}
	}()
	for {
		if ctx.Err() != nil {
			end(ctx.Err())
			return
		}
		if silent := time.Since(time.Unix(0, st.renewed.Load())); st.lease > 0 && silent > st.lease {
			// The relay froze: let the slot go now rather than when the
			// walsender gives up on a client that no longer reports.
			end(fmt.Errorf("pgstore: tail: %w (the relay did not renew its hold for %v, longer than its lease)", errLostSlot, silent.Round(time.Millisecond)))
			st.conn.Close(context.Background())
			return
		}
		st.mu.Lock()
		full := len(st.buf) >= maxBuffered
		st.mu.Unlock()
		if full {
			t := time.NewTimer(wakeInterval)
			select {
			case <-ctx.Done():
			case <-st.space:
			case <-t.C:
			}
			t.Stop()
			if err := status(false); err != nil {
				end(translate("tail: reporting the position", err))
				return
			}
			continue
		}
		// A read deadline on the socket rather than a context: pgconn
		// watches a context with a goroutine per call, which at tens of
		// thousands of messages a second costs more than the decoding.
		// A timeout leaves the connection usable; Close sets the deadline
		// to now to wake this loop.
		// Ack wakes a waiting receiver (the deadline set to now), so that a
		// position is reported within ackInterval of the relay's
		// acknowledgement, not up to wakeInterval later: a relay killed
		// then would leave that much to be published again. Either Ack
		// sees waiting, or this sees its ack.
		deadline := time.Now().Add(wakeInterval)
		if due := lastStatus.Add(ackInterval); st.acked.Load() != lastAcked && due.Before(deadline) {
			deadline = due // an acknowledgement waits for ackInterval to pass
		}
		_ = st.conn.Conn().SetReadDeadline(deadline)
		st.waiting.Store(true)
		if st.acked.Load() != lastAcked && time.Since(lastStatus) >= ackInterval {
			st.waiting.Store(false)
			if err := status(false); err != nil {
				end(translate("tail: reporting the position", err))
				return
			}
			continue
		}
		msg, err := st.conn.ReceiveMessage(context.Background())
		st.waiting.Store(false)
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if err := status(false); err != nil {
					end(translate("tail: reporting the position", err))
					return
				}
				continue
			}
			end(translate("tail: receiving", err))
			return
		}
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			end(translate("tail", pgconn.ErrorResponseToPgError(msg)))
			return
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				k, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					end(fmt.Errorf("pgstore: tail: %w", err))
					return
				}
				serverEnd = max(serverEnd, k.ServerWALEnd)
				if k.ReplyRequested {
					if err := status(true); err != nil {
						end(translate("tail: reporting the position", err))
						return
					}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					end(fmt.Errorf("pgstore: tail: %w", err))
					return
				}
				m, err := pglogrepl.Parse(x.WALData)
				if err != nil {
					end(fmt.Errorf("pgstore: tail: decoding pgoutput: %w", err))
					return
				}
				switch m := m.(type) {
				case *pglogrepl.BeginMessage:
					tx, inTx = tx[:0], true
				case *pglogrepl.LogicalDecodingMessage:
					if !m.Transactional || m.Prefix != prefix {
						continue
					}
					msgs, err := decodeContent(m.Content)
					if err != nil {
						end(err)
						return
					}
					for i, msg := range msgs {
						// The messages of a pack share its LSN; the record
						// spans more bytes than it has messages, so LSN+i
						// stays unique and ordered.
						tx = append(tx, outbox.LogRecord{Record: outbox.Record{Message: msg, Seq: int64(m.LSN) + int64(i)}})
					}
				case *pglogrepl.CommitMessage:
					inTx = false
					endLSN := uint64(m.TransactionEndLSN)
					if len(tx) == 0 {
						serverEnd = max(serverEnd, m.TransactionEndLSN)
						break
					}
					tx[len(tx)-1].Checkpoint = endLSN
					st.mu.Lock()
					st.buf = append(st.buf, tx...)
					st.pushed = endLSN
					st.mu.Unlock()
					tx = tx[:0]
					signal(st.ready)
				}
			}
		}
		if err := status(false); err != nil {
			end(translate("tail: reporting the position", err))
			return
		}
	}
}

// Next implements [outbox.LogStream].
func (st *stream) Next(ctx context.Context, max int) ([]outbox.LogRecord, error) {
	for {
		st.mu.Lock()
		if n := len(st.buf); n > 0 {
			n = min(n, max)
			out := make([]outbox.LogRecord, n)
			copy(out, st.buf)
			st.buf = append(st.buf[:0], st.buf[n:]...)
			st.mu.Unlock()
			signal(st.space)
			return out, nil
		}
		err := st.err
		st.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-st.ready:
		}
	}
}

// Renew implements [outbox.LogStream].
func (st *stream) Renew() { st.renewed.Store(time.Now().UnixNano()) }

// Ack implements [outbox.LogStream].
func (st *stream) Ack(pos uint64) {
	for {
		old := st.acked.Load()
		if pos <= old {
			return
		}
		if st.acked.CompareAndSwap(old, pos) {
			break
		}
	}
	if st.waiting.Load() {
		_ = st.conn.Conn().SetReadDeadline(time.Now())
	}
}

// Close implements [outbox.LogStream]: the walsender ends, and the slot is
// free for another relay.
func (st *stream) Close() error {
	st.cancel()
	_ = st.conn.Conn().SetReadDeadline(time.Now())
	<-st.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := st.conn.Close(ctx) // the slot is free for a standby now
	<-st.saved
	return err
}

// Park implements [outbox.LogStream]: one transaction that checks that this
// stream's walsender still holds the slot, then inserts the records in the
// order given (the table's Seq follows it). The slot can change hands
// between the check and the commit; so Park holds parkLock shared from
// before the check, and ParkedKeys waits for it: a new holder reads the
// keys of a Park whose check passed before it took the slot.
func (st *stream) Park(ctx context.Context, recs []outbox.Parked) error {
	s := st.s
	lanes, err := s.laneTotal(ctx)
	if err != nil {
		return err
	}
	n := len(recs)
	var (
		ids, topics, keys, hdrs, errs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		payloads                      = make([][]byte, n)
		created                       = make([]time.Time, n)
		laneOf, attempts              = make([]int32, n), make([]int32, n)
		delays                        = make([]int64, n)
		dead                          = make([]bool, n)
	)
	for i := range recs {
		r := &recs[i]
		h, err := encodeHeaders(&r.Message)
		if err != nil {
			return err
		}
		ids[i], topics[i], keys[i], hdrs[i], errs[i] = r.ID, r.Topic, r.Key, h, r.LastError
		payloads[i] = r.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		created[i] = r.CreatedAt
		laneOf[i] = int32(outbox.LaneOf(r.Key, r.ID, lanes))
		attempts[i] = int32(r.Attempts)
		delays[i] = micros(r.Delay)
		dead[i] = r.Dead
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := st.parkBegin(ctx, tx); err != nil {
			return err
		}
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2)`,
			s.tail.slot, st.pid).Scan(&held); err != nil {
			return err
		}
		if !held {
			return errLostSlot
		}
		_, err := tx.Exec(ctx, s.sql.park, ids, laneOf, topics, keys, payloads, hdrs, created, attempts, errs, delays, dead)
		return err
	})
	if errors.Is(err, errLostSlot) {
		return fmt.Errorf("pgstore: tail: park: %w", err)
	}
	return translate("tail: park", err)
}

// parkBegin opens Park's transaction: it takes parkLock shared, and has
// the server end the session if it stays idle in the transaction for the
// lease (at least 1 s), as it would end the walsender: a relay frozen
// mid-Park would else hold parkLock, and so stall every next holder's
// ParkedKeys, for as long as it stays frozen.
func (st *stream) parkBegin(ctx context.Context, tx pgx.Tx) error {
	idle := strconv.FormatInt(max(st.lease.Milliseconds(), 1000), 10)
	_, err := tx.Exec(ctx, `SELECT set_config('idle_in_transaction_session_timeout', $2, true), pg_advisory_xact_lock_shared($1)`,
		st.s.tail.parkLock, idle)
	return err
}

// errLostSlot matches outbox.ErrLostLog: the relay gives a batch up on it,
// not on other failures of Park.
var errLostSlot = fmt.Errorf("%w: another walsender holds the replication slot, or none", outbox.ErrLostLog)

// ParkedKeys implements [outbox.LogStream].
// It first waits for the Parks in flight (see Park), a former holder's
// among them.
func (st *stream) ParkedKeys(ctx context.Context, strictOrder bool) ([]string, error) {
	var keys []string
	err := pgx.BeginFunc(ctx, st.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, st.s.tail.parkLock); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, st.s.sql.parkedKeys, strictOrder)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return keys, translate("tail: reading parked keys", err)
}

// signal sends on a channel of capacity one without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

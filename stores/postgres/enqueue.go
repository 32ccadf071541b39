package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	outbox "github.com/txoutbox/txoutbox/core"
)

// DBTX is what [Store.Enqueue] writes through: anything that can send a
// pgx batch. pgx.Tx (from pgx or pgxpool), *pgx.Conn and *pgxpool.Conn
// satisfy it, and so does *pgxpool.Pool.
//
// Enqueue is transactional only when the statements run inside the
// caller's transaction: through a pgx.Tx, or through a connection on which
// the caller has begun one. Given a *pgxpool.Pool, or a connection outside
// a transaction, the messages of one call are written in a transaction of
// their own that commits at once: they are written together, but not
// atomically with anything else the caller does.
type DBTX interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Enqueue writes msgs to the outbox within tx, in one round trip (pgx
// prepares the statements once per connection, on first use), and with
// them a notification (unless Config.DisableNotify) that PostgreSQL
// delivers to listening relays only if the transaction commits. It never
// commits, never begins a transaction and never creates tables: the
// messages exist if and only if the caller's transaction commits.
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
func (s *Store) Enqueue(ctx context.Context, tx DBTX, msgs ...outbox.Message) error {
	if tx == nil {
		return fmt.Errorf("pgstore: Enqueue needs a transaction: %w", outbox.ErrNoTransaction)
	}
	if err := outbox.Prepare(msgs, s.cfg.Limits); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueInsert(b, msgs); err != nil {
		return err
	}
	if !s.cfg.DisableNotify {
		b.Queue(s.sql.notify, s.names.channel)
	}
	err := tx.SendBatch(ctx, b).Close()
	if err == nil {
		return nil
	}
	if isUniqueViolation(err) {
		return fmt.Errorf("pgstore: enqueue: a message with one of these IDs is already in the outbox: %w", err)
	}
	return translate("enqueue", err)
}

// queueInsert adds the INSERT of msgs to b: a plain VALUES row for one
// message, arrays unnested in one statement for several.
func (s *Store) queueInsert(b *pgx.Batch, msgs []outbox.Message) error {
	headers := func(m *outbox.Message) (string, error) {
		if len(m.Headers) == 0 {
			return "", nil
		}
		j, err := json.Marshal(m.Headers)
		if err != nil {
			return "", fmt.Errorf("pgstore: encoding the headers of message %s: %w", m.ID, err)
		}
		return string(j), nil
	}
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
			return err
		}
		b.Queue(s.sql.insertOne, m.ID, m.Topic, m.Key, payload(m), h, m.CreatedAt)
		return nil
	}
	var (
		ids      = make([]string, len(msgs))
		topics   = make([]string, len(msgs))
		keys     = make([]string, len(msgs))
		payloads = make([][]byte, len(msgs))
		hdrs     = make([]string, len(msgs))
		created  = make([]time.Time, len(msgs))
	)
	for i := range msgs {
		m := &msgs[i]
		h, err := headers(m)
		if err != nil {
			return err
		}
		ids[i], topics[i], keys[i], payloads[i], hdrs[i], created[i] = m.ID, m.Topic, m.Key, payload(m), h, m.CreatedAt
	}
	b.Queue(s.sql.insertMany, ids, topics, keys, payloads, hdrs, created)
	return nil
}
